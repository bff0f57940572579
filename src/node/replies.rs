//! Direct reply-to (`amq.rabbitmq.reply-to`) across the cluster. A requester's pseudo-queue
//! name carries its node's id (`amq.rabbitmq.reply-to.n<id>.<token>`, opaque to clients, as
//! RabbitMQ's encodes its node and channel), so a reply published on any node reaches it:
//! delivered here when the requester is a connection of this node, else sent to its node
//! ([`RpcKind::Reply`] to the [`NODE_REPLY`] pseudo-group), which delivers it the same way.
//! A reply that finds no requester is dropped (returned to a mandatory publisher), as
//! RabbitMQ drops it.

use super::Node;
use crate::codec::{Reader, Writer};
use crate::ids::ChannelId;
use crate::queue::machine::codec::{get_message, put_message};
use crate::queue::{ClientEvent, ClientSink, Message};
use crate::raft::transport::{Handler, NODE_REPLY, RpcKind, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a reply may take to reach the requester's node.
const PATIENCE: Duration = Duration::from_secs(5);

/// The node a direct reply-to name belongs to (`None`: not one of ours).
fn node_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(crate::broker::name::DIRECT_REPLY_TO)?.strip_prefix(".n")?;
    rest.split_once('.')?.0.parse().ok()
}

struct Replies(Weak<Node>);

impl Handler for Replies {
    fn handle(&self, kind: RpcKind, body: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let node = self.0.clone();
        Box::pin(async move {
            if kind != RpcKind::Reply {
                return Err(TransportError::Malformed("only Reply is asked here".into()));
            }
            let mut r = Reader::new(body);
            let malformed = |e: crate::codec::CodecError| TransportError::Malformed(e.to_string());
            let name = r.str().map_err(malformed)?;
            let msg = get_message(&mut r).map_err(malformed)?;
            let delivered = node.upgrade().is_some_and(|n| n.deliver_reply_here(&name, Arc::new(msg)));
            Ok(Bytes::from_static(if delivered { b"\x01" } else { b"\x00" }))
        })
    }
}

impl Node {
    /// A new direct reply-to name for a requester on this node.
    pub fn direct_reply_name(&self, token: &str) -> String {
        format!("{}.n{}.{token}", crate::broker::name::DIRECT_REPLY_TO, self.id)
    }

    /// Registers a direct reply-to pseudo-queue for a channel.
    pub fn register_direct_reply(&self, name: String, sink: ClientSink, channel: ChannelId) {
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).insert(name, (sink, channel));
    }

    pub fn unregister_direct_reply(&self, name: &str) {
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Whether a direct reply-to name has a requester: on this node, or (by its name) on a
    /// running node of the cluster.
    pub fn direct_reply_exists(&self, name: &str) -> bool {
        if self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            return true;
        }
        node_of(name).is_some_and(|n| n != self.id && self.node_running(n))
    }

    /// Takes replies sent by the other nodes (a single node: nothing to do).
    pub(super) fn answer_replies(self: &Arc<Self>) {
        if let Some(rep) = &self.replication {
            rep.router.register(NODE_REPLY, Arc::new(Replies(Arc::downgrade(self))));
        }
    }

    /// Delivers a direct reply to its requester wherever it is; whether it got there.
    pub async fn deliver_direct_reply(&self, name: &str, msg: Arc<Message>) -> bool {
        if self.deliver_reply_here(name, msg.clone()) {
            return true;
        }
        let (Some(target), Some(rep)) = (node_of(name).filter(|&n| n != self.id), &self.replication) else {
            return false;
        };
        let mut w = Writer::new();
        w.str(name);
        put_message(&mut w, &msg);
        let call = rep.transport.call(target, NODE_REPLY, RpcKind::Reply, w.buf.into());
        match tokio::time::timeout(PATIENCE, call).await {
            Ok(Ok(answer)) => answer.first() == Some(&1),
            Ok(Err(e)) => {
                tracing::debug!(node = target, error = %e, "a direct reply did not reach its node");
                false
            }
            Err(_) => false,
        }
    }

    fn deliver_reply_here(&self, name: &str, msg: Arc<Message>) -> bool {
        let target = self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        target.is_some_and(|(sink, channel)| sink.try_send(ClientEvent::DirectReply { channel, msg }).is_ok())
    }
}
