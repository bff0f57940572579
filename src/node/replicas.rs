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
    /// Adds (`add`) or removes `node`'s replica of a queue.
    async fn change_replica(&self, vhost: &str, name: &str, node: u64, add: bool) -> Result<(), Error> {
        let (vhost, name) = (vhost.to_owned(), name.to_owned());
        let cmd = if add {
            MetaCommand::AddQueueMember { vhost, name, node }
        } else {
            MetaCommand::DeleteQueueMember { vhost, name, node }
        };
        match self.propose_meta(cmd).await {
            MetaReply::Refused(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// `add_member`: node `node` holds a replica of the queue too.
    pub async fn add_member(&self, vhost: &str, name: &str, node: &str) -> Result<(), Error> {
        self.change_replica(vhost, name, self.node_id_named(node)?, true).await?;
        tracing::info!(vhost, queue = name, node, "quorum queue member added");
        Ok(())
    }

    /// `delete_member`: node `node` no longer holds a replica of the queue.
    pub async fn delete_member(&self, vhost: &str, name: &str, node: &str) -> Result<(), Error> {
        self.change_replica(vhost, name, self.node_id_named(node)?, false).await?;
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
        let mut queues = self.replicated_queues();
        queues.retain(|r| v.is_match(&r.vhost) && q.is_match(&r.name));
        Ok(queues)
    }

    /// Adds (`add`) or removes `node`'s replica of each queue in turn: what became of each.
    async fn change_each(&self, queues: Vec<Arc<QueueRecord>>, node: u64, add: bool) -> Vec<MemberChange> {
        let mut changes = Vec::with_capacity(queues.len());
        for q in queues {
            let outcome = self.change_replica(&q.vhost, &q.name, node, add).await.map(|()| {
                let mut after: Vec<u64> = q.members.iter().copied().filter(|&n| n != node).collect();
                if add {
                    after.push(node);
                }
                after.iter().map(|&n| self.name_of(n)).collect()
            });
            changes.push(MemberChange {
                vhost: q.vhost.clone(),
                name: q.name.clone(),
                outcome: outcome.map_err(|e| e.detail),
            });
        }
        changes
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
        let mut queues = self.matching_queues(vhost_pattern, queue_pattern)?;
        queues.retain(|q| !q.members.contains(&id) && (strategy == GrowStrategy::All || q.members.len() % 2 == 0));
        let changes = self.change_each(queues, id, true).await;
        tracing::info!(node, queues = changes.len(), "grew quorum queues onto a node");
        Ok(changes)
    }

    /// `shrink NODE`: removes the replica on `node` from every queue that has one (never a
    /// queue's last: that one is reported as an error).
    pub async fn shrink(&self, node: &str) -> Result<Vec<MemberChange>, Error> {
        let id = self.node_id_named(node)?;
        let mut queues = self.replicated_queues();
        queues.retain(|q| q.members.contains(&id));
        let changes = self.change_each(queues, id, false).await;
        tracing::info!(node, queues = changes.len(), "shrank quorum queues off a node");
        Ok(changes)
    }
}
