//! Where a new quorum queue's replicas (and a durable delayed exchange's store) go in a
//! cluster: chosen by the node that proposes the declaration and carried in the command
//! (`MetaCommand::DeclareQueue::members`, `DeclareExchange::members`), so the metadata
//! machine stays deterministic.
//!
//! As RabbitMQ (`rabbit_queue_location`): `x-quorum-initial-group-size` replicas (default 3,
//! at most the cluster's size); the first leader by `x-queue-leader-locator`: the declaring
//! client's node (`client-local`, the default) or the running node leading the fewest queues
//! (`balanced`). The other replicas go to running nodes first, those holding the fewest
//! replicas first.

use super::Node;
use crate::broker::argument::{self, LeaderLocator};
use crate::meta::MetaCommand;
use std::collections::{BTreeMap, BTreeSet};

/// Replicas of a quorum queue without `x-quorum-initial-group-size` (RabbitMQ's default).
const DEFAULT_GROUP_SIZE: u64 = 3;

impl Node {
    /// Places a quorum queue, or a durable delayed exchange's store, declared in a cluster:
    /// fills in its members.
    pub(super) fn place(&self, cmd: &mut MetaCommand) {
        if let MetaCommand::DeclareExchange { vhost, name, kind, durable, members, .. } = cmd {
            if kind.delayed && *durable && members.is_empty() {
                self.place_store(vhost, name, members);
            }
            return;
        }
        let MetaCommand::DeclareQueue { vhost, name, args, connection, members, .. } = cmd else { return };
        let Some(peers) = &self.peers else { return };
        let quorum = argument::get(args, "x-queue-type").and_then(argument::as_str).as_deref() == Some("quorum");
        if !quorum || !members.is_empty() {
            return;
        }
        // Invalid arguments are refused by the machine, with RabbitMQ's words.
        let Ok(parsed) = argument::parse_queue_args(args, "") else { return };
        let (leaders, replicas, exists) = self.meta.read(|m| {
            let mut leaders: BTreeMap<u64, usize> = BTreeMap::new();
            let mut replicas: BTreeMap<u64, usize> = BTreeMap::new();
            for q in m.state().vhosts.values().flat_map(|v| v.queues.values()) {
                *leaders.entry(q.home).or_default() += 1;
                for n in &q.members {
                    *replicas.entry(*n).or_default() += 1;
                }
            }
            let exists = m.state().vhosts.get(vhost.as_str()).is_some_and(|v| v.queues.contains_key(name.as_str()));
            (leaders, replicas, exists)
        });
        if exists {
            return;
        }
        let down = peers.down().borrow().clone();
        let nodes = peers.members();
        let size = parsed.initial_group_size.unwrap_or(DEFAULT_GROUP_SIZE).clamp(1, nodes.len() as u64) as usize;
        let count = |m: &BTreeMap<u64, usize>, n: u64| m.get(&n).copied().unwrap_or(0);
        let local = connection.node();
        let first = match parsed.leader_locator {
            LeaderLocator::ClientLocal if nodes.contains(&local) => local,
            _ => nodes.iter().copied().min_by_key(|&n| (down.contains(&n), count(&leaders, n), n)).unwrap_or(self.id),
        };
        *members = spread(first, nodes, &down, &replicas, size);
    }

    /// A durable delayed exchange's store: [`DEFAULT_GROUP_SIZE`] members (at most the
    /// cluster's size), this node first (it proposes the declaration), then the running nodes
    /// holding the fewest stores.
    fn place_store(&self, vhost: &str, name: &str, members: &mut Vec<u64>) {
        let Some(peers) = &self.peers else { return };
        let (stores, exists) = self.meta.read(|m| {
            let mut stores: BTreeMap<u64, usize> = BTreeMap::new();
            for x in m.state().vhosts.values().flat_map(|v| v.exchanges.values()) {
                for n in &x.delay_members {
                    *stores.entry(*n).or_default() += 1;
                }
            }
            (stores, m.state().vhosts.get(vhost).is_some_and(|v| v.exchanges.contains_key(name)))
        });
        if exists {
            return;
        }
        let down = peers.down().borrow().clone();
        *members = spread(self.id, peers.members(), &down, &stores, DEFAULT_GROUP_SIZE as usize);
    }
}

/// `size` members: `first`, then the other `nodes`, running ones before those `down` and
/// among them those holding the fewest (`held`) first.
fn spread(first: u64, nodes: Vec<u64>, down: &BTreeSet<u64>, held: &BTreeMap<u64, usize>, size: usize) -> Vec<u64> {
    let mut others: Vec<u64> = nodes.into_iter().filter(|&n| n != first).collect();
    others.sort_by_key(|&n| (down.contains(&n), held.get(&n).copied().unwrap_or(0), n));
    std::iter::once(first).chain(others).take(size).collect()
}
