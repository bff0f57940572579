//! The running stores of delayed exchanges, kept in step with the metadata: after every
//! metadata batch (and at start-up) each delayed exchange gets a store if it has none, and
//! the store of an exchange that is gone is deleted with its data.
//!
//! In a cluster, a durable exchange's store is replicated over its members
//! (`Exchange::delay_members`); this node runs its member there. The founders
//! (`Exchange::delay_founders`) start the group; a member that replaced a removed one starts
//! empty and waits for the store's leader to add it, as the members the metadata says reach
//! the running store (whose leader converges on them). A node that is not a member (one that
//! joined after the exchange was declared) keeps what its own publishers send in a store of
//! its own, as a single node does.

use super::Node;
use crate::ids::QueueKey;
use crate::meta::MetaState;
use crate::queue::runner::Request;
use crate::queue::{Command, QueueHandle, delayed};
use crate::raft::Replication;
use crate::storage::GroupId;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// A running store: its storage group, its address, and its members as the metadata says.
pub(super) struct Store {
    group: u64,
    handle: QueueHandle,
    members: watch::Sender<Vec<u64>>,
}

/// The running stores by exchange.
pub(super) type Running = HashMap<QueueKey, Store>;

impl Node {
    /// Starts and stops delay stores to match `meta`; returns the stores for the snapshot.
    pub(super) fn reconcile_delays(&self, meta: &MetaState) -> HashMap<QueueKey, QueueHandle> {
        let mut running = self.delays.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: HashMap<QueueKey, (u64, &crate::meta::Exchange)> = meta
            .vhosts
            .values()
            .flat_map(|v| {
                v.exchanges
                    .values()
                    .filter_map(|x| x.delay_group.map(|g| (QueueKey::new(v.name.clone(), x.name.clone()), (g, &**x))))
            })
            .collect();
        running.retain(|key, store| {
            let keep = wanted.get(key).is_some_and(|(g, _)| *g == store.group);
            if !keep {
                let h = store.handle.clone();
                // Never block the metadata actor: the store may be waiting on a queue.
                tokio::spawn(async move {
                    let _ =
                        h.tx.send(Request::Cast { cmd: Command::Delete { if_unused: false, if_empty: false } }).await;
                });
            }
            keep
        });
        for (key, (group, x)) in wanted {
            if let Some(store) = running.get(&key) {
                store.members.send_if_modified(|m| {
                    let changed = *m != x.delay_members;
                    m.clone_from(&x.delay_members);
                    changed
                });
                continue;
            }
            let log = x.durable.then(|| self.storage.group(GroupId(group)));
            let (members, watched) = watch::channel(x.delay_members.clone());
            let rep = self.replication.as_ref().filter(|_| x.delay_members.contains(&self.id)).map(|r| {
                let founder = x.delay_founders.contains(&self.id);
                let initial = founder.then(|| x.delay_founders.iter().copied().collect());
                delayed::runner::Member { rep: Replication { initial, ..r.clone() }, members: watched }
            });
            let handle = delayed::spawn(key.clone(), log, self.delay_router(), rep);
            running.insert(key, Store { group, handle, members });
        }
        running.iter().map(|(k, s)| (k.clone(), s.handle.clone())).collect()
    }

    /// Routes a released message through its exchange as the bindings are now.
    fn delay_router(&self) -> delayed::runner::Router {
        let me = self.me.clone();
        Arc::new(move |vhost: &str, msg: &crate::queue::Message, keys: &[String]| {
            let Some(node) = me.upgrade() else { return Vec::new() };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            node.topology().targets(vhost, &msg.exchange, &keys, msg.properties.headers().as_ref(), |_| true)
        })
    }
}
