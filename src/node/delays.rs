//! The running stores of delayed exchanges, kept in step with the metadata: after every
//! metadata batch (and at start-up) each delayed exchange gets a store if it has none, and
//! the store of an exchange that is gone is deleted with its data.
//!
//! In a cluster, a durable exchange's store is replicated over its members
//! (`Exchange::delay_members`); this node runs its member there. The founders
//! (`Exchange::delay_founders`) start the group; a member that replaced a removed one starts
//! empty and waits for the store's leader to add it, as the members the metadata says reach
//! the running store (whose leader converges on them). A node that is not a member (one that
//! joined after the exchange was declared) holds nothing itself: it sends what its
//! publishers send to the store's leader.

use super::Node;
use crate::ids::QueueKey;
use crate::meta::{Exchange, MetaState};
use crate::queue::delayed::runner::{Keeping, Member};
use crate::queue::runner::Request;
use crate::queue::{Command, QueueHandle, delayed};
use crate::raft::{Outsider, Replication};
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
            let (members, watched) = watch::channel(x.delay_members.clone());
            let keeping = self.delay_keeping(GroupId(group), x, watched);
            let handle = delayed::spawn(key.clone(), keeping, self.delay_router());
            running.insert(key, Store { group, handle, members });
        }
        running.iter().map(|(k, s)| (k.clone(), s.handle.clone())).collect()
    }

    /// Where this node's store of delayed exchange `x` (storage group `group`) keeps what it
    /// holds: in memory for a transient exchange; for a durable one, in this node's member
    /// of the replicated store, at its leader when this node is no member, or in this
    /// node's log alone (a single node; a store whose members were all forgotten; one this
    /// node held alone before it was replicated from other nodes, which keeps its messages).
    fn delay_keeping(&self, group: GroupId, x: &Exchange, members: watch::Receiver<Vec<u64>>) -> Keeping {
        if !x.durable {
            return Keeping::Memory;
        }
        let log = self.storage.group(group);
        let Some(r) = self.replication.as_ref().filter(|_| !x.delay_members.is_empty()) else {
            return Keeping::Alone(log);
        };
        if x.delay_members.contains(&self.id) {
            let founder = x.delay_founders.contains(&self.id);
            let initial = founder.then(|| x.delay_founders.iter().copied().collect());
            return Keeping::Member(log, Member { rep: Replication { initial, ..r.clone() }, members });
        }
        match log.last() {
            Ok(None) => {
                tracing::info!(exchange = %x.name, members = ?x.delay_members,
                    "this node holds no member of the delayed exchange's store: its holds go to the store's leader");
                Keeping::Outside(Outsider::new(r.transport.clone(), group, self.id, members))
            }
            Ok(Some(_)) => {
                tracing::warn!(exchange = %x.name, "this node keeps the delayed messages it held alone before");
                Keeping::Alone(log)
            }
            Err(e) => {
                tracing::error!(exchange = %x.name, error = %e, "cannot read the delayed exchange's log");
                Keeping::Alone(log)
            }
        }
    }

    /// Routes a released message through its exchange as the bindings are now; `None` while
    /// the routes are not known yet (the node is starting) or no longer (it is stopping).
    fn delay_router(&self) -> delayed::runner::Router {
        let me = self.me.clone();
        Arc::new(move |vhost: &str, msg: &crate::queue::Message, keys: &[String]| {
            let node = me.upgrade()?;
            if !node.routes_ready.load(std::sync::atomic::Ordering::Acquire) || !node.is_serving() {
                return None;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            Some(node.topology().targets(vhost, &msg.exchange, &keys, msg.properties.headers().as_ref(), |_| true))
        })
    }
}
