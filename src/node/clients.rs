//! The registry of client connections: what `/api/connections`, `/api/channels` and
//! `/api/consumers` list and what `DELETE /api/connections/{name}` closes.
//!
//! A connection registers what does not change (peer, user, vhost, client properties,
//! negotiated limits) and a few relaxed counters; the state of its channels stays inside its
//! task, which answers an [`Control::Inspect`] with a snapshot. Nothing here is shared mutable
//! state a connection waits on: the registry lock is held only to insert, remove or clone.

use crate::ids::ConnectionId;
use amq_protocol::types::FieldTable;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long an inspection waits for a busy connection before listing it without channels.
const INSPECT_WAIT: Duration = Duration::from_secs(2);

/// Bytes and frames through a connection's socket.
#[derive(Debug, Default)]
pub struct Io {
    pub recv_oct: AtomicU64,
    pub recv_cnt: AtomicU64,
    pub send_oct: AtomicU64,
    pub send_cnt: AtomicU64,
}

impl Io {
    pub fn received(&self, bytes: usize) {
        self.recv_oct.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn sent(&self, bytes: usize, chunks: usize) {
        self.send_oct.fetch_add(bytes as u64, Ordering::Relaxed);
        self.send_cnt.fetch_add(chunks as u64, Ordering::Relaxed);
    }
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }
}

/// What the node asks of a connection task.
#[derive(Debug)]
pub enum Control {
    /// Close the connection with 320 CONNECTION_FORCED and this text.
    Close(String),
    /// Answer with the state of every open channel.
    Inspect(oneshot::Sender<Vec<ChannelInfo>>),
    /// This queue (the handle the connection's consumers hold) was deleted: cancel those
    /// consumers, with `basic.cancel` to clients that take it.
    QueueDeleted(crate::queue::QueueHandle),
}

/// A consumer, as `/api/consumers` shows it.
#[derive(Clone, Debug)]
pub struct ConsumerInfo {
    pub tag: String,
    pub queue: String,
    pub ack_required: bool,
    pub exclusive: bool,
    pub prefetch_count: u32,
    pub arguments: FieldTable,
}

/// A channel, as `/api/channels` shows it.
#[derive(Clone, Debug)]
pub struct ChannelInfo {
    pub number: u16,
    pub prefetch_count: u32,
    pub global_prefetch_count: u32,
    pub confirm: bool,
    pub transactional: bool,
    pub unacked: usize,
    pub unconfirmed: usize,
    pub consumers: Vec<ConsumerInfo>,
}

/// A registered connection: what it registered, plus what the registry keeps current.
#[derive(Debug)]
pub struct ClientInfo {
    /// RabbitMQ's connection name: `"<peer ip>:<port> -> <local ip>:<port>"`.
    pub name: String,
    pub about: Registration,
    /// Open channels (kept current by the connection task).
    pub channels: AtomicU64,
    /// A [`ConnState`] (kept current by the connection task).
    state: AtomicU8,
    control: mpsc::Sender<Control>,
}

/// Whether a connection's reads go on (RabbitMQ's connection `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    Running = 0,
    /// Held by a queue behind its consumers (`queue::flow`), for a moment.
    Flow = 1,
    /// Held by a resource alarm (`connection.blocked`).
    Blocked = 2,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Running => "running",
            ConnState::Flow => "flow",
            ConnState::Blocked => "blocked",
        }
    }
}

/// Reads as what the connection registered (`info.user`, `info.peer`, …).
impl std::ops::Deref for ClientInfo {
    type Target = Registration;
    fn deref(&self) -> &Registration {
        &self.about
    }
}

impl ClientInfo {
    /// Asks the connection to close with 320 and `reason`; false if it is gone or too busy.
    pub fn close(&self, reason: String) -> bool {
        self.control.try_send(Control::Close(reason)).is_ok()
    }

    /// Tells the connection that a queue was deleted (dropped if its control inbox is full:
    /// the queue's own cancels still come).
    pub fn queue_deleted(&self, queue: crate::queue::QueueHandle) {
        let _ = self.control.try_send(Control::QueueDeleted(queue));
    }

    /// The connection's channels, asked of its task (empty if it is gone or does not answer
    /// within a bounded wait).
    pub async fn inspect(&self) -> Vec<ChannelInfo> {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Inspect(tx)).await.is_err() {
            return Vec::new();
        }
        tokio::time::timeout(INSPECT_WAIT, rx).await.ok().and_then(Result::ok).unwrap_or_default()
    }

    pub fn channel_count(&self) -> u64 {
        self.channels.load(Ordering::Relaxed)
    }

    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> ConnState {
        match self.state.load(Ordering::Relaxed) {
            1 => ConnState::Flow,
            2 => ConnState::Blocked,
            _ => ConnState::Running,
        }
    }
}

/// What a connection registers: what does not change while it lives, and its I/O counters.
#[derive(Debug)]
pub struct Registration {
    pub id: ConnectionId,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub auth_mechanism: String,
    pub client_properties: FieldTable,
    pub user_provided_name: Option<String>,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    /// Milliseconds since the epoch.
    pub connected_at: u64,
    pub io: Arc<Io>,
}

/// The node's connections.
#[derive(Debug, Default)]
pub struct Clients {
    map: Mutex<BTreeMap<ConnectionId, Arc<ClientInfo>>>,
}

/// Keeps a connection registered; removes it when dropped.
pub struct Registered {
    pub info: Arc<ClientInfo>,
    pub control: mpsc::Receiver<Control>,
    clients: Weak<Clients>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(c) = self.clients.upgrade() {
            c.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.info.id);
        }
    }
}

impl Clients {
    pub fn register(self: &Arc<Self>, r: Registration) -> Registered {
        let (control, rx) = mpsc::channel(8);
        let info = Arc::new(ClientInfo {
            name: format!("{}:{} -> {}:{}", r.peer.ip(), r.peer.port(), r.local.ip(), r.local.port()),
            about: r,
            channels: AtomicU64::new(0),
            state: AtomicU8::new(ConnState::Running as u8),
            control,
        });
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert(info.id, info.clone());
        Registered { info, control: rx, clients: Arc::downgrade(self) }
    }

    /// Every connection, oldest first.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<ClientInfo>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).values().find(|c| c.name == name).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
