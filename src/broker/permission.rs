//! configure / write / read permissions as RabbitMQ checks them (`rabbit_access_control`).
//!
//! Each is a regular expression matched *unanchored* against the resource name; the empty
//! string means "nothing" (RabbitMQ substitutes `^$`).

use regex::Regex;

/// The three permission kinds of AMQP resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// A user's compiled permissions on one vhost.
#[derive(Clone, Debug)]
pub struct Permissions {
    pub configure: Regex,
    pub write: Regex,
    pub read: Regex,
    /// The source patterns, kept for listing and export.
    pub source: [String; 3],
}

impl Permissions {
    /// Compiles the three patterns; an invalid regex is refused.
    pub fn compile(configure: &str, write: &str, read: &str) -> Result<Self, regex::Error> {
        let c = |p: &str| Regex::new(if p.is_empty() { "^$" } else { p });
        Ok(Self {
            configure: c(configure)?,
            write: c(write)?,
            read: c(read)?,
            source: [configure.to_owned(), write.to_owned(), read.to_owned()],
        })
    }

    pub fn allows(&self, access: Access, name: &str) -> bool {
        match access {
            Access::Configure => self.configure.is_match(name),
            Access::Write => self.write.is_match(name),
            Access::Read => self.read.is_match(name),
        }
    }
}

/// RabbitMQ's `loopback_users`: those users may log in only over loopback (to AMQP and to the
/// management API alike). An IPv4 client of a dual-stack listener appears as
/// `::ffff:127.0.0.1`, which counts as loopback too.
pub fn may_log_in_from(user: &str, peer: std::net::IpAddr, loopback_users: &[String]) -> bool {
    !loopback_users.iter().any(|u| u == user) || peer.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanchored_and_empty_means_nothing() {
        let p = Permissions::compile("^app\\.", "", ".*").unwrap();
        assert!(p.allows(Access::Configure, "app.q"));
        assert!(!p.allows(Access::Configure, "other"));
        assert!(!p.allows(Access::Write, "anything"));
        assert!(p.allows(Access::Read, "x"));
        let unanchored = Permissions::compile("q", "q", "q").unwrap();
        assert!(unanchored.allows(Access::Read, "my-q-1"));
    }
}
