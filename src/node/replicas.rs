//! Quorum queues' replicas as operators change them, with `rabbitmq-queues`' commands:
//! `add_member`, `delete_member`, `grow` and `shrink`. Each is a metadata change (the queue
//! record's members, `meta/machine/nodes.rs`); the queue's leader then changes its Raft group
//! to match, a new member catching up as a learner before it votes
//! (`raft/durable/members.rs`), and a removed member hands its leadership over if it has it
//! and retires (`queue/runner/lead.rs`).

use super::Node;
use crate::broker::{Error, ReplyCode};
use crate::meta::{MetaCommand, MetaReply, QueueRecord};
use std::sync::Arc;

/// Which queues `grow` adds a replica to (RabbitMQ's `all` and `even`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowStrategy {
    /// Every matching queue that lacks one on the node.
    All,
    /// Only those with an even number of replicas (so a group stays odd-sized).
    Even,
}

/// What `grow` or `shrink` did to one queue.
#[derive(Clone, Debug)]
pub struct MemberChange {
    pub vhost: String,
    pub name: String,
    /// The queue's replicas afterwards (node names), or why it was not changed.
    pub outcome: Result<Vec<String>, String>,
}

impl Node {
    async fn member_change(&self, cmd: MetaCommand) -> Result<(), Error> {
        match self.propose_meta(cmd).await {
            MetaReply::Refused(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// `add_member`: node `node` holds a replica of the queue too.
    pub async fn add_member(&self, vhost: &str, name: &str, node: &str) -> Result<(), Error> {
        let id = self.node_id_named(node)?;
        self.member_change(MetaCommand::AddQueueMember { vhost: vhost.into(), name: name.into(), node: id }).await?;
        tracing::info!(vhost, queue = name, node, "quorum queue member added");
        Ok(())
    }

    /// `delete_member`: node `node` no longer holds a replica of the queue.
    pub async fn delete_member(&self, vhost: &str, name: &str, node: &str) -> Result<(), Error> {
        let id = self.node_id_named(node)?;
        self.member_change(MetaCommand::DeleteQueueMember { vhost: vhost.into(), name: name.into(), node: id }).await?;
        tracing::info!(vhost, queue = name, node, "quorum queue member deleted");
        Ok(())
    }

    /// The replicated queues whose vhost and name match the patterns (regular expressions,
    /// unanchored, as RabbitMQ's `--vhost-pattern` and `--queue-pattern`).
    fn matching_queues(&self, vhost_pattern: &str, queue_pattern: &str) -> Result<Vec<Arc<QueueRecord>>, Error> {
        let re = |p: &str| {
            regex::Regex::new(p)
                .map_err(|e| Error::new(ReplyCode::PreconditionFailed, format!("bad pattern '{p}': {e}")))
        };
        let (v, q) = (re(vhost_pattern)?, re(queue_pattern)?);
        Ok(self.meta.read(|m| {
            m.state()
                .vhosts
                .values()
                .filter(|vh| v.is_match(&vh.name))
                .flat_map(|vh| vh.queues.values())
                .filter(|r| r.replicated() && q.is_match(&r.name))
                .cloned()
                .collect()
        }))
    }

    fn names(&self, members: &[u64]) -> Vec<String> {
        members.iter().map(|&n| self.name_of(n)).collect()
    }

    /// `grow NODE all|even`: adds a replica on `node` to every matching queue lacking one.
    pub async fn grow(
        &self,
        node: &str,
        strategy: GrowStrategy,
        vhost_pattern: &str,
        queue_pattern: &str,
    ) -> Result<Vec<MemberChange>, Error> {
        let id = self.node_id_named(node)?;
        let mut changes = Vec::new();
        for q in self.matching_queues(vhost_pattern, queue_pattern)? {
            if q.members.contains(&id) || (strategy == GrowStrategy::Even && q.members.len() % 2 == 1) {
                continue;
            }
            let cmd = MetaCommand::AddQueueMember { vhost: q.vhost.clone(), name: q.name.clone(), node: id };
            let outcome = self.member_change(cmd).await.map(|()| {
                let mut m = q.members.clone();
                m.push(id);
                self.names(&m)
            });
            changes.push(MemberChange {
                vhost: q.vhost.clone(),
                name: q.name.clone(),
                outcome: outcome.map_err(|e| e.detail),
            });
        }
        tracing::info!(node, queues = changes.len(), "grew quorum queues onto a node");
        Ok(changes)
    }

    /// `shrink NODE`: removes the replica on `node` from every queue that has one (never a
    /// queue's last: that one is reported as an error).
    pub async fn shrink(&self, node: &str) -> Result<Vec<MemberChange>, Error> {
        let id = self.node_id_named(node)?;
        let mut changes = Vec::new();
        for q in self.matching_queues(".*", ".*")?.into_iter().filter(|q| q.members.contains(&id)) {
            let cmd = MetaCommand::DeleteQueueMember { vhost: q.vhost.clone(), name: q.name.clone(), node: id };
            let outcome = self.member_change(cmd).await.map(|()| {
                let m: Vec<u64> = q.members.iter().copied().filter(|&n| n != id).collect();
                self.names(&m)
            });
            changes.push(MemberChange {
                vhost: q.vhost.clone(),
                name: q.name.clone(),
                outcome: outcome.map_err(|e| e.detail),
            });
        }
        tracing::info!(node, queues = changes.len(), "shrank quorum queues off a node");
        Ok(changes)
    }
}
