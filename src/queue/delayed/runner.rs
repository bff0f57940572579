//! The task that owns a delayed exchange's store: holds publishes, releases what is due.
//!
//! In a cluster a durable exchange's store is a Raft group over its members' nodes
//! (`Exchange::delay_members`), with openraft's own heartbeats and elections (delayed exchanges
//! are few). Every member's runner holds what its node's publishers send (a member that does
//! not lead forwards the hold to the leader, and confirms once the leader has it); only the
//! leader's runner releases. So a held message outlives its node: when the leader dies,
//! another member is elected and releases it on time (or late by the election). A node
//! that is not a member (it joined later) holds nothing itself: its runner sends each batch
//! of holds to the store's leader ([`Outsider`]) and confirms once the leader committed it.

use super::machine::{DelayCommand, DelayMachine, Due};
use crate::broker::delayed;
use crate::ids::{MsgId, QueueKey};
use crate::queue::runner::{ConfirmTo, Request, forward_released};
use crate::queue::{ClientEvent, Command, Message, QueueHandle, Reply};
use crate::raft::transport::NodeId;
use crate::raft::{
    AppliedWatch, DurableGroup, Group, GroupError, GroupOptions, LeadershipWatch, Outsider, Replication,
};
use crate::storage::GroupLog;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Capacity of a store's inbox.
const INBOX: usize = 4096;
/// Most publishes held per proposal.
const BATCH: usize = 512;
/// Most messages released per round (each round waits for its queues' confirms)...
const RELEASE: usize = 4096;
/// ...and most bytes of bodies (past the first message).
const RELEASE_BYTES: u64 = 8 << 20;
/// How long released messages a queue did not take wait before they go again (and a new
/// leader that could not take the store over before it tries again).
const RELEASE_RETRY: Duration = Duration::from_secs(1);
/// Messages due up to this long after a runner took over go marked redelivered too: their
/// due times come from the clock of the member that held them, which may run ahead.
const CLOCK_MARGIN_MS: u64 = 2000;
/// An idle durable store snapshots after this long (its log then shrinks to what it holds).
const IDLE_SNAPSHOT: Duration = Duration::from_secs(2);

/// What makes this node's store a member of a replicated one: how it reaches the others (its
/// `initial` members set on the store's founders only), and the members the metadata says
/// (they change when a node is forgotten or replaced).
pub struct Member {
    pub rep: Replication,
    pub members: watch::Receiver<Vec<NodeId>>,
}

/// A running member: what tells it to look again (it led, another member's hold was
/// applied, or the members changed), and the task converging the group on its members.
struct Watched {
    leadership: LeadershipWatch,
    applied: AppliedWatch,
    members: watch::Receiver<Vec<NodeId>>,
    converging: Option<JoinHandle<()>>,
    /// The term in which this member took the store over (it releases in that term only).
    serving: Option<u64>,
}

/// Resolves when a replicated store's leadership, applied entries or members change; never
/// for a store of one node.
async fn moved(member: &mut Option<Watched>) -> Option<()> {
    let Some(m) = member else { return std::future::pending().await };
    tokio::select! {
        l = m.leadership.changed() => l.map(|_| ()),
        a = m.applied.changed() => a.map(|_| ()),
        c = m.members.changed() => c.ok(),
    }
}

/// Routes a released message: given the vhost, the message and its routing keys, the queues
/// to hand it to; `None` while the node cannot route (starting or stopping): nothing is
/// released then.
pub type Router = Arc<dyn Fn(&str, &Message, &[String]) -> Option<Vec<QueueHandle>> + Send + Sync>;

enum Store {
    Memory(Group<DelayMachine>),
    Durable(Arc<DurableGroup<DelayMachine>>, GroupLog),
    Outside(Outsider),
}

/// What an outsider's store reads: nothing is held here.
static NOTHING_HELD: std::sync::LazyLock<DelayMachine> = std::sync::LazyLock::new(DelayMachine::durable);

impl Store {
    async fn propose(&mut self, now: u64, cmds: Vec<DelayCommand>) -> Result<(), GroupError> {
        match self {
            Store::Memory(g) => {
                for c in cmds {
                    g.propose(now, c, &mut Vec::new());
                }
                Ok(())
            }
            Store::Durable(g, _) => g.propose_many(now, cmds).await.map(|_| ()),
            // The store's own members delete it when the exchange goes.
            Store::Outside(o) => {
                let holds: Vec<DelayCommand> =
                    cmds.into_iter().filter(|c| !matches!(c, DelayCommand::Delete)).collect();
                if holds.is_empty() {
                    return Ok(());
                }
                o.propose_many::<DelayMachine>(now, &holds).await.map(|_| ())
            }
        }
    }

    fn read<T>(&self, f: impl FnOnce(&DelayMachine) -> T) -> T {
        match self {
            Store::Memory(g) => f(g.state()),
            Store::Durable(g, _) => g.read(f),
            Store::Outside(_) => f(&NOTHING_HELD),
        }
    }

    /// The due messages with their bodies (read back from the log where the machine keeps
    /// none); `None` for one the log no longer has (logged).
    fn load(&self, key: &QueueKey, due: Vec<Due>) -> Vec<(MsgId, Option<Arc<Message>>)> {
        let Store::Durable(g, _) = self else { return due };
        let indexes: Vec<u64> = due.iter().filter(|(_, m)| m.is_none()).map(|(id, _)| id.0).collect();
        let mut read = match g.read_commands(&indexes) {
            Ok(cmds) => cmds.into_iter(),
            Err(e) => {
                tracing::error!(exchange = %key.name, vhost = %key.vhost, error = %e, "cannot read held messages");
                Vec::new().into_iter()
            }
        };
        due.into_iter()
            .map(|(id, m)| match m {
                Some(m) => (id, Some(m)),
                None => match read.next().flatten() {
                    Some(DelayCommand::Hold { msg }) => (id, Some(msg)),
                    _ => {
                        tracing::error!(exchange = %key.name, id = id.0, "a held message's log entry is missing");
                        (id, None)
                    }
                },
            })
            .collect()
    }
}

/// Where a store keeps what it holds.
pub enum Keeping {
    /// In memory (a transient exchange).
    Memory,
    /// In this node's log alone (a durable exchange on a single node).
    Alone(GroupLog),
    /// In the log of this node's member of a replicated store.
    Member(GroupLog, Member),
    /// At the leader of a replicated store this node holds no member of (it joined the
    /// cluster after the store's members were chosen): every hold goes there.
    Outside(Outsider),
}

/// Starts the store of delayed exchange `key` (vhost and exchange name), keeping what it
/// holds as `keeping` says.
pub fn spawn(key: QueueKey, keeping: Keeping, route: Router) -> QueueHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let (ctl, ctl_rx) = mpsc::channel(16);
    let handle = QueueHandle { key: Arc::new(key), tx, ctl, stats: Arc::default(), flow: Arc::default() };
    let key = handle.key.clone();
    tokio::spawn(async move {
        let mut member = None;
        let opened = match keeping {
            Keeping::Memory => Ok(Store::Memory(Group::new(DelayMachine::in_memory()))),
            Keeping::Outside(o) => Ok(Store::Outside(o)),
            Keeping::Alone(log) => {
                let opened = DurableGroup::open(log.clone(), DelayMachine::durable(), GroupOptions::default()).await;
                opened.map(|g| Store::Durable(Arc::new(g), log))
            }
            Keeping::Member(log, Member { rep, members }) => {
                let init = DelayMachine::durable();
                let opened = DurableGroup::open_member(log.clone(), init, GroupOptions::self_timed(), rep).await;
                opened.map(|g| {
                    member = Some(Watched {
                        leadership: g.leadership(),
                        applied: g.applied_watch(),
                        members,
                        converging: None,
                        serving: None,
                    });
                    Store::Durable(Arc::new(g), log)
                })
            }
        };
        let store = match opened {
            Ok(store) => store,
            Err(e) => {
                tracing::error!(exchange = %key.name, vhost = %key.vhost, error = %e,
                    "cannot open the delayed exchange's log: its messages are unavailable");
                return;
            }
        };
        let held = store.read(DelayMachine::len);
        if held > 0 {
            tracing::info!(exchange = %key.name, vhost = %key.vhost, held, "recovered delayed messages");
        }
        let runner = Runner {
            store,
            key,
            route,
            member,
            not_before: None,
            took_over_at: now_ms(),
            in_doubt: Default::default(),
        };
        runner.run(rx, ctl_rx).await;
    });
    handle
}

struct Runner {
    store: Store,
    key: Arc<QueueKey>,
    route: Router,
    /// This node's member of a replicated store (`None`: the store is this node's alone).
    member: Option<Watched>,
    /// No release before this (messages a queue did not take wait a little).
    not_before: Option<tokio::time::Instant>,
    /// When this runner started releasing (it started, or its member took the store over):
    /// what fell due before may have been released already.
    took_over_at: u64,
    /// Messages handed to their queues that are still held (a queue did not take them, or
    /// their release was not recorded): they go again marked redelivered.
    in_doubt: std::collections::HashSet<MsgId>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Runner {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, mut ctl_rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut snapshot_due = false;
        let mut deleted = false;
        let mut led = false;
        loop {
            let releases = self.releases() || self.take_over().await;
            if self.member.is_some() && releases != led {
                led = releases;
                let (exchange, vhost) = (&self.key.name, &self.key.vhost);
                match led {
                    true => tracing::info!(%exchange, %vhost, "this node leads the delayed exchange's store"),
                    false => {
                        tracing::info!(%exchange, %vhost, "this node no longer leads the delayed exchange's store")
                    }
                }
            }
            if releases {
                self.converge();
            }
            let next = if releases { self.store.read(DelayMachine::next_due) } else { None };
            let backoff = self.not_before.map(|t| t.saturating_duration_since(tokio::time::Instant::now()));
            // A member elected that could not take the store over yet tries again shortly.
            let unserved = !releases && self.lead_term().is_some();
            let wait = match next {
                Some(at) => Some(Duration::from_millis(at.saturating_sub(now_ms())).max(backoff.unwrap_or_default())),
                None if unserved => Some(backoff.unwrap_or(RELEASE_RETRY)),
                None => None,
            };
            tokio::select! {
                biased;
                Some(r) = ctl_rx.recv() => batch.push(r),
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
                Some(()) = moved(&mut self.member) => continue,
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    self.release_due().await;
                    snapshot_due = true;
                    continue;
                }
                _ = tokio::time::sleep(IDLE_SNAPSHOT), if snapshot_due => {
                    snapshot_due = false;
                    if let Store::Durable(g, _) = &self.store {
                        if let Err(e) = g.snapshot_if_cheap().await {
                            tracing::warn!(exchange = %self.key.name, error = %e, "idle snapshot");
                        }
                    }
                    continue;
                }
            }
            if self.serve(&mut batch).await {
                deleted = true;
                break;
            }
            snapshot_due = true;
        }
        self.stop(deleted).await;
    }

    /// On the store's leader: brings the group's members in line with the metadata's (in a
    /// task of its own, `raft::keep_converging`), unless they are or a task is at it.
    fn converge(&mut self) {
        let (Some(m), Store::Durable(g, _)) = (&mut self.member, &self.store) else { return };
        let key = &self.key;
        let what = || format!("delayed exchange '{}' in vhost '{}'", key.name, key.vhost);
        crate::raft::keep_converging(&mut m.converging, g, &m.members, what);
    }

    /// The term this runner leads the store in: 0 for a store of its node alone, its
    /// member's term while that leads, `None` otherwise (an outsider never leads).
    fn lead_term(&self) -> Option<u64> {
        if matches!(self.store, Store::Outside(_)) {
            return None;
        }
        match &self.member {
            None => Some(0),
            Some(m) => {
                let l = m.leadership.current();
                l.leading.then_some(l.term)
            }
        }
    }

    /// Whether this runner releases: the store is this node's alone, or its member leads and
    /// has taken over in this term ([`Runner::take_over`]).
    fn releases(&self) -> bool {
        self.lead_term().is_some_and(|t| self.member.as_ref().is_none_or(|m| m.serving == Some(t)))
    }

    /// No release (nor take-over) for a little while.
    fn back_off(&mut self) {
        self.not_before = Some(tokio::time::Instant::now() + RELEASE_RETRY);
    }

    /// On a member just elected: commits an entry of its own term (an empty release) before
    /// it releases anything, so its state has every entry committed before (another leader's
    /// releases among them) and nothing is released twice; as a quorum queue's new leader
    /// proposes its failover first. Whether it now releases.
    async fn take_over(&mut self) -> bool {
        let Some(term) = self.lead_term() else { return false };
        if self.member.is_none() {
            return true;
        }
        if self.not_before.is_some_and(|t| t > tokio::time::Instant::now()) {
            return false;
        }
        match self.store.propose(now_ms(), vec![DelayCommand::Release { ids: Vec::new() }]).await {
            Ok(()) => {
                if let Some(m) = &mut self.member {
                    m.serving = Some(term);
                }
                self.took_over_at = now_ms();
                self.releases()
            }
            Err(e) => {
                tracing::warn!(exchange = %self.key.name, vhost = %self.key.vhost, error = %e,
                    "cannot take the delayed exchange's store over");
                self.back_off();
                false
            }
        }
    }

    /// Holds a batch of publishes and confirms them once stored; returns true once the
    /// exchange was deleted.
    async fn serve(&mut self, batch: &mut Vec<Request>) -> bool {
        let mut cmds = Vec::with_capacity(batch.len());
        let mut confirms: Vec<ConfirmTo> = Vec::new();
        let mut deleted = false;
        for req in batch.drain(..) {
            match req {
                Request::Publish { msg, confirm } => {
                    cmds.push(DelayCommand::Hold { msg });
                    confirms.extend(confirm);
                }
                Request::Cast { cmd: Command::Delete { .. } } => {
                    cmds.push(DelayCommand::Delete);
                    deleted = true;
                }
                // A store is not a queue: nothing else is addressed to it.
                Request::Call { reply, .. } | Request::Consume { reply, .. } | Request::Attach { reply, .. } => {
                    let _ = reply.send(Reply::Refused(crate::broker::Error::not_found("not a queue")));
                }
                Request::Cast { .. } => {}
            }
        }
        let ok = match self.store.propose(now_ms(), cmds).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(exchange = %self.key.name, error = %e, "holding delayed messages failed");
                false
            }
        };
        for c in confirms {
            let _ = c.sink.send(ClientEvent::Confirms { channel: c.channel, seqs: vec![c.seq], ok }).await;
        }
        deleted
    }

    /// Routes the messages due now, waits until their queues have them, then forgets them.
    async fn release_due(&mut self) {
        if !self.releases() {
            return;
        }
        // A leader that was paused or cut off finds out here, before it hands anything out
        // on its old term (its successor may have released these already).
        if let (Some(_), Store::Durable(g, _)) = (&self.member, &self.store) {
            if !g.confirm_leadership().await {
                self.back_off();
                return;
            }
        }
        let due = self.store.read(|m| m.due(now_ms(), RELEASE, RELEASE_BYTES));
        if due.is_empty() {
            return;
        }
        // Messages that go nowhere (or whose body is gone) are forgotten at once; the others
        // once their queues have them. Those that may have reached their queues already go
        // marked redelivered: due before this runner took over (its predecessor may have
        // released them and died before it recorded it), or sent before by this runner
        // without every queue taking them or without their release being recorded.
        let mut ids = Vec::with_capacity(due.len());
        let (mut sent, mut out) = (Vec::with_capacity(due.len()), Vec::with_capacity(due.len()));
        let before = self.took_over_at.saturating_add(CLOCK_MARGIN_MS);
        for (id, msg) in self.store.load(&self.key, due) {
            let Some(msg) = msg else {
                ids.push(id);
                continue;
            };
            let msg = released(&msg);
            let keys = routing_keys(&msg);
            let Some(targets) = (self.route)(&self.key.vhost, &msg, &keys) else {
                // Not now: the whole round goes again shortly.
                self.back_off();
                return;
            };
            if targets.is_empty() {
                ids.push(id);
                continue;
            }
            let old = self.store.read(|m| m.due_time(id)).is_some_and(|due| due <= before);
            let again = old || self.in_doubt.contains(&id);
            sent.push(id);
            out.push((targets, Arc::new(msg), again));
        }
        let taken = forward_released(out).await;
        let refused: Vec<MsgId> = sent.iter().zip(&taken).filter(|(_, t)| !**t).map(|(id, _)| *id).collect();
        ids.extend(sent.iter().zip(&taken).filter(|(_, t)| **t).map(|(id, _)| *id));
        if !refused.is_empty() {
            // A queue without a leader for a while (or down): those stay held and go again
            // shortly, marked (the queues that did take them get a marked copy).
            tracing::warn!(exchange = %self.key.name, vhost = %self.key.vhost, refused = refused.len(),
                "queues did not take released delayed messages: they are held and released again");
            self.back_off();
            self.in_doubt.extend(refused);
        }
        if ids.is_empty() {
            return;
        }
        match self.store.propose(now_ms(), vec![DelayCommand::Release { ids: ids.clone() }]).await {
            Ok(()) => {
                for id in &ids {
                    self.in_doubt.remove(id);
                }
            }
            Err(e) => {
                // Whether it was recorded is unknown: what was handed out goes again marked.
                tracing::error!(exchange = %self.key.name, error = %e, "releasing delayed messages failed");
                self.in_doubt.extend(ids);
                self.back_off();
            }
        }
    }

    /// Stops the group; removes its data once the exchange is gone (`deleted`: the node asked,
    /// or another member's deletion was applied here).
    async fn stop(self, deleted: bool) {
        if let Store::Durable(g, log) = self.store {
            let deleted = deleted || g.read(DelayMachine::is_deleted);
            if let Err(e) = g.shutdown().await {
                tracing::warn!(exchange = %self.key.name, error = %e, "stopping the delayed exchange's group");
            }
            if deleted {
                if let Err(e) = log.destroy() {
                    tracing::warn!(exchange = %self.key.name, error = %e, "removing a deleted delayed exchange's data");
                }
            }
        }
    }
}

/// The message as released: `x-delay` negated (the plugin's `swap_delay_header`).
fn released(msg: &Message) -> Message {
    let headers = msg.properties.headers().clone().unwrap_or_default();
    let delay = delayed::delay_of(Some(&headers)).unwrap_or(0);
    msg.with_headers(delayed::released_headers(&headers, delay))
}

/// The routing key and the `CC` keys (sender-selected distribution; `BCC` was removed when
/// the message was published).
fn routing_keys(msg: &Message) -> Vec<String> {
    let mut keys = vec![msg.routing_key.clone()];
    if let Some(amq_protocol::types::AMQPValue::FieldArray(a)) =
        msg.properties.headers().as_ref().and_then(|h| h.inner().get("CC"))
    {
        keys.extend(a.as_slice().iter().filter_map(crate::broker::argument::as_str));
    }
    keys
}
