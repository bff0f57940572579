//! The task that owns one queue's replication group and carries out its effects.
//!
//! Requests arrive on a bounded channel and are proposed in batches; effects are executed after
//! each batch: deliveries grouped per consumer, confirms grouped per publisher channel. The
//! runner awaits a full connection inbox (back-pressure), but connections never block on a
//! runner without draining their own inbox, so the two can never wait on each other.

use super::Message;
use super::dead_letter::{self, Reason};
use super::event::{ClientEvent, ClientSink, Delivery};
use super::machine::{Command, Effect, Outcome, QueueConfig, QueueMachine, Reply};
use crate::broker::{Error, ReplyCode};
use crate::ids::{ChannelId, ConnectionId, ConsumerId, MsgId, QueueKey};
use crate::raft::{DurableGroup, Group, GroupOptions};
use crate::stats::Counters;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

mod store;

pub use super::handle::{ConfirmTo, QueueHandle, Request};
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

/// Dead letters waiting for the forwarder at most (then the runner waits: back-pressure).
const DEAD_LETTERS: usize = 1024;

/// What a runner asks of the node.
#[derive(Clone)]
pub struct Hooks {
    pub auto_delete: AutoDelete,
    pub dead_letter: DeadLetterRouter,
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
    let handle = QueueHandle { key, tx, ctl, stats: Arc::default() };
    let me = (handle.tx.downgrade(), handle.ctl.downgrade());
    let stats = handle.stats.clone();
    let key = handle.key.clone();
    let touch = config.expires.is_some();
    // The runner holds only weak senders to itself, so it stops once every handle is gone.
    tokio::spawn(async move {
        let store = match backend {
            Backend::Memory => Store::Memory(Group::new(QueueMachine::new(config))),
            Backend::Durable(log) => {
                match DurableGroup::open(log.clone(), QueueMachine::durable(config), GroupOptions::default()).await {
                    Ok(g) => Store::Durable(Arc::new(g), log),
                    Err(e) => {
                        tracing::error!(queue = %key, error = %e, "cannot open the queue's log: queue unavailable");
                        return;
                    }
                }
            }
        };
        let dead_letters = std::sync::OnceLock::new();
        let mut runner = Runner { store, sinks: HashMap::new(), key, me, stats, hooks, dead_letters };
        // After a restart no consumer of before is connected any more; and a queue's
        // `x-expires` counts from its start (RabbitMQ restarts it with the queue).
        let start: Vec<Command> = recover
            .map(|drop_transient| Command::Recover { drop_transient })
            .into_iter()
            .chain(touch.then_some(Command::Touch))
            .collect();
        if !start.is_empty() {
            if let Err(e) = runner.store.propose(now_ms(), start).await {
                tracing::error!(queue = %runner.key, error = %e, "recovery failed");
            }
        }
        runner.run(rx, ctl_rx).await;
    });
    handle
}

struct Runner {
    store: Store,
    sinks: HashMap<ConsumerId, ConsumerSink>,
    key: Arc<QueueKey>,
    me: (mpsc::WeakSender<Request>, mpsc::WeakSender<Request>),
    stats: Arc<Counters>,
    hooks: Hooks,
    /// Where dead letters go (`x-dead-letter-exchange`), and the forwarder that hands them to
    /// their queues, in order, without the runner waiting on another queue's inbox.
    /// The dead-letter forwarder, started with the first dead letter.
    dead_letters: std::sync::OnceLock<mpsc::Sender<(Vec<QueueHandle>, Arc<Message>)>>,
}

/// The task that delivers a queue's dead letters to their target queues, in order.
fn spawn_forwarder() -> mpsc::Sender<(Vec<QueueHandle>, Arc<Message>)> {
    let (tx, mut rx) = mpsc::channel::<(Vec<QueueHandle>, Arc<Message>)>(DEAD_LETTERS);
    tokio::spawn(async move {
        while let Some((targets, msg)) = rx.recv().await {
            for h in targets {
                // A queue deleted meanwhile simply does not take it.
                let _ = h.tx.send(Request::Publish { msg: msg.clone(), confirm: None }).await;
            }
        }
    });
    tx
}

/// How long until `at` (ms since the epoch), and one more millisecond, so that it has passed.
fn until(at: Option<u64>) -> std::time::Duration {
    std::time::Duration::from_millis(at.unwrap_or(0).saturating_sub(now_ms()) + 1)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What to do with a request's reply once its batch is applied.
enum Post {
    Confirm(Option<ConfirmTo>),
    Consume(ConsumerId, oneshot::Sender<Reply>),
    Reply(oneshot::Sender<Reply>),
    /// Answered from the applied state, after the batch (reads stay out of the log).
    Stats(oneshot::Sender<Reply>),
    Nothing,
}

impl Runner {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, mut ctl_rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(BATCH);
        let (mut rx_open, mut ctl_open) = (true, true);
        let mut snapshot_due = false;
        // When the head message (or the queue) expires: the queue proposes `Expire` then.
        let mut next_expiry: Option<u64> = self.store.read(|m| m.next_expiry());
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
                    _ = tokio::time::sleep(until(next_expiry)), if next_expiry.is_some() => {
                        batch.push(Request::Cast { cmd: Command::Expire });
                    }
                    _ = tokio::time::sleep(IDLE_SNAPSHOT), if snapshot_due && (rx_open || ctl_open) => {
                        snapshot_due = false;
                        self.idle_snapshot().await;
                    }
                    else => break,
                }
                if batch.is_empty() {
                    continue;
                }
            }
            self.serve_batch(now_ms(), &mut batch).await;
            snapshot_due = matches!(self.store, Store::Durable(..));
            next_expiry = self.store.read(|m| m.next_expiry());
        }
        self.stop().await;
    }

    /// Proposes a batch of requests, then answers them in order and carries out the effects.
    async fn serve_batch(&mut self, now: u64, batch: &mut Vec<Request>) {
        let mut cmds = Vec::with_capacity(batch.len());
        let mut posts = Vec::with_capacity(batch.len());
        for req in batch.drain(..) {
            match req {
                Request::Publish { msg, confirm } => {
                    cmds.push(Command::Enqueue { msg });
                    posts.push(Post::Confirm(confirm));
                }
                Request::Consume { spec, sink, reply } => {
                    // Register the sink first: the consume itself may dispatch to it.
                    let entry = ConsumerSink {
                        sink,
                        connection: spec.connection,
                        channel: spec.channel,
                        tag: spec.tag.clone(),
                        no_ack: spec.no_ack,
                    };
                    self.sinks.insert(spec.id, entry);
                    posts.push(Post::Consume(spec.id, reply));
                    cmds.push(Command::Consume(spec));
                }
                Request::Call { cmd: Command::Stats, reply } => posts.push(Post::Stats(reply)),
                Request::Call { cmd, reply } => {
                    cmds.push(cmd);
                    posts.push(Post::Reply(reply));
                }
                Request::Cast { cmd } => {
                    if let Command::Cancel { consumer } = &cmd {
                        self.sinks.remove(consumer);
                    }
                    cmds.push(cmd);
                    posts.push(Post::Nothing);
                }
            }
        }
        let results = match self.store.propose(now, cmds).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing was applied: publishers get a nack, callers an error (their reply
                // channel closes), consumers registered for this batch are dropped.
                tracing::error!(queue = %self.key, error = %e, "proposal failed");
                for post in posts {
                    match post {
                        Post::Confirm(Some(c)) => {
                            let _ = c
                                .sink
                                .send(ClientEvent::Confirms { channel: c.channel, seqs: vec![c.seq], ok: false })
                                .await;
                        }
                        Post::Consume(id, _) => {
                            self.sinks.remove(&id);
                        }
                        _ => {}
                    }
                }
                return;
            }
        };
        let mut effects = Vec::new();
        let mut confirms: Vec<(ClientSink, ChannelId, bool, Vec<u64>)> = Vec::new();
        let mut results = results.into_iter();
        for post in posts {
            if let Post::Stats(reply) = post {
                let _ = reply.send(self.store.read(QueueMachine::stats));
                continue;
            }
            let Some((reply, fx)) = results.next() else { break };
            effects.extend(fx);
            match post {
                Post::Confirm(Some(c)) => {
                    // A publish the length limit refused is nacked (`x-overflow` reject-publish).
                    let ok = !matches!(reply, Reply::Rejected);
                    match confirms.last_mut() {
                        Some((s, ch, k, seqs)) if *ch == c.channel && *k == ok && s.same_channel(&c.sink) => {
                            seqs.push(c.seq)
                        }
                        _ => confirms.push((c.sink, c.channel, ok, vec![c.seq])),
                    }
                }
                Post::Consume(id, tx) => {
                    if !matches!(reply, Reply::Consumed) {
                        self.sinks.remove(&id);
                    }
                    let _ = tx.send(reply);
                }
                Post::Reply(tx) => {
                    let _ = tx.send(self.with_body(reply));
                }
                Post::Confirm(None) | Post::Stats(_) | Post::Nothing => {}
            }
        }
        for (sink, channel, ok, seqs) in confirms {
            let _ = sink.send(ClientEvent::Confirms { channel, seqs, ok }).await;
        }
        // Carrying out effects may need follow-up commands (deliveries to a connection that
        // is gone are requeued); loop until quiet.
        while !effects.is_empty() {
            let followups = self.execute(&mut effects).await;
            if followups.is_empty() {
                break;
            }
            match self.store.propose(now, followups).await {
                Ok(results) => effects.extend(results.into_iter().flat_map(|(_, fx)| fx)),
                Err(e) => tracing::error!(queue = %self.key, error = %e, "requeue after a lost delivery failed"),
            }
        }
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
            let deleted = g.read(|m| m.is_deleted());
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

    /// Republishes a message to the queue's dead-letter exchange, with its death recorded.
    async fn dead_letter(&self, msg: &Message, reason: Reason) {
        // The target in force now (a policy may have changed it).
        let Some(target) = self.store.read(|m| m.config().dead_letter.clone()) else { return };
        let (out, keys) = dead_letter::dead_letter(msg, &self.key.name, reason, &target, now_ms() / 1000);
        let targets = (self.hooks.dead_letter)(&self.key.vhost, &out, &keys);
        if !targets.is_empty() {
            let fwd = self.dead_letters.get_or_init(spawn_forwarder);
            let _ = fwd.send((targets, Arc::new(out))).await;
        }
    }

    /// Reads back, in one batch, the bodies the machine did not hold of deliveries (to
    /// consumers still connected) and dead letters.
    fn load_bodies(&self, effects: &[Effect]) -> HashMap<MsgId, Arc<Message>> {
        let ids: Vec<MsgId> = effects
            .iter()
            .filter_map(|fx| match fx {
                Effect::Deliver { consumer, id, msg: None, .. } if self.sinks.contains_key(consumer) => Some(*id),
                Effect::DeadLetter { id, msg: None, .. } => Some(*id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return HashMap::new();
        }
        let msgs = self.store.load(&self.key, &ids);
        ids.into_iter().zip(msgs).filter_map(|(id, m)| Some((id, m?))).collect()
    }

    /// Carries out effects; returns the commands needed for deliveries that could not be made
    /// (the connection is gone): cancel the consumer and requeue its messages.
    async fn execute(&mut self, effects: &mut Vec<Effect>) -> Vec<Command> {
        // Per channel, in dispatch order: two consumers on one channel see strict
        // round-robin on the wire, as RabbitMQ delivers them.
        let mut per_channel: BTreeMap<(ConnectionId, ChannelId), (ClientSink, Vec<(ConsumerId, Delivery)>)> =
            BTreeMap::new();
        let mut lost: Vec<(ConsumerId, Vec<MsgId>)> = Vec::new();
        let mut unreadable = Vec::new();
        let mut loaded = self.load_bodies(effects);
        for fx in effects.drain(..) {
            match fx {
                Effect::Deliver { consumer, id, msg, redelivered, delivery_count } => {
                    let Some(s) = self.sinks.get(&consumer) else {
                        lost.push((consumer, vec![id]));
                        continue;
                    };
                    let Some(msg) = msg.or_else(|| loaded.remove(&id)) else {
                        unreadable.push(id);
                        continue;
                    };
                    let msg = match delivery_count {
                        Some(n) => Arc::new(msg.with_delivery_count(n)),
                        None => msg,
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
                Effect::AutoDelete => (self.hooks.auto_delete)((*self.key).clone()),
                Effect::AckTimeout { consumer, timeout_ms } => {
                    if let Some(s) = self.sinks.get(&consumer) {
                        let _ = s.sink.send(ClientEvent::AckTimeout { channel: s.channel, timeout_ms }).await;
                    }
                }
                Effect::DeadLetter { id, msg, reason } => match msg.or_else(|| loaded.remove(&id)) {
                    Some(msg) => self.dead_letter(&msg, reason).await,
                    None => tracing::error!(queue = %self.key, id = id.0, "a dead letter's body is gone; dropped"),
                },
            }
        }
        let me = match (self.me.0.upgrade(), self.me.1.upgrade()) {
            (Some(tx), Some(ctl)) => Some(QueueHandle { key: self.key.clone(), tx, ctl, stats: self.stats.clone() }),
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
        let mut followups = Vec::new();
        if !unreadable.is_empty() {
            // Storage lost them (logged by `load`): drop them rather than retry forever.
            followups.push(Command::Settle { ids: unreadable, outcome: Outcome::Discard });
        }
        for (consumer, ids) in lost {
            self.sinks.remove(&consumer);
            followups.push(Command::Cancel { consumer });
            followups.push(Command::Settle { ids, outcome: Outcome::Requeue });
        }
        followups
    }
}

/// Confirms buffered while forwarding with [`forward_confirmed`].
const FORWARD_CONFIRMS: usize = 1024;

/// Hands each message to its queues with a confirm request and returns once every queue has
/// confirmed (or refused, or gone away). A delay store forgets a message only after that;
/// the management API's publish answers only then.
pub async fn forward_confirmed(items: Vec<(Vec<QueueHandle>, Arc<Message>)>) {
    if items.is_empty() {
        return;
    }
    let (sink, mut confirms) = mpsc::channel::<ClientEvent>(FORWARD_CONFIRMS);
    let mut seq = 0;
    for (targets, msg) in items {
        for h in targets {
            seq += 1;
            let confirm = Some(ConfirmTo { sink: sink.clone(), channel: ChannelId(0), seq });
            let send = h.tx.send(Request::Publish { msg: msg.clone(), confirm });
            tokio::pin!(send);
            // Drain confirms while waiting for room, so a queue blocked on our confirm
            // channel never waits on us while we wait on its inbox.
            loop {
                tokio::select! {
                    _ = &mut send => break,
                    Some(_) = confirms.recv() => {}
                }
            }
        }
    }
    // Every pending confirm holds a sender; once all are answered or dropped, this ends.
    drop(sink);
    while confirms.recv().await.is_some() {}
}
