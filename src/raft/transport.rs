//! The byte-level seam between Raft groups and the network.
//!
//! Groups of several members talk through a [`Transport`]: one call carries one Raft RPC of one
//! group (vote, append entries, full snapshot) to one node, as bytes. Whoever owns the network
//! (the gRPC service in `cluster/`, or [`Loopback`] in tests) implements it, and hands what
//! arrives to the receiving node's [`Router`], which finds the group by id. So openraft's types
//! stay in `raft/`: the network only moves bytes addressed by (node, group, kind), and one
//! connection per peer can carry every group's traffic.
//!
//! Payloads are openraft's own request and response types, serde-encoded with bincode (the
//! reference gRPC example carries them the same way, `../shared/reference/build.md`).
//!
//! Beside calls, a transport opens [`Duplex`] streams of frames to a node, for Warren's own
//! long-lived node-to-node traffic (remote queues, `queue/remote/`); the receiving node's
//! router hands each arriving stream to its acceptor.

use crate::storage::GroupId;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A node's id in every group it is a member of.
pub type NodeId = u64;

/// Which Raft RPC a call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RpcKind {
    Vote,
    /// Would the member grant a vote (Raft's pre-vote: no term is spent asking)?
    PreVote,
    Append,
    /// A whole snapshot (its metadata and state) with the sender's vote.
    Snapshot,
    /// Proposals forwarded to the leader (`raft/forward.rs`).
    Propose,
    /// Who leads the group, as the member asked sees it (an empty body; answers an
    /// `Option<NodeId>`): how a node that is not a member finds a queue's leader.
    Leader,
    /// How far the node has applied the metadata and acts on it (an empty body to the
    /// [`METADATA_SEEN`] pseudo-group; answers a `u64`).
    Applied,
    /// A node with an empty data directory asks to join the cluster (to the [`NODE_JOIN`]
    /// pseudo-group, `raft/join.rs`).
    Join,
    /// Another node's management API asks what this node's clients are, or to close one (to
    /// the [`NODE_PEEK`] pseudo-group; `node/peek.rs`).
    Peek,
    /// A direct reply-to reply for a requester on the node asked (to the [`NODE_REPLY`]
    /// pseudo-group; `node/replies.rs`).
    Reply,
    /// openraft's leadership transfer, sent by a leader to every voter of its group.
    TransferLeader,
    /// Hand the group's leadership to a member (an `Option<NodeId>`; answers the new leader,
    /// `raft/durable/handover.rs`).
    HandOver,
    /// Stand for election now (a leader that offered its leadership asks).
    Elect,
    /// How the member sees itself (`MemberStatus`).
    Status,
}

/// A call that did not come back with an answer from the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The node cannot be reached (down, cut off, refused us); the call may have arrived.
    #[error("node {node} unreachable: {reason}")]
    Unreachable { node: NodeId, reason: String },
    /// No connection to the node could be made: the call never left this node.
    #[error("cannot connect to node {node}: {reason}")]
    NotConnected { node: NodeId, reason: String },
    /// The node answered that it has no member of this group (not created there yet, or gone).
    #[error("node {node} has no group {group}")]
    NoGroup { node: NodeId, group: u64 },
    /// The bytes did not decode (a different version, or corruption).
    #[error("malformed raft message: {0}")]
    Malformed(String),
}

/// The pseudo-group a node answers [`RpcKind::Applied`] for.
pub const METADATA_SEEN: GroupId = GroupId(u64::MAX);
/// The pseudo-group a node answers [`RpcKind::Join`] for.
pub const NODE_JOIN: GroupId = GroupId(u64::MAX - 1);
/// Where the management API's questions to another node go (`node/peek.rs`).
pub const NODE_PEEK: GroupId = GroupId(u64::MAX - 2);
/// Where direct reply-to replies for this node's requesters arrive (`node/replies.rs`).
pub const NODE_REPLY: GroupId = GroupId(u64::MAX - 3);

/// Frames buffered each way on a duplex stream (then the sender waits: back-pressure).
pub const DUPLEX_FRAMES: usize = 256;

/// One end of a stream of frames between two nodes. Either side ends it by dropping its end;
/// a broken link ends it too (`rx` yields `None`, sends fail).
#[derive(Debug)]
pub struct Duplex {
    pub tx: tokio::sync::mpsc::Sender<Bytes>,
    pub rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Duplex {
    /// Two joined ends.
    pub fn pair() -> (Duplex, Duplex) {
        let (a_tx, a_rx) = tokio::sync::mpsc::channel(DUPLEX_FRAMES);
        let (b_tx, b_rx) = tokio::sync::mpsc::channel(DUPLEX_FRAMES);
        (Duplex { tx: a_tx, rx: b_rx }, Duplex { tx: b_tx, rx: a_rx })
    }
}

/// Who a node says it is (the answer to a hello: formation, liveness, names in listings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    pub name: String,
    /// 0 while the node does not know its id yet (it is finding its place in the cluster).
    pub id: NodeId,
    /// The node is a member of a running cluster (it ran as one before, or has joined or
    /// formed one since it started); a node still finding its place is not.
    pub member: bool,
    /// The node's own resource alarms are raised (its answer to a hello says so; a hello
    /// sent says nothing of them).
    pub memory_alarm: bool,
    pub disk_alarm: bool,
    /// (In an answer) the asking node's id was forgotten by the answering node's cluster.
    pub asker_forgotten: bool,
}

/// Takes the streams other nodes open to this one: (the opening node, its stream).
pub type Acceptor = Arc<dyn Fn(NodeId, Duplex) + Send + Sync>;

/// Moves one Raft RPC to a node and brings its answer back; opens streams to nodes.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        target: NodeId,
        group: GroupId,
        kind: RpcKind,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>>;

    /// Opens a stream of frames to `target`'s acceptor.
    fn open(&self, target: NodeId) -> BoxFuture<'static, Result<Duplex, TransportError>>;

    /// Says who this node is to `target` and hears who it is (liveness, names).
    fn hello(&self, target: NodeId, me: &Hello) -> BoxFuture<'static, Result<Hello, TransportError>>;

    /// Where node `id` is from now on (a node joined, or came back at another address).
    /// Transports that address nodes by id alone ignore it.
    fn set_peer(&self, _id: NodeId, _addr: &str) {}
}

/// Where a group takes the RPCs addressed to it.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, kind: RpcKind, body: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>>;
}

/// The groups of one node that take RPCs, by id.
#[derive(Clone, Default)]
pub struct Router {
    /// 0 until the node knows its id (`server/formation.rs`).
    me: Arc<std::sync::atomic::AtomicU64>,
    groups: Arc<Mutex<HashMap<GroupId, Arc<dyn Handler>>>>,
    acceptor: Arc<Mutex<Option<Acceptor>>>,
}

impl Router {
    pub fn new(me: NodeId) -> Self {
        Self { me: Arc::new(me.into()), groups: Arc::default(), acceptor: Arc::default() }
    }

    /// The node's id, once it found its place in the cluster.
    pub fn set_me(&self, me: NodeId) {
        self.me.store(me, std::sync::atomic::Ordering::Release);
    }

    /// Who takes the streams other nodes open to this one.
    pub fn set_acceptor(&self, a: Acceptor) {
        *self.acceptor.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
    }

    /// Hands a stream `from` opened to the acceptor (refused while there is none).
    pub fn accept(&self, from: NodeId, d: Duplex) -> Result<(), TransportError> {
        let a = self.acceptor.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match a {
            Some(a) => {
                a(from, d);
                Ok(())
            }
            None => Err(TransportError::Unreachable { node: self.me(), reason: "not accepting streams yet".into() }),
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn register(&self, group: GroupId, h: Arc<dyn Handler>) {
        self.lock().insert(group, h);
    }

    /// The groups with a member on this node (not the node's pseudo-groups).
    pub fn groups(&self) -> Vec<GroupId> {
        self.lock().keys().filter(|g| g.0 < NODE_REPLY.0.min(NODE_PEEK.0)).copied().collect()
    }

    pub(crate) fn unregister(&self, group: GroupId) {
        self.lock().remove(&group);
    }

    /// Hands an arriving RPC to its group; answers the encoded response.
    pub fn handle(
        &self,
        group: GroupId,
        kind: RpcKind,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        match self.lock().get(&group).cloned() {
            Some(h) => h.handle(kind, body),
            None => {
                let err = TransportError::NoGroup { node: self.me(), group: group.0 };
                Box::pin(async move { Err(err) })
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupId, Arc<dyn Handler>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Nodes in one process joined by direct calls, with links that can be cut: the in-process
/// cluster of tests (architecture test layer 5). A cut link fails both ways, as a partition.
#[derive(Clone, Default)]
pub struct Loopback {
    inner: Arc<Mutex<LoopbackState>>,
}

#[derive(Default)]
struct LoopbackState {
    routers: HashMap<NodeId, Router>,
    /// Nodes cut off from every other node.
    isolated: HashSet<NodeId>,
}

impl Loopback {
    /// Adds a node; returns the transport its groups send with.
    pub fn join(&self, router: Router) -> Arc<dyn Transport> {
        let me = router.me();
        self.lock().routers.insert(me, router);
        Arc::new(LoopbackPort { me, net: self.clone() })
    }

    /// Cuts a node off from all others (or heals it).
    pub fn isolate(&self, node: NodeId, cut: bool) {
        let mut s = self.lock();
        if cut {
            s.isolated.insert(node);
        } else {
            s.isolated.remove(&node);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoopbackState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct LoopbackPort {
    me: NodeId,
    net: Loopback,
}

impl LoopbackPort {
    /// The target's router, unless either end is cut off.
    fn reachable(&self, target: NodeId) -> Option<Router> {
        let s = self.net.lock();
        let cut = s.isolated.contains(&self.me) || s.isolated.contains(&target);
        s.routers.get(&target).filter(|_| !cut).cloned()
    }
}

impl Transport for LoopbackPort {
    fn call(
        &self,
        target: NodeId,
        group: GroupId,
        kind: RpcKind,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        match self.reachable(target) {
            Some(r) => r.handle(group, kind, body),
            None => {
                let err = TransportError::NotConnected { node: target, reason: "link cut".into() };
                Box::pin(async move { Err(err) })
            }
        }
    }

    /// In-process nodes have no names: the answer is the id alone.
    fn hello(&self, target: NodeId, _me: &Hello) -> BoxFuture<'static, Result<Hello, TransportError>> {
        let result = match self.reachable(target) {
            Some(_) => Ok(Hello { name: String::new(), id: target, member: true, ..Hello::default() }),
            None => Err(TransportError::NotConnected { node: target, reason: "link cut".into() }),
        };
        Box::pin(async move { result })
    }

    /// A stream that stays open across a later cut (tests cut links, not streams, so far).
    fn open(&self, target: NodeId) -> BoxFuture<'static, Result<Duplex, TransportError>> {
        let result = match self.reachable(target) {
            Some(r) => {
                let (ours, theirs) = Duplex::pair();
                r.accept(self.me, theirs).map(|()| ours)
            }
            None => Err(TransportError::NotConnected { node: target, reason: "link cut".into() }),
        };
        Box::pin(async move { result })
    }
}
