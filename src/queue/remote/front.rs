//! The front of a replicated queue on one node: the [`QueueHandle`] this node's connections,
//! routing and management use, whichever node leads the queue.
//!
//! A front sends each request to the leader: to this node's member's runner while it leads,
//! else up the link to the leader's node (`origin.rs`). It learns who leads from its own
//! member's leadership on a member node, and by asking the members (`RpcKind::Leader`)
//! elsewhere. While no leader is known (an election after the leader's node died, about a
//! second or two) requests wait here, in order, and go to the new leader once it is known;
//! after [`WAIT_PATIENCE`] they fail. A member that refuses because it no longer leads
//! (`Reply::NotLeader`: nothing was done) gets the request again once the leader is known.
//!
//! The front remembers the consumers registered through it. When the leader changes, it
//! attaches each of them to the new leader (`Request::Attach`), so clients keep their
//! subscriptions (RabbitMQ's quorum-queue consumers survive a leader change the same way);
//! one the queue no longer knows gets `basic.cancel`. Publishes in flight when a link breaks
//! are nacked (they may or may not have been committed; the publisher decides).

use super::origin::{Remote, ToLink, inboxes};
use crate::broker::{Error, ReplyCode};
use crate::ids::{ConsumerId, QueueKey};
use crate::queue::event::{ClientEvent, ClientSink};
use crate::queue::handle::{QueueHandle, Request, WeakQueueHandle};
use crate::queue::machine::{Command, ConsumerSpec, Reply};
use crate::raft::Leadership;
use crate::raft::transport::NodeId;
use crate::storage::GroupId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Requests waiting for a leader at most (then the front takes no more: back-pressure).
const WAITING: usize = 4096;
/// How long requests wait for a leader before they fail.
const WAIT_PATIENCE: Duration = Duration::from_secs(15);
/// How often a front with no leader (and something to send) looks for one.
const RESOLVE_EVERY: Duration = Duration::from_millis(200);
/// Events buffered for a front.
const EVENTS: usize = 1024;

/// What links and interceptions tell a front.
pub(crate) enum FrontEvent {
    /// The link to this node broke.
    LinkLost(NodeId),
    /// A request could not go up to this node (it cannot be reached).
    Bounced(NodeId, Request),
    /// The member the request went to does not lead; nothing was done.
    Retry(Request),
    /// A consumer being attached again is unknown to the queue (cancelled meanwhile).
    Gone(ConsumerId),
    /// A consume was answered: the consumer exists at the leader.
    Consumed(ConsumerId),
}

/// What a link knows of a front: where to tell it what happened, and which node it takes
/// for the leader.
#[derive(Clone)]
pub(crate) struct FrontTx {
    events: mpsc::Sender<FrontEvent>,
    leader: Arc<AtomicU64>,
}

impl FrontTx {
    /// Tells the front without ever waiting on it (a front may be waiting on the link).
    pub(crate) fn tell(&self, ev: FrontEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
            let events = self.events.clone();
            tokio::spawn(async move {
                let _ = events.send(ev).await;
            });
        }
    }

    /// Whether the front sends to `node` as the leader now. Deliveries from any other node
    /// come from a leader deposed meanwhile (one that was paused or cut off): they are
    /// dropped, as the new leader gave those messages back to the queue.
    pub(crate) fn leads(&self, node: NodeId) -> bool {
        self.leader.load(Ordering::Relaxed) == node
    }
}

/// This node's member of the queue: its runner and whether it serves, as it changes.
#[derive(Clone)]
pub struct Member {
    pub runner: QueueHandle,
    /// Published by the runner: `leading` once it serves (took over in that term).
    pub leadership: watch::Receiver<Leadership>,
}

/// A front's handle before it serves: made first, so this node's member can deliver on its
/// behalf (settles then come back through it).
pub struct FrontInboxes {
    handle: QueueHandle,
    rx: mpsc::Receiver<Request>,
    ctl: mpsc::Receiver<Request>,
}

impl FrontInboxes {
    pub fn new(key: QueueKey) -> Self {
        let (handle, rx, ctl) = inboxes(key);
        Self { handle, rx, ctl }
    }

    pub fn handle(&self) -> &QueueHandle {
        &self.handle
    }
}

impl Remote {
    /// Serves a replicated queue's front (the group `group`, with these members; `member`
    /// while this node holds a replica: it comes and goes with `add_member` and
    /// `delete_member`) and returns its handle.
    /// The front shows the leader it sends to in `shown` (0 while it knows none).
    pub fn serve_front(
        self: &Arc<Self>,
        inboxes: FrontInboxes,
        group: GroupId,
        members: watch::Receiver<Vec<NodeId>>,
        mut member: watch::Receiver<Option<Member>>,
        shown: Arc<AtomicU64>,
    ) -> QueueHandle {
        let FrontInboxes { handle, rx, ctl } = inboxes;
        let (events, events_rx) = mpsc::channel(EVENTS);
        let events = FrontTx { events, leader: shown };
        let front = Front {
            key: handle.key.clone(),
            group,
            members,
            remote: self.clone(),
            own: handle.downgrade(),
            member: member.borrow_and_update().clone(),
            target: None,
            waiting: VecDeque::new(),
            waiting_since: None,
            consumers: HashMap::new(),
            events,
        };
        tokio::spawn(front.run(rx, ctl, events_rx, member));
        handle
    }
}

struct Front {
    key: Arc<QueueKey>,
    group: GroupId,
    /// The queue's members as the metadata says (they change when a node is forgotten or
    /// replaced).
    members: watch::Receiver<Vec<NodeId>>,
    remote: Arc<Remote>,
    own: WeakQueueHandle,
    member: Option<Member>,
    /// The node requests go to: the leader as last known; `None` while looking for one.
    target: Option<NodeId>,
    waiting: VecDeque<Request>,
    waiting_since: Option<Instant>,
    /// Consumers registered through this front, to attach to each new leader once their
    /// consume was answered (`true`; until then their consume itself goes there).
    consumers: HashMap<ConsumerId, (ConsumerSpec, ClientSink, bool)>,
    /// Its own events, and the leader it shows (to links and listings; 0: none known).
    events: FrontTx,
}

/// The next change of this node's member's leadership; never without a member.
async fn leadership_changed(l: &mut Option<watch::Receiver<Leadership>>) -> bool {
    match l {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Front {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut ctl: mpsc::Receiver<Request>,
        mut events: mpsc::Receiver<FrontEvent>,
        mut member: watch::Receiver<Option<Member>>,
    ) {
        let mut down = self.remote.down.clone();
        let mut leadership = self.member.as_ref().map(|m| m.leadership.clone());
        if self.member.is_some() {
            self.resolve().await;
        }
        let (mut rx_open, mut ctl_open) = (true, true);
        while rx_open || ctl_open {
            let room = self.waiting.len() < WAITING;
            let looking = self.target.is_none() && (self.member.is_some() || self.busy());
            tokio::select! {
                biased;
                Some(ev) = events.recv() => {
                    self.on_event(ev).await;
                    // What came back goes out again at once if the leader is known.
                    if let Some(t) = self.target {
                        self.flush(t).await;
                    }
                }
                ok = leadership_changed(&mut leadership) => {
                    if ok {
                        self.resolve().await;
                    } else {
                        leadership = None;
                    }
                }
                Ok(()) = down.changed() => self.on_liveness().await,
                Ok(()) = member.changed() => {
                    // This node gained or lost its replica: its runner serves, or no longer.
                    self.member = member.borrow_and_update().clone();
                    leadership = self.member.as_ref().map(|m| m.leadership.clone());
                    self.resolve().await;
                }
                _ = tokio::time::sleep(RESOLVE_EVERY), if looking => {
                    self.resolve().await;
                    self.expire_waiting().await;
                }
                r = ctl.recv(), if ctl_open && room => match r {
                    Some(r) => self.route(r).await,
                    None => ctl_open = false,
                },
                r = rx.recv(), if rx_open && room => match r {
                    Some(r) => self.route(r).await,
                    None => rx_open = false,
                },
            }
        }
    }

    /// Whether anything needs a leader (requests waiting, consumers to attach).
    fn busy(&self) -> bool {
        !self.waiting.is_empty() || !self.consumers.is_empty()
    }

    fn is_down(&self, n: NodeId) -> bool {
        n != self.remote.me && self.remote.down.borrow().contains(&n)
    }

    /// Takes a request from this node's clients.
    async fn route(&mut self, req: Request) {
        match &req {
            Request::Consume { spec, sink, .. } => {
                self.consumers.insert(spec.id, (spec.clone(), sink.clone(), false));
            }
            Request::Cast { cmd: Command::Cancel { consumer } } => {
                self.consumers.remove(consumer);
            }
            _ => {}
        }
        match self.target {
            Some(t) if self.waiting.is_empty() => self.send(t, req).await,
            // A delayed exchange's release waits for no leader: the store keeps the message
            // and sends it again itself while it still leads (a release that waited here
            // would reach the next leader late, after a deposed store leader woke up).
            _ if is_release(&req) => refuse(&self.key, req).await,
            _ => {
                self.wait(req);
                if self.target.is_none() && self.member.is_none() && self.waiting.len() == 1 {
                    self.resolve().await;
                }
            }
        }
    }

    fn wait(&mut self, req: Request) {
        self.waiting.push_back(req);
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// Finds the leader: this node's member's view, else the members' answers (a member
    /// learns its leader only when it hears from it, and an idle leader says nothing).
    async fn resolve(&mut self) {
        let local = self.member.as_ref().map(|m| *m.leadership.borrow());
        let found = match local {
            Some(l) if l.leading => Some(self.remote.me),
            Some(l) if l.leader.is_some_and(|n| n != self.remote.me && !self.is_down(n)) => l.leader,
            _ if self.member.is_none() || self.busy() => self.ask_members().await,
            _ => None,
        };
        // The others may still name this node while the member it no longer holds hands its
        // leadership over (`delete_member`): not a leader to send to; look again shortly.
        let found = found.filter(|&n| n != self.remote.me || self.member.is_some());
        self.set_target(found).await;
    }

    /// Asks the other live members who leads; the first live leader named.
    async fn ask_members(&self) -> Option<NodeId> {
        let members = self.members.borrow().clone();
        crate::raft::find_leader(self.remote.transport.as_ref(), self.group, &members, self.remote.me, &|n| {
            self.is_down(n)
        })
        .await
    }

    /// Points requests at `t`: attaches this front's consumers there, then sends what waited.
    async fn set_target(&mut self, t: Option<NodeId>) {
        if t == self.target {
            if let Some(t) = t {
                self.flush(t).await;
            }
            return;
        }
        tracing::debug!(queue = %self.key, leader = ?t, "replicated queue's leader");
        self.point_at(t);
        let Some(t) = t else { return };
        // Only consumers whose consume was answered: the others' consume goes there itself.
        let consumers: Vec<(ConsumerSpec, ClientSink)> = self
            .consumers
            .values()
            .filter(|(_, _, taken)| *taken)
            .map(|(spec, sink, _)| (spec.clone(), sink.clone()))
            .collect();
        for (spec, sink) in consumers {
            let reply = self.watch_attach(spec.id);
            self.send(t, Request::Attach { spec, sink, reply }).await;
        }
        self.flush(t).await;
    }

    /// Where requests go from now on (and what links and listings are shown).
    fn point_at(&mut self, t: Option<NodeId>) {
        self.target = t;
        self.events.leader.store(t.unwrap_or(0), Ordering::Relaxed);
    }

    /// Sends what waited to `t`, in order, while it stays the target.
    async fn flush(&mut self, t: NodeId) {
        while self.target == Some(t) {
            let Some(req) = self.waiting.pop_front() else { break };
            self.send(t, req).await;
        }
        if self.waiting.is_empty() {
            self.waiting_since = None;
        }
    }

    /// A reply channel for an attach: a consumer the queue no longer knows is gone.
    fn watch_attach(&self, id: ConsumerId) -> oneshot::Sender<Reply> {
        let (tx, rx) = oneshot::channel();
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Ok(Reply::Attached(missing)) = rx.await {
                if missing.contains(&id) {
                    events.tell(FrontEvent::Gone(id));
                }
            }
        });
        tx
    }

    /// Hands a request to the leader at `t`.
    async fn send(&mut self, t: NodeId, req: Request) {
        let req = self.intercept(req);
        if t == self.remote.me {
            let Some(m) = &self.member else {
                // This node's replica went meanwhile: the request waits for the leader.
                self.point_at(None);
                self.wait(req);
                return;
            };
            let inbox = m.runner.inbox_for(&req).clone();
            if let Err(mpsc::error::SendError(req)) = inbox.send(req).await {
                // The runner stopped (the queue is going): nothing more to do here.
                refuse(&self.key, req).await;
            }
        } else {
            let link = self.remote.link(t);
            let m = ToLink { queue: self.own.clone(), front: Some(self.events.clone()), req };
            if let Err(mpsc::error::SendError(m)) = link.send(m).await {
                self.point_at(None);
                self.wait(m.req);
            }
        }
    }

    /// Wraps a request's reply so that a `NotLeader` refusal (nothing was done) brings the
    /// request back here, to go to the leader once it is known.
    fn intercept(&self, req: Request) -> Request {
        let events = self.events.clone();
        match req {
            Request::Consume { spec, sink, reply } => {
                let (tx, rx) = oneshot::channel();
                let (s, k, id) = (spec.clone(), sink.clone(), Some(spec.id));
                tokio::spawn(answer(rx, reply, events, id, move |reply| Request::Consume { spec: s, sink: k, reply }));
                Request::Consume { spec, sink, reply: tx }
            }
            Request::Attach { spec, sink, reply } => {
                let (tx, rx) = oneshot::channel();
                let (s, k) = (spec.clone(), sink.clone());
                tokio::spawn(answer(rx, reply, events, None, move |reply| Request::Attach { spec: s, sink: k, reply }));
                Request::Attach { spec, sink, reply: tx }
            }
            // Not sent again on `NotLeader`: back to the store (see `route`).
            req @ Request::Call { .. } if is_release(&req) => req,
            Request::Call { cmd, reply } => {
                let (tx, rx) = oneshot::channel();
                let c = cmd.clone();
                tokio::spawn(answer(rx, reply, events, None, move |reply| Request::Call { cmd: c, reply }));
                Request::Call { cmd, reply: tx }
            }
            other => other,
        }
    }

    async fn on_event(&mut self, ev: FrontEvent) {
        match ev {
            FrontEvent::LinkLost(n) => {
                if self.target == Some(n) {
                    tracing::debug!(queue = %self.key, node = n, "link to the queue's leader lost");
                    self.point_at(None);
                }
            }
            FrontEvent::Bounced(n, req) => {
                if self.target == Some(n) {
                    self.point_at(None);
                }
                self.wait(req);
            }
            // Looked for again at the next resolve (never at once: a member that refuses may
            // still be named leader for a moment).
            FrontEvent::Retry(req) => {
                tracing::debug!(queue = %self.key, target = ?self.target, "refused by a member that does not lead");
                self.point_at(None);
                self.wait(req);
            }
            FrontEvent::Consumed(id) => {
                if let Some(c) = self.consumers.get_mut(&id) {
                    c.2 = true;
                }
            }
            FrontEvent::Gone(id) => {
                tracing::debug!(queue = %self.key, consumer = id.0, "consumer unknown to the new leader: cancelled");
                if let Some((spec, sink, _)) = self.consumers.remove(&id) {
                    let ev = ClientEvent::ConsumerCancelled { channel: spec.channel, consumer_tag: spec.tag };
                    let _ = sink.send(ev).await;
                }
            }
        }
    }

    /// A node went down or came back: a leader on a down node is no leader.
    async fn on_liveness(&mut self) {
        match self.target {
            Some(t) if self.is_down(t) => {
                tracing::debug!(queue = %self.key, node = t, "the queue's leader is down");
                self.point_at(None);
            }
            None if self.member.is_some() || self.busy() => self.resolve().await,
            _ => {}
        }
    }

    /// Fails what waited longer than [`WAIT_PATIENCE`] for a leader.
    async fn expire_waiting(&mut self) {
        if self.waiting_since.is_none_or(|t| t.elapsed() < WAIT_PATIENCE) {
            return;
        }
        tracing::warn!(queue = %self.key, requests = self.waiting.len(), "no leader for the queue: requests fail");
        self.waiting_since = None;
        for req in std::mem::take(&mut self.waiting) {
            refuse(&self.key, req).await;
        }
    }
}

/// Passes a reply on (noting a `consumer` whose consume was taken), or brings the request
/// back to the front when the member asked did not lead (nothing was done there).
async fn answer<F>(
    rx: oneshot::Receiver<Reply>,
    reply: oneshot::Sender<Reply>,
    events: FrontTx,
    consumer: Option<ConsumerId>,
    again: F,
) where
    F: FnOnce(oneshot::Sender<Reply>) -> Request + Send + 'static,
{
    match rx.await {
        Ok(Reply::NotLeader(_)) => events.tell(FrontEvent::Retry(again(reply))),
        Ok(r) => {
            match (consumer, &r) {
                (Some(id), Reply::Consumed) => events.tell(FrontEvent::Consumed(id)),
                // Refused: the front forgets it (the client knows it has no consumer).
                (Some(id), Reply::Refused(_)) => events.tell(FrontEvent::Gone(id)),
                _ => {}
            }
            let _ = reply.send(r);
        }
        Err(_) => {}
    }
}

/// The error of a replicated queue that has no leader.
fn leaderless(key: &QueueKey) -> Error {
    Error::new(
        ReplyCode::NotFound,
        format!(
            "queue '{}' in vhost '{}' has no leader: a majority of its members is down or inaccessible",
            key.name, key.vhost
        ),
    )
}

/// A delayed exchange's store handing a released message to the queue
/// (`runner::forward_released`): publishers' messages come as `Request::Publish`.
fn is_release(req: &Request) -> bool {
    matches!(req, Request::Call { cmd: Command::Enqueue { .. } | Command::EnqueueAgain { .. }, .. })
}

/// Answers a request that cannot reach a leader.
async fn refuse(key: &QueueKey, req: Request) {
    match req {
        Request::Publish { confirm: Some(c), .. } => {
            let _ = c.sink.send(ClientEvent::Confirms { channel: c.channel, seqs: vec![c.seq], ok: false }).await;
        }
        Request::Consume { reply, .. } | Request::Call { reply, .. } | Request::Attach { reply, .. } => {
            let _ = reply.send(Reply::Refused(leaderless(key)));
        }
        Request::Publish { confirm: None, .. } | Request::Cast { .. } => {}
    }
}
