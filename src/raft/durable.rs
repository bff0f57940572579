//! A group replicated by openraft with its log in the node's RocksDB: the durable backend of
//! the replication seam (`docs/durability-plan.md`).
//!
//! The machine stays in memory; the log, the Raft state and snapshots are in RocksDB. A
//! proposal returns once its entry is durable and applied, with the machine's reply and
//! effects (carried to the proposer in this process only). After a restart openraft installs
//! the last snapshot and re-applies the log; entries replayed that way have no proposer, so
//! their effects are dropped (a machine rebuilds what it needs from its state).

use super::Machine;
use super::log_store::LogStore;
use super::net::NoPeers;
use super::peers::{Member, Peers};
use super::runtime;
use super::transport::{NodeId, Router, Transport};
use super::types::{Payload, Warren};
use crate::storage::GroupLog;
use futures::TryStreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

type C = Warren;

/// A machine whose commands and state have a binary encoding (a versioned wire format: once
/// released, an encoding is never changed, only added to).
pub trait DurableMachine:
    Machine<Command: Send, Reply: Send + Sync + 'static, Effect: Send + Sync + 'static> + Sized + Send + 'static
{
    fn encode_command(cmd: &Self::Command) -> Vec<u8>;
    /// Decodes a command; `bytes` is the log entry's buffer, so large fields can be slices of it.
    fn decode_command(bytes: &bytes::Bytes) -> Result<Self::Command, DecodeError>;
    fn encode_state(&self) -> Vec<u8>;
    fn decode_state(bytes: &bytes::Bytes) -> Result<Self, DecodeError>;

    /// How much a snapshot of this state costs, in log entries' worth (a queue: its
    /// messages). A policy snapshot waits until at least this many entries were applied
    /// since the last one, so snapshotting stays O(1) per entry however large the state.
    fn state_weight(&self) -> u64 {
        0
    }

    /// The oldest log index the machine still reads from (a queue: the entry of its oldest
    /// message, whose body stays in the log). The log is purged behind a snapshot only up to
    /// just before it; `None` lets the log go up to the snapshot.
    fn first_live_index(&self) -> Option<u64> {
        None
    }

    /// The log indexes whose entries the state reads (a queue: every message's, ready or
    /// unacked; its body is there). A snapshot sent to a member that lags carries them.
    fn live_indexes(&self) -> Vec<u64> {
        Vec::new()
    }

    /// A reply's encoding, for proposals forwarded from another node (`raft/forward.rs`);
    /// `None`: this machine's replies do not travel, so its proposals are made at the leader.
    fn encode_reply(_reply: &Self::Reply) -> Option<Vec<u8>> {
        None
    }

    fn decode_reply(_bytes: &bytes::Bytes) -> Result<Self::Reply, DecodeError> {
        Err(DecodeError("this machine's replies do not travel".into()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decode: {0}")]
pub struct DecodeError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("raft: {0}")]
    Raft(String),
    /// This member does not lead the group; the leader, if known, does.
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    /// The leader could not be reached: nothing was written.
    #[error("cannot reach the leader: {0}")]
    LeaderUnreachable(String),
    #[error("the reply had an unexpected type")]
    Reply,
}

fn raft_err(e: impl std::fmt::Display) -> GroupError {
    GroupError::Raft(e.to_string())
}

/// A refused write: not the leader (with the leader, if known), or another failure.
fn write_err(e: openraft::errors::RaftError<C, openraft::errors::ClientWriteError<C>>) -> GroupError {
    match e.forward_to_leader() {
        Some(f) => GroupError::NotLeader(f.leader_id),
        None => raft_err(e),
    }
}

/// Proposals handed to openraft (`submit_many`), and the stream of their outcomes.
pub(crate) struct Submitted {
    stream: futures::stream::BoxStream<'static, Result<openraft::raft::WriteResult<C>, openraft::errors::Fatal<C>>>,
    n: usize,
}

/// Hands payloads to openraft at once: the log takes them in the order of these calls, so a
/// caller may submit again before the outcomes of an earlier submission are in.
pub(crate) async fn submit_many<SM: RaftStateMachine<C>>(
    raft: &Raft<C, SM>,
    payloads: Vec<Payload>,
) -> Result<Submitted, GroupError> {
    let n = payloads.len();
    let stream = raft.client_write_many(payloads).await.map_err(raft_err)?;
    Ok(Submitted { stream, n })
}

/// Waits for the outcomes of submitted proposals: each one's log index, reply and effects
/// (`NotLeader` only when none was written, as [`write_many`]).
pub(crate) async fn written<M: DurableMachine>(
    submitted: Submitted,
) -> Result<Vec<(u64, (M::Reply, Vec<M::Effect>))>, GroupError> {
    let Submitted { mut stream, n } = submitted;
    let mut out = Vec::with_capacity(n);
    while let Some(r) = stream.try_next().await.map_err(raft_err)? {
        let resp = r.map_err(|f| {
            if out.is_empty() {
                GroupError::NotLeader(f.leader_id)
            } else {
                GroupError::Raft("leadership lost mid-batch".into())
            }
        })?;
        let any = resp.response.inner.ok_or(GroupError::Reply)?;
        out.push((resp.log_id.index, *any.downcast::<(M::Reply, Vec<M::Effect>)>().map_err(|_| GroupError::Reply)?));
    }
    if out.len() != n {
        return Err(GroupError::Raft(format!("{} of {n} proposals answered", out.len())));
    }
    Ok(out)
}

/// Proposes payloads on a member's Raft and returns, per entry, its log index with the
/// machine's reply and effects (those reach only a proposer in this process). `NotLeader`
/// only when nothing was written: a refusal after some entries were written is a failure,
/// never a reason to propose the batch again.
pub(crate) async fn write_many<M, SM>(
    raft: &Raft<C, SM>,
    payloads: Vec<Payload>,
) -> Result<Vec<(u64, (M::Reply, Vec<M::Effect>))>, GroupError>
where
    M: DurableMachine,
    SM: RaftStateMachine<C>,
{
    written::<M>(submit_many(raft, payloads).await?).await
}

mod adapter;
mod handover;
mod members;
mod propose;
pub(crate) use handover::Handover;
pub use handover::{HandoverError, MemberStatus, ask_hand_over, ask_status};
mod watch;
pub(crate) use adapter::SmAdapter;
pub use members::{Membership, keep_converging};
pub use propose::Pending;
pub use watch::{AppliedWatch, Leadership, LeadershipWatch};

/// Tuning of a durable group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Take a snapshot (and purge the log behind it) after this many applied entries.
    pub snapshot_every: u64,
    /// Purge the log behind a snapshot only once this many entries can go (openraft's
    /// `purge_batch_size`: fewer, larger range deletes).
    pub purge_batch: u64,
    /// How often `open` reports progress while the group recovers and elects itself (it
    /// waits as long as that takes: replaying millions of entries is not a failure).
    pub progress_every: Duration,
    /// Heartbeat interval and election timeout range, in ms (groups of several members).
    pub heartbeat_ms: u64,
    pub election_ms: (u64, u64),
    /// Heartbeats and elections are driven from outside (queue groups): the leader sends no
    /// heartbeats, a follower never starts an election by itself and the core takes no ticks,
    /// so an idle group costs next to nothing; the node calls [`DurableGroup::elect`] when the
    /// leader's node is down. A
    /// member still refuses votes for `election_ms.1` after it last heard from its leader
    /// (openraft's leader lease).
    pub supervised: bool,
    /// After each proposal commits, a heartbeat tells the other members at once (not at the
    /// next heartbeat): the metadata group, whose proposers wait until every live node acts
    /// on a change before they answer.
    pub spread_commits: bool,
}

impl GroupOptions {
    /// A group of several members that keeps its own time (openraft's heartbeats and
    /// elections): the metadata group and delayed exchanges' stores. They are few, so ordinary
    /// Raft timers cost nothing and fail over in about a second.
    pub fn self_timed() -> Self {
        Self { heartbeat_ms: 250, election_ms: (1000, 1500), ..Self::default() }
    }
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            snapshot_every: 10_000,
            purge_batch: 1024,
            progress_every: Duration::from_secs(10),
            heartbeat_ms: 1000,
            election_ms: (3000, 6000),
            supervised: false,
            spread_commits: false,
        }
    }
}

/// Where a group's other members are, for a member of a group of several.
#[derive(Clone)]
pub struct Replication {
    /// This member's node id.
    pub me: NodeId,
    /// How RPCs reach the other members.
    pub transport: Arc<dyn Transport>,
    /// Where RPCs for this member arrive.
    pub router: Router,
    /// The initial voters, when this member may create the group (every initial member is
    /// given the same set, so concurrent initializations agree); `None`: it waits to be added.
    pub initial: Option<std::collections::BTreeSet<NodeId>>,
}

/// The only node id of a single-member group.
const SELF: u64 = 1;

/// A single-member group on openraft + RocksDB.
pub struct DurableGroup<M: DurableMachine> {
    raft: Raft<C, SmAdapter<M>>,
    sm: SmAdapter<M>,
    log: GroupLog,
    /// Set on shutdown: the purger stops.
    stopping: Arc<AtomicBool>,
    /// This member's node id.
    me: NodeId,
    /// Where RPCs for this member arrive, and how proposals reach the leader (groups of
    /// several members).
    router: Option<Router>,
    transport: Option<Arc<dyn Transport>>,
    /// [`GroupOptions::spread_commits`].
    spread_commits: bool,
    /// Set while this member hands its leadership over: its runner proposes nothing meanwhile.
    gate: handover::Gate,
}

impl<M: DurableMachine> DurableGroup<M> {
    /// Opens the group stored under `log` (creating it with `init` if it has no history),
    /// recovers its state, and waits until it leads.
    pub async fn open(log: GroupLog, init: M, opts: GroupOptions) -> Result<Self, GroupError> {
        let config = Self::config(&opts, false)?;
        let sm = SmAdapter::new(init, log.clone());
        let ticks = config.enable_tick;
        let raft = Raft::new(SELF, config, NoPeers, LogStore::new(log.clone()), sm.clone());
        let raft = runtime::without_ticks(!ticks, raft).await.map_err(raft_err)?;
        if !raft.is_initialized().await.map_err(raft_err)? {
            raft.initialize(BTreeMap::from([(SELF, BasicNode::default())])).await.map_err(raft_err)?;
        }
        raft.trigger().elect(false).await.map_err(raft_err)?;
        let every = opts.progress_every;
        let r = &raft;
        let leader =
            patiently(r, &log, || async move { r.wait(Some(every)).state(ServerState::Leader, "leading").await })
                .await?;
        // Becoming leader appends a blank entry; once it is applied, everything before it (the
        // log replayed after a restart) is applied too, so readers see the recovered state.
        let last = leader.last_log_index;
        patiently(r, &log, || async move { r.wait(Some(every)).applied_index_at_least(last, "recovered").await })
            .await?;
        let stopping = Arc::new(AtomicBool::new(false));
        tokio::spawn(purger(raft.clone(), sm.clone(), opts.purge_batch, stopping.clone()));
        let gate = Arc::new(tokio::sync::watch::channel(false).0);
        Ok(Self { raft, sm, log, stopping, me: SELF, router: None, transport: None, spread_commits: false, gate })
    }

    fn config(opts: &GroupOptions, members: bool) -> Result<Arc<Config>, GroupError> {
        let config = Config {
            cluster_name: "warren".into(),
            enable_heartbeat: !opts.supervised,
            enable_elect: !opts.supervised,
            // A tick only checks the election and heartbeat timers: both are off in a
            // supervised group, and a single member elects itself once when it opens and has
            // no one to send heartbeats to. Without ticks an idle group's core sleeps, and
            // its tick task is not even run (`runtime.rs`).
            enable_tick: members && !opts.supervised,
            // A member of several must win an election after a restart (its applied state is
            // rebuilt from its snapshot; the committed index is not stored).
            enable_leader_restore: members.then_some(false),
            // A member cut off runs pre-votes only, so once back it does not unseat a working
            // leader with the terms it counted up alone.
            enable_pre_vote: members.then_some(true),
            heartbeat_interval: opts.heartbeat_ms,
            election_timeout_min: opts.election_ms.0,
            election_timeout_max: opts.election_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_every),
            // Purging is driven by `purge_behind` (a snapshot *and* the machine's first live
            // index); this keeps openraft's own policy from purging anything.
            max_in_snapshot_log_to_keep: u64::MAX,
            purge_batch_size: opts.purge_batch,
            ..Default::default()
        };
        Ok(Arc::new(config.validate().map_err(raft_err)?))
    }

    /// Opens this node's member of a group of several: recovers its state from `log`, takes
    /// the RPCs addressed to it, and creates the group with the initial voters if it has no
    /// history and may. It does not wait for a leader: proposals on a member that does not
    /// lead answer [`GroupError::NotLeader`].
    pub async fn open_member(log: GroupLog, init: M, opts: GroupOptions, rep: Replication) -> Result<Self, GroupError> {
        let config = Self::config(&opts, true)?;
        let sm = SmAdapter::new(init, log.clone());
        let net = Peers { transport: rep.transport.clone(), group: log.id(), kept: kept_entries::<M>(log.clone()) };
        let ticks = config.enable_tick;
        let raft = Raft::new(rep.me, config, net, LogStore::new(log.clone()), sm.clone());
        let raft = runtime::without_ticks(!ticks, raft).await.map_err(raft_err)?;
        let gate: handover::Gate = Arc::new(tokio::sync::watch::channel(false).0);
        let handover = Arc::new(Handover {
            raft: raft.clone(),
            gate: gate.clone(),
            transport: rep.transport.clone(),
            me: rep.me,
            group: log.id(),
        });
        rep.router.register(log.id(), Arc::new(Member::<M> { raft: raft.clone(), log: log.clone(), handover }));
        if let Some(voters) = rep.initial {
            if !raft.is_initialized().await.map_err(raft_err)? {
                let members: BTreeMap<NodeId, BasicNode> =
                    voters.into_iter().map(|n| (n, BasicNode::default())).collect();
                // Another initial member may have created it first: the same voters, so fine.
                if let Err(e) = raft.initialize(members).await {
                    tracing::debug!(group = log.id().0, error = %e, "group already initialized");
                }
            }
        }
        let stopping = Arc::new(AtomicBool::new(false));
        tokio::spawn(purger(raft.clone(), sm.clone(), opts.purge_batch, stopping.clone()));
        let (me, transport, spread_commits) = (rep.me, Some(rep.transport), opts.spread_commits);
        Ok(Self { raft, sm, log, stopping, me, router: Some(rep.router), transport, spread_commits, gate })
    }

    /// The group's id (its storage group).
    pub fn id(&self) -> crate::storage::GroupId {
        self.log.id()
    }

    /// Tells when entries are applied, whoever proposed them.
    pub fn applied_watch(&self) -> AppliedWatch {
        AppliedWatch { rx: self.raft.data_metrics() }
    }

    /// The member that leads, as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Who leads, as this member sees it, as it changes.
    pub fn leadership(&self) -> LeadershipWatch {
        LeadershipWatch { rx: self.raft.server_metrics() }
    }

    /// Asks this member to stand for election now (a supervised group whose leader is gone). A
    /// pre-vote comes first, so a leader the other members still hear from is not disturbed.
    /// A member that has no history yet creates the group with `founders` instead (openraft
    /// then elects it: every founder creating it gives the same voters, so they agree); one
    /// that is no founder (added later) waits until the leader reaches it.
    pub async fn elect(&self, founders: Option<&std::collections::BTreeSet<NodeId>>) -> Result<(), GroupError> {
        if !self.raft.is_initialized().await.map_err(raft_err)? {
            let Some(voters) = founders else { return Ok(()) };
            let members: BTreeMap<NodeId, BasicNode> = voters.iter().map(|&n| (n, BasicNode::default())).collect();
            if let Err(e) = self.raft.initialize(members).await {
                tracing::debug!(group = self.log.id().0, error = %e, "group already initialized");
            }
            return Ok(());
        }
        self.raft.trigger().elect(true).await.map_err(raft_err)
    }

    /// Hands this member's leadership to `to`, or to the most up-to-date other voter
    /// (`durable/handover.rs`); answers the new leader.
    pub async fn hand_over(&self, to: Option<NodeId>) -> Result<NodeId, HandoverError> {
        let Some(transport) = self.transport.clone() else {
            return Err(HandoverError::Refused("a group of one member".into()));
        };
        let h = Handover { raft: self.raft.clone(), gate: self.gate.clone(), transport, me: self.me, group: self.id() };
        h.hand_over(to).await
    }

    /// Returns once no handover of this member's leadership is under way (at once when none
    /// is): a runner waits here before it proposes, so the target catches up and nothing new
    /// is written by a leader about to go (`durable/handover.rs`).
    pub async fn handover_done(&self) {
        let mut rx = self.gate.subscribe();
        let _ = rx.wait_for(|handing| !handing).await;
    }

    /// The index of the last entry purged from this member's log (0: none).
    pub fn purged_index(&self) -> u64 {
        self.raft.metrics().borrow_watched().purged.as_ref().map_or(0, |l| l.index)
    }

    /// The index of the last entry this member applied.
    pub fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow_watched().last_applied.as_ref().map_or(0, |l| l.index)
    }

    /// Reads back the commands of applied entries still in the log (a queue's message bodies),
    /// in the order asked; `None` for an index the log no longer holds.
    pub fn read_commands(&self, indexes: &[u64]) -> Result<Vec<Option<M::Command>>, GroupError> {
        let payloads = LogStore::new(self.log.clone()).payloads_at(indexes).map_err(raft_err)?;
        payloads.into_iter().map(|p| p.map(|p| M::decode_command(&p.cmd).map_err(raft_err)).transpose()).collect()
    }

    /// Reads the applied state (local, not through the log).
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.sm.lock().machine)
    }

    /// Snapshots built so far by this group (since it opened).
    pub fn snapshots_built(&self) -> u64 {
        self.sm.lock().snapshots_built
    }

    /// Takes a snapshot now if any entry was applied since the last one and the state is no
    /// heavier than those entries (the cost rule of [`DurableMachine::state_weight`]); returns
    /// whether it asked for one. For idle groups: the log shrinks without more traffic.
    pub async fn snapshot_if_cheap(&self) -> Result<bool, GroupError> {
        let due = {
            let s = self.sm.lock();
            s.since_snapshot > 0 && s.since_snapshot >= s.machine.state_weight()
        };
        if due {
            self.snapshot().await?;
        }
        Ok(due)
    }

    /// Forces a snapshot now (and the purge of the log behind it).
    pub async fn snapshot(&self) -> Result<(), GroupError> {
        self.raft.trigger().snapshot().await.map_err(raft_err)?;
        Ok(())
    }

    pub async fn shutdown(&self) -> Result<(), GroupError> {
        if let Some(r) = &self.router {
            r.unregister(self.log.id());
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.sm.snapshotted.notify_one();
        self.raft.shutdown().await.map_err(raft_err)
    }
}

/// What a snapshot of `M` sent to a lagging member carries beside the state: the raw entries
/// (from the log, or those kept beside it) of what the state still reads, up to the snapshot.
fn kept_entries<M: DurableMachine>(log: GroupLog) -> super::peers::KeptEntries {
    Arc::new(move |state: &[u8], upto: u64| {
        let machine = M::decode_state(&bytes::Bytes::copy_from_slice(state))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let indexes: Vec<u64> = machine.live_indexes().into_iter().filter(|&i| i <= upto).collect();
        let raw = log.entries_or_kept_at(&indexes).map_err(std::io::Error::other)?;
        Ok(indexes.into_iter().zip(raw).filter_map(|(i, r)| Some((i, r?))).collect())
    })
}

/// Waits for a condition on the group's metrics, logging its recovery progress at each
/// timeout of `wait`, until it holds or the group fails.
async fn patiently<F, Fut>(
    raft: &Raft<C, impl RaftStateMachine<C>>,
    log: &GroupLog,
    wait: F,
) -> Result<openraft::RaftMetrics<C>, GroupError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<openraft::RaftMetrics<C>, openraft::metrics::WaitError>>,
{
    loop {
        match wait().await {
            Ok(m) => return Ok(m),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                let m = raft.metrics().borrow_watched().clone();
                tracing::info!(
                    group = log.id().0,
                    applied = m.last_applied.as_ref().map_or(0, |l| l.index),
                    last = m.last_log_index.unwrap_or(0),
                    state = ?m.state,
                    "still recovering"
                );
            }
            Err(e) => return Err(raft_err(e)),
        }
    }
}

/// After each snapshot, asks openraft to purge the log behind it, but never an entry the
/// machine still reads from ([`DurableMachine::first_live_index`]: a queue's message bodies),
/// and only once at least `batch` entries can go. openraft's own purge policy is off
/// (`max_in_snapshot_log_to_keep`), so this is the only purger.
async fn purger<M: DurableMachine>(
    raft: Raft<C, SmAdapter<M>>,
    sm: SmAdapter<M>,
    batch: u64,
    stopping: Arc<AtomicBool>,
) {
    let mut asked = 0;
    loop {
        sm.snapshotted.notified().await;
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        // Wait (bounded) until openraft knows the snapshot just saved: it purges nothing past
        // the snapshot it knows.
        let Some(built) = sm.lock().snapshot_index else { continue };
        let known = |m: &openraft::RaftMetrics<C>| m.snapshot.as_ref().is_some_and(|l| l.index >= built);
        let Ok(m) = raft.wait(Some(Duration::from_secs(5))).metrics(known, "snapshot known").await else {
            continue;
        };
        let snapshot = m.snapshot.as_ref().map_or(0, |l| l.index);
        let purged = m.purged.as_ref().map_or(0, |l| l.index);
        let live = sm.lock().machine.first_live_index();
        let upto = match live {
            Some(live) => snapshot.min(live.saturating_sub(1)),
            None => snapshot,
        };
        // Entries kept beside the log (from a snapshot this member caught up with) that no
        // message needs any more.
        if let Err(e) = sm.log.drop_kept_below(live.unwrap_or(snapshot + 1)) {
            tracing::warn!(group = sm.log.id().0, error = %e, "cannot drop kept entries");
        }
        if upto >= purged.max(asked) + batch {
            asked = upto;
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
