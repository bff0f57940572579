//! The task that owns one queue's replication group and carries out its effects.
//!
//! Requests arrive on a bounded channel and are proposed in batches; effects are executed after
//! each batch: deliveries grouped per consumer, confirms grouped per publisher channel. The
//! runner awaits a full connection inbox (back-pressure), but connections never block on a
//! runner without draining their own inbox, so the two can never wait on each other.

use super::Message;
use super::event::{ClientEvent, ClientSink, Delivery};
use super::machine::{Command, ConsumerSpec, Effect, Outcome, QueueConfig, QueueMachine, Reply};
use crate::ids::{ChannelId, ConnectionId, ConsumerId, MsgId, QueueKey};
use crate::raft::Group;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Capacity of a queue's request channel.
const INBOX: usize = 4096;
/// Most requests proposed per batch.
const BATCH: usize = 512;

/// Where a publisher wants its confirm.
#[derive(Debug)]
pub struct ConfirmTo {
    pub sink: ClientSink,
    pub channel: ChannelId,
    pub seq: u64,
}

#[derive(Debug)]
pub enum Request {
    Publish {
        msg: Arc<Message>,
        confirm: Option<ConfirmTo>,
    },
    Consume {
        spec: ConsumerSpec,
        sink: ClientSink,
        reply: oneshot::Sender<Reply>,
    },
    Call {
        cmd: Command,
        reply: oneshot::Sender<Reply>,
    },
    /// A command whose reply nobody waits for (settles, cancels on close).
    Cast {
        cmd: Command,
    },
}

/// A cheap, cloneable address of a running queue.
///
/// A queue has two inboxes. Settles and cancels use `ctl`, which the runner drains first:
/// they never wait behind a backlog of publishes, so a consumer's credit comes back at once
/// (with a single FIFO, prefetch-bound consumers starved behind fast publishers). Reordering
/// is harmless for them: a settle names a message already applied, and a cancel is only sent
/// after its consume was answered. Everything whose order matters (publish, get, consume,
/// purge, delete, stats) goes through `tx`, in the order the connection sent it.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    pub key: Arc<QueueKey>,
    pub tx: mpsc::Sender<Request>,
    pub ctl: mpsc::Sender<Request>,
}

impl QueueHandle {
    pub fn same_queue(&self, other: &QueueHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// The inbox a request belongs in.
    pub fn inbox_for(&self, req: &Request) -> &mpsc::Sender<Request> {
        match req {
            Request::Cast { cmd: Command::Settle { .. } | Command::Cancel { .. } | Command::Credit { .. } } => {
                &self.ctl
            }
            _ => &self.tx,
        }
    }
}

/// Called when an auto-delete queue loses its last consumer.
pub type AutoDelete = Arc<dyn Fn(QueueKey) + Send + Sync>;

struct ConsumerSink {
    sink: ClientSink,
    connection: ConnectionId,
    channel: ChannelId,
    tag: Arc<str>,
    no_ack: bool,
}

/// Starts a runner for a new queue and returns its handle.
pub fn spawn(config: QueueConfig, on_auto_delete: AutoDelete) -> QueueHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let (ctl, ctl_rx) = mpsc::channel(INBOX);
    let key = Arc::new(config.key.clone());
    let handle = QueueHandle { key, tx, ctl };
    let runner = Runner {
        group: Group::new(QueueMachine::new(config)),
        sinks: HashMap::new(),
        key: handle.key.clone(),
        me: (handle.tx.downgrade(), handle.ctl.downgrade()),
        on_auto_delete,
    };
    // The runner holds only weak senders to itself, so it stops once every handle is gone.
    tokio::spawn(runner.run(rx, ctl_rx));
    handle
}

struct Runner {
    group: Group<QueueMachine>,
    sinks: HashMap<ConsumerId, ConsumerSink>,
    key: Arc<QueueKey>,
    me: (mpsc::WeakSender<Request>, mpsc::WeakSender<Request>),
    on_auto_delete: AutoDelete,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Runner {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, mut ctl_rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut effects = Vec::new();
        let mut confirms: Vec<(ClientSink, ChannelId, Vec<u64>)> = Vec::new();
        let (mut rx_open, mut ctl_open) = (true, true);
        loop {
            // Settles first, then whatever arrives.
            while batch.len() < BATCH {
                match ctl_rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    r = ctl_rx.recv(), if ctl_open => match r {
                        Some(r) => batch.push(r),
                        None => ctl_open = false,
                    },
                    n = rx.recv_many(&mut batch, BATCH), if rx_open => rx_open = n > 0,
                    else => return,
                }
                if batch.is_empty() {
                    continue;
                }
            }
            let now = now_ms();
            for req in batch.drain(..) {
                self.handle(now, req, &mut effects, &mut confirms);
            }
            for (sink, channel, seqs) in confirms.drain(..) {
                let _ = sink.send(ClientEvent::Confirms { channel, seqs, ok: true }).await;
            }
            self.execute(now, &mut effects).await;
        }
    }

    fn handle(
        &mut self,
        now: u64,
        req: Request,
        effects: &mut Vec<Effect>,
        confirms: &mut Vec<(ClientSink, ChannelId, Vec<u64>)>,
    ) {
        match req {
            Request::Publish { msg, confirm } => {
                self.group.propose(now, Command::Enqueue { msg }, effects);
                if let Some(c) = confirm {
                    match confirms.last_mut() {
                        Some((s, ch, seqs)) if *ch == c.channel && s.same_channel(&c.sink) => seqs.push(c.seq),
                        _ => confirms.push((c.sink, c.channel, vec![c.seq])),
                    }
                }
            }
            Request::Consume { spec, sink, reply } => {
                let id = spec.id;
                let entry = ConsumerSink {
                    sink,
                    connection: spec.connection,
                    channel: spec.channel,
                    tag: spec.tag.clone(),
                    no_ack: spec.no_ack,
                };
                // Register the sink first: the consume itself may dispatch to it.
                self.sinks.insert(id, entry);
                let r = self.group.propose(now, Command::Consume(spec), effects);
                if !matches!(r, Reply::Consumed) {
                    self.sinks.remove(&id);
                }
                let _ = reply.send(r);
            }
            Request::Call { cmd, reply } => {
                let r = self.group.propose(now, cmd, effects);
                let _ = reply.send(r);
            }
            Request::Cast { cmd } => {
                if let Command::Cancel { consumer } = &cmd {
                    self.sinks.remove(consumer);
                }
                self.group.propose(now, cmd, effects);
            }
        }
    }

    /// Carries out effects; failed deliveries (the connection is gone) are requeued and their
    /// consumer cancelled, which may produce more effects, so this loops until quiet.
    async fn execute(&mut self, now: u64, effects: &mut Vec<Effect>) {
        while !effects.is_empty() {
            // Per channel, in dispatch order: two consumers on one channel see strict
            // round-robin on the wire, as RabbitMQ delivers them.
            let mut per_channel: BTreeMap<(ConnectionId, ChannelId), (ClientSink, Vec<(ConsumerId, Delivery)>)> =
                BTreeMap::new();
            let mut lost: Vec<(ConsumerId, Vec<MsgId>)> = Vec::new();
            for fx in effects.drain(..) {
                match fx {
                    Effect::Deliver { consumer, id, msg, redelivered } => {
                        let Some(s) = self.sinks.get(&consumer) else {
                            lost.push((consumer, vec![id]));
                            continue;
                        };
                        let d = Delivery { consumer_tag: s.tag.clone(), id, msg, redelivered, no_ack: s.no_ack };
                        per_channel
                            .entry((s.connection, s.channel))
                            .or_insert_with(|| (s.sink.clone(), Vec::new()))
                            .1
                            .push((consumer, d));
                    }
                    Effect::ConsumerCancelled { consumer } => {
                        if let Some(s) = self.sinks.remove(&consumer) {
                            let ev = ClientEvent::ConsumerCancelled { channel: s.channel, consumer_tag: s.tag };
                            let _ = s.sink.send(ev).await;
                        }
                    }
                    Effect::AutoDelete => (self.on_auto_delete)((*self.key).clone()),
                }
            }
            let me = match (self.me.0.upgrade(), self.me.1.upgrade()) {
                (Some(tx), Some(ctl)) => Some(QueueHandle { key: self.key.clone(), tx, ctl }),
                _ => None,
            };
            for ((_, channel), (sink, items)) in per_channel {
                let Some(me) = me.as_ref() else { continue };
                let owners: Vec<(ConsumerId, MsgId, bool)> = items.iter().map(|(c, d)| (*c, d.id, d.no_ack)).collect();
                let items = items.into_iter().map(|(_, d)| d).collect();
                if sink.send(ClientEvent::Deliveries { channel, queue: me.clone(), items }).await.is_err() {
                    for (consumer, id, no_ack) in owners {
                        let pos = match lost.iter().position(|(c, _)| *c == consumer) {
                            Some(p) => p,
                            None => {
                                lost.push((consumer, Vec::new()));
                                lost.len() - 1
                            }
                        };
                        if !no_ack {
                            lost[pos].1.push(id);
                        }
                    }
                }
            }
            for (consumer, ids) in lost {
                self.sinks.remove(&consumer);
                self.group.propose(now, Command::Cancel { consumer }, effects);
                self.group.propose(now, Command::Settle { ids, outcome: Outcome::Requeue }, effects);
            }
        }
    }
}
