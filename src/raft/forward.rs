//! Proposals made on a member that does not lead, carried to the leader and answered there.
//!
//! The origin sends its payloads (`RpcKind::Propose`); the leader proposes them as if they
//! were its own and answers each entry's log index with the machine's reply, encoded by the
//! machine ([`DurableMachine::encode_reply`]). The origin then waits until its own member has
//! applied those indexes, so what the client does next on that node sees its change
//! (read-your-writes). Effects stay where the entry was applied: a node acts on what its
//! own machine's state says (a reconciler), never on another node's effects.
//!
//! A refusal with `NotLeader` means nothing was written, so the origin may try again at the
//! new leader; any other failure is ambiguous (the entry may yet commit) and is returned.

use super::durable::{DurableMachine, GroupError, write_many};
use super::transport::NodeId;
use super::types::{Payload, Warren};
use openraft::Raft;
use openraft::storage::RaftStateMachine;
use serde::{Deserialize, Serialize};

type C = Warren;

/// Why the leader did not take forwarded proposals.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// Not (or no longer) the leader; nothing was written.
    NotLeader(Option<NodeId>),
    /// Anything else; some entries may have been written.
    Failed(String),
}

/// The leader's answer: per proposal, its log index and the encoded reply.
pub(crate) type Answer = Result<Vec<(u64, Vec<u8>)>, Refusal>;

/// Proposes forwarded payloads on this (leading) member and encodes the replies.
pub(crate) async fn propose_here<M, SM>(raft: &Raft<C, SM>, payloads: Vec<Payload>) -> Answer
where
    M: DurableMachine,
    SM: RaftStateMachine<C>,
{
    let written = write_many::<M, SM>(raft, payloads).await.map_err(|e| match e {
        GroupError::NotLeader(l) => Refusal::NotLeader(l),
        e => Refusal::Failed(e.to_string()),
    })?;
    // The other members learn the commit at once (not at the next heartbeat): the origin
    // waits until they act on it too (`Node::await_peers`).
    let _ = raft.trigger().heartbeat().await;
    written
        .into_iter()
        .map(|(index, (reply, _effects))| {
            M::encode_reply(&reply)
                .map(|bytes| (index, bytes))
                .ok_or_else(|| Refusal::Failed("this group's replies cannot be forwarded".into()))
        })
        .collect()
}
