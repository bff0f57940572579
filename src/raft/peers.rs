//! openraft's network for a group with several members, over a [`Transport`]; and the other
//! direction, the [`Handler`] that feeds arriving RPCs to the local member.
//!
//! Snapshots go whole in one call for now (`RpcKind::Snapshot`); sending them in chunks is the
//! cluster transport's to do, under this same call.

use super::durable::{DurableMachine, Handover, SmAdapter};
use super::forward;
use super::transport::{Handler, NodeId, RpcKind, Transport, TransportError};
use super::types::{Payload, Warren};
use crate::storage::GroupId;
use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io::{self, Cursor};
use std::sync::Arc;

type C = Warren;

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Bytes, TransportError> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map(Bytes::from)
        .map_err(|e| TransportError::Malformed(e.to_string()))
}

pub(super) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, TransportError> {
    bincode::serde::decode_from_slice(b, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| TransportError::Malformed(e.to_string()))
}

fn unreachable(e: &TransportError) -> Unreachable<C> {
    Unreachable::new(&io::Error::new(io::ErrorKind::NotConnected, e.to_string()))
}

/// What a transport failure means to openraft: back off (unreachable) or retry (malformed).
fn rpc_error<E: std::error::Error>(e: TransportError) -> RPCError<C, E> {
    match e {
        TransportError::Malformed(_) => RPCError::Network(NetworkError::new(&e)),
        _ => RPCError::Unreachable(unreachable(&e)),
    }
}

/// Given a snapshot's machine state and its last index, the raw entries it still reads
/// (`DurableMachine::live_indexes`), to send with it.
pub(crate) type KeptEntries = Arc<dyn Fn(&[u8], u64) -> io::Result<Vec<(u64, Vec<u8>)>> + Send + Sync>;

/// The network of one group: a client per peer, all over one transport.
#[derive(Clone)]
pub(crate) struct Peers {
    pub transport: Arc<dyn Transport>,
    pub group: GroupId,
    pub kept: KeptEntries,
}

impl RaftNetworkFactory<C> for Peers {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerClient {
        PeerClient { transport: self.transport.clone(), group: self.group, target, kept: self.kept.clone() }
    }
}

/// One member's view of one peer.
pub(crate) struct PeerClient {
    transport: Arc<dyn Transport>,
    group: GroupId,
    target: NodeId,
    kept: KeptEntries,
}

impl PeerClient {
    /// One round trip; the remote side's answer is `Result<Resp, Err>` as it encoded it.
    async fn round_trip<Req: Serialize, Resp: DeserializeOwned, Err: DeserializeOwned>(
        &self,
        kind: RpcKind,
        req: &Req,
    ) -> Result<Result<Resp, Err>, TransportError> {
        let body = encode(req)?;
        let answer = self.transport.call(self.target, self.group, kind, body).await?;
        decode(&answer)
    }
}

impl PeerClient {
    /// One request and its answer, the remote side failing with `Err`.
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, Err: DeserializeOwned + std::error::Error + 'static>(
        &self,
        kind: RpcKind,
        req: &Req,
    ) -> Result<Resp, RPCError<C>> {
        match self.round_trip::<_, _, Err>(kind, req).await {
            Ok(Ok(r)) => Ok(r),
            // The peer's member stopped (a fatal error there): unreachable until it is back.
            Ok(Err(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(rpc_error(e)),
        }
    }
}

impl RaftNetworkV2<C> for PeerClient {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.rpc::<_, _, RaftError<C>>(RpcKind::Append, &req).await
    }

    async fn vote(&mut self, req: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.rpc::<_, _, RaftError<C>>(RpcKind::Vote, &req).await
    }

    /// Carried for real: openraft's default grants every pre-vote, so a member with a stale
    /// log (just restarted) would go on to real elections and unseat a working leader.
    async fn pre_vote(&mut self, req: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.rpc::<_, _, RaftError<C>>(RpcKind::PreVote, &req).await
    }

    /// Carried for real: a handover (`durable/handover.rs`) needs every voter to give up its
    /// lease for the old leader and the target to stand at once.
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.rpc::<_, _, Fatal<C>>(RpcKind::TransferLeader, &req).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let state = snapshot.snapshot.into_inner();
        let upto = snapshot.meta.last_log_id.as_ref().map_or(0, |l| l.index);
        // The member's log will start after the snapshot: the entries the state still reads
        // (a queue's message bodies) go with it.
        let kept = (self.kept)(&state, upto).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let req = (vote, snapshot.meta, state, kept);
        match self.round_trip::<_, _, Fatal<C>>(RpcKind::Snapshot, &req).await {
            Ok(Ok(r)) => Ok(r),
            // The peer's member stopped: as good as unreachable until it is back.
            Ok(Err(e)) => Err(StreamingError::Unreachable(Unreachable::new(&e))),
            Err(TransportError::Malformed(m)) => {
                Err(StreamingError::Network(NetworkError::new(&TransportError::Malformed(m))))
            }
            Err(e) => Err(StreamingError::Unreachable(unreachable(&e))),
        }
    }
}

/// Asks node `target` how far it has applied the metadata and acts on it.
pub async fn ask_applied(transport: &dyn Transport, target: NodeId) -> Result<u64, TransportError> {
    let answer = transport.call(target, super::transport::METADATA_SEEN, RpcKind::Applied, Bytes::new()).await?;
    decode(&answer)
}

/// Answers [`RpcKind::Applied`] with a number the node keeps current.
pub(crate) struct Seen(pub Arc<std::sync::atomic::AtomicU64>);

impl Handler for Seen {
    fn handle(&self, kind: RpcKind, _body: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let answer = match kind {
            RpcKind::Applied => encode(&self.0.load(std::sync::atomic::Ordering::Acquire)),
            _ => Err(TransportError::Malformed("only Applied is asked here".into())),
        };
        Box::pin(async move { answer })
    }
}

/// Asks node `target` who leads `group`, as its member sees it.
pub async fn ask_leader(
    transport: &dyn Transport,
    target: NodeId,
    group: GroupId,
) -> Result<Option<NodeId>, TransportError> {
    let answer = transport.call(target, group, RpcKind::Leader, Bytes::new()).await?;
    decode(&answer)
}

/// Asks the other members (`members` less `me` and those `down`) who leads `group`, one at a
/// time; the first live leader named (a member not knowing says so, a down one is skipped).
pub async fn find_leader(
    transport: &dyn Transport,
    group: GroupId,
    members: &[NodeId],
    me: NodeId,
    down: &(dyn Fn(NodeId) -> bool + Sync),
) -> Option<NodeId> {
    for &m in members.iter().filter(|&&m| m != me && !down(m)) {
        let ask = ask_leader(transport, m, group);
        if let Ok(Ok(Some(l))) = tokio::time::timeout(std::time::Duration::from_secs(1), ask).await {
            if l == me || !down(l) {
                return Some(l);
            }
        }
    }
    None
}

/// Feeds arriving RPCs to a local member of a group of `M`.
pub(crate) struct Member<M: DurableMachine> {
    pub raft: Raft<C, SmAdapter<M>>,
    pub log: crate::storage::GroupLog,
    /// Handovers and status questions (`durable/handover.rs`).
    pub handover: Arc<Handover<SmAdapter<M>>>,
}

impl<M: DurableMachine> Handler for Member<M> {
    fn handle(&self, kind: RpcKind, body: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let (raft, log, handover) = (self.raft.clone(), self.log.clone(), self.handover.clone());
        Box::pin(async move {
            match kind {
                RpcKind::Append => {
                    let req: AppendEntriesRequest<C> = decode(&body)?;
                    encode(&raft.append_entries(req).await)
                }
                RpcKind::Vote => {
                    let req: VoteRequest<C> = decode(&body)?;
                    encode(&raft.vote(req).await)
                }
                RpcKind::PreVote => {
                    let req: VoteRequest<C> = decode(&body)?;
                    encode(&raft.pre_vote(req).await)
                }
                RpcKind::Snapshot => {
                    type Sent = (VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>, Vec<(u64, Vec<u8>)>);
                    let (vote, meta, data, kept): Sent = decode(&body)?;
                    // Kept first: once the snapshot is in, its messages' bodies are read.
                    if let Err(e) = log.keep(&kept) {
                        return Err(TransportError::Malformed(format!("cannot keep the snapshot's entries: {e}")));
                    }
                    let snapshot = SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(data) };
                    encode(&raft.install_full_snapshot(vote, snapshot).await)
                }
                RpcKind::Propose => {
                    let payloads: Vec<Payload> = decode(&body)?;
                    encode(&forward::propose_here::<M, _>(&raft, payloads).await)
                }
                RpcKind::Leader => encode(&raft.server_metrics().borrow_watched().current_leader),
                RpcKind::TransferLeader => {
                    let req: TransferLeaderRequest<C> = decode(&body)?;
                    encode(&raft.handle_transfer_leader(req).await)
                }
                RpcKind::HandOver | RpcKind::Elect | RpcKind::Status => handover.answer(kind, &body).await,
                RpcKind::Applied | RpcKind::Join | RpcKind::Peek | RpcKind::Reply => {
                    Err(TransportError::Malformed("not a group's question".into()))
                }
            }
        })
    }
}
