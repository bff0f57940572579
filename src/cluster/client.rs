//! The client side: a [`Transport`] over one lazily connected HTTP/2 channel per peer, whose
//! small Raft calls share one long-lived stream ([`super::calls`]).

use super::auth::Credentials;
use super::calls::Link;
use super::pb::cluster_client::ClusterClient;
use super::pb::{Frame, HelloRequest, RaftRequest};
use super::service::{MAX_MESSAGE, kind_to_pb};
use crate::raft::transport::{Duplex, Hello, NodeId, RpcKind, Transport, TransportError};
use crate::storage::GroupId;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Raft calls larger than this travel in chunks of this size.
const CHUNK: usize = 4 << 20;
/// How long one Raft call may take before the peer counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a Raft call finds a peer not connectable, the others fail at once for this long
/// instead of each dialing it again: with thousands of groups, every leader's replication to
/// a dead node would otherwise dial it thousands of times a second (and log each refusal).
/// Liveness (`hello`) still asks every second, so a returning node is seen as soon as ever.
const REDIAL_AFTER: Duration = Duration::from_millis(250);

/// Raft RPCs to the peers over gRPC.
#[derive(Clone)]
pub struct GrpcTransport {
    /// This node's id (streams say who opens them).
    me: NodeId,
    /// The address this node's connections to peers come from: its cluster listener's, when
    /// that is not a wildcard (so firewalls, and the tests' partitions, see who connects).
    source: Option<std::net::IpAddr>,
    creds: Credentials,
    /// Peer id → its cluster address (`host:port`).
    addrs: Arc<Mutex<HashMap<NodeId, String>>>,
    /// One channel per peer (tonic multiplexes every call over it).
    channels: Arc<Mutex<HashMap<NodeId, Channel>>>,
    /// One stream of Raft calls per peer, over its channel.
    links: Arc<Mutex<HashMap<NodeId, Link>>>,
    /// Peers that refused a connection, with when Raft calls may dial them again.
    refused: Arc<Mutex<HashMap<NodeId, std::time::Instant>>>,
}

impl GrpcTransport {
    pub fn new(me: NodeId, creds: Credentials, source: Option<std::net::IpAddr>) -> Self {
        let (addrs, channels, links, refused) = Default::default();
        Self { me, source, creds, addrs, channels, links, refused }
    }

    /// The error a Raft call to `id` fails with at once while it may not dial the peer.
    fn refusing(&self, id: NodeId) -> Option<TransportError> {
        let until = self.refused.lock().unwrap_or_else(|p| p.into_inner()).get(&id).copied()?;
        let reason = "it refused a connection just now".to_owned();
        (std::time::Instant::now() < until).then_some(TransportError::NotConnected { node: id, reason })
    }

    fn channel(&self, id: NodeId) -> Result<Channel, TransportError> {
        if let Some(c) = self.channels.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        let addr = self.addrs.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
        let not_connected = |reason: String| TransportError::NotConnected { node: id, reason };
        let addr = addr.ok_or_else(|| not_connected("address unknown".into()))?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| not_connected(format!("bad address {addr}: {e}")))?
            .local_address(self.source)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).insert(id, channel.clone());
        Ok(channel)
    }

    /// The peer's link, opened if there is none.
    fn link(&self, id: NodeId) -> Result<Link, TransportError> {
        if let Some(l) = self.links.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(l.clone());
        }
        let channel = self.channel(id)?;
        let weak = Arc::downgrade(&self.links);
        // Opened and put in place under the lock its failure takes to remove it: a link that
        // fails at once (the peer refuses connections) is removed after it is in place, never
        // before (a dead link left in place would fail every call to the peer from then on).
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = links.get(&id) {
            return Ok(l.clone());
        }
        let link = Link::open(channel, self.creds.clone(), id, MAX_MESSAGE, move |failed| {
            if let Some(links) = weak.upgrade() {
                let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
                if links.get(&id).is_some_and(|l| l.id == failed) {
                    links.remove(&id);
                }
            }
        });
        links.insert(id, link.clone());
        Ok(link)
    }
}

impl Transport for GrpcTransport {
    fn call(
        &self,
        target: NodeId,
        group: GroupId,
        kind: RpcKind,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let kind = kind_to_pb(kind) as i32;
        if let Some(e) = self.refusing(target) {
            return Box::pin(std::future::ready(Err(e)));
        }
        if body.len() <= CHUNK {
            let link = self.link(target);
            let refused = self.refused.clone();
            return Box::pin(async move {
                let req = RaftRequest { target, group: group.0, kind, body, call: 0 };
                let answer = match tokio::time::timeout(CALL_TIMEOUT, link?.call(target, req)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(TransportError::Unreachable { node: target, reason: "no answer in time".into() }),
                };
                if let Err(TransportError::NotConnected { .. }) = answer {
                    let until = std::time::Instant::now() + REDIAL_AFTER;
                    refused.lock().unwrap_or_else(|p| p.into_inner()).insert(target, until);
                }
                answer
            });
        }
        let channel = self.channel(target);
        let creds = self.creds.clone();
        Box::pin(async move {
            let mut client = ClusterClient::new(channel?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            // The first chunk addresses it; the others are slices of the same buffer.
            let chunks: Vec<RaftRequest> = (0..body.len())
                .step_by(CHUNK)
                .enumerate()
                .map(|(n, at)| {
                    let part = body.slice(at..(at + CHUNK).min(body.len()));
                    match n {
                        0 => RaftRequest { target, group: group.0, kind, body: part, call: 0 },
                        _ => RaftRequest { body: part, ..Default::default() },
                    }
                })
                .collect();
            let mut req = tonic::Request::new(tokio_stream::iter(chunks));
            creds.attach(&mut req);
            match client.raft_chunked(req).await {
                Ok(r) => super::calls::outcome(target, r.into_inner()),
                Err(s) => Err(failed(target, s)),
            }
        })
    }

    fn hello(&self, target: NodeId, me: &Hello) -> BoxFuture<'static, Result<Hello, TransportError>> {
        let channel = self.channel(target);
        let creds = self.creds.clone();
        let body = HelloRequest { node_name: me.name.clone(), node_id: me.id, advertise_addr: String::new() };
        Box::pin(async move {
            let mut client = ClusterClient::new(channel?);
            let mut req = tonic::Request::new(body);
            creds.attach(&mut req);
            let r = client.hello(req).await.map_err(|s| failed(target, s))?.into_inner();
            Ok(Hello {
                name: r.node_name,
                id: r.node_id,
                member: r.member,
                memory_alarm: r.memory_alarm,
                disk_alarm: r.disk_alarm,
                asker_forgotten: r.asker_forgotten,
            })
        })
    }

    /// Where a peer is (a changed address drops the old channel).
    fn set_peer(&self, id: NodeId, addr: &str) {
        let old = self.addrs.lock().unwrap_or_else(|p| p.into_inner()).insert(id, addr.to_owned());
        if old.as_deref() != Some(addr) {
            self.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }

    fn open(&self, target: NodeId) -> BoxFuture<'static, Result<Duplex, TransportError>> {
        let channel = self.channel(target);
        let (creds, me) = (self.creds.clone(), self.me);
        Box::pin(async move {
            let mut client = ClusterClient::new(channel?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            let (ours, theirs) = Duplex::pair();
            let Duplex { tx: inbound, rx: outbound } = ours;
            let outbound =
                tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(outbound), |body| Frame {
                    body,
                });
            let mut req = tonic::Request::new(outbound);
            creds.attach(&mut req);
            super::auth::attach_node(&mut req, me);
            let frames = client.stream(req).await.map_err(|s| failed(target, s))?.into_inner();
            super::service::pump(frames, inbound, target);
            Ok(theirs)
        })
    }
}

/// What a failed call says about the peer.
pub(super) fn failed(target: NodeId, s: tonic::Status) -> TransportError {
    match s.code() {
        tonic::Code::Unauthenticated => {
            tracing::warn!(peer = target, reason = %s.message(), "refused by a peer: check the cluster name and secret");
            TransportError::Unreachable { node: target, reason: format!("refused: {}", s.message()) }
        }
        // tonic's words when the connection could not be made: nothing was sent.
        tonic::Code::Unavailable if s.message().contains("connect") => {
            TransportError::NotConnected { node: target, reason: s.message().to_owned() }
        }
        _ => TransportError::Unreachable { node: target, reason: s.message().to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::transport::RpcKind;

    /// A peer that refuses connections is dialed once per [`REDIAL_AFTER`]: the calls in
    /// between fail at once, without dialing, and say so.
    #[tokio::test]
    async fn a_peer_that_refuses_connections_is_not_dialed_again_at_once() {
        // A port nothing listens on: bound, then closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let t = GrpcTransport::new(1, Credentials::new("warren", "secret"), None);
        t.set_peer(2, &addr.to_string());
        let call = || t.call(2, GroupId(7), RpcKind::Vote, Bytes::from_static(b"x"));
        let first = call().await;
        assert!(matches!(&first, Err(TransportError::NotConnected { .. })), "{first:?}");
        let second = call().await;
        match &second {
            Err(TransportError::NotConnected { reason, .. }) => assert!(reason.contains("just now"), "{reason}"),
            other => panic!("expected a fast refusal, got {other:?}"),
        }
        tokio::time::sleep(REDIAL_AFTER).await;
        match call().await {
            Err(TransportError::NotConnected { reason, .. }) => assert!(!reason.contains("just now"), "{reason}"),
            other => panic!("expected a real dial, got {other:?}"),
        }
    }
}
