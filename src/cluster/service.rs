//! The server side: the `Cluster` service on `--cluster-addr`, handing Raft RPCs to this
//! node's [`Router`].

use super::auth::Credentials;
use super::pb::cluster_server::{Cluster, ClusterServer};
use super::pb::{self, Frame, HelloReply, HelloRequest, RaftReply, RaftRequest, raft_reply::Outcome};
use crate::raft::transport::{Duplex, Router, RpcKind, TransportError};
use crate::storage::GroupId;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Who this node is, for `Hello` (its id is its router's).
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    /// Set once the node is a member of a running cluster ([`crate::raft::transport::Hello`]).
    pub member: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// What its hello answers say of it and of the askers (kept current by the node).
    pub said: std::sync::Arc<crate::node::peers::Said>,
}

struct Service {
    router: Router,
    me: Identity,
    /// Set once the service is stopping: `Calls` streams end (they would hold a graceful stop
    /// up forever).
    stopping: tokio::sync::watch::Receiver<bool>,
}

pub(super) fn kind_from_pb(k: i32) -> Option<RpcKind> {
    match pb::RaftKind::try_from(k).ok()? {
        pb::RaftKind::Vote => Some(RpcKind::Vote),
        pb::RaftKind::Append => Some(RpcKind::Append),
        pb::RaftKind::Snapshot => Some(RpcKind::Snapshot),
        pb::RaftKind::Propose => Some(RpcKind::Propose),
        pb::RaftKind::Leader => Some(RpcKind::Leader),
        pb::RaftKind::PreVote => Some(RpcKind::PreVote),
        pb::RaftKind::Applied => Some(RpcKind::Applied),
        pb::RaftKind::Join => Some(RpcKind::Join),
        pb::RaftKind::Peek => Some(RpcKind::Peek),
        pb::RaftKind::Reply => Some(RpcKind::Reply),
        pb::RaftKind::TransferLeader => Some(RpcKind::TransferLeader),
        pb::RaftKind::HandOver => Some(RpcKind::HandOver),
        pb::RaftKind::Elect => Some(RpcKind::Elect),
        pb::RaftKind::Status => Some(RpcKind::Status),
    }
}

pub(super) fn kind_to_pb(k: RpcKind) -> pb::RaftKind {
    match k {
        RpcKind::Vote => pb::RaftKind::Vote,
        RpcKind::Append => pb::RaftKind::Append,
        RpcKind::Snapshot => pb::RaftKind::Snapshot,
        RpcKind::Propose => pb::RaftKind::Propose,
        RpcKind::Leader => pb::RaftKind::Leader,
        RpcKind::PreVote => pb::RaftKind::PreVote,
        RpcKind::Applied => pb::RaftKind::Applied,
        RpcKind::Join => pb::RaftKind::Join,
        RpcKind::Peek => pb::RaftKind::Peek,
        RpcKind::Reply => pb::RaftKind::Reply,
        RpcKind::TransferLeader => pb::RaftKind::TransferLeader,
        RpcKind::HandOver => pb::RaftKind::HandOver,
        RpcKind::Elect => pb::RaftKind::Elect,
        RpcKind::Status => pb::RaftKind::Status,
    }
}

/// Moves the frames arriving on a stream from `peer` to this node's end of it, until either
/// side ends.
pub(super) fn pump(mut frames: tonic::Streaming<Frame>, inbound: tokio::sync::mpsc::Sender<bytes::Bytes>, peer: u64) {
    tokio::spawn(async move {
        loop {
            match frames.message().await {
                Ok(Some(f)) => {
                    if inbound.send(f.body).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(s) => {
                    tracing::debug!(peer, reason = %s.message(), "a stream between nodes ended");
                    break;
                }
            }
        }
    });
}

type Frames = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Frame, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Cluster for Service {
    type StreamStream = Frames;
    type CallsStream = Replies;

    async fn stream(&self, req: Request<tonic::Streaming<Frame>>) -> Result<Response<Frames>, Status> {
        let from = super::auth::caller(&req)?;
        let frames = req.into_inner();
        let (ours, theirs) = Duplex::pair();
        self.router.accept(from, theirs).map_err(|e| Status::unavailable(e.to_string()))?;
        let Duplex { tx: inbound, rx: outbound } = ours;
        pump(frames, inbound, from);
        let out = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(outbound), |body| {
            Ok(Frame { body })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let r = req.into_inner();
        tracing::debug!(peer = %r.node_name, id = r.node_id, addr = %r.advertise_addr, "hello");
        let member = self.me.member.load(std::sync::atomic::Ordering::Acquire);
        let alarms = *self.me.said.alarms.lock().unwrap_or_else(|p| p.into_inner());
        let asker_forgotten =
            r.node_id != 0 && self.me.said.forgotten.lock().unwrap_or_else(|p| p.into_inner()).contains(&r.node_id);
        Ok(Response::new(HelloReply {
            node_name: self.me.name.clone(),
            node_id: self.router.me(),
            member,
            memory_alarm: alarms.memory,
            disk_alarm: alarms.disk,
            asker_forgotten,
        }))
    }

    async fn raft_chunked(&self, req: Request<tonic::Streaming<RaftRequest>>) -> Result<Response<RaftReply>, Status> {
        let mut chunks = req.into_inner();
        let Some(mut first) = chunks.message().await? else {
            return Err(Status::invalid_argument("no chunks"));
        };
        let mut body = bytes::BytesMut::from(&first.body[..]);
        while let Some(c) = chunks.message().await? {
            if body.len() + c.body.len() > MAX_ASSEMBLED {
                return Err(Status::resource_exhausted("a chunked call past its bound"));
            }
            body.extend_from_slice(&c.body);
        }
        first.body = body.freeze();
        Ok(Response::new(answer(&self.router, first).await))
    }

    async fn calls(&self, req: Request<tonic::Streaming<RaftRequest>>) -> Result<Response<Replies>, Status> {
        let mut calls = req.into_inner();
        let (replies, out) = tokio::sync::mpsc::channel(REPLIES_BUFFERED);
        let (router, mut stopping) = (self.router.clone(), self.stopping.clone());
        tokio::spawn(async move {
            // Each call is answered on its own task: one group's slow answer (a follower's
            // fsync) never holds up another's. Once stopping, no call is taken, and the
            // stream ends when those taken are answered.
            loop {
                let next = tokio::select! {
                    r = calls.message() => r,
                    _ = stopping.wait_for(|s| *s) => break,
                };
                let Ok(Some(r)) = next else { break };
                let (router, replies) = (router.clone(), replies.clone());
                tokio::spawn(async move {
                    let reply = answer(&router, r).await;
                    let _ = replies.send(Ok(reply)).await;
                });
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))))
    }
}

/// Replies buffered on a `Calls` stream before its answering tasks wait (back-pressure).
const REPLIES_BUFFERED: usize = 256;

type Replies = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftReply, Status>> + Send + 'static>>;

/// Hands one Raft RPC to its group and words the answer, under the request's call number.
async fn answer(router: &Router, r: RaftRequest) -> RaftReply {
    let me = router.me();
    let outcome = if r.target != me {
        Outcome::Refused(format!("this is node {me}, not {}", r.target))
    } else if let Some(kind) = kind_from_pb(r.kind) {
        match router.handle(GroupId(r.group), kind, r.body).await {
            Ok(body) => Outcome::Body(body),
            Err(TransportError::NoGroup { group, .. }) => Outcome::NoGroup(group),
            Err(e) => Outcome::Malformed(e.to_string()),
        }
    } else {
        Outcome::Malformed(format!("kind {}", r.kind))
    };
    RaftReply { outcome: Some(outcome), call: r.call }
}

/// Largest message accepted or sent (Raft calls past 4 MiB travel in chunks, `client.rs`;
/// a remote queue's frame holds at most a batch of deliveries).
pub(super) const MAX_MESSAGE: usize = 512 << 20;
/// Largest chunked call assembled (a snapshot with its queue's message bodies).
const MAX_ASSEMBLED: usize = 8 << 30;

/// Serves the cluster service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    me: Identity,
    creds: Credentials,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stopped, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        stopped.send_replace(true);
    };
    let server = ClusterServer::new(Service { router, me, stopping })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let svc = tonic::service::interceptor::InterceptedService::new(server, move |req: Request<()>| {
        creds.check(&req)?;
        Ok(req)
    });
    // The builder's `tcp_nodelay` applies only to listeners tonic binds itself: the accepted
    // sockets get it here, or every answer (a Raft append's) waits out Nagle against the
    // peer's delayed ack, ~40 ms.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(incoming, shutdown).await
}
