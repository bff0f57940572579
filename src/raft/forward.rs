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

use super::durable::DurableMachine;
use super::transport::NodeId;
use super::types::{Payload, Warren};
use futures::TryStreamExt;
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
    let failed = |e: &dyn std::fmt::Display| Refusal::Failed(e.to_string());
    let n = payloads.len();
    let mut stream = raft.client_write_many(payloads).await.map_err(|e| failed(&e))?;
    let mut out = Vec::with_capacity(n);
    while let Some(r) = stream.try_next().await.map_err(|e| failed(&e))? {
        let resp = r.map_err(|f| {
            if out.is_empty() { Refusal::NotLeader(f.leader_id) } else { failed(&"leadership lost mid-batch") }
        })?;
        let any = resp.response.inner.ok_or_else(|| failed(&"no reply"))?;
        let (reply, _effects) =
            *any.downcast::<(M::Reply, Vec<M::Effect>)>().map_err(|_| failed(&"unexpected reply type"))?;
        let bytes = M::encode_reply(&reply).ok_or_else(|| failed(&"this group's replies cannot be forwarded"))?;
        out.push((resp.log_id.index, bytes));
    }
    if out.len() != n {
        return Err(Refusal::Failed(format!("{} of {n} proposals answered", out.len())));
    }
    Ok(out)
}
