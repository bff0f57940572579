//! The cluster's node registry in the metadata machine: initial members seeded from the peer
//! list, each node's name and address as it says them, joins (a new id, never reused) and
//! removals (`forget_cluster_node`, or a node with an empty data directory taking a dead
//! one's name or address).
//!
//! What a removal does to queues follows RabbitMQ's `forget_cluster_node`
//! (`rabbit_amqqueue:forget_all_durable`, `rabbit_quorum_queue:shrink_all`): the removed
//! node's quorum queue replicas go (a queue left without replicas goes with them), the
//! classic queues it was home to go (their data was on it), and so do the exclusive queues of
//! its connections. A replacement instead takes the removed node's place in each quorum queue
//! it held a replica of; the queue's leader then adds the new member to its group
//! (`queue/runner/lead.rs`), so the queue keeps its replication factor. Durable delayed
//! exchanges' stores follow the same rules (`queue/delayed/runner.rs` converges them).

use super::MetaMachine;
use crate::broker::Error;
use crate::meta::MetaEffect;
use crate::meta::state::{ClusterNode, QueueRecord};
use std::sync::Arc;

impl MetaMachine {
    fn note_id(&mut self, id: u64) {
        self.state.next_node = self.state.next_node.max(id + 1);
    }

    pub(super) fn seed_nodes(&mut self, nodes: Vec<ClusterNode>) {
        for n in nodes {
            self.note_id(n.id);
            if !self.state.nodes.contains_key(&n.id) && !self.state.forgotten.contains(&n.id) {
                self.state.nodes.insert(n.id, Arc::new(n));
            }
        }
    }

    pub(super) fn register_node(&mut self, node: ClusterNode) -> Result<(), Error> {
        if self.state.forgotten.contains(&node.id) {
            return Err(Error::precondition(format!(
                "node {} ('{}') was removed from the cluster; start it with an empty data directory to join again",
                node.id, node.name
            )));
        }
        self.note_id(node.id);
        if self.state.nodes.get(&node.id).is_none_or(|n| **n != node) {
            self.state.nodes.insert(node.id, Arc::new(node));
        }
        Ok(())
    }

    /// A new node: the next id; any node known by the same name or address is replaced.
    pub(super) fn join_node(&mut self, name: String, addr: String, effects: &mut Vec<MetaEffect>) -> u64 {
        let id = self.state.next_node.max(1);
        self.note_id(id);
        let replaced: Vec<u64> = self
            .state
            .nodes
            .values()
            .filter(|n| (!name.is_empty() && n.name == name) || n.addr == addr)
            .map(|n| n.id)
            .collect();
        for old in replaced {
            self.remove_node(old, Some(id), effects);
        }
        self.state.nodes.insert(id, Arc::new(ClusterNode { id, name, addr }));
        id
    }

    pub(super) fn forget_node(&mut self, id: u64, effects: &mut Vec<MetaEffect>) -> Result<(), Error> {
        if !self.state.nodes.contains_key(&id) {
            return Err(Error::not_found(format!("no cluster node {id}")));
        }
        self.remove_node(id, None, effects);
        Ok(())
    }

    /// Removes `old` for good; its replicas go to `replacement`, or go.
    fn remove_node(&mut self, old: u64, replacement: Option<u64>, effects: &mut Vec<MetaEffect>) {
        self.state.nodes.remove(&old);
        self.state.forgotten.insert(old);
        let gone = |q: &QueueRecord| {
            let lost_replicas = q.replicated() && replacement.is_none() && q.members.iter().all(|&m| m == old);
            let lost_home = !q.replicated() && q.home == old;
            lost_replicas || lost_home || q.exclusive_owner.is_some_and(|c| c.node() == old)
        };
        self.delete_queues_where(gone, effects);
        // Durable delayed exchanges' stores likewise: the replacement takes the removed
        // member's place, or the store goes on with its other members (with none left, its
        // held messages were on the removed node alone: each node's publishers then hold in
        // a store of their own node, as a single node does).
        for v in self.state.vhosts.values_mut() {
            let in_queue = v.queues.values().any(|q| q.members.contains(&old));
            if !in_queue && !v.exchanges.values().any(|x| x.delay_members.contains(&old)) {
                continue;
            }
            let v = Arc::make_mut(v);
            for q in v.queues.values_mut().filter(|q| q.members.contains(&old)) {
                let q = Arc::make_mut(q);
                replace_member(&mut q.members, old, replacement);
                if q.home == old {
                    q.home = q.members.first().copied().unwrap_or(old);
                }
            }
            for x in v.exchanges.values_mut().filter(|x| x.delay_members.contains(&old)) {
                replace_member(&mut Arc::make_mut(x).delay_members, old, replacement);
            }
        }
    }
}

/// `old` replaced by `replacement` in a group's `members`, or removed from them.
fn replace_member(members: &mut Vec<u64>, old: u64, replacement: Option<u64>) {
    match replacement {
        Some(new) => members.iter_mut().filter(|m| **m == old).for_each(|m| *m = new),
        None => members.retain(|&m| m != old),
    }
}

/// Quorum queues' members changed by an operator (`add_member`, `delete_member`; as
/// `rabbit_quorum_queue:add_member/4` and `delete_member/3` refuse: a node that is not in
/// the cluster, one that is a member already, or the last member).
impl MetaMachine {
    /// A replicated queue's record, to change.
    fn replicated_mut(&mut self, vhost: &str, name: &str) -> Result<&mut QueueRecord, Error> {
        let v = self.vhost_mut(vhost)?;
        let q = v.queues.get_mut(name).ok_or_else(|| Error::no_queue(vhost, name))?;
        if !q.replicated() {
            return Err(Error::precondition(format!(
                "queue '{name}' in vhost '{vhost}' is not a replicated (quorum) queue"
            )));
        }
        Ok(Arc::make_mut(q))
    }

    pub(super) fn add_queue_member(&mut self, vhost: &str, name: &str, node: u64) -> Result<(), Error> {
        if !self.state.nodes.contains_key(&node) {
            return Err(Error::not_found(format!("no cluster node {node}")));
        }
        let q = self.replicated_mut(vhost, name)?;
        if q.members.contains(&node) {
            return Err(Error::precondition(format!("node {node} is already a member of queue '{name}'")));
        }
        q.members.push(node);
        Ok(())
    }

    pub(super) fn delete_queue_member(&mut self, vhost: &str, name: &str, node: u64) -> Result<(), Error> {
        let q = self.replicated_mut(vhost, name)?;
        if !q.members.contains(&node) {
            return Err(Error::precondition(format!("node {node} is not a member of queue '{name}'")));
        }
        if q.members.len() == 1 {
            return Err(Error::precondition(format!("node {node} is the last member of queue '{name}'")));
        }
        q.members.retain(|&m| m != node);
        if q.home == node {
            q.home = q.members[0];
        }
        Ok(())
    }
}
