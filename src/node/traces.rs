//! The registry of named traces (RabbitMQ's `rabbitmq_tracing`): which run, on which vhost,
//! into which file, and how to stop each. The management API starts and stops them
//! (`mgmt::tracer`); the node only keeps them, in memory (traces end with the node, as
//! RabbitMQ's do).

use std::collections::{BTreeMap, btree_map};
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// One running trace.
#[derive(Debug)]
pub struct Trace {
    pub vhost: String,
    pub name: String,
    /// `text` or `json`.
    pub format: String,
    /// The binding key on `amq.rabbitmq.trace` (`#` for everything).
    pub pattern: String,
    pub max_payload_bytes: Option<u64>,
    /// The queue it reads from.
    pub queue: String,
    pub file: PathBuf,
    /// Dropped (or fired) to stop the trace's writer.
    pub stop: Option<oneshot::Sender<()>>,
}

/// The node's traces, by (vhost, name).
#[derive(Debug, Default)]
pub struct Traces {
    map: Mutex<BTreeMap<(String, String), Trace>>,
}

impl Traces {
    /// Registers a trace; returns the one it replaces, if any.
    pub fn insert(&self, t: Trace) -> Option<Trace> {
        let key = (t.vhost.clone(), t.name.clone());
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, t)
    }

    pub fn remove(&self, vhost: &str, name: &str) -> Option<Trace> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&(vhost.to_owned(), name.to_owned()))
    }

    /// Reads the traces (optionally of one vhost) under the lock.
    pub fn with<R>(&self, f: impl FnOnce(btree_map::Values<'_, (String, String), Trace>) -> R) -> R {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(m.values())
    }

    pub fn any_in(&self, vhost: &str) -> bool {
        self.with(|mut it| it.any(|t| t.vhost == vhost))
    }
}
