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
//!
//! A node with no member of a group proposes the same way through an [`Outsider`], which
//! finds the leader by asking the members.

use super::durable::{DurableMachine, GroupError, write_many};
use super::peers::{decode, encode, find_leader};
use super::transport::{NodeId, RpcKind, Transport, TransportError};
use super::types::{Payload, Warren};
use crate::storage::GroupId;
use openraft::Raft;
use openraft::storage::RaftStateMachine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

/// Sends encoded proposals to `leader`'s member of `group`; per proposal, its log index and
/// encoded reply. [`GroupError::NotLeader`] and [`GroupError::LeaderUnreachable`] mean
/// nothing was written (try again); any other error is ambiguous.
pub(crate) async fn send(
    transport: &dyn Transport,
    leader: NodeId,
    group: GroupId,
    body: bytes::Bytes,
) -> Result<Vec<(u64, Vec<u8>)>, GroupError> {
    let raft_err = |e: &dyn std::fmt::Display| GroupError::Raft(e.to_string());
    let answer = match transport.call(leader, group, RpcKind::Propose, body).await {
        Ok(a) => a,
        // Never sent, or no member there to take it.
        Err(e @ (TransportError::NotConnected { .. } | TransportError::NoGroup { .. })) => {
            return Err(GroupError::LeaderUnreachable(e.to_string()));
        }
        Err(e) => return Err(raft_err(&e)),
    };
    match decode::<Answer>(&answer).map_err(|e| raft_err(&e))? {
        Ok(a) => Ok(a),
        Err(Refusal::NotLeader(l)) => Err(GroupError::NotLeader(l)),
        Err(Refusal::Failed(m)) => Err(GroupError::Raft(format!("at the leader: {m}"))),
    }
}

/// A forwarded proposal's reply, as the leader encoded it.
pub(crate) fn decode_reply<M: DurableMachine>(r: Vec<u8>) -> Result<M::Reply, GroupError> {
    M::decode_reply(&bytes::Bytes::from(r)).map_err(|e| GroupError::Raft(e.to_string()))
}

/// How long an outsider's proposal looks for a leader that takes it before it fails.
const OUTSIDE_PATIENCE: Duration = Duration::from_secs(10);
/// How long an outsider waits before it asks again when no member named a reachable leader.
const OUTSIDE_PAUSE: Duration = Duration::from_millis(200);

/// Proposes to a group this node holds no member of (a delayed exchange's store seen from a
/// node that joined after the store's members were chosen): its proposals go to the
/// group's leader, found by asking the members the metadata lists, and are answered once
/// the leader committed them. Nothing is kept here, so nothing is lost with this node.
pub struct Outsider {
    transport: Arc<dyn Transport>,
    group: GroupId,
    me: NodeId,
    members: watch::Receiver<Vec<NodeId>>,
    /// The leader last named, tried first.
    leader: Option<NodeId>,
}

impl Outsider {
    pub fn new(
        transport: Arc<dyn Transport>,
        group: GroupId,
        me: NodeId,
        members: watch::Receiver<Vec<NodeId>>,
    ) -> Self {
        Self { transport, group, me, members, leader: None }
    }

    /// Proposes commands as one batch at the group's leader; returns their replies. Waits up
    /// to [`OUTSIDE_PATIENCE`] for a leader that takes them while nothing was written (no
    /// leader known, a member without the group yet, a leader that could not be reached or
    /// no longer leads); a failure after the batch may have arrived is returned at once.
    pub async fn propose_many<M: DurableMachine>(
        &mut self,
        now_ms: u64,
        cmds: &[M::Command],
    ) -> Result<Vec<M::Reply>, GroupError> {
        let payloads: Vec<Payload> =
            cmds.iter().map(|c| Payload { now_ms, cmd: M::encode_command(c).into() }).collect();
        let body = encode(&payloads).map_err(|e| GroupError::Raft(e.to_string()))?;
        let deadline = Instant::now() + OUTSIDE_PATIENCE;
        let mut tried = Vec::new();
        loop {
            if self.leader.is_none() {
                let members = self.members.borrow().clone();
                self.leader = find_leader(self.transport.as_ref(), self.group, &members, self.me, &|_| false).await;
            }
            let refused = match self.leader {
                None => GroupError::NotLeader(None),
                Some(l) => match send(self.transport.as_ref(), l, self.group, body.clone()).await {
                    Ok(answered) => return answered.into_iter().map(|(_, r)| decode_reply::<M>(r)).collect(),
                    Err(e @ (GroupError::NotLeader(_) | GroupError::LeaderUnreachable(_))) => e,
                    Err(e) => return Err(e),
                },
            };
            if Instant::now() >= deadline {
                return Err(refused);
            }
            tried.extend(self.leader);
            // A leader named that was not tried yet is asked at once; otherwise (members
            // disagreeing while an election settles) after a pause.
            let named = match refused {
                GroupError::NotLeader(Some(next)) if !tried.contains(&next) => Some(next),
                _ => None,
            };
            if named.is_none() {
                tokio::time::sleep(OUTSIDE_PAUSE).await;
                tried.clear();
            }
            self.leader = named;
        }
    }
}
