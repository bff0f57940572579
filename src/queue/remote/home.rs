//! The home side of remote queues: one session per stream another node opened, feeding its
//! requests to this node's queue runners and sending their answers and events back down.
//!
//! A runner cannot tell a remote connection from a local one: each origin connection gets a
//! sink here whose events are encoded onto the stream, and confirms come to one sink per
//! session, keyed by the origin's request ids. The session remembers which consumers it
//! registered and which messages it handed out unacked, so that when the stream ends (the
//! origin node died or was cut off) it cancels those consumers and requeues those messages,
//! as a closing channel does (RabbitMQ requeues a dead node's consumers' messages the same
//! way). A replicated queue's consumers are detached instead of cancelled (`Command::Detach`):
//! their node may attach them again, to this leader or the next.

use super::frame::{Down, Up, UpOp};
use crate::broker::{Error, ReplyCode};
use crate::ids::{ChannelId, ConnectionId, ConsumerId, MsgId, QueueKey};
use crate::queue::event::{ClientEvent, ClientSink};
use crate::queue::handle::{ConfirmTo, QueueHandle, Request};
use crate::queue::machine::{Command, Holder, Outcome, Reply};
use crate::raft::transport::{Acceptor, Duplex, NodeId};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};

/// Events buffered per origin connection before its queues wait (back-pressure).
const EVENTS: usize = 256;

/// Finds the queue this node is home to by key: its runner, and whether it is replicated
/// (this node's member of it, which serves only while it leads).
pub type Resolve = Arc<dyn Fn(&QueueKey) -> Option<(QueueHandle, bool)> + Send + Sync>;

/// The nodes this node finds down (`None`: it never finds any, as in tests).
pub type PeersDown = Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>>;

/// Takes the streams other nodes open and serves each in a session.
pub fn acceptor(resolve: Resolve, down: PeersDown) -> Acceptor {
    Arc::new(move |from: NodeId, d: Duplex| {
        tokio::spawn(session(from, d, resolve.clone(), down.clone()));
    })
}

/// Resolves once `from` is found down after it was seen up (`seen_up`: a node that has just
/// come back may open its link before this node noticed it; never without a watch).
async fn found_down(down: &mut PeersDown, from: NodeId, seen_up: &mut bool) {
    let Some(rx) = down else { return std::future::pending().await };
    if !*seen_up {
        if rx.wait_for(|d| !d.contains(&from)).await.is_err() {
            return std::future::pending().await;
        }
        *seen_up = true;
    }
    if rx.wait_for(|d| d.contains(&from)).await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct Consumer {
    key: QueueKey,
    conn: ConnectionId,
    channel: ChannelId,
    tag: Arc<str>,
}

/// What this session's origin holds of this node's queues.
#[derive(Default)]
struct Held {
    consumers: HashMap<ConsumerId, Consumer>,
    unacked: HashMap<QueueKey, HashSet<MsgId>>,
    /// The stream ended and what was held went back: anything handed out later goes back too.
    closed: bool,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Held>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The queues whose gates this session told its origin are closed (`queue::flow`), and the
/// waits for each to open again: the origin's connections publishing into them are held there
/// as this node's are.
#[derive(Default)]
struct Flows {
    told: HashSet<QueueKey>,
    opening: FuturesUnordered<BoxFuture<'static, QueueKey>>,
}

impl Flows {
    /// After a publish into `h`: tells the origin once its gate is closed (once until it opens).
    async fn published(&mut self, key: &QueueKey, h: &QueueHandle, down: &mpsc::Sender<Bytes>) {
        if !h.flow.is_closed() || self.told.contains(key) {
            return;
        }
        self.told.insert(key.clone());
        let _ = down.send(Down::Flow { key: key.clone(), closed: true }.encode()).await;
        let (gate, key) = (h.flow.clone(), key.clone());
        self.opening.push(Box::pin(async move {
            gate.opened().await;
            key
        }));
    }
}

fn not_found(key: &QueueKey) -> Reply {
    Reply::Refused(Error::new(ReplyCode::NotFound, format!("no queue '{}' in vhost '{}'", key.name, key.vhost)))
}

async fn session(from: NodeId, d: Duplex, resolve: Resolve, mut peers_down: PeersDown) {
    tracing::debug!(peer = from, "remote-queue link opened");
    let Duplex { tx: down, mut rx } = d;
    let held = Shared::default();
    let confirms = confirm_sink(down.clone());
    let mut sinks: HashMap<ConnectionId, ClientSink> = HashMap::new();
    let mut seen_up = false;
    let mut flows = Flows::default();
    loop {
        // A session ends as soon as its origin is found down (cut off, frozen): what it sent
        // before and the network delivers only once it heals (a delayed store's release
        // from a deposed leader) must not be acted on late; the origin takes its link for
        // broken and sends again, to whichever node leads by then.
        let frame = tokio::select! {
            f = rx.recv() => f,
            Some(key) = flows.opening.next(), if !flows.opening.is_empty() => {
                flows.told.remove(&key);
                let _ = down.send(Down::Flow { key, closed: false }.encode()).await;
                continue;
            }
            () = found_down(&mut peers_down, from, &mut seen_up) => {
                tracing::debug!(peer = from, "remote-queue link's origin found down: session ended");
                None
            }
        };
        let Some(frame) = frame else { break };
        let up = match Up::decode(frame) {
            Ok(up) => up,
            Err(e) => {
                tracing::warn!(peer = from, error = %e, "unreadable remote-queue frame: link closed");
                break;
            }
        };
        serve(up, &resolve, &down, &held, &confirms, &mut sinks, &mut flows).await;
    }
    drop(sinks);
    // The origin is gone: what it held goes back, as when its channels close.
    let (consumers, unacked) = {
        let mut h = held.lock();
        h.closed = true;
        (std::mem::take(&mut h.consumers), std::mem::take(&mut h.unacked))
    };
    tracing::debug!(peer = from, consumers = consumers.len(), "remote-queue link closed");
    let mut detach: HashMap<QueueKey, Vec<ConsumerId>> = HashMap::new();
    for (consumer, c) in consumers {
        match resolve(&c.key) {
            Some((_, true)) => detach.entry(c.key).or_default().push(consumer),
            Some((h, false)) => {
                let _ = h.ctl.send(Request::Cast { cmd: Command::Cancel { consumer } }).await;
            }
            None => {}
        }
    }
    for (key, consumers) in detach {
        if let Some((h, _)) = resolve(&key) {
            let _ = h.ctl.send(Request::Cast { cmd: Command::Detach { consumers } }).await;
        }
    }
    for (key, ids) in unacked {
        if let (Some((h, _)), false) = (resolve(&key), ids.is_empty()) {
            let cmd = Command::Settle { ids: ids.into_iter().collect(), outcome: Outcome::Requeue };
            let _ = h.ctl.send(Request::Cast { cmd }).await;
        }
    }
}

/// Hands one request to its queue.
async fn serve(
    up: Up,
    resolve: &Resolve,
    down: &mpsc::Sender<Bytes>,
    held: &Shared,
    confirms: &ClientSink,
    sinks: &mut HashMap<ConnectionId, ClientSink>,
    flows: &mut Flows,
) {
    let Up { key, op, cmd } = up;
    let resolved = resolve(&key);
    let replicated = resolved.as_ref().is_some_and(|(_, r)| *r);
    let handle = resolved.map(|(h, _)| h);
    match (op, cmd) {
        (UpOp::Publish { confirm }, Command::Enqueue { msg }) => {
            let confirm_to = confirm.map(|seq| ConfirmTo { sink: confirms.clone(), channel: ChannelId(0), seq });
            let sent = match &handle {
                Some(h) => {
                    let sent = h.tx.send(Request::Publish { msg, confirm: confirm_to }).await.is_ok();
                    flows.published(&key, h, down).await;
                    sent
                }
                None => false,
            };
            // Unknown here (deleted meanwhile, or not yet known): not taken. The origin decides
            // (a proxy's publisher is confirmed, as for a deleted local queue; a front sends it
            // to the leader again).
            if let (false, Some(req)) = (sent, confirm) {
                let _ = down.send(Down::NotTaken { reqs: vec![req] }.encode()).await;
            }
        }
        (op @ (UpOp::Consume { .. } | UpOp::Attach { .. }), Command::Consume(spec)) => {
            let (req, attach) = match op {
                UpOp::Attach { req } => (req, true),
                UpOp::Consume { req } => (req, false),
                _ => return,
            };
            let Some(h) = handle else {
                let _ = down.send(Down::Reply { req, reply: not_found(&key) }.encode()).await;
                return;
            };
            let sink = sinks
                .entry(spec.connection)
                .or_insert_with(|| events_sink(spec.connection, down.clone(), held.clone()));
            let id = spec.id;
            // Remembered before it is made, so that a stream ending meanwhile still cancels it.
            let c = Consumer { key: key.clone(), conn: spec.connection, channel: spec.channel, tag: spec.tag.clone() };
            held.lock().consumers.insert(id, c);
            let (tx, rx) = oneshot::channel();
            let request = if attach {
                Request::Attach { spec, sink: sink.clone(), reply: tx }
            } else {
                Request::Consume { spec, sink: sink.clone(), reply: tx }
            };
            if h.tx.send(request).await.is_err() {
                held.lock().consumers.remove(&id);
                let _ = down.send(Down::Reply { req, reply: not_found(&key) }.encode()).await;
                return;
            }
            let (down, held) = (down.clone(), held.clone());
            tokio::spawn(async move {
                let reply = rx.await.unwrap_or_else(|_| not_found(&key));
                let taken = match &reply {
                    Reply::Consumed => true,
                    Reply::Attached(missing) => !missing.contains(&id),
                    _ => false,
                };
                let late = {
                    let mut held = held.lock();
                    if !taken {
                        held.consumers.remove(&id);
                    }
                    held.closed && taken
                };
                if late {
                    // The origin went meanwhile: as if it had gone just after.
                    let cmd = if replicated {
                        Command::Detach { consumers: vec![id] }
                    } else {
                        Command::Cancel { consumer: id }
                    };
                    let _ = h.ctl.send(Request::Cast { cmd }).await;
                    return;
                }
                let _ = down.send(Down::Reply { req, reply }.encode()).await;
            });
        }
        (UpOp::Call { req }, cmd) => {
            let acked_get = matches!(cmd, Command::Get { holder: Holder::Get(..), no_ack: false });
            let (tx, rx) = oneshot::channel();
            let sent = match &handle {
                Some(h) => h.tx.send(Request::Call { cmd, reply: tx }).await.is_ok(),
                None => false,
            };
            if !sent {
                let _ = down.send(Down::Reply { req, reply: not_found(&key) }.encode()).await;
                return;
            }
            let (down, held, h) = (down.clone(), held.clone(), handle);
            tokio::spawn(async move {
                let reply = rx.await.unwrap_or_else(|_| not_found(&key));
                if let (true, Reply::Got(Some(g))) = (acked_get, &reply) {
                    let id = g.id;
                    if !hold(&held, &key, vec![id]) {
                        give_back(h.as_ref(), vec![id]).await;
                    } else if down.send(Down::Reply { req, reply }.encode()).await.is_err() {
                        give_back(h.as_ref(), release(&held, &key, vec![id])).await;
                    }
                    return;
                }
                let _ = down.send(Down::Reply { req, reply }.encode()).await;
            });
        }
        (UpOp::Cast, cmd) => {
            match &cmd {
                Command::Settle { ids, .. } => {
                    if let Some(set) = held.lock().unacked.get_mut(&key) {
                        for id in ids {
                            set.remove(id);
                        }
                    }
                }
                Command::Cancel { consumer } => {
                    let mut held = held.lock();
                    if let Some(c) = held.consumers.remove(consumer) {
                        // The connection's sink goes with its last consumer.
                        if !held.consumers.values().any(|o| o.conn == c.conn) {
                            sinks.remove(&c.conn);
                        }
                    }
                }
                _ => {}
            }
            if let Some(h) = handle {
                let req = Request::Cast { cmd };
                let _ = h.inbox_for(&req).send(req).await;
            }
        }
        (op, cmd) => tracing::warn!(?op, ?cmd, "a remote-queue request that makes no sense: ignored"),
    }
}

/// Notes messages handed out to the origin; false once the session is over (then they must
/// go back at once).
fn hold(held: &Shared, key: &QueueKey, ids: Vec<MsgId>) -> bool {
    let mut held = held.lock();
    if held.closed {
        return false;
    }
    if !ids.is_empty() {
        held.unacked.entry(key.clone()).or_default().extend(ids);
    }
    true
}

/// Forgets messages noted by [`hold`] that did not reach the origin; returns those still
/// noted (the others went back with the session's end).
fn release(held: &Shared, key: &QueueKey, ids: Vec<MsgId>) -> Vec<MsgId> {
    let mut held = held.lock();
    match held.unacked.get_mut(key) {
        Some(set) => ids.into_iter().filter(|id| set.remove(id)).collect(),
        None => Vec::new(),
    }
}

/// Requeues messages that never reached the origin.
async fn give_back(queue: Option<&QueueHandle>, ids: Vec<MsgId>) {
    if let (Some(q), false) = (queue, ids.is_empty()) {
        let _ = q.ctl.send(Request::Cast { cmd: Command::Settle { ids, outcome: Outcome::Requeue } }).await;
    }
}

/// The sink confirms of this session's publishes go to (their sequence numbers are the
/// origin's request ids).
fn confirm_sink(down: mpsc::Sender<Bytes>) -> ClientSink {
    let (tx, mut rx) = mpsc::channel::<ClientEvent>(EVENTS);
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let frame = match ev {
                ClientEvent::Confirms { seqs, ok, .. } => Down::Confirms { reqs: seqs, ok },
                ClientEvent::NotTaken { seqs, .. } => Down::NotTaken { reqs: seqs },
                _ => continue,
            };
            if down.send(frame.encode()).await.is_err() {
                break;
            }
        }
    });
    tx
}

/// The sink of one origin connection: its events, encoded onto the stream. Once the stream
/// is gone the sink closes (at once, not at its next event: a new leader re-attaches only
/// consumers whose sinks are open), so its queues treat further deliveries as lost.
fn events_sink(conn: ConnectionId, down: mpsc::Sender<Bytes>, held: Shared) -> ClientSink {
    let (tx, mut rx) = mpsc::channel::<ClientEvent>(EVENTS);
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
                _ = down.closed() => break,
            };
            let frame = match ev {
                ClientEvent::Deliveries { channel, queue, items } => {
                    let key = (*queue.key).clone();
                    let unacked: Vec<MsgId> = items.iter().filter(|d| !d.no_ack).map(|d| d.id).collect();
                    let frame = Down::Deliveries { conn, channel, key: key.clone(), items }.encode();
                    if !hold(&held, &key, unacked.clone()) {
                        give_back(Some(&queue), unacked).await;
                        break;
                    }
                    if down.send(frame).await.is_err() {
                        give_back(Some(&queue), release(&held, &key, unacked)).await;
                        break;
                    }
                    continue;
                }
                ClientEvent::ConsumerCancelled { channel, consumer_tag } => {
                    held.lock()
                        .consumers
                        .retain(|_, c| !(c.conn == conn && c.channel == channel && c.tag == consumer_tag));
                    Down::Cancelled { conn, channel, tag: consumer_tag }
                }
                ClientEvent::AckTimeout { channel, timeout_ms } => Down::AckTimeout { conn, channel, timeout_ms },
                ClientEvent::Confirms { .. } | ClientEvent::NotTaken { .. } | ClientEvent::DirectReply { .. } => {
                    continue;
                }
            };
            if down.send(frame.encode()).await.is_err() {
                break;
            }
        }
    });
    tx
}
