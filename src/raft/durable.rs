//! A group replicated by openraft with its log in the node's RocksDB: the durable backend of
//! the replication seam (`docs/durability-plan.md`).
//!
//! The machine stays in memory; the log, the Raft state and snapshots are in RocksDB. A
//! proposal returns once its entry is durable and applied, with the machine's reply and
//! effects (carried to the proposer in this process only). After a restart openraft installs
//! the last snapshot and re-applies the log; entries replayed that way have no proposer, so
//! their effects are dropped (a machine rebuilds what it needs from its state).

use super::log_store::LogStore;
use super::net::NoPeers;
use super::peers::{Member, Peers};
use super::transport::{NodeId, Router, Transport};
use super::types::{Out, Payload, Warren};
use super::{ApplyMeta, LogIndex, Machine};
use crate::storage::{GroupLog, StateTag};
use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::async_runtime::WatchReceiver;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{BasicNode, Config, EntryPayload, OptionalSend, Raft, RaftSnapshotBuilder, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

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

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

struct SmState<M> {
    machine: M,
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// Entries applied since the last snapshot (built or installed).
    since_snapshot: u64,
    /// Snapshots built (for tests and metrics).
    snapshots_built: u64,
    /// Index of the last snapshot built or installed.
    snapshot_index: Option<u64>,
}

/// openraft's state machine around a Warren machine.
pub(crate) struct SmAdapter<M> {
    state: Arc<Mutex<SmState<M>>>,
    log: GroupLog,
    /// Woken after each snapshot (the group's purger waits on it).
    snapshotted: Arc<Notify>,
}

impl<M> Clone for SmAdapter<M> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), log: self.log.clone(), snapshotted: self.snapshotted.clone() }
    }
}

impl<M> SmAdapter<M> {
    /// A fresh adapter for `machine`, keeping its snapshots beside `log`.
    pub(crate) fn new(machine: M, log: GroupLog) -> Self {
        let state = SmState {
            machine,
            applied: None,
            membership: Default::default(),
            since_snapshot: 0,
            snapshots_built: 0,
            snapshot_index: None,
        };
        Self { state: Arc::new(Mutex::new(state)), log, snapshotted: Arc::new(Notify::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, SmState<M>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Entries applied per lock of the machine.
const APPLY_CHUNK: usize = 1024;

/// A stored snapshot: openraft's meta plus the machine's encoded state.
fn encode_snapshot(meta: &SnapshotMetaOf<C>, state: &[u8]) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec((meta, state), bincode::config::standard()).map_err(invalid)
}

fn decode_snapshot(b: &[u8]) -> io::Result<(SnapshotMetaOf<C>, Vec<u8>)> {
    bincode::serde::decode_from_slice(b, bincode::config::standard()).map(|(v, _)| v).map_err(invalid)
}

impl<M: DurableMachine> RaftSnapshotBuilder<C> for SmAdapter<M> {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let (meta, data) = {
            let mut s = self.lock();
            s.since_snapshot = 0;
            s.snapshots_built += 1;
            let meta = SnapshotMetaOf::<C> { last_log_id: s.applied.clone(), last_membership: s.membership.clone() };
            s.snapshot_index = s.applied.as_ref().map(|l| l.index);
            (meta, s.machine.encode_state())
        };
        self.log.save_state(StateTag::Snapshot, &encode_snapshot(&meta, &data)?).map_err(io::Error::other)?;
        self.snapshotted.notify_one();
        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) })
    }
}

impl<M: DurableMachine> SmAdapter<M> {
    /// Applies committed entries and answers their proposers (if any, in this process).
    fn apply_chunk(&self, batch: &mut Vec<EntryResponder<C>>) -> Result<(), io::Error> {
        let mut replies = Vec::with_capacity(batch.len());
        {
            let mut s = self.lock();
            for (entry, responder) in batch.drain(..) {
                let out = match &entry.payload {
                    EntryPayload::Blank => Out::default(),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembershipOf::<C>::new(Some(entry.log_id.clone()), m.clone());
                        Out::default()
                    }
                    EntryPayload::Normal(p) => {
                        // A command this build cannot read stops the group (fail-stop), never skips.
                        let cmd = M::decode_command(&p.cmd).map_err(invalid)?;
                        let meta = ApplyMeta { index: LogIndex(entry.log_id.index), now_ms: p.now_ms };
                        let mut effects = Vec::new();
                        let reply = s.machine.apply(meta, cmd, &mut effects);
                        if responder.is_some() {
                            Out { inner: Some(Box::new((reply, effects))) }
                        } else {
                            Out::default()
                        }
                    }
                };
                s.applied = Some(entry.log_id.clone());
                s.since_snapshot += 1;
                replies.push((responder, out));
            }
        }
        for (responder, out) in replies {
            if let Some(r) = responder {
                r.send(out);
            }
        }
        Ok(())
    }
}

impl<M: DurableMachine> RaftStateMachine<C> for SmAdapter<M> {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let s = self.lock();
        Ok((s.applied.clone(), s.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        // In chunks, collected first (a std mutex guard is never held across an await): after a
        // restart the stream is the whole log behind the snapshot.
        let mut batch = Vec::new();
        let mut done = false;
        while !done {
            while batch.len() < APPLY_CHUNK {
                match entries.try_next().await? {
                    Some(item) => batch.push(item),
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            self.apply_chunk(&mut batch)?;
        }
        Ok(())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = bytes::Bytes::from(snapshot.into_inner());
        let machine = M::decode_state(&data).map_err(invalid)?;
        self.log.save_state(StateTag::Snapshot, &encode_snapshot(meta, &data)?).map_err(io::Error::other)?;
        let mut s = self.lock();
        s.machine = machine;
        s.since_snapshot = 0;
        s.applied = meta.last_log_id.clone();
        s.snapshot_index = s.applied.as_ref().map(|l| l.index);
        s.membership = meta.last_membership.clone();
        self.snapshotted.notify_one();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        match self.log.read_state(StateTag::Snapshot).map_err(io::Error::other)? {
            Some(b) => {
                let (meta, data) = decode_snapshot(&b)?;
                Ok(Some(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) }))
            }
            None => Ok(None),
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        let defer = {
            let s = self.lock();
            !force && s.since_snapshot < s.machine.state_weight()
        };
        (!defer).then(|| self.clone())
    }
}

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
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            snapshot_every: 10_000,
            purge_batch: 1024,
            progress_every: Duration::from_secs(10),
            heartbeat_ms: 1000,
            election_ms: (3000, 6000),
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
    /// Where RPCs for this member arrive (groups of several members).
    router: Option<Router>,
}

impl<M: DurableMachine> DurableGroup<M> {
    /// Opens the group stored under `log` (creating it with `init` if it has no history),
    /// recovers its state, and waits until it leads.
    pub async fn open(log: GroupLog, init: M, opts: GroupOptions) -> Result<Self, GroupError> {
        let config = Self::config(&opts)?;
        let sm = SmAdapter::new(init, log.clone());
        let raft = Raft::new(SELF, config, NoPeers, LogStore::new(log.clone()), sm.clone()).await.map_err(raft_err)?;
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
        Ok(Self { raft, sm, log, stopping, router: None })
    }

    fn config(opts: &GroupOptions) -> Result<Arc<Config>, GroupError> {
        let config = Config {
            cluster_name: "warren".into(),
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
        let config = Self::config(&opts)?;
        let sm = SmAdapter::new(init, log.clone());
        let net = Peers { transport: rep.transport.clone(), group: log.id() };
        let raft = Raft::new(rep.me, config, net, LogStore::new(log.clone()), sm.clone()).await.map_err(raft_err)?;
        rep.router.register(log.id(), Arc::new(Member { raft: raft.clone() }));
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
        Ok(Self { raft, sm, log, stopping, router: Some(rep.router) })
    }

    /// The member that leads, as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
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

    /// Proposes a command; returns once it is durable and applied, with the machine's reply
    /// and effects.
    pub async fn propose(&self, now_ms: u64, cmd: M::Command) -> Result<(M::Reply, Vec<M::Effect>), GroupError> {
        let payload = Payload { now_ms, cmd: M::encode_command(&cmd).into() };
        let resp = self.raft.client_write(payload).await.map_err(write_err)?;
        let any = resp.data.inner.ok_or(GroupError::Reply)?;
        any.downcast::<(M::Reply, Vec<M::Effect>)>().map(|b| *b).map_err(|_| GroupError::Reply)
    }

    /// Proposes commands as one batch (one message to openraft, typically one fsync); returns
    /// each reply and its effects, in order.
    pub async fn propose_many(
        &self,
        now_ms: u64,
        cmds: Vec<M::Command>,
    ) -> Result<Vec<(M::Reply, Vec<M::Effect>)>, GroupError> {
        let n = cmds.len();
        let payloads = cmds.iter().map(|c| Payload { now_ms, cmd: M::encode_command(c).into() });
        let mut stream = self.raft.client_write_many(payloads.collect::<Vec<_>>()).await.map_err(raft_err)?;
        let mut out = Vec::with_capacity(n);
        while let Some(r) = stream.try_next().await.map_err(raft_err)? {
            let resp = r.map_err(|f| GroupError::NotLeader(f.leader_id))?;
            let any = resp.response.inner.ok_or(GroupError::Reply)?;
            out.push(*any.downcast::<(M::Reply, Vec<M::Effect>)>().map_err(|_| GroupError::Reply)?);
        }
        if out.len() != n {
            return Err(GroupError::Raft(format!("{} of {n} proposals answered", out.len())));
        }
        Ok(out)
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
        let upto = match sm.lock().machine.first_live_index() {
            Some(live) => snapshot.min(live.saturating_sub(1)),
            None => snapshot,
        };
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
