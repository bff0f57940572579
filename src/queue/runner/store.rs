//! Where a queue's machine lives: in memory (transient queues) or in an openraft group whose
//! log is in RocksDB (durable queues; replicated queues have members on several nodes), and
//! how message bodies are read back from that log.

use super::super::Message;
use super::super::machine::{Command, Effect, QueueMachine, Reply};
use crate::ids::{MsgId, QueueKey};
use crate::raft::{DurableGroup, Group, GroupError};
use crate::storage::GroupLog;
use std::sync::Arc;

/// Where a queue's machine lives.
pub enum Backend {
    /// In memory (transient queues): applied synchronously.
    Memory,
    /// Replicated through openraft with its log in this storage group (durable queues). The
    /// runner opens (and after a restart recovers) the group before serving requests.
    Durable(GroupLog),
    /// This node's member of a replicated queue's group (`super::lead`).
    Replicated(GroupLog, Box<super::lead::Replica>),
}

pub(super) enum Store {
    Memory(Group<QueueMachine>),
    Durable(Arc<DurableGroup<QueueMachine>>, GroupLog),
}

/// What a proposed batch comes to: each command's reply and effects, in order.
pub(super) type Proposed = Result<Vec<(Reply, Vec<Effect>)>, GroupError>;

/// A batch handed to the store: answered at once (in memory, or refused), or once applied.
pub(super) enum Proposal {
    Done(Proposed),
    Pending(futures::future::BoxFuture<'static, Proposed>),
}

impl Store {
    /// Hands a batch to the store; the log takes batches in the order they are submitted.
    pub(super) async fn submit(&mut self, now: u64, cmds: Vec<Command>) -> Proposal {
        match self {
            Store::Memory(g) => Proposal::Done(Ok(cmds
                .into_iter()
                .map(|c| {
                    let mut fx = Vec::new();
                    let r = g.propose(now, c, &mut fx);
                    (r, fx)
                })
                .collect())),
            // Never forwarded: effects (deliveries) are carried out where the batch is proposed.
            Store::Durable(g, _) => match g.submit_local(now, cmds).await {
                Ok(pending) => Proposal::Pending(pending),
                Err(e) => Proposal::Done(Err(e)),
            },
        }
    }

    /// Proposes a batch and waits for it; replies and effects come back in order.
    pub(super) async fn propose(&mut self, now: u64, cmds: Vec<Command>) -> Proposed {
        match self.submit(now, cmds).await {
            Proposal::Done(r) => r,
            Proposal::Pending(p) => p.await,
        }
    }

    /// Reads back messages whose bodies the machine keeps only in the log (by id = log
    /// index), in the order asked; `None` for one that cannot be read (logged).
    pub(super) fn load(&self, key: &QueueKey, ids: &[MsgId]) -> Vec<Option<Arc<Message>>> {
        let Store::Durable(g, _) = self else {
            return vec![None; ids.len()];
        };
        let indexes: Vec<u64> = ids.iter().map(|i| i.0).collect();
        match g.read_commands(&indexes) {
            Ok(cmds) => ids
                .iter()
                .zip(cmds)
                .map(|(id, c)| match c {
                    Some(Command::Enqueue { msg } | Command::EnqueueAgain { msg }) => Some(msg),
                    _ => {
                        tracing::error!(queue = %key, id = id.0, "a message's log entry is missing");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                tracing::error!(queue = %key, error = %e, "cannot read messages back from the log");
                vec![None; ids.len()]
            }
        }
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&QueueMachine) -> T) -> T {
        match self {
            Store::Memory(g) => f(g.state()),
            Store::Durable(g, _) => g.read(f),
        }
    }
}
