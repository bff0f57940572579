//! Resource alarms, as RabbitMQ's memory and disk alarms ([D:alarms], [D:connection-blocked]).
//!
//! While an alarm is raised, every connection that has published stops being read (TCP
//! back-pressure reaches the publisher) and, if the client advertised the
//! `connection.blocked` capability, is told with `connection.blocked` and later
//! `connection.unblocked`. Connections that only consume keep going, so queues drain. This is
//! what keeps memory bounded when producers outrun consumers.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// Which alarms are raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    pub memory: bool,
    pub disk: bool,
}

impl Alarms {
    pub fn any(&self) -> bool {
        self.memory || self.disk
    }

    /// Raised in either.
    pub fn or(self, other: Alarms) -> Alarms {
        Alarms { memory: self.memory || other.memory, disk: self.disk || other.disk }
    }

    /// The reason RabbitMQ puts in `connection.blocked`.
    pub fn reason(&self) -> &'static str {
        if self.memory { "low on memory" } else { "low on disk" }
    }
}

/// What an alarm watches.
enum Resource {
    /// The process's resident memory; raised at or above the limit.
    Memory,
    /// Free space on the data directory's file system; raised below the limit (RabbitMQ's
    /// `disk_free_limit`). Consumers keep draining, which frees space; publishers wait.
    Disk(std::path::PathBuf),
}

/// One resource alarm: a measurement compared with a limit that can change at run time.
pub struct ThresholdAlarm {
    resource: Resource,
    limit: AtomicU64,
    alarms: watch::Sender<Alarms>,
}

impl ThresholdAlarm {
    pub fn memory(limit: u64, alarms: watch::Sender<Alarms>) -> Self {
        Self { resource: Resource::Memory, limit: AtomicU64::new(limit), alarms }
    }

    pub fn disk(limit: u64, path: std::path::PathBuf, alarms: watch::Sender<Alarms>) -> Self {
        Self { resource: Resource::Disk(path), limit: AtomicU64::new(limit), alarms }
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (as `rabbitmqctl set_vm_memory_high_watermark` /
    /// `set_disk_free_limit`) and re-checks at once.
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
        self.check();
    }

    /// Measures the resource and raises or clears the alarm.
    pub fn check(&self) {
        let limit = self.limit();
        match &self.resource {
            Resource::Memory => {
                if let Some(rss) = resident_bytes() {
                    set_alarm(&self.alarms, "memory", |a| &mut a.memory, rss >= limit, rss, limit);
                }
            }
            Resource::Disk(path) => {
                if let Some(free) = free_bytes(path) {
                    set_alarm(&self.alarms, "disk", |a| &mut a.disk, free < limit, free, limit);
                }
            }
        }
    }
}

/// Raises or clears one alarm, logging the change.
fn set_alarm(
    alarms: &watch::Sender<Alarms>,
    name: &str,
    flag: fn(&mut Alarms) -> &mut bool,
    raised: bool,
    value: u64,
    limit: u64,
) {
    alarms.send_if_modified(|a| {
        let f = flag(a);
        if *f == raised {
            return false;
        }
        *f = raised;
        if raised {
            tracing::warn!(alarm = name, value, limit, "resource alarm raised: blocking publishers");
        } else {
            tracing::info!(alarm = name, value, limit, "resource alarm cleared");
        }
        true
    });
}

/// Free space available to this process on the file system holding `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The process's resident memory, from `/proc/self/status` (Linux).
pub fn resident_bytes() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")
}

/// Open file descriptors of this process, from `/proc/self/fd` (Linux).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The soft limit on open file descriptors, from `/proc/self/limits` (Linux).
pub fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Threads of this process, from `/proc/self/status` (Linux).
pub fn threads() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()
}

/// The memory this node may use: the machine's (`/proc/meminfo`), or less where its cgroup
/// (a container's `--memory`, a Kubernetes memory limit) allows less. Without the cgroup's
/// limit a container's watermark would be a fraction of the host's memory, above the limit
/// at which the container is killed.
pub fn total_memory() -> Option<u64> {
    let machine = kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")?;
    let cgroup = CGROUP_LIMITS.iter().find_map(|p| cgroup_limit(&std::fs::read_to_string(p).ok()?));
    Some(cgroup.map_or(machine, |c| c.min(machine)))
}

/// Where a cgroup's memory limit is: v2, then v1.
const CGROUP_LIMITS: [&str; 2] = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"];

/// A cgroup memory limit file's value: `None` for none (v2's `max`; v1 says none with a
/// number near `i64::MAX`, which the machine's memory then caps).
fn cgroup_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_parse() {
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"), Some(2 * 1024 * 1024));
        assert_eq!(kib_field("VmRSS: junk", "VmRSS:"), None);
        assert!(resident_bytes().unwrap() > 0);
        assert!(total_memory().unwrap() > resident_bytes().unwrap());
    }

    #[test]
    fn a_cgroup_memory_limit_parses_and_none_is_none() {
        assert_eq!(cgroup_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(cgroup_limit("max\n"), None);
        // cgroup v1's "no limit" is a huge number: the machine's memory stays the bound.
        assert_eq!(cgroup_limit("9223372036854771712\n"), Some(9_223_372_036_854_771_712));
    }

    #[test]
    fn disk_alarm_follows_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let (tx, rx) = watch::channel(Alarms::default());
        let d = ThresholdAlarm::disk(0, dir.path().to_owned(), tx);
        d.check();
        assert!(!rx.borrow().disk);
        d.set_limit(u64::MAX);
        assert!(rx.borrow().disk);
        assert_eq!(rx.borrow().reason(), "low on disk");
        d.set_limit(0);
        assert!(!rx.borrow().any());
    }

    #[test]
    fn alarm_follows_the_limit() {
        let (tx, rx) = watch::channel(Alarms::default());
        let m = ThresholdAlarm::memory(u64::MAX, tx);
        m.check();
        assert!(!rx.borrow().memory);
        m.set_limit(1);
        assert!(rx.borrow().memory);
        assert_eq!(rx.borrow().reason(), "low on memory");
        m.set_limit(u64::MAX);
        assert!(!rx.borrow().any());
    }
}

/// Keeps `cluster` at the alarms raised anywhere in the cluster: this node's own (`local`)
/// and the other members' (`peers`, as their answers to hellos said; none on a single node),
/// as RabbitMQ blocks publishers on every node while any node has an alarm. `said` is what
/// this node's own answers say of it. Runs until shutdown.
pub async fn spread(
    mut local: watch::Receiver<Alarms>,
    mut peers: Option<watch::Receiver<Alarms>>,
    said: Option<std::sync::Arc<crate::node::peers::Said>>,
    cluster: watch::Sender<Alarms>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mine = *local.borrow_and_update();
        let theirs = peers.as_mut().map(|p| *p.borrow_and_update()).unwrap_or_default();
        if let Some(s) = &said {
            *s.alarms.lock().unwrap_or_else(|p| p.into_inner()) = mine;
        }
        let all = mine.or(theirs);
        cluster.send_if_modified(|old| std::mem::replace(old, all) != all);
        let peers_changed = async {
            match peers.as_mut() {
                Some(p) => p.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = local.changed() => if r.is_err() { return },
            r = peers_changed => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
