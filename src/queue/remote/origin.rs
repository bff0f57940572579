//! The origin side of remote queues: a queue whose home is another node is, here, an
//! ordinary [`QueueHandle`] whose requests a small task hands to the link to that node.
//!
//! One link per home node (one stream, opened when first needed, opened again after it
//! breaks) carries every queue's requests up and their answers and events down. The link
//! remembers what waits for an answer (replies, confirms, consume-oks) and which connection
//! each remote consumer belongs to, so deliveries and cancels reach the right sink and a
//! settle goes back through the proxy's own handle. When the link breaks, callers get an
//! error (`NOT_FOUND`, "home node … is down or inaccessible", RabbitMQ's words), publishes
//! waiting for a confirm are nacked, and consumers get `basic.cancel` — the home requeues
//! what they held. A replicated queue's front (`front.rs`) uses the same links to reach its
//! leader; for it a broken link is not the end: its consumers are not cancelled (the front
//! attaches them to the next leader) and requests that could not go up go back to it.

use super::front::FrontTx;
use super::link::Link;
use crate::ids::QueueKey;
use crate::queue::handle::{QueueHandle, Request, WeakQueueHandle};
use crate::raft::transport::{NodeId, Transport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Capacity of a proxy's inboxes (as a runner's).
const INBOX: usize = 4096;
/// Requests waiting for a link at most (then proxies wait).
const LINK_INBOX: usize = 1024;

/// The name of a node, for what clients are told.
pub type NameOf = Arc<dyn Fn(NodeId) -> String + Send + Sync>;

/// The links of this node to the homes of the queues it proxies (and to the leaders of the
/// replicated queues its fronts serve).
pub struct Remote {
    pub(super) transport: Arc<dyn Transport>,
    name_of: NameOf,
    links: Mutex<HashMap<NodeId, mpsc::Sender<ToLink>>>,
    /// This node's id.
    pub(super) me: NodeId,
    /// The nodes this node finds down, as that changes (`node/peers.rs`).
    pub(super) down: tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>,
}

/// A request for a queue on another node, with whose it is: a proxy's or a front's handle
/// (held weakly: it ends when its last handle is gone) and, for a front, where to tell it
/// the link broke.
pub(super) struct ToLink {
    pub queue: WeakQueueHandle,
    pub front: Option<FrontTx>,
    pub req: Request,
}

/// A proxy or front's handle and inboxes: the handle clients use, the ends its task reads.
pub(super) fn inboxes(key: QueueKey) -> (QueueHandle, mpsc::Receiver<Request>, mpsc::Receiver<Request>) {
    let (tx, rx) = mpsc::channel(INBOX);
    let (ctl, ctl_rx) = mpsc::channel(INBOX);
    (QueueHandle { key: Arc::new(key), tx, ctl, stats: Arc::default(), flow: Arc::default() }, rx, ctl_rx)
}

impl Remote {
    pub fn new(
        transport: Arc<dyn Transport>,
        name_of: NameOf,
        me: NodeId,
        down: tokio::sync::watch::Receiver<std::collections::BTreeSet<NodeId>>,
    ) -> Arc<Self> {
        Arc::new(Self { transport, name_of, links: Mutex::default(), me, down })
    }

    /// A handle to `key`, whose home is node `home`.
    pub fn proxy(&self, home: NodeId, key: QueueKey) -> QueueHandle {
        let link = self.link(home);
        let (handle, rx, ctl_rx) = inboxes(key);
        tokio::spawn(forward(rx, ctl_rx, link, handle.downgrade()));
        handle
    }

    pub(super) fn link(&self, home: NodeId) -> mpsc::Sender<ToLink> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = links.get(&home).filter(|l| !l.is_closed()) {
            return l.clone();
        }
        let (tx, rx) = mpsc::channel(LINK_INBOX);
        tokio::spawn(Link::new(home, self.transport.clone(), self.name_of.clone(), self.down.clone()).run(rx));
        links.insert(home, tx.clone());
        tx
    }
}

/// Moves a proxy's requests to its link, settles first (as a runner drains its `ctl` first).
async fn forward(
    mut rx: mpsc::Receiver<Request>,
    mut ctl: mpsc::Receiver<Request>,
    link: mpsc::Sender<ToLink>,
    me: WeakQueueHandle,
) {
    loop {
        let req = tokio::select! {
            biased;
            Some(r) = ctl.recv() => r,
            Some(r) = rx.recv() => r,
            else => break,
        };
        if link.send(ToLink { queue: me.clone(), front: None, req }).await.is_err() {
            break;
        }
    }
}
