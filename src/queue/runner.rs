//! The task that owns one queue's replication group and carries out its effects.
//!
//! Requests arrive on a bounded channel and are proposed in batches; effects are executed after
//! each batch: deliveries grouped per consumer, confirms grouped per publisher channel. The
//! runner awaits a full connection inbox (back-pressure), but connections never block on a
//! runner without draining their own inbox, so the two can never wait on each other.
//!
//! A replicated queue has a runner on each member node; only the one whose member leads
//! serves (`lead.rs`), the others keep their replica and refuse with `Reply::NotLeader`.

use super::Message;
use super::event::ClientSink;
use super::flow;
use super::handle::WeakQueueHandle;
use super::machine::{Command, QueueConfig, QueueMachine, Reply};
use crate::broker::{Error, ReplyCode};
use crate::ids::{ChannelId, ConnectionId, ConsumerId, QueueKey};
use crate::raft::{DurableGroup, Group, GroupOptions};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

mod batch;
mod effects;
mod forward;
mod lead;
mod store;

pub use super::handle::{ConfirmTo, QueueHandle, Request};
use batch::{IN_FLIGHT, InFlight};
pub use forward::{forward_confirmed, forward_released};
use lead::Lead;
pub use lead::Replica;
pub use store::Backend;
use store::Store;

/// Capacity of a queue's request channel.
const INBOX: usize = 4096;
/// Most requests proposed per batch.
const BATCH: usize = 512;
/// A durable queue idle this long takes a snapshot, so its log (and the disk) shrinks to what
/// its live messages need without waiting for more traffic.
const IDLE_SNAPSHOT: std::time::Duration = std::time::Duration::from_secs(2);

/// Called when an auto-delete queue loses its last consumer.
pub type AutoDelete = Arc<dyn Fn(QueueKey) + Send + Sync>;

/// Routes a dead letter: given the vhost, the message (its exchange is the dead-letter
/// exchange) and the routing keys, the queues to hand it to.
pub type DeadLetterRouter = Arc<dyn Fn(&str, &Message, &[String]) -> Vec<QueueHandle> + Send + Sync>;

/// How long a replicated queue's leader waits for a majority to take a batch before it
/// answers what waits as failed (nacks): a leader cut off from the others never confirms.
pub(super) const PROPOSE_PATIENCE: Duration = Duration::from_secs(10);

/// The options of a replicated queue's group: supervised (no heartbeats or elections of its
/// own, `lead.rs`); a member refuses votes for a second after it last heard from its leader.
fn replicated_options() -> GroupOptions {
    GroupOptions { supervised: true, heartbeat_ms: 250, election_ms: (800, 1000), ..GroupOptions::default() }
}

/// What a runner asks of the node.
#[derive(Clone)]
pub struct Hooks {
    pub auto_delete: AutoDelete,
    pub dead_letter: DeadLetterRouter,
    /// Where the runner's task is tracked (the node waits for its runners when it stops).
    pub runners: tokio_util::task::TaskTracker,
}

struct ConsumerSink {
    sink: ClientSink,
    connection: ConnectionId,
    channel: ChannelId,
    tag: Arc<str>,
    no_ack: bool,
}

/// Starts a runner for a queue and returns its handle at once (a durable queue's group opens
/// in the runner; requests wait in the inbox meanwhile).
pub fn spawn(config: QueueConfig, backend: Backend, recover: Option<bool>, hooks: Hooks) -> QueueHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let (ctl, ctl_rx) = mpsc::channel(INBOX);
    let key = Arc::new(config.key.clone());
    // A replicated queue's member holds publishers at its front's gate: the one this node's
    // connections wait at, and the one a session serving another node watches.
    let flow = match &backend {
        Backend::Replicated(_, replica) => replica.front.flow.clone(),
        _ => Arc::default(),
    };
    let handle = QueueHandle { key, tx, ctl, stats: Arc::default(), flow };
    let own = handle.downgrade();
    let key = handle.key.clone();
    let touch = config.expires.is_some();
    // The runner holds only weak senders to itself, so it stops once every handle is gone.
    let runners = hooks.runners.clone();
    runners.spawn(async move {
        let (store, lead, deliver_as) = match backend {
            Backend::Memory => (Store::Memory(Group::new(QueueMachine::new(config))), None, own),
            Backend::Durable(log) => {
                match DurableGroup::open(log.clone(), QueueMachine::durable(config), GroupOptions::default()).await {
                    Ok(g) => (Store::Durable(Arc::new(g), log), None, own),
                    Err(e) => {
                        tracing::error!(queue = %key, error = %e, "cannot open the queue's log: queue unavailable");
                        return;
                    }
                }
            }
            Backend::Replicated(log, replica) => {
                // The preferred leader creates the group (openraft elects it at once); the
                // others wait to hear from it, or create it at their turn if it is down.
                let mut rep = replica.rep.clone();
                let preferred = replica.founders.first() == Some(&rep.me);
                rep.initial = preferred.then(|| replica.founders.iter().copied().collect());
                let init = QueueMachine::durable(config);
                match DurableGroup::open_member(log.clone(), init, replicated_options(), rep).await {
                    Ok(g) => {
                        let lead = Lead::new(&g, &replica, key.clone());
                        (Store::Durable(Arc::new(g), log), Some(lead), replica.front.clone())
                    }
                    Err(e) => {
                        tracing::error!(queue = %key, error = %e, "cannot open the queue's replica: queue unavailable here");
                        return;
                    }
                }
            }
        };
        let dead_letters = std::sync::OnceLock::new();
        let fenced = lead.is_some();
        let flow = flow::Policy::new(deliver_as.flow.clone());
        let mut runner = Runner {
            store,
            sinks: HashMap::new(),
            key,
            deliver_as,
            hooks,
            dead_letters,
            retired: false,
            fenced,
            flow,
        };
        // After a restart no consumer of before is connected any more; and a queue's
        // `x-expires` counts from its start (RabbitMQ restarts it with the queue). A
        // replicated queue's new leader takes over instead (`Command::Failover`).
        let start: Vec<Command> = recover
            .map(|drop_transient| Command::Recover { drop_transient })
            .into_iter()
            .chain(touch.then_some(Command::Touch))
            .filter(|_| lead.is_none())
            .collect();
        if !start.is_empty() {
            if let Err(e) = runner.store.propose(now_ms(), start).await {
                tracing::error!(queue = %runner.key, error = %e, "recovery failed");
            }
        }
        runner.run(rx, ctl_rx, lead).await;
    });
    handle
}

struct Runner {
    store: Store,
    sinks: HashMap<ConsumerId, ConsumerSink>,
    key: Arc<QueueKey>,
    /// The handle deliveries carry (settles go there): the runner's own, or a replicated
    /// queue's front on this node.
    deliver_as: WeakQueueHandle,
    hooks: Hooks,
    /// The dead-letter forwarder (hands dead letters to their queues, in order, without the
    /// runner waiting on another queue's inbox), started with the first dead letter.
    dead_letters: std::sync::OnceLock<mpsc::Sender<(Vec<QueueHandle>, Arc<Message>)>>,
    /// A replicated queue's member told to delete the queue while it did not lead: the queue
    /// is gone, so its data goes when the runner stops.
    retired: bool,
    /// A replicated queue's member: deliveries wait for leadership to be confirmed.
    fenced: bool,
    /// Whether publishers are held (opens the gate when the runner stops).
    flow: flow::Policy,
}

/// The next leadership event of a replicated queue's member; never for other queues.
async fn lead_event(lead: &mut Option<Lead>) -> lead::Event {
    match lead {
        Some(l) => l.next().await,
        None => std::future::pending().await,
    }
}

/// How long until `at` (ms since the epoch), and one more millisecond, so that it has passed.
fn until(at: Option<u64>) -> std::time::Duration {
    std::time::Duration::from_millis(at.unwrap_or(0).saturating_sub(now_ms()) + 1)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Runner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut ctl_rx: mpsc::Receiver<Request>,
        mut lead: Option<Lead>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut inflight = InFlight::new();
        let (mut rx_open, mut ctl_open) = (true, true);
        let mut snapshot_due = false;
        // When the head message (or the queue) expires: the queue proposes `Expire` then.
        let mut next_expiry: Option<u64> = self.next_expiry(&lead);
        loop {
            let stall = self.check_flow(&lead);
            // Settles first, then whatever arrives. Once every handle is gone (both inboxes
            // closed and drained) and nothing is in flight, nothing timed keeps the runner:
            // it stops. With IN_FLIGHT batches proposed, requests wait in the inbox (and make
            // the next batch bigger).
            let room = inflight.len() < IN_FLIGHT;
            while room && batch.len() < BATCH {
                match ctl_rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            // A replicated queue's member looks at its leadership before every batch: a
            // deposed leader must learn it even while requests keep coming (the fronts send
            // what it refused straight back while it still counts as leader).
            if batch.is_empty() || !room || lead.is_some() {
                let open = rx_open || ctl_open;
                tokio::select! {
                    biased;
                    Some((now, posts, r)) = inflight.next(), if !inflight.is_empty() => {
                        self.answer(now, posts, r).await;
                        snapshot_due = matches!(self.store, Store::Durable(..));
                        next_expiry = self.next_expiry(&lead);
                        continue;
                    }
                    ev = lead_event(&mut lead), if lead.is_some() && open => {
                        // Leadership work proposes on its own: what is in flight goes first.
                        self.drain(&mut inflight).await;
                        if let Some(l) = lead.as_mut() {
                            self.on_lead_event(ev, l).await;
                        }
                        if self.retired {
                            break;
                        }
                        next_expiry = self.next_expiry(&lead);
                        continue;
                    }
                    _ = std::future::ready(()), if !batch.is_empty() && room => {}
                    r = ctl_rx.recv(), if ctl_open && room => match r {
                        Some(r) => batch.push(r),
                        None => ctl_open = false,
                    },
                    n = rx.recv_many(&mut batch, BATCH), if rx_open && room => rx_open = n > 0,
                    _ = tokio::time::sleep(until(next_expiry)), if next_expiry.is_some() && open && room => {
                        batch.push(Request::Cast { cmd: Command::Expire });
                    }
                    _ = tokio::time::sleep(IDLE_SNAPSHOT), if snapshot_due && open && inflight.is_empty() => {
                        snapshot_due = false;
                        self.idle_snapshot().await;
                    }
                    // Held publishers are let go once the consumers have stalled.
                    _ = tokio::time::sleep_until(stall.unwrap_or_else(Instant::now).into()), if stall.is_some() && open => {}
                    else => break,
                }
                if batch.is_empty() {
                    continue;
                }
            }
            self.serve_batch(now_ms(), &mut batch, &mut lead, &mut inflight).await;
            if self.retired {
                break;
            }
            snapshot_due = matches!(self.store, Store::Durable(..));
            next_expiry = self.next_expiry(&lead);
        }
        self.drain(&mut inflight).await;
        self.stop().await;
    }

    /// Opens or closes the queue's flow gate for its backlog now; returns when to look again
    /// if it holds publishers (`queue::flow`).
    fn check_flow(&mut self, lead: &Option<Lead>) -> Option<Instant> {
        let serving = lead.as_ref().is_none_or(|l| l.serving.is_some());
        let backlog = self.store.read(|m| flow::Backlog {
            ready: m.ready_count(),
            ready_bytes: m.ready_bytes(),
            consumers: m.consumer_count(),
            serving,
        });
        self.flow.decide(backlog, Instant::now());
        self.flow.stall_at()
    }

    /// When to propose `Expire` next: never for a replicated queue's member that does not
    /// serve (its leader keeps time).
    fn next_expiry(&self, lead: &Option<Lead>) -> Option<u64> {
        if lead.as_ref().is_some_and(|l| l.serving.is_none()) {
            return None;
        }
        self.store.read(|m| m.next_expiry())
    }

    /// Notes where a consumer's deliveries go.
    fn register(&mut self, spec: &super::machine::ConsumerSpec, sink: ClientSink) {
        let entry = ConsumerSink {
            sink,
            connection: spec.connection,
            channel: spec.channel,
            tag: spec.tag.clone(),
            no_ack: spec.no_ack,
        };
        self.sinks.insert(spec.id, entry);
    }

    async fn idle_snapshot(&self) {
        if let Store::Durable(g, _) = &self.store {
            if let Err(e) = g.snapshot_if_cheap().await {
                tracing::warn!(queue = %self.key, error = %e, "idle snapshot");
            }
        }
    }

    /// A `basic.get` reply with its body read back from the log if the machine did not hold it.
    fn with_body(&self, reply: Reply) -> Reply {
        match reply {
            Reply::Got(Some(mut got)) => {
                if got.msg.is_none() {
                    got.msg = self.store.load(&self.key, &[got.id]).pop().flatten();
                }
                let Some(msg) = got.msg.take() else {
                    return Reply::Refused(Error::new(ReplyCode::InternalError, "message body unavailable"));
                };
                got.msg = Some(match got.delivery_count {
                    Some(n) => Arc::new(msg.with_delivery_count(n)),
                    None => msg,
                });
                Reply::Got(Some(got))
            }
            other => other,
        }
    }

    /// The last handle is gone: stop the durable group, and if the queue was deleted, remove
    /// its data (group ids are never reused).
    async fn stop(self) {
        if let Store::Durable(g, log) = self.store {
            let deleted = self.retired || g.read(|m| m.is_deleted());
            if let Err(e) = g.shutdown().await {
                tracing::warn!(queue = %self.key, error = %e, "stopping the queue's group");
            }
            if deleted {
                if let Err(e) = log.destroy() {
                    tracing::warn!(queue = %self.key, error = %e, "removing a deleted queue's data");
                }
            }
        }
    }
}
