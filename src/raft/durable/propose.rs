//! Proposing to a group: at this member when it leads (renewing its leader lease first if
//! need be), forwarded to the leader for groups whose effects need not stay where they were
//! proposed (`raft/forward.rs`), and never forwarded for the others (`propose_local`).

use super::{C, DurableGroup, DurableMachine, GroupError, raft_err, submit_many, write_err, write_many, written};
use crate::raft::peers::encode;
use crate::raft::transport::{NodeId, Transport};
use crate::raft::types::Payload;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use std::time::{Duration, Instant};

/// How long a proposal waits for a leader to be elected (or to become known) before it fails.
const LEADER_PATIENCE: Duration = Duration::from_secs(10);
/// How long a proposal waits before it tries an unreachable leader again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long a leader whose lease ran out waits for a majority to acknowledge it again.
const LEASE_PATIENCE: Duration = Duration::from_secs(2);
/// How long the origin of a forwarded proposal waits to apply what the leader committed.
const APPLY_PATIENCE: Duration = Duration::from_secs(10);

/// The replies and effects of a submitted batch, once applied (`submit_local`).
pub type Pending<M> = futures::future::BoxFuture<
    'static,
    Result<Vec<(<M as crate::raft::Machine>::Reply, Vec<<M as crate::raft::Machine>::Effect>)>, GroupError>,
>;

#[derive(PartialEq)]
enum Lease {
    NotLeader,
    Fresh,
    Stale,
}

impl<M: DurableMachine> DurableGroup<M> {
    /// Proposes a command; returns once it is durable and applied, with the machine's reply
    /// and effects.
    pub async fn propose(&self, now_ms: u64, cmd: M::Command) -> Result<(M::Reply, Vec<M::Effect>), GroupError> {
        if self.transport.is_some() {
            return self.propose_many(now_ms, vec![cmd]).await?.pop().ok_or(GroupError::Reply);
        }
        let payload = Payload { now_ms, cmd: M::encode_command(&cmd).into() };
        let resp = self.raft.client_write(payload).await.map_err(write_err)?;
        let any = resp.data.inner.ok_or(GroupError::Reply)?;
        any.downcast::<(M::Reply, Vec<M::Effect>)>().map(|b| *b).map_err(|_| GroupError::Reply)
    }

    /// Proposes commands as one batch (one message to openraft, typically one fsync); returns
    /// each reply and its effects, in order. On a member that does not lead, the batch goes
    /// to the leader (`raft/forward.rs`): the replies come back, the effects stay there, and
    /// this returns once this member applied the batch too. Without a leader it waits up to
    /// [`LEADER_PATIENCE`] for one.
    pub async fn propose_many(
        &self,
        now_ms: u64,
        cmds: Vec<M::Command>,
    ) -> Result<Vec<(M::Reply, Vec<M::Effect>)>, GroupError> {
        let payloads: Vec<Payload> =
            cmds.iter().map(|c| Payload { now_ms, cmd: M::encode_command(c).into() }).collect();
        let Some(transport) = &self.transport else { return self.propose_here(payloads).await };
        let deadline = Instant::now() + LEADER_PATIENCE;
        loop {
            let attempt = match self.leader() {
                Some(l) if l == self.me => self.propose_here(payloads.clone()).await,
                Some(l) => self.forward(transport.as_ref(), l, payloads.clone()).await,
                None => Err(GroupError::NotLeader(None)),
            };
            match attempt {
                // Nothing was written: wait for a (new) leader and try again.
                Err(GroupError::NotLeader(seen)) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let changed = |m: &openraft::RaftMetrics<C>| m.current_leader.is_some() && m.current_leader != seen;
                    if self.raft.wait(Some(left)).metrics(changed, "a leader").await.is_err() {
                        return Err(GroupError::NotLeader(None));
                    }
                }
                // Nothing was sent: the leader is down (a new one is elected within an
                // election timeout) or its connection is being made; try again shortly.
                Err(GroupError::LeaderUnreachable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                r => return r,
            }
        }
    }

    /// Sends proposals to the leader; once it answers, waits until this member applied them.
    async fn forward(
        &self,
        transport: &dyn Transport,
        leader: NodeId,
        payloads: Vec<Payload>,
    ) -> Result<Vec<(M::Reply, Vec<M::Effect>)>, GroupError> {
        let body = encode(&payloads).map_err(raft_err)?;
        let answered = crate::raft::forward::send(transport, leader, self.log.id(), body).await?;
        let last = answered.iter().map(|(i, _)| *i).max();
        self.raft
            .wait(Some(APPLY_PATIENCE))
            .applied_index_at_least(last, "forwarded proposals applied")
            .await
            .map_err(raft_err)?;
        answered.into_iter().map(|(_, r)| crate::raft::forward::decode_reply::<M>(r).map(|r| (r, Vec::new()))).collect()
    }

    /// Proposes commands as one batch on this member, never forwarded: a group whose effects
    /// must be carried out where it was proposed (a queue's deliveries) is proposed to at its
    /// leader only. [`GroupError::NotLeader`] when this member does not lead (nothing written).
    pub async fn propose_local(
        &self,
        now_ms: u64,
        cmds: Vec<M::Command>,
    ) -> Result<Vec<(M::Reply, Vec<M::Effect>)>, GroupError> {
        self.submit_local(now_ms, cmds).await?.await
    }

    /// Submits commands as one batch on this member, never forwarded (as
    /// [`DurableGroup::propose_local`]), and returns as soon as the log has taken them in:
    /// the future it returns answers once they are applied. Batches go into the log in the
    /// order they were submitted, so a caller can have several in flight. A leader whose
    /// lease went stale (a supervised group idle for a while) renews it first, since
    /// openraft refuses writes without one.
    pub async fn submit_local(&self, now_ms: u64, cmds: Vec<M::Command>) -> Result<Pending<M>, GroupError> {
        let payloads = cmds.iter().map(|c| Payload { now_ms, cmd: M::encode_command(c).into() }).collect();
        if self.lease() == Lease::Stale {
            self.renew_lease().await;
        }
        let submitted = submit_many(&self.raft, payloads).await?;
        let (raft, spread) = (self.raft.clone(), self.spread_commits);
        Ok(Box::pin(async move {
            let r = written::<M>(submitted).await;
            if r.is_ok() && spread {
                let _ = raft.trigger().heartbeat().await;
            }
            Ok(r?.into_iter().map(|(_, out)| out).collect())
        }))
    }

    /// Proposes on this member (leading, or a single member).
    async fn propose_here(&self, payloads: Vec<Payload>) -> Result<Vec<(M::Reply, Vec<M::Effect>)>, GroupError> {
        let r = self.write_here(payloads).await;
        // A group that spreads its commits lets the other members learn them at once.
        if r.is_ok() && self.spread_commits {
            let _ = self.raft.trigger().heartbeat().await;
        }
        r
    }

    async fn write_here(&self, payloads: Vec<Payload>) -> Result<Vec<(M::Reply, Vec<M::Effect>)>, GroupError> {
        match write_many::<M, _>(&self.raft, payloads.clone()).await {
            // A leader takes writes only while a majority acknowledged it within its lease
            // (openraft's leader lease); a supervised group sends no heartbeats, so after an
            // idle second its leader asks for one, and writes once a majority answered.
            Err(GroupError::NotLeader(None)) if self.renew_lease().await => {
                Ok(write_many::<M, _>(&self.raft, payloads).await?.into_iter().map(|(_, out)| out).collect())
            }
            r => Ok(r?.into_iter().map(|(_, out)| out).collect()),
        }
    }

    /// Whether this member still leads with a valid lease: a majority acknowledged it within
    /// the last three quarters of a lease (then no other member can have been elected: they
    /// refuse votes while they hear from it), or does so now when asked (a heartbeat). A
    /// leader that was paused or cut off finds out here before it acts on its old term.
    pub async fn confirm_leadership(&self) -> bool {
        match self.lease() {
            Lease::NotLeader => false,
            Lease::Fresh => true,
            Lease::Stale => self.renew_lease().await,
        }
    }

    /// Whether this member leads with a lease a write can count on: a majority acknowledged
    /// it within three quarters of the lease (openraft's `leader_lease` is the longest
    /// election timeout); a single voter is always its own majority.
    fn lease(&self) -> Lease {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return Lease::NotLeader;
        }
        if m.membership_config.membership().voter_ids().count() == 1 {
            return Lease::Fresh;
        }
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let age = m.last_quorum_acked.as_ref().map(|t| openraft::Instant::elapsed(&**t));
        if age.is_some_and(|a| a < lease * 3 / 4) { Lease::Fresh } else { Lease::Stale }
    }

    /// On a leader: sends a heartbeat and waits (up to [`LEASE_PATIENCE`]) until a majority
    /// answered it; whether one did.
    async fn renew_lease(&self) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return false;
        }
        let before = m.last_quorum_acked.clone();
        if self.raft.trigger().heartbeat().await.is_err() {
            return false;
        }
        let acked = move |m: &openraft::RaftMetrics<C>| m.last_quorum_acked.is_some() && m.last_quorum_acked != before;
        self.raft.wait(Some(LEASE_PATIENCE)).metrics(acked, "a majority acknowledged the leader").await.is_ok()
    }
}
