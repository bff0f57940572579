//! One client connection: the task that reads frames, runs the handshake's aftermath, the main
//! loop (socket, inbox, heartbeats, alarms, shutdown) and the frame dispatch with RabbitMQ's
//! soft/hard error split. Talking to queues is in `queue_io`, queue events in `events`.
//!
//! When a queue's inbox is full the task stops reading its socket: back-pressure, not buffering.

use super::channel::{Channel, ChannelState};
use super::closing::{await_close_ok, send_connection_close};
use super::error::{AmqpError, Result};
use super::frame::{self, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, RawFrame};
use super::handshake::{ClientCaps, Handshake, Refusal};
use super::out::Out;
use crate::broker::ReplyCode;
use crate::ids::{ChannelId, ConnectionId, MsgId};
use crate::node::Node;
use crate::node::clients::{ConnState, Control, Io, Registered, Registration};
use crate::queue::flow::FlowGate;
use crate::queue::machine::Outcome;
use crate::queue::{ClientEvent, ClientSink, QueueHandle};
use crate::stats::Tally;
use amq_protocol::protocol::{AMQPClass, access, basic, channel, connection};
use bytes::BytesMut;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

/// Capacity of a connection's inbox (deliveries and confirms from queues).
const INBOX: usize = 1024;
const READ_CHUNK: usize = 64 * 1024;

pub(super) struct Connection {
    pub node: Arc<Node>,
    pub id: ConnectionId,
    pub user: String,
    pub vhost: String,
    pub caps: ClientCaps,
    pub frame_max: u32,
    pub channel_max: u16,
    pub out: Out,
    pub sink: ClientSink,
    pub(super) inbox: mpsc::Receiver<ClientEvent>,
    /// Events that arrived while the task waited on a queue; handled before reading more.
    pub(super) deferred: VecDeque<ClientEvent>,
    pub channels: HashMap<u16, Channel>,
    /// Channels whose close crossed ours: we answered the client's `channel.close` and the
    /// client still owes `close-ok` for ours. That late `close-ok` is ignored (RabbitMQ's
    /// reader does the same), never taken for a frame on an unopened channel.
    crossed_closes: HashSet<u16>,
    /// Settles to send to queues, merged per queue and outcome; sent after each batch.
    pub(super) settles: Vec<(QueueHandle, Outcome, Vec<MsgId>)>,
    /// This connection has published: resource alarms hold its reads.
    pub has_published: bool,
    /// We sent `connection.blocked` and owe `connection.unblocked`.
    blocked: bool,
    /// Gates of queues this connection published into while they held publishers: its reads
    /// wait until every one is open (`queue::flow`).
    pub(super) held_by: Vec<Arc<FlowGate>>,
    /// This connection in the node's registry (removed when dropped) and its control inbox.
    pub(super) registered: Registered,
    /// Message counts of this batch, for the shared counters.
    pub(super) tally: Tally,
    /// Firehose copies to hand to their queues after this batch.
    pub(super) traces: Vec<(QueueHandle, Arc<crate::queue::Message>)>,
}

/// What a frame asks of the connection.
enum Flow {
    Continue,
    /// The client closed the connection (we answered close-ok).
    Closed,
}

/// Serves one client socket to the end.
pub async fn run(node: Arc<Node>, sock: TcpStream, peer: SocketAddr) {
    let local = sock.local_addr().unwrap_or(peer);
    let (mut reader, writer) = sock.into_split();
    let io = Arc::new(Io::default());
    let (mut out, writer_task) = Out::start(writer, io.clone());
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let timeout = Duration::from_secs(node.config().handshake_timeout);
    let hs = Handshake { node: &node, reader: &mut reader, rbuf: &mut rbuf, out: &mut out, peer };
    let negotiated = match tokio::time::timeout(timeout, hs.run()).await {
        Ok(Ok(n)) => n,
        Ok(Err(Refusal::Close(e))) => {
            tracing::info!(%peer, error = %e.text, "handshake refused");
            send_connection_close(&mut out, &e);
            await_close_ok(&mut reader, &mut rbuf, &mut out).await;
            out.close(writer_task).await;
            return;
        }
        Ok(Err(Refusal::Silent)) | Err(_) => {
            out.close(writer_task).await;
            return;
        }
    };
    let (sink, inbox) = mpsc::channel(INBOX);
    let id = node.next_connection_id();
    tracing::info!(%peer, connection = id.0, user = %negotiated.user, vhost = %negotiated.vhost, connection_name = ?negotiated.connection_name, "connection opened");
    let registered = node.clients().register(Registration {
        id,
        peer,
        local,
        user: negotiated.user.clone(),
        vhost: negotiated.vhost.clone(),
        auth_mechanism: negotiated.mechanism,
        client_properties: negotiated.client_properties,
        user_provided_name: negotiated.connection_name.clone(),
        frame_max: negotiated.frame_max,
        channel_max: negotiated.channel_max,
        heartbeat: negotiated.heartbeat,
        connected_at: crate::node::now_ms(),
        io,
    });
    let mut conn = Connection {
        node: node.clone(),
        id,
        user: negotiated.user,
        vhost: negotiated.vhost,
        caps: negotiated.caps,
        frame_max: negotiated.frame_max,
        channel_max: negotiated.channel_max,
        out,
        sink,
        inbox,
        deferred: VecDeque::new(),
        channels: HashMap::new(),
        crossed_closes: HashSet::new(),
        settles: Vec::new(),
        has_published: false,
        blocked: false,
        held_by: Vec::new(),
        registered,
        traces: Vec::new(),
        tally: Tally::default(),
    };
    let reason = conn.serve(&mut reader, &mut rbuf, negotiated.heartbeat).await;
    if let Some(e) = &reason {
        send_connection_close(&mut conn.out, e);
        await_close_ok(&mut reader, &mut rbuf, &mut conn.out).await;
    }
    conn.cleanup().await;
    conn.tally.flush();
    conn.out.close(writer_task).await;
    tracing::info!(%peer, connection = id.0, connection_name = ?negotiated.connection_name, reason = reason.as_ref().map(|e| e.text.as_str()).unwrap_or("client closed"), "connection closed");
}

impl Connection {
    /// The main loop. Returns the error to close with, or `None` if the client closed or left.
    async fn serve(&mut self, reader: &mut OwnedReadHalf, rbuf: &mut BytesMut, heartbeat: u16) -> Option<AmqpError> {
        let mut shutdown = self.node.shutdown_signal();
        let mut alarms = self.node.alarms();
        let hb = (heartbeat > 0).then(|| Duration::from_secs(heartbeat as u64));
        let mut ticker = tokio::time::interval(hb.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        loop {
            // Frames already buffered are handled before reading more.
            loop {
                let f = match frame::next_frame(rbuf, self.frame_max) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Some(e),
                };
                match self.handle_frame(f).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Closed) => return None,
                    Err(e) => return Some(e),
                }
            }
            // Events that arrived while a frame waited on a queue (never re-deferred).
            while let Some(ev) = self.deferred.pop_front() {
                self.handle_event(ev);
            }
            self.registered.info.channels.store(self.channels.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.flush_settles().await;
            self.tally.flush();
            if !self.traces.is_empty() {
                self.flush_traces().await;
            }
            // A raised alarm holds the reads of publishing connections (RabbitMQ's
            // connection.blocked); consumers-only connections go on. A queue behind its
            // consumers holds the reads of connections that published into it (its flow gate).
            let alarm = *alarms.borrow_and_update();
            let blocked = alarm.any() && self.has_published;
            self.announce_block(blocked, alarm.reason());
            self.held_by.retain(|g| g.is_closed());
            let gate = self.held_by.first().cloned();
            self.registered.info.set_state(match (blocked, &gate) {
                (true, _) => ConnState::Blocked,
                (false, Some(_)) => ConnState::Flow,
                (false, None) => ConnState::Running,
            });
            let hold = blocked || gate.is_some();
            if !self.out.flush().await {
                return None;
            }
            tokio::select! {
                biased;
                _ = crate::node::stopped(&mut shutdown) => {
                    return Some(AmqpError::new(ReplyCode::ConnectionForced, "broker forced connection closure with reason 'shutdown'"));
                }
                ev = self.inbox.recv() => {
                    let Some(ev) = ev else { return None };
                    self.handle_event(ev);
                    while let Ok(ev) = self.inbox.try_recv() {
                        self.handle_event(ev);
                    }
                }
                ctl = self.registered.control.recv() => match ctl {
                    Some(Control::Close(reason)) => {
                        tracing::info!(connection = self.id.0, reason = %reason, "closing connection on request");
                        return Some(AmqpError::new(ReplyCode::ConnectionForced, reason));
                    }
                    Some(Control::Inspect(tx)) => {
                        let _ = tx.send(self.inspect());
                    }
                    Some(Control::QueueDeleted(queue)) => {
                        let gone: Vec<(u16, String)> = self
                            .channels
                            .iter()
                            .flat_map(|(&ch, c)| c.consumers.iter().filter(|(_, e)| e.queue.same_queue(&queue)).map(move |(t, _)| (ch, t.clone())))
                            .collect();
                        for (channel, tag) in gone {
                            self.handle_event(ClientEvent::ConsumerCancelled { channel: ChannelId(channel), consumer_tag: tag.into() });
                        }
                    }
                    None => {}
                },
                changed = alarms.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = async { if let Some(g) = &gate { g.opened().await } }, if gate.is_some() => {}
                n = reader.read_buf(rbuf), if !hold => {
                    match n {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => {
                            self.registered.info.io.received(n);
                            last_read = Instant::now();
                            if rbuf.capacity() - rbuf.len() < 4096 {
                                rbuf.reserve(READ_CHUNK);
                            }
                        }
                    }
                }
                _ = ticker.tick(), if hb.is_some() => {
                    let hb = hb.unwrap_or_default();
                    if hold {
                        // We are not reading: the client's heartbeats wait in the socket.
                        last_read = Instant::now();
                    }
                    if last_read.elapsed() > hb * 2 {
                        tracing::warn!(connection = self.id.0, "missed heartbeats from client, timeout: {}s", hb.as_secs());
                        // RabbitMQ closes the socket without a close frame here.
                        self.out.flush().await;
                        return None;
                    }
                    if self.out.last_write.elapsed() >= hb / 2 {
                        self.out.heartbeat();
                    }
                }
            }
        }
    }

    /// Sends `connection.blocked` / `connection.unblocked` when holding starts or stops, to
    /// clients that advertised the capability.
    fn announce_block(&mut self, hold: bool, reason: &str) {
        if hold == self.blocked {
            return;
        }
        self.blocked = hold;
        tracing::info!(connection = self.id.0, blocked = hold, reason, "publisher flow");
        if !self.caps.connection_blocked {
            return;
        }
        let m = if hold {
            connection::AMQPMethod::Blocked(connection::Blocked { reason: reason.into() })
        } else {
            connection::AMQPMethod::Unblocked(connection::Unblocked {})
        };
        self.out.method(0, AMQPClass::Connection(m));
    }

    async fn handle_frame(&mut self, f: RawFrame) -> Result<Flow> {
        match f.kind {
            FRAME_HEARTBEAT if f.channel == 0 => Ok(Flow::Continue),
            FRAME_HEARTBEAT => Err(AmqpError::unexpected_frame(frame::describe_frame(f.kind, &f.payload))),
            _ if f.channel == 0 => {
                if f.kind != FRAME_METHOD {
                    return Err(AmqpError::unexpected_frame(frame::describe_frame(f.kind, &f.payload)));
                }
                self.handle_connection_method(frame::decode_method(&f.payload)?, ids_of(&f.payload))
            }
            _ => {
                let ch = f.channel;
                let state = self.channels.get(&ch).map(|c| c.state);
                match (state, f.kind) {
                    (None, FRAME_METHOD) => {
                        let m = frame::decode_method(&f.payload)?;
                        if self.crossed_closes.remove(&ch) {
                            // The close-ok the client owes since our closes crossed (anything
                            // else is judged as on any unopened channel).
                            if matches!(m, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) {
                                return Ok(Flow::Continue);
                            }
                        }
                        self.handle_unopened_channel(ch, m, ids_of(&f.payload))?;
                    }
                    (None, _) => {
                        return Err(AmqpError::unexpected_frame("expected method frame, got non method frame instead"));
                    }
                    (Some(ChannelState::Closing), FRAME_METHOD) => {
                        // Only close and close-ok matter until the client confirms the close.
                        match frame::decode_method(&f.payload) {
                            Ok(AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                                self.channels.remove(&ch);
                            }
                            Ok(AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                                // Our close and the client's crossed: both sides answer with
                                // close-ok, and the client's answer to ours is still to come.
                                self.out
                                    .method(ch, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
                                self.channels.remove(&ch);
                                self.crossed_closes.insert(ch);
                            }
                            _ => {}
                        }
                    }
                    (Some(ChannelState::Closing), _) => {}
                    (Some(ChannelState::Open), FRAME_METHOD) => {
                        let m = frame::decode_method(&f.payload)?;
                        match self.channels.get(&ch).and_then(|c| c.content.as_ref()) {
                            Some(p) if p.header.is_none() => {
                                return Err(AmqpError::unexpected_frame(
                                    "expected content header for class 60, got non content header frame instead",
                                )
                                .at(60, 40));
                            }
                            Some(_) => {
                                return Err(AmqpError::unexpected_frame(
                                    "expected content body, got non content body frame instead",
                                )
                                .at(60, 40));
                            }
                            None => {}
                        }
                        let (class_id, method_id) = ids_of(&f.payload);
                        if (class_id, method_id) == (60, 10) && f.payload.len() >= 8 {
                            let size = u32::from_be_bytes([f.payload[4], f.payload[5], f.payload[6], f.payload[7]]);
                            if size != 0 {
                                return Err(AmqpError::not_implemented(format!("prefetch_size!=0 ({size})")).at(60, 10));
                            }
                        }
                        if let Err(e) = self.handle_method(ch, m).await {
                            let e = if e.class_id == 0 { e.at(class_id, method_id) } else { e };
                            if e.is_hard() {
                                return Err(e);
                            }
                            self.channel_error(ch, e);
                        }
                    }
                    (Some(ChannelState::Open), FRAME_HEADER | FRAME_BODY) => {
                        if let Err(e) = self.handle_content(ch, f).await {
                            let e =
                                if e.class_id == 0 && e.code != ReplyCode::UnexpectedFrame { e.at(60, 40) } else { e };
                            if e.is_hard() {
                                return Err(e);
                            }
                            self.channel_error(ch, e);
                        }
                    }
                    (Some(ChannelState::Open), _) => {
                        return Err(AmqpError::frame("unexpected frame type"));
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn handle_connection_method(&mut self, m: AMQPClass, (c, mid): (u16, u16)) -> Result<Flow> {
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(
                    connection = self.id.0,
                    code = c.reply_code,
                    text = c.reply_text.as_str(),
                    "client closed the connection"
                );
                self.out.method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})));
                Ok(Flow::Closed)
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Ok(Flow::Closed),
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                self.out.method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(connection::UpdateSecretOk {})),
                );
                Ok(Flow::Continue)
            }
            _ => Err(AmqpError::channel_error("unexpected method in connection state running").at(c, mid)),
        }
    }

    fn handle_unopened_channel(&mut self, ch: u16, m: AMQPClass, (c, mid): (u16, u16)) -> Result<()> {
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                // RabbitMQ counts open channels against channel_max.
                if self.channels.len() >= self.channel_max as usize {
                    let (n, max) = (self.channels.len(), self.channel_max);
                    return Err(AmqpError::not_allowed(format!(
                        "number of channels opened ({n}) has reached the negotiated channel_max ({max})"
                    )));
                }
                self.channels.insert(ch, Channel::new(ChannelId(ch)));
                self.out.method(ch, AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})));
                Ok(())
            }
            _ => Err(AmqpError::channel_error("expected 'channel.open'").at(c, mid)),
        }
    }

    /// Closes one channel with a soft error; the connection goes on.
    pub fn channel_error(&mut self, ch: u16, e: AmqpError) {
        tracing::debug!(connection = self.id.0, channel = ch, error = %e.text, "channel error");
        self.out.method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: e.code.code(),
                reply_text: e.text.as_str().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        if let Some(mut c) = self.channels.remove(&ch) {
            self.release_channel(&mut c);
            c.state = ChannelState::Closing;
            c.content = None;
            self.channels.insert(ch, c);
        }
    }

    /// Dispatches a method on an open channel.
    async fn handle_method(&mut self, ch: u16, m: AMQPClass) -> Result<()> {
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                Err(AmqpError::channel_error("second 'channel.open' seen"))
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                if let Some(mut c) = self.channels.remove(&ch) {
                    self.release_channel(&mut c);
                }
                self.out.method(ch, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => Ok(()),
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.out.method(ch, AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk { active: true })));
                Ok(())
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.out.method(ch, AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})));
                Ok(())
            }
            AMQPClass::Exchange(m) => self.handle_exchange(ch, m).await,
            AMQPClass::Queue(m) => self.handle_queue(ch, m).await,
            AMQPClass::Basic(basic::AMQPMethod::Publish(p)) => self.start_publish(ch, p),
            AMQPClass::Basic(m) => self.handle_basic(ch, m).await,
            AMQPClass::Confirm(_) => self.confirm_select(ch),
            AMQPClass::Tx(m) => self.handle_tx(ch, m).await,
            other => Err(AmqpError::command_invalid(format!(
                "unexpected method class {} on a channel",
                other.get_amqp_class_id()
            ))),
        }
    }

    pub fn chan(&mut self, ch: u16) -> Result<&mut Channel> {
        self.channels.get_mut(&ch).ok_or_else(|| AmqpError::channel_error(format!("channel {ch} is not open")))
    }
}

/// The class and method ids at the start of a method payload.
fn ids_of(payload: &[u8]) -> (u16, u16) {
    if payload.len() < 4 {
        return (0, 0);
    }
    (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]))
}
