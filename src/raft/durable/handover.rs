//! Handing a group's leadership to another member, and what one member says of itself
//! (`quorum_status`).
//!
//! A handover serves an operator's `transfer_leadership` (`rabbitmq-queues
//! transfer_leadership`), a rebalance, and a node that stops gracefully: on SIGTERM a node
//! hands every leadership it holds to a caught-up member before it closes its clients, as
//! RabbitMQ 3.x does before a node stops (`rabbit_quorum_queue:transfer_leadership/2` from
//! `rabbit_upgrade_preparation`), so a rolling restart costs an election round trip instead
//! of the failure detector's seconds.
//!
//! How (Raft's leadership transfer, §3.10 of Ongaro's thesis, as openraft implements it):
//! 1. the leader stops taking new proposals: its runner waits on the group's gate
//!    ([`super::DurableGroup::handover_done`]) instead of proposing;
//! 2. it waits until the target has every entry it has ([`CATCH_UP`]);
//! 3. it tells the voters (openraft's `transfer_leader`): each stops counting its lease for
//!    this leader, and the target stands for election at once, without a pre-vote;
//! 4. should the target not have won within [`ELECTED`], the other voters, most up to date
//!    first, are asked to stand ([`RpcKind::Elect`]): a leader that has offered to go takes no
//!    writes, so it must not be left in charge.

use super::C;
use crate::raft::peers::{decode, encode};
use crate::raft::transport::{NodeId, Router, RpcKind, Transport, TransportError};
use crate::storage::GroupId;
use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::{Raft, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long the target may take to receive every entry the leader has.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long an elected member may take to be known as the leader.
const ELECTED: Duration = Duration::from_millis(1500);

/// One member of a group as it sees itself (RabbitMQ's `quorum_status` row).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberStatus {
    pub node: NodeId,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub raft_state: String,
    /// `voter` or `learner`.
    pub membership: String,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub last_applied: u64,
    pub snapshot_index: u64,
    /// The leader this member knows.
    pub leader: Option<NodeId>,
}

impl MemberStatus {
    fn of(me: NodeId, m: &RaftMetrics<C>) -> Self {
        let index = |l: &Option<openraft::alias::LogIdOf<C>>| l.as_ref().map_or(0, |l| l.index);
        let voter = m.membership_config.membership().voter_ids().any(|n| n == me);
        let raft_state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Follower if voter => "follower",
            _ => "learner",
        };
        Self {
            node: me,
            raft_state: raft_state.into(),
            membership: if voter { "voter" } else { "learner" }.into(),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: index(&m.local_committed),
            last_applied: index(&m.last_applied),
            snapshot_index: index(&m.snapshot),
            leader: m.current_leader,
        }
    }
}

/// The gate a leader's runner waits at while its leadership is being handed over.
pub(crate) type Gate = Arc<watch::Sender<bool>>;

/// What a member needs to hand its leadership over and to answer for itself.
pub(crate) struct Handover<SM: openraft::storage::RaftStateMachine<C>> {
    pub raft: Raft<C, SM>,
    pub gate: Gate,
    pub transport: Arc<dyn Transport>,
    pub me: NodeId,
    pub group: GroupId,
}

/// Closes the gate again whatever happens.
struct Open(Gate);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// How far a follower's log is known to match the leader's (on the leader).
fn matched(m: &RaftMetrics<C>, n: NodeId) -> u64 {
    m.replication.as_ref().and_then(|r| r.get(&n)).and_then(|l| l.as_ref()).map_or(0, |l| l.index)
}

impl<SM: openraft::storage::RaftStateMachine<C>> Handover<SM> {
    pub fn status(&self) -> MemberStatus {
        MemberStatus::of(self.me, &self.raft.metrics().borrow_watched())
    }

    /// Hands this member's leadership to `to` (a voter), or to the most up-to-date other
    /// voter; answers the new leader. Refused when this member does not lead (naming the
    /// leader it knows) or no other voter can take over.
    pub async fn hand_over(&self, to: Option<NodeId>) -> Result<NodeId, HandoverError> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(self.me) || m.state != ServerState::Leader {
            return Err(HandoverError::NotLeader(m.current_leader));
        }
        let mut others: Vec<NodeId> = m.membership_config.membership().voter_ids().filter(|&n| n != self.me).collect();
        others.sort_by_key(|&n| std::cmp::Reverse(matched(&m, n)));
        let _open = Open(self.gate.clone());
        self.gate.send_replace(true);
        let target = match to {
            Some(t) if t == self.me => return Ok(t),
            Some(t) if others.contains(&t) => {
                if !self.caught_up(&[t]).await {
                    return Err(HandoverError::Refused(format!("node {t} did not catch up within {CATCH_UP:?}")));
                }
                t
            }
            Some(t) => return Err(HandoverError::Refused(format!("node {t} is not a voting member"))),
            None if others.is_empty() => return Err(HandoverError::Refused("no other voting member".into())),
            // The first to have every entry (a member that is down never does; right after an
            // election none has reported yet, so the order above says nothing).
            None => self
                .first_caught_up(&others)
                .await
                .ok_or_else(|| HandoverError::Refused(format!("no other member caught up within {CATCH_UP:?}")))?,
        };
        tracing::info!(group = self.group.0, to = target, "handing leadership over");
        self.raft.trigger().transfer_leader(target).await.map_err(|e| HandoverError::Refused(e.to_string()))?;
        if let Some(l) = self.moved().await {
            return Ok(l);
        }
        // The target did not win (an entry slipped in before the transfer, say): the members
        // stand in turn, most up to date first, each once it has every entry (the log is
        // still replicated, and nothing new is written).
        let mut order = vec![target];
        order.extend(others.iter().copied().filter(|&n| n != target));
        for n in order {
            tracing::warn!(group = self.group.0, node = n, "leadership not taken over yet: asking a member to stand");
            self.caught_up(&[n]).await;
            let _ = self.transport.call(n, self.group, RpcKind::Elect, Bytes::new()).await;
            if let Some(l) = self.moved().await {
                return Ok(l);
            }
        }
        Err(HandoverError::Refused("no member took the leadership over".into()))
    }

    /// Whether `n` has every entry this leader has (within [`CATCH_UP`]).
    async fn caught_up(&self, n: &[NodeId]) -> bool {
        self.first_caught_up(n).await.is_some()
    }

    /// The first of `candidates` to have every entry this leader has (within [`CATCH_UP`]).
    async fn first_caught_up(&self, candidates: &[NodeId]) -> Option<NodeId> {
        let has_all = |m: &RaftMetrics<C>, n: NodeId| m.last_log_index.is_some_and(|last| matched(m, n) >= last);
        let c = candidates.to_vec();
        let any = move |m: &RaftMetrics<C>| c.iter().any(|&n| has_all(m, n));
        let m = self.raft.wait(Some(CATCH_UP)).metrics(any, "a member caught up").await.ok()?;
        candidates.iter().copied().find(|&n| has_all(&m, n))
    }

    /// The new leader, once another member leads (within [`ELECTED`]).
    async fn moved(&self) -> Option<NodeId> {
        let me = self.me;
        let other = move |m: &RaftMetrics<C>| m.current_leader.is_some_and(|l| l != me);
        let m = self.raft.wait(Some(ELECTED)).metrics(other, "another member leads").await.ok()?;
        m.current_leader
    }

    /// Answers a [`RpcKind::HandOver`], [`RpcKind::Elect`] or [`RpcKind::Status`] call.
    pub async fn answer(&self, kind: RpcKind, body: &[u8]) -> Result<Bytes, TransportError> {
        match kind {
            RpcKind::HandOver => {
                let to: Option<NodeId> = decode(body)?;
                encode(&self.hand_over(to).await)
            }
            RpcKind::Elect => {
                // A real election at once: the leader that asked has given its lease up.
                let r = self.raft.trigger().elect(false).await.map_err(|e| e.to_string());
                encode(&r)
            }
            _ => encode(&self.status()),
        }
    }
}

/// Why a leadership was not handed over.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum HandoverError {
    /// The member asked does not lead (the leader it knows, if any).
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Refused(String),
}

/// A call to the member of `group` on `node`: this node's own through its router.
async fn ask(
    transport: &dyn Transport,
    router: &Router,
    node: NodeId,
    group: GroupId,
    kind: RpcKind,
    body: Bytes,
) -> Result<Bytes, TransportError> {
    if node == router.me() {
        router.handle(group, kind, body).await
    } else {
        transport.call(node, group, kind, body).await
    }
}

/// Asks the member of `group` on `node` to hand its leadership to `to` (or the best
/// candidate); answers the new leader.
pub async fn ask_hand_over(
    transport: &dyn Transport,
    router: &Router,
    node: NodeId,
    group: GroupId,
    to: Option<NodeId>,
) -> Result<Result<NodeId, HandoverError>, TransportError> {
    decode(&ask(transport, router, node, group, RpcKind::HandOver, encode(&to)?).await?)
}

/// Asks the member of `group` on `node` how it sees itself.
pub async fn ask_status(
    transport: &dyn Transport,
    router: &Router,
    node: NodeId,
    group: GroupId,
) -> Result<MemberStatus, TransportError> {
    decode(&ask(transport, router, node, group, RpcKind::Status, Bytes::new()).await?)
}
