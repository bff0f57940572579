//! A node's settings: defaults, then the TOML file, then `WARREN_*` variables and flags (the
//! binary merges the last two; the library never reads the environment).

use crate::broker::argument::QueueType;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything a node needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// AMQP 0-9-1 listener (RabbitMQ's 5672).
    pub amqp_addr: SocketAddr,
    /// Management HTTP API and web UI listener (RabbitMQ's 15672).
    pub http_addr: SocketAddr,
    /// Prometheus `/metrics` listener (RabbitMQ's prometheus plugin: 15692).
    pub prometheus_addr: SocketAddr,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// Largest message body accepted, in bytes (RabbitMQ 4.x: 16 MiB). A larger publish closes
    /// the channel with 406.
    pub max_message_size: u64,
    /// Largest frame we accept and propose in `connection.tune` (RabbitMQ: 131072).
    pub frame_max: u32,
    /// Highest channel number a client may open (RabbitMQ: 2047).
    pub channel_max: u16,
    /// Proposed heartbeat interval in seconds (RabbitMQ: 60); 0 disables.
    pub heartbeat: u16,
    /// Seconds a client has to complete the handshake (RabbitMQ: 10).
    pub handshake_timeout: u64,
    /// Memory alarm threshold as a fraction of the machine's RAM (RabbitMQ 4.x
    /// `vm_memory_high_watermark`: 0.6). Publishers are blocked while resident memory is above.
    pub memory_high_watermark: f64,
    /// An absolute memory alarm threshold in bytes; overrides the fraction when set.
    pub memory_high_watermark_bytes: Option<u64>,
    /// Free disk space, in bytes, below which publishers are blocked (RabbitMQ's
    /// `disk_free_limit`: 50 MB).
    pub disk_free_limit: u64,
    /// How long a delivery may stay unacknowledged, in ms, before its channel is closed with
    /// 406 (RabbitMQ's `consumer_timeout`: 30 minutes); 0 turns it off. A queue's
    /// `x-consumer-timeout` overrides it.
    pub consumer_timeout: u64,
    /// What a plain durable declare (no `x-queue-type`) gets: `classic` (default, as a single
    /// RabbitMQ node) or `quorum`.
    pub default_queue_type: QueueType,
    /// Users who may log in only from loopback addresses (RabbitMQ: `loopback_users = [guest]`).
    pub loopback_users: Vec<String>,
    /// Create the default user (administrator, full access to `/`) with a new database, unless
    /// a user of that name is configured.
    pub default_user: bool,
    /// The default user's name and password: `guest`/`guest`, or RabbitMQ's
    /// `RABBITMQ_DEFAULT_USER`/`_PASS` as `WARREN_DEFAULT_USER`/`WARREN_DEFAULT_PASS` (`guest`
    /// may log in from loopback only, so a cluster behind a proxy needs another).
    pub default_user_name: String,
    pub default_pass: String,
    pub users: Vec<UserConfig>,
    pub vhosts: Vec<VhostConfig>,
    pub permissions: Vec<PermissionConfig>,
    /// This node's name, as RabbitMQ's `rabbit@<host>` [default: `warren@<hostname>`].
    pub node_name: Option<String>,
    /// How this node finds and joins the others (`[cluster]`).
    pub cluster: ClusterConfig,
}

/// Clustering settings (`[cluster]` in TOML; `--peers`, `--cluster-*` flags).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The inter-node listener (RabbitMQ's distribution port is 25672).
    pub listen_addr: SocketAddr,
    /// The `host:port` peers dial to reach this node; by default this machine's host name and
    /// the listener's port (or its address when it is not a wildcard).
    pub advertise_addr: Option<String>,
    /// The cluster addresses (`host:port`) of the initial members, the same list on every
    /// node. Empty: a single node.
    pub peers: Vec<String>,
    /// Nodes of another cluster name are refused.
    pub name: String,
    /// The shared secret every inter-node call carries (RabbitMQ's Erlang cookie) ...
    pub secret: Option<String>,
    /// ... or the file it is read from.
    pub secret_file: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen_addr: ([0, 0, 0, 0], 25672).into(),
            advertise_addr: None,
            peers: Vec::new(),
            name: "warren".to_owned(),
            secret: None,
            secret_file: None,
        }
    }
}

impl ClusterConfig {
    /// The address peers dial to reach this node.
    pub fn advertised(&self) -> String {
        match &self.advertise_addr {
            Some(a) => a.clone(),
            None if self.listen_addr.ip().is_unspecified() => format!("{}:{}", hostname(), self.listen_addr.port()),
            None => self.listen_addr.to_string(),
        }
    }

    /// The cluster secret: the setting, else the file's content (surrounding whitespace
    /// trimmed, as an Erlang cookie file's trailing newline).
    pub fn secret(&self) -> Result<Option<String>, ConfigError> {
        if let Some(s) = &self.secret {
            return Ok(Some(s.trim().to_owned()));
        }
        let Some(path) = &self.secret_file else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Ok(Some(text.trim().to_owned()))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return invalid(format!("cluster name '{}' must be letters, digits, '-', '_' or '.'", self.name));
        }
        let mut seen = std::collections::HashSet::new();
        for p in self.peers.iter().chain(self.advertise_addr.as_ref()) {
            if !is_host_port(p) {
                return invalid(format!("cluster address '{p}' is not host:port"));
            }
        }
        for p in &self.peers {
            if !seen.insert(p.as_str()) {
                return invalid(format!("peer '{p}' is listed twice"));
            }
        }
        if self.secret.is_some() && self.secret_file.is_some() {
            return invalid("give the cluster secret or its file, not both".into());
        }
        match self.secret()? {
            Some(s) if s.is_empty() => invalid("the cluster secret is empty".into()),
            None if !self.peers.is_empty() => {
                invalid("a cluster needs a shared secret (--cluster-secret-file or WARREN_CLUSTER_SECRET)".into())
            }
            _ => Ok(()),
        }
    }
}

/// `host:port` with a non-empty host and a port (a bracketed IPv6 address is a host).
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// The machine's host name, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// A plain password (hashed at start-up) ...
    #[serde(default)]
    pub password: Option<String>,
    /// ... or a RabbitMQ-format `password_hash` (base64 salted SHA-256).
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhostConfig {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    pub user: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

fn default_vhost() -> String {
    "/".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            amqp_addr: ([0, 0, 0, 0], 5672).into(),
            http_addr: ([0, 0, 0, 0], 15672).into(),
            prometheus_addr: ([0, 0, 0, 0], 15692).into(),
            data_dir: PathBuf::from("./warren-data"),
            max_message_size: 16 * 1024 * 1024,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            handshake_timeout: 10,
            memory_high_watermark: 0.6,
            memory_high_watermark_bytes: None,
            default_queue_type: QueueType::Classic,
            disk_free_limit: 50_000_000,
            consumer_timeout: 1_800_000,
            loopback_users: vec!["guest".to_owned()],
            default_user: true,
            default_user_name: "guest".to_owned(),
            default_pass: "guest".to_owned(),
            users: Vec::new(),
            vhosts: Vec::new(),
            permissions: Vec::new(),
            node_name: None,
            cluster: ClusterConfig::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// The memory alarm threshold in bytes (the absolute setting, or the fraction of RAM).
    pub fn memory_limit(&self) -> u64 {
        match self.memory_high_watermark_bytes {
            Some(b) => b,
            None => crate::alarm::total_memory()
                .map(|total| (total as f64 * self.memory_high_watermark) as u64)
                .unwrap_or(u64::MAX),
        }
    }

    /// This node's name: the setting, or `warren@<hostname>`.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| format!("warren@{}", hostname()))
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
    }

    /// Checks ranges and references; called before a node starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.frame_max < 8192 {
            return Err(ConfigError::Invalid(format!("frame_max {} is below the AMQP minimum 8192", self.frame_max)));
        }
        if self.max_message_size == 0 || self.max_message_size > 512 * 1024 * 1024 {
            return Err(ConfigError::Invalid(format!(
                "max_message_size {} must be between 1 and 536870912",
                self.max_message_size
            )));
        }
        if !(self.memory_high_watermark > 0.0 && self.memory_high_watermark <= 1.0) {
            return Err(ConfigError::Invalid(format!(
                "memory_high_watermark {} must be a fraction of RAM in (0, 1]",
                self.memory_high_watermark
            )));
        }
        if self.channel_max == 0 {
            return Err(ConfigError::Invalid("channel_max must be at least 1".into()));
        }
        if let Some(n) = &self.node_name {
            if n.is_empty() || n.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid(format!("node name '{n}' must be non-empty, without spaces")));
            }
        }
        self.cluster.validate()?;
        if self.default_user && (self.default_user_name.is_empty() || self.default_pass.is_empty()) {
            return Err(ConfigError::Invalid("the default user needs a name and a password".into()));
        }
        for u in &self.users {
            if u.password.is_none() && u.password_hash.is_none() {
                return Err(ConfigError::Invalid(format!("user '{}' needs a password or a password_hash", u.name)));
            }
        }
        for p in &self.permissions {
            if !self.users.iter().any(|u| u.name == p.user) && !(self.default_user && p.user == self.default_user_name)
            {
                return Err(ConfigError::Invalid(format!("permissions for unknown user '{}'", p.user)));
            }
            if p.vhost != "/" && !self.vhosts.iter().any(|v| v.name == p.vhost) {
                return Err(ConfigError::Invalid(format!("permissions on unknown vhost '{}'", p.vhost)));
            }
            for re in [&p.configure, &p.write, &p.read] {
                regex::Regex::new(re).map_err(|e| ConfigError::Invalid(format!("permission regex '{re}': {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape_and_rejects_unknown_keys() {
        let c: Config = toml::from_str(
            r#"
            amqp_addr = "127.0.0.1:5999"
            [[users]]
            name = "alice"
            password = "secret"
            tags = ["administrator"]
            [[vhosts]]
            name = "v1"
            [[permissions]]
            user = "alice"
            vhost = "v1"
            configure = ".*"
            write = ".*"
            read = ".*"
            "#,
        )
        .unwrap();
        assert_eq!(c.amqp_addr.port(), 5999);
        assert_eq!(c.heartbeat, 60);
        c.validate().unwrap();
        assert!(toml::from_str::<Config>("amqp_adr = \"x\"").is_err());
        let bad = Config { frame_max: 100, ..Config::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn cluster_settings_parse_and_are_checked() {
        let c: Config = toml::from_str(
            r#"
            node_name = "warren@a"
            [cluster]
            peers = ["a:25672", "b:25672", "[::1]:25672"]
            name = "prod"
            secret = "s3cret\n"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.node_name(), "warren@a");
        assert_eq!(c.cluster.secret().unwrap().as_deref(), Some("s3cret"));
        assert!(c.cluster.advertised().ends_with(":25672"));
        let refused = |f: fn(&mut ClusterConfig)| {
            let mut c = Config::default();
            f(&mut c.cluster);
            c.validate().is_err()
        };
        assert!(refused(|c| c.peers = vec!["a:25672".into()]), "peers without a secret");
        assert!(refused(|c| c.peers = vec!["a".into()]), "no port");
        assert!(refused(|c| c.name = "a b".into()));
        assert!(refused(|c| {
            c.secret = Some("x".into());
            c.peers = vec!["a:1".into(), "a:1".into()]
        }));
        assert!(refused(|c| c.secret = Some(" ".into())), "empty secret");
        assert!(Config::default().validate().is_ok());
    }
}
