//! One link to one node: a stream over the cluster transport carrying every proxied (or
//! fronted) queue's requests up and their answers and events down (`origin.rs` makes them).
//! It remembers what waits for an answer (replies, confirms, consume-oks) and which
//! connection each remote consumer belongs to, so deliveries and cancels reach the right sink
//! and a settle goes back through the proxy's own handle; and breaks as soon as its node is
//! found down, failing what waits (a front gets back what may be made again).

use super::frame::{Down, Up, UpOp};
use super::front::{FrontEvent, FrontTx};
use super::origin::{NameOf, ToLink};
use crate::broker::{Error, ReplyCode};
use crate::ids::{ChannelId, ConnectionId, ConsumerId, QueueKey};
use crate::queue::event::{ClientEvent, ClientSink};
use crate::queue::handle::{ConfirmTo, Request, WeakQueueHandle};
use crate::queue::machine::{Command, ConsumerSpec, Outcome, Reply};
use crate::raft::transport::{Duplex, NodeId, Transport};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// After a failed attempt to reach a home node, requests fail at once for this long instead
/// of each trying again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

enum Pending {
    /// A call, and the command if it may be made again elsewhere (it changes nothing).
    Reply(Arc<QueueKey>, oneshot::Sender<Reply>, Option<Command>),
    /// A consume or attach, with what it takes to make it again elsewhere.
    Consume(Arc<QueueKey>, oneshot::Sender<Reply>, ConsumerId, Option<(ConsumerSpec, ClientSink, bool)>),
    /// A publish waiting for its confirm; a front's keeps its message (the queue and it), to
    /// send it again when the node it went to did not take it.
    Confirm(ConfirmTo, Option<(Arc<QueueKey>, Arc<crate::queue::Message>)>),
}

struct Consumer {
    conn: ConnectionId,
    channel: ChannelId,
    tag: Arc<str>,
    /// A front's consumer (a replicated queue's): not cancelled when the link breaks.
    front: bool,
}

/// One link to one home node.
pub(super) struct Link {
    home: NodeId,
    transport: Arc<dyn Transport>,
    name_of: NameOf,
    stream: Option<Duplex>,
    /// When reaching the home last failed.
    failed_at: Option<Instant>,
    next_req: u64,
    pending: HashMap<u64, Pending>,
    consumers: HashMap<ConsumerId, Consumer>,
    by_tag: HashMap<(ConnectionId, ChannelId, Arc<str>), ConsumerId>,
    sinks: HashMap<ConnectionId, ClientSink>,
    queues: HashMap<QueueKey, (WeakQueueHandle, Option<FrontTx>)>,
    /// Frames to send before the next request (settles of deliveries that found no sink).
    backlog: VecDeque<Bytes>,
    /// Queues whose gates this link closed, mirroring their home's (`queue::flow`).
    held: HashSet<QueueKey>,
    /// The nodes this node finds down: a link to one of them is broken at once (a paused or
    /// cut-off node keeps its TCP connections open, and writes to them just wait).
    down: tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>,
}

/// Resolves when `home` is among the nodes found down.
async fn gone(down: &mut tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>, home: NodeId) {
    if down.wait_for(|d| d.contains(&home)).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The next frame from the home, or never while there is no stream.
async fn next_down(stream: &mut Option<Duplex>) -> Option<Bytes> {
    match stream {
        Some(d) => d.rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Link {
    pub(super) fn new(
        home: NodeId,
        transport: Arc<dyn Transport>,
        name_of: NameOf,
        down: tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>,
    ) -> Self {
        Self {
            down,
            home,
            transport,
            name_of,
            stream: None,
            failed_at: None,
            next_req: 0,
            pending: HashMap::new(),
            consumers: HashMap::new(),
            by_tag: HashMap::new(),
            sinks: HashMap::new(),
            queues: HashMap::new(),
            backlog: VecDeque::new(),
            held: HashSet::new(),
        }
    }

    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<ToLink>) {
        let mut down = self.down.clone();
        loop {
            while let Some(frame) = self.backlog.pop_front() {
                self.send(frame).await;
            }
            let open = self.stream.is_some();
            tokio::select! {
                m = inbox.recv() => match m {
                    Some(m) => self.up(m).await,
                    None => break,
                },
                f = next_down(&mut self.stream) => match f {
                    Some(f) => self.down(f).await,
                    None => self.broken("the home node closed the link").await,
                },
                _ = gone(&mut down, self.home), if open => self.broken("the node is down").await,
            }
        }
    }

    fn unavailable(&self, key: &QueueKey) -> Reply {
        Reply::Refused(Error::new(
            ReplyCode::NotFound,
            format!(
                "home node '{}' of queue '{}' in vhost '{}' is down or inaccessible",
                (self.name_of)(self.home),
                key.name,
                key.vhost
            ),
        ))
    }

    /// Takes a proxy's request: notes what waits for an answer, then sends it up.
    async fn up(&mut self, m: ToLink) {
        let ToLink { queue, front, req } = m;
        let key = queue.key.clone();
        let of_front = front.is_some();
        self.queues.entry((*key).clone()).or_insert((queue, front.clone()));
        if !self.connect().await {
            // A front finds the queue's leader elsewhere; a proxy's caller is told.
            return match front {
                Some(f) => f.tell(FrontEvent::Bounced(self.home, req)),
                None => self.refuse(key, req).await,
            };
        }
        let (op, cmd) = match req {
            Request::Publish { msg, confirm } => {
                let keep = of_front.then(|| (key.clone(), msg.clone()));
                let confirm = confirm.map(|c| self.wait(Pending::Confirm(c, keep)));
                (UpOp::Publish { confirm }, Command::Enqueue { msg })
            }
            Request::Consume { spec, sink, reply } => {
                let req = self.note_consumer(&spec, sink, reply, of_front, false, &key);
                (UpOp::Consume { req }, Command::Consume(spec))
            }
            Request::Attach { spec, sink, reply } => {
                let req = self.note_consumer(&spec, sink, reply, of_front, true, &key);
                (UpOp::Attach { req }, Command::Consume(spec))
            }
            Request::Call { cmd, reply } => {
                // A front may ask again elsewhere what changes nothing.
                let again = (of_front && matches!(cmd, Command::Stats)).then(|| cmd.clone());
                (UpOp::Call { req: self.wait(Pending::Reply(key.clone(), reply, again)) }, cmd)
            }
            Request::Cast { cmd } => {
                if let Command::Cancel { consumer } = &cmd {
                    self.forget(*consumer);
                }
                (UpOp::Cast, cmd)
            }
        };
        self.send(Up { key: (*key).clone(), op, cmd }.encode()).await;
    }

    /// Notes a consumer going up (its deliveries come down to `sink`); returns the id of the
    /// request its answer comes with.
    fn note_consumer(
        &mut self,
        spec: &ConsumerSpec,
        sink: ClientSink,
        reply: oneshot::Sender<Reply>,
        front: bool,
        attach: bool,
        key: &Arc<QueueKey>,
    ) -> u64 {
        let c = Consumer { conn: spec.connection, channel: spec.channel, tag: spec.tag.clone(), front };
        self.by_tag.insert((c.conn, c.channel, c.tag.clone()), spec.id);
        self.consumers.insert(spec.id, c);
        self.sinks.insert(spec.connection, sink.clone());
        // A front's consume may be made again at the next leader (a consume is idempotent).
        let again = front.then(|| (spec.clone(), sink, attach));
        self.wait(Pending::Consume(key.clone(), reply, spec.id, again))
    }

    fn wait(&mut self, p: Pending) -> u64 {
        self.next_req += 1;
        self.pending.insert(self.next_req, p);
        self.next_req
    }

    fn forget(&mut self, consumer: ConsumerId) {
        if let Some(c) = self.consumers.remove(&consumer) {
            self.by_tag.remove(&(c.conn, c.channel, c.tag));
            if !self.consumers.values().any(|o| o.conn == c.conn) {
                self.sinks.remove(&c.conn);
            }
        }
    }

    /// Opens the stream if there is none; false if the home cannot be reached.
    async fn connect(&mut self) -> bool {
        if self.stream.is_some() {
            return true;
        }
        if self.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) || self.down.borrow().contains(&self.home) {
            return false;
        }
        // A node that is cut off or paused does not answer: given up once it is found down.
        let mut down = self.down.clone();
        let opened = tokio::select! {
            r = self.transport.open(self.home) => r,
            _ = gone(&mut down, self.home) => Err(crate::raft::transport::TransportError::Unreachable {
                node: self.home,
                reason: "the node is down".into(),
            }),
        };
        match opened {
            Ok(d) => {
                tracing::debug!(home = self.home, "remote-queue link opened");
                self.stream = Some(d);
                self.failed_at = None;
                true
            }
            Err(e) => {
                tracing::warn!(home = self.home, error = %e, "cannot reach a queue's home node");
                self.failed_at = Some(Instant::now());
                false
            }
        }
    }

    /// Answers a request that cannot go up.
    async fn refuse(&mut self, key: Arc<QueueKey>, req: Request) {
        match req {
            Request::Publish { confirm: Some(c), .. } => nack(c).await,
            Request::Consume { reply, .. } | Request::Call { reply, .. } | Request::Attach { reply, .. } => {
                let _ = reply.send(self.unavailable(&key));
            }
            Request::Publish { confirm: None, .. } | Request::Cast { .. } => {}
        }
    }

    /// Sends a frame up, taking frames coming down meanwhile (the home may be waiting for
    /// room to send them before it reads more).
    async fn send(&mut self, frame: Bytes) {
        let Some(tx) = self.stream.as_ref().map(|d| d.tx.clone()) else { return };
        let send = tx.send(frame);
        tokio::pin!(send);
        let mut down = self.down.clone();
        loop {
            tokio::select! {
                _ = gone(&mut down, self.home) => {
                    self.broken("the node is down").await;
                    return;
                }
                r = &mut send => {
                    if r.is_err() {
                        self.broken("the link to the home node broke").await;
                    }
                    return;
                }
                f = next_down(&mut self.stream) => match f {
                    Some(f) => self.down(f).await,
                    None => {
                        self.broken("the home node closed the link").await;
                        return;
                    }
                },
            }
        }
    }

    /// Takes a frame from the home.
    async fn down(&mut self, frame: Bytes) {
        let down = match Down::decode(frame) {
            Ok(d) => d,
            Err(e) => return self.broken(&format!("unreadable frame from the home node: {e}")).await,
        };
        match down {
            Down::Reply { req, reply } => match self.pending.remove(&req) {
                Some(Pending::Reply(_, tx, _)) => {
                    let _ = tx.send(reply);
                }
                Some(Pending::Consume(_, tx, id, _)) => {
                    let gone = match &reply {
                        Reply::Consumed => false,
                        Reply::Attached(missing) => missing.contains(&id),
                        _ => true,
                    };
                    if gone {
                        self.forget(id);
                    }
                    let _ = tx.send(reply);
                }
                Some(p @ Pending::Confirm(..)) => {
                    self.pending.insert(req, p);
                }
                None => {}
            },
            Down::Confirms { reqs, ok } => {
                let mut groups: Vec<(ClientSink, ChannelId, Vec<u64>)> = Vec::new();
                for req in reqs {
                    let Some(Pending::Confirm(c, _)) = self.pending.remove(&req) else { continue };
                    match groups.last_mut() {
                        Some((s, ch, seqs)) if *ch == c.channel && s.same_channel(&c.sink) => seqs.push(c.seq),
                        _ => groups.push((c.sink, c.channel, vec![c.seq])),
                    }
                }
                for (sink, channel, seqs) in groups {
                    let _ = sink.send(ClientEvent::Confirms { channel, seqs, ok }).await;
                }
            }
            Down::NotTaken { reqs } => {
                for req in reqs {
                    match self.pending.remove(&req) {
                        // A front's: to the leader, wherever it is by now.
                        Some(Pending::Confirm(confirm, Some((key, msg)))) => match self.queues.get(&*key) {
                            Some((_, Some(f))) => {
                                f.tell(FrontEvent::Bounced(self.home, Request::Publish { msg, confirm: Some(confirm) }))
                            }
                            _ => nack(confirm).await,
                        },
                        // A proxy's: the home has no such queue (deleted meanwhile): dropped,
                        // confirmed, as a publish to a deleted local queue.
                        Some(Pending::Confirm(c, None)) => {
                            let _ = c
                                .sink
                                .send(ClientEvent::Confirms { channel: c.channel, seqs: vec![c.seq], ok: true })
                                .await;
                        }
                        Some(other) => {
                            self.pending.insert(req, other);
                        }
                        None => {}
                    }
                }
            }
            Down::Deliveries { conn, channel, key, items } => {
                if let Some((_, Some(f))) = self.queues.get(&key) {
                    if !f.leads(self.home) {
                        // Given back to where they came from: a no-op at a deposed leader (its
                        // successor gave them back already); if the front only lost sight of
                        // the leader for a moment, they come again.
                        tracing::debug!(queue = %key, node = self.home, "deliveries from a node not taken for the leader dropped");
                        let ids: Vec<_> = items.iter().filter(|d| !d.no_ack).map(|d| d.id).collect();
                        if !ids.is_empty() {
                            let cmd = Command::Settle { ids, outcome: Outcome::Requeue };
                            self.backlog.push_back(Up { key: key.clone(), op: UpOp::Cast, cmd }.encode());
                        }
                        return;
                    }
                }
                let queue = self.queues.get(&key).and_then(|(q, _)| q.upgrade());
                let sink = self.sinks.get(&conn).cloned();
                let lost: Vec<(Arc<str>, crate::ids::MsgId, bool)> =
                    items.iter().map(|d| (d.consumer_tag.clone(), d.id, d.no_ack)).collect();
                let delivered = match (queue, sink) {
                    (Some(queue), Some(sink)) => {
                        sink.send(ClientEvent::Deliveries { channel, queue, items }).await.is_ok()
                    }
                    _ => false,
                };
                if !delivered {
                    self.lost(conn, channel, &key, lost);
                }
            }
            Down::Cancelled { conn, channel, tag } => {
                if let Some(id) = self.by_tag.get(&(conn, channel, tag.clone())).copied() {
                    self.forget(id);
                }
                if let Some(sink) = self.sinks.get(&conn) {
                    let _ = sink.send(ClientEvent::ConsumerCancelled { channel, consumer_tag: tag }).await;
                }
            }
            Down::AckTimeout { conn, channel, timeout_ms } => {
                if let Some(sink) = self.sinks.get(&conn) {
                    let _ = sink.send(ClientEvent::AckTimeout { channel, timeout_ms }).await;
                }
            }
            Down::Flow { key, closed } => {
                if let Some((q, _)) = self.queues.get(&key) {
                    tracing::debug!(queue = %key, home = self.home, closed, "queue flow mirrored");
                    q.flow.set(closed);
                    if closed {
                        self.held.insert(key);
                    } else {
                        self.held.remove(&key);
                    }
                }
            }
        }
    }

    /// Deliveries whose connection is gone: cancel their consumers and requeue the messages.
    fn lost(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        key: &QueueKey,
        items: Vec<(Arc<str>, crate::ids::MsgId, bool)>,
    ) {
        let mut ids = Vec::new();
        for (tag, id, no_ack) in items {
            if let Some(consumer) = self.by_tag.get(&(conn, channel, tag)).copied() {
                self.forget(consumer);
                self.backlog
                    .push_back(Up { key: key.clone(), op: UpOp::Cast, cmd: Command::Cancel { consumer } }.encode());
            }
            if !no_ack {
                ids.push(id);
            }
        }
        if !ids.is_empty() {
            let cmd = Command::Settle { ids, outcome: Outcome::Requeue };
            self.backlog.push_back(Up { key: key.clone(), op: UpOp::Cast, cmd }.encode());
        }
    }

    /// The stream is gone: fail what waits and cancel the consumers of proxied queues (the
    /// home requeues what they held); fronts are told instead (they attach their consumers to
    /// the queue's next leader). The next request opens a new stream.
    async fn broken(&mut self, why: &str) {
        tracing::warn!(home = self.home, reason = why, consumers = self.consumers.len(), "remote-queue link lost");
        self.stream = None;
        self.backlog.clear();
        // Nobody tells this side any more when the queues there let their publishers go.
        for key in std::mem::take(&mut self.held) {
            if let Some((q, _)) = self.queues.get(&key) {
                q.flow.set(false);
            }
        }
        let fronts: HashMap<QueueKey, FrontTx> =
            self.queues.iter().filter_map(|(k, (_, f))| Some((k.clone(), f.clone()?))).collect();
        for (_, p) in std::mem::take(&mut self.pending) {
            // What changes nothing (or may be made twice) goes back to its front, to go to the
            // next leader; the rest fails (it may or may not have been done).
            match p {
                Pending::Consume(key, reply, _, Some((spec, sink, attach))) if fronts.contains_key(&*key) => {
                    let req = if attach {
                        Request::Attach { spec, sink, reply }
                    } else {
                        Request::Consume { spec, sink, reply }
                    };
                    fronts[&*key].tell(FrontEvent::Bounced(self.home, req));
                }
                Pending::Reply(key, reply, Some(cmd)) if fronts.contains_key(&*key) => {
                    fronts[&*key].tell(FrontEvent::Bounced(self.home, Request::Call { cmd, reply }));
                }
                Pending::Reply(key, tx, _) | Pending::Consume(key, tx, _, _) => {
                    let _ = tx.send(self.unavailable(&key));
                }
                Pending::Confirm(c, _) => nack(c).await,
            }
        }
        self.by_tag.clear();
        let sinks = std::mem::take(&mut self.sinks);
        let consumers = std::mem::take(&mut self.consumers);
        for f in fronts.values() {
            f.tell(FrontEvent::LinkLost(self.home));
        }
        for (_, c) in consumers {
            if c.front {
                continue;
            }
            if let Some(sink) = sinks.get(&c.conn) {
                let _ = sink.send(ClientEvent::ConsumerCancelled { channel: c.channel, consumer_tag: c.tag }).await;
            }
        }
    }
}

async fn nack(c: ConfirmTo) {
    let _ = c.sink.send(ClientEvent::Confirms { channel: c.channel, seqs: vec![c.seq], ok: false }).await;
}
