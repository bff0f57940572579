//! A runner's part in a replicated queue: this node's member of the queue's Raft group, which
//! serves only while it leads.
//!
//! Queue groups are supervised (`raft::GroupOptions::supervised`): no heartbeats and no
//! elections of their own, so an idle queue costs nothing. Instead the node's liveness view
//! (`node/peers.rs`, a hello to every peer each second) says when the leader's node is down;
//! then the live members stand for election in the order of the queue's member list, one
//! step apart, so the preferred one normally wins at once. A pre-vote first keeps a member
//! from unseating a leader the others still hear from.
//!
//! A member that wins takes over before it serves anything (`Command::Failover`, see
//! `machine/failover.rs`); one that loses leadership forgets its consumers' sinks (their
//! nodes attach them to the new leader) and refuses what still reaches it with
//! `Reply::NotLeader`, so it never delivers or confirms on the strength of an old term.

use super::store::{Proposal, Proposed, Store};
use super::{PROPOSE_PATIENCE, Request, now_ms};
use crate::ids::{ConsumerId, QueueKey};
use crate::queue::event::ClientEvent;
use crate::queue::handle::WeakQueueHandle;
use crate::queue::machine::{Command, QueueMachine, Reply};
use crate::raft::transport::NodeId;
use crate::raft::{DurableGroup, GroupError, Leadership, LeadershipWatch, Replication};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Between the live members' turns to stand for election (in member-list order).
const TURN: Duration = Duration::from_millis(400);
/// How long a member waits for an election it started before it tries again.
const RETRY: Duration = Duration::from_millis(1000);
/// How long an elected member that cannot take over yet holds what reaches it.
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(5);

/// What a runner needs to be this node's member of a replicated queue.
pub struct Replica {
    /// This node, the transport to the others, and the router RPCs for the group arrive at.
    pub rep: Replication,
    /// The group's members, the preferred leader first, as the metadata says (it changes
    /// when a node is forgotten or replaced; the leader then changes the group to match).
    pub members: watch::Receiver<Vec<NodeId>>,
    /// The members the group was created with: only they may create it.
    pub founders: Vec<NodeId>,
    /// The nodes this node finds down, as that changes.
    pub down: watch::Receiver<BTreeSet<NodeId>>,
    /// The handle this node's clients use for the queue (its front, `queue/remote/front.rs`):
    /// deliveries carry it, so settles go wherever the leader is by then.
    pub front: WeakQueueHandle,
    /// Where the runner tells the front who leads (`leading` once this member serves).
    pub leadership: watch::Sender<Leadership>,
    /// The node's maintenance mode: a member of a drained node stands for election last (as
    /// a last resort, when no other member can win), and hands a leadership it wins over.
    pub maintenance: watch::Receiver<bool>,
}

/// What happened to the group's leadership.
pub(super) enum Event {
    /// The leader, the term or the liveness of the nodes changed.
    Changed,
    /// This member's turn to stand for election came.
    Elect,
    /// Time to try again to hand on a leadership won on a drained node.
    HandOn,
}

pub(super) struct Lead {
    watch: LeadershipWatch,
    transport: std::sync::Arc<dyn crate::raft::transport::Transport>,
    down: watch::Receiver<BTreeSet<NodeId>>,
    me: NodeId,
    members: watch::Receiver<Vec<NodeId>>,
    founders: Vec<NodeId>,
    /// The task bringing the group's membership in line with `members` (on the leader).
    converging: Option<tokio::task::JoinHandle<()>>,
    /// The term this runner took over in; `None` while it does not serve.
    pub(super) serving: Option<u64>,
    elect_at: Option<Instant>,
    /// The leader another member named when this one did not know (`elect`).
    named: Option<NodeId>,
    key: std::sync::Arc<QueueKey>,
    publish: watch::Sender<Leadership>,
    maintenance: watch::Receiver<bool>,
    /// When to try again to hand on a leadership won on a drained node.
    hand_on_at: Option<Instant>,
}

impl Lead {
    pub(super) fn new(g: &DurableGroup<QueueMachine>, r: &Replica, key: std::sync::Arc<QueueKey>) -> Self {
        let mut lead = Self {
            watch: g.leadership(),
            transport: r.rep.transport.clone(),
            down: r.down.clone(),
            me: r.rep.me,
            members: r.members.clone(),
            founders: r.founders.clone(),
            converging: None,
            serving: None,
            elect_at: None,
            named: None,
            key,
            publish: r.leadership.clone(),
            maintenance: r.maintenance.clone(),
            hand_on_at: None,
        };
        lead.rearm();
        lead.publish();
        lead
    }

    /// Tells the front who leads, `leading` only once this member serves.
    pub(super) fn publish(&self) {
        let l = self.current();
        let shown = Leadership { leading: l.leading && self.serving == Some(l.term), ..l };
        self.publish.send_if_modified(|old| std::mem::replace(old, shown) != shown);
    }

    pub(super) fn current(&self) -> Leadership {
        self.watch.current()
    }

    /// Whether this member serves in its group's current term already (nothing to take over).
    pub(super) fn settled(&self) -> bool {
        let l = self.current();
        l.leading && self.serving == Some(l.term)
    }

    /// The next thing to act on. Never resolves once the group stopped.
    pub(super) async fn next(&mut self) -> Event {
        let (at, hand_on) = (self.elect_at, self.hand_on_at);
        tokio::select! {
            l = self.watch.changed() => match l {
                Some(_) => Event::Changed,
                None => std::future::pending().await,
            },
            r = self.down.changed() => match r {
                Ok(()) => Event::Changed,
                Err(_) => std::future::pending().await,
            },
            r = self.members.changed() => match r {
                Ok(()) => Event::Changed,
                Err(_) => std::future::pending().await,
            },
            _ = tokio::time::sleep_until(at.unwrap_or_else(Instant::now)), if at.is_some() => {
                self.elect_at = None;
                Event::Elect
            }
            _ = tokio::time::sleep_until(hand_on.unwrap_or_else(Instant::now)), if hand_on.is_some() => {
                self.hand_on_at = None;
                Event::HandOn
            }
        }
    }

    /// Whether no live leader is known: none (nor one another member named), or one on a
    /// node this node finds down.
    fn leaderless(&self) -> bool {
        let l = self.current();
        if l.leading {
            return false;
        }
        let down = self.down.borrow();
        l.leader.or(self.named).is_none_or(|n| n != self.me && down.contains(&n))
    }

    /// Schedules this member's turn to stand for election while the group is leaderless
    /// (the first live member in list order at once, the next one a step later, ...), and
    /// cancels it once a leader is known.
    pub(super) fn rearm(&mut self) {
        if !self.leaderless() {
            self.elect_at = None;
            return;
        }
        if self.elect_at.is_none() {
            let down = self.down.borrow();
            let members = self.members.borrow();
            let rank = members.iter().filter(|n| !down.contains(n)).position(|&n| n == self.me);
            let mut rank = rank.unwrap_or(members.len()) as u32;
            // A member on a drained node stands last, after every other had its turn: only
            // when none of them can win (its log is the only complete one), and it hands over
            // as soon as another has caught up.
            if *self.maintenance.borrow() {
                rank += members.len() as u32;
            }
            self.elect_at = Some(Instant::now() + TURN * rank);
        }
    }

    /// Stands for election if the group is still leaderless; tries again after [`RETRY`]. A
    /// member that merely has not heard from its leader (it just started, and an idle leader
    /// says nothing) asks the others first, and stands only if none names a live leader.
    pub(super) async fn elect(&mut self, g: &DurableGroup<QueueMachine>) {
        if !self.leaderless() {
            return;
        }
        self.elect_at = Some(Instant::now() + RETRY);
        if self.current().leader.is_none() {
            let down = self.down.borrow().clone();
            let members = self.members.borrow().clone();
            let named =
                crate::raft::find_leader(self.transport.as_ref(), g.id(), &members, self.me, &|n| down.contains(&n))
                    .await;
            if let Some(l) = named.filter(|&l| l != self.me) {
                // Known alive: stand only once its node goes down (a liveness change).
                self.named = Some(l);
                self.elect_at = None;
                return;
            }
        }
        tracing::debug!(queue = %self.key, "no live leader: standing for election");
        let founders: BTreeSet<NodeId> = self.founders.iter().copied().collect();
        if let Err(e) = g.elect(founders.contains(&self.me).then_some(&founders)).await {
            tracing::warn!(queue = %self.key, error = %e, "cannot stand for election");
        }
    }

    /// The leader to point callers at when this member does not serve.
    pub(super) fn hint(&self) -> Option<NodeId> {
        self.current().leader.filter(|&n| n != self.me || self.serving.is_some())
    }

    /// On the serving leader: brings the group's membership in line with the metadata's
    /// members (a new member catches up as a learner first, `raft/durable/members.rs`), in
    /// a task of its own so the queue keeps serving meanwhile, until it is done, leadership
    /// moves or the queue stops.
    pub(super) fn converge(&mut self, g: &std::sync::Arc<DurableGroup<QueueMachine>>) {
        if self.serving.is_some() {
            crate::raft::keep_converging(&mut self.converging, g, &self.members, || self.key.to_string());
        }
    }
}

/// The runner's side of leadership: taking over, stepping down, refusing while it does not
/// lead, and proposing with a bound on how long a majority may take.
impl super::Runner {
    pub(super) async fn on_lead_event(&mut self, ev: Event, lead: &mut Lead) {
        match ev {
            Event::Changed if !lead.members.borrow().contains(&lead.me) => self.retire(lead).await,
            Event::Changed | Event::HandOn => {
                // Won while the node is drained (its log was the only complete one, say):
                // hand it on once another member has caught up, trying again until one has.
                let drained = *lead.maintenance.borrow();
                if drained && lead.current().leading && !self.hand_over("maintenance mode").await {
                    lead.hand_on_at = Some(Instant::now() + RETRY);
                }
                self.sync_leadership(lead).await;
                lead.rearm();
                if let Store::Durable(g, _) = &self.store {
                    lead.converge(g);
                }
            }
            Event::Elect => {
                if let Store::Durable(g, _) = &self.store {
                    let g = g.clone();
                    lead.elect(&g).await;
                }
            }
        }
    }

    /// Hands this member's leadership to the first other member to have every entry
    /// (`why`: for the log); whether it did.
    async fn hand_over(&self, why: &str) -> bool {
        let Store::Durable(g, _) = &self.store else { return false };
        match g.hand_over(None).await {
            Ok(to) => {
                tracing::info!(queue = %self.key, to, why, "leadership handed over");
                true
            }
            Err(e) => {
                tracing::warn!(queue = %self.key, error = %e, why, "leadership not handed over");
                false
            }
        }
    }

    /// This node no longer holds a replica (`delete_member`): a member that leads hands its
    /// leadership over first (the other members stand only once its node is down, which it
    /// is not), then the runner stops and its data goes.
    async fn retire(&mut self, lead: &mut Lead) {
        if lead.current().leading {
            self.hand_over("retiring").await;
        }
        lead.serving = None;
        lead.publish();
        tracing::info!(queue = %self.key, "replica retired");
        self.retired = true;
    }

    /// Brings this member's serving in line with its group's leadership; whether it serves.
    /// A member that became leader takes over first: everything unacked goes back and every
    /// consumer is detached (`Command::Failover`), then those whose sinks it still has are
    /// attached again at once (the others' nodes attach them).
    /// Whether this member serves a batch that reached it: once it took over, or after
    /// waiting (up to [`TAKEOVER_PATIENCE`]) while it was elected but could not take over yet
    /// (its election won before the other members' groups were running, or its lease not yet
    /// renewed). What waits meanwhile stays in the inbox rather than being refused. While
    /// this member hands its leadership over, the batch waits for the outcome: it is refused
    /// (and sent on to the new leader by the fronts) once leadership moved.
    pub(super) async fn serve_or_wait(&mut self, lead: &mut Lead) -> bool {
        if let Store::Durable(g, _) = &self.store {
            g.handover_done().await;
        }
        let deadline = Instant::now() + TAKEOVER_PATIENCE;
        loop {
            if self.sync_leadership(lead).await {
                return true;
            }
            if !lead.current().leading || Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) async fn sync_leadership(&mut self, lead: &mut Lead) -> bool {
        let serving = self.take_over_if_leading(lead).await;
        lead.publish();
        serving
    }

    pub(super) async fn take_over_if_leading(&mut self, lead: &mut Lead) -> bool {
        let l = lead.current();
        if !l.leading {
            if lead.serving.take().is_some() {
                tracing::info!(queue = %self.key, leader = ?l.leader, "no longer leads the queue");
            }
            return false;
        }
        if lead.serving == Some(l.term) {
            return true;
        }
        let reachable: Vec<ConsumerId> =
            self.sinks.iter().filter(|(_, s)| !s.sink.is_closed()).map(|(id, _)| *id).collect();
        self.sinks.retain(|id, _| reachable.contains(id));
        let now = now_ms();
        let mut cmds = vec![Command::Failover];
        if !reachable.is_empty() {
            cmds.push(Command::Attach { consumers: reachable });
        }
        match self.propose(now, cmds, true).await {
            Ok(results) => {
                lead.serving = Some(l.term);
                tracing::info!(queue = %self.key, term = l.term, "leads the queue");
                let effects = results.into_iter().flat_map(|(_, fx)| fx).collect();
                self.carry_out(now, effects).await;
                true
            }
            Err(e) => {
                tracing::warn!(queue = %self.key, error = %e, "cannot take over as leader");
                false
            }
        }
    }

    /// Proposes through the store and waits; a replicated queue's leader waits at most
    /// [`PROPOSE_PATIENCE`] for a majority.
    pub(super) async fn propose(&mut self, now: u64, cmds: Vec<Command>, replicated: bool) -> Proposed {
        match self.submit(now, cmds, replicated).await {
            Proposal::Done(r) => r,
            Proposal::Pending(p) => p.await,
        }
    }

    /// Hands a batch to the store (`Store::submit`); a replicated queue's batch fails if no
    /// majority took it within [`PROPOSE_PATIENCE`].
    pub(super) async fn submit(&mut self, now: u64, cmds: Vec<Command>, replicated: bool) -> Proposal {
        let n = cmds.len();
        if !replicated {
            return self.store.submit(now, cmds).await;
        }
        tracing::debug!(queue = %self.key, commands = n, "proposing");
        match self.store.submit(now, cmds).await {
            Proposal::Pending(p) => {
                let key = self.key.clone();
                Proposal::Pending(Box::pin(async move {
                    let r = match tokio::time::timeout(PROPOSE_PATIENCE, p).await {
                        Ok(r) => r,
                        Err(_) => Err(GroupError::Raft("no majority took the batch in time".into())),
                    };
                    tracing::debug!(queue = %key, commands = n, ok = r.is_ok(), "proposed");
                    r
                }))
            }
            done => done,
        }
    }

    /// Answers requests this member cannot serve (it does not lead): publishes are not taken
    /// (a client is nacked, another node's front sends them again), callers get `NotLeader`
    /// with the leader it knows; a delete retires the replica.
    pub(super) async fn refuse(&mut self, batch: &mut Vec<Request>, leader: Option<u64>) {
        for req in batch.drain(..) {
            match req {
                Request::Publish { confirm: Some(c), .. } => {
                    let ev = ClientEvent::NotTaken { channel: c.channel, seqs: vec![c.seq] };
                    let _ = c.sink.send(ev).await;
                }
                Request::Consume { reply, .. } | Request::Call { reply, .. } | Request::Attach { reply, .. } => {
                    let _ = reply.send(Reply::NotLeader(leader));
                }
                Request::Cast { cmd: Command::Delete { .. } } => self.retired = true,
                Request::Publish { confirm: None, .. } | Request::Cast { .. } => {}
            }
        }
    }
}
