//! Client connections, their channels and consumers (`/api/connections…`, `/api/channels…`,
//! `/api/consumers…`), read from the node's registry and each connection's own snapshot, and
//! `DELETE /api/connections/{name}`, which closes one with 320 CONNECTION_FORCED and the
//! `X-Reason` header's text or RabbitMQ's "Closed via management plugin".
//!
//! As RabbitMQ: `administrator` and `monitoring` users see every connection, other management
//! users only their own; and every node's, not only this node's: the other nodes are asked
//! ([`Question`], carried by `node/peek.rs`) and answer with their own in the same shape.

use super::auth::User;
use super::json;
use super::{Api, ApiError};
use crate::node::clients::{ChannelInfo, ClientInfo, Io};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// What another node is asked about its own connections (JSON on the wire).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Question {
    what: What,
    /// Only this user's connections (`None`: a user who sees all).
    user: Option<String>,
    vhost: Option<String>,
    /// Only the connection of this name.
    name: Option<String>,
    /// Consumers: only those of this queue.
    queue: Option<String>,
    /// Close: the reason the client is told.
    reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum What {
    #[default]
    Connections,
    Channels,
    Consumers,
    /// Close the named connection; answers `[true]` if this node had it.
    Close,
    /// The message counters this node's connections kept for queues (of `vhost`, named
    /// `queue` when given): `[{vhost, name, message_stats}]` (`mgmt/queues.rs` adds them up).
    QueueStats,
    /// The node itself, as its own `/api/nodes/{name}` shows it (memory, uptime, alarms...).
    Node,
}

impl Question {
    fn new(what: What, user: &User, vhost: Option<&str>) -> Self {
        let user = (!user.sees_all()).then(|| user.name.clone());
        Self { what, user, vhost: vhost.map(str::to_owned), ..Self::default() }
    }

    fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// This node's connections the question is about.
    fn connections(&self, node: &Api) -> Vec<Arc<ClientInfo>> {
        node.clients()
            .all()
            .into_iter()
            .filter(|c| self.user.as_ref().is_none_or(|u| *u == c.user))
            .filter(|c| self.vhost.as_ref().is_none_or(|v| *v == c.vhost))
            .filter(|c| self.name.as_ref().is_none_or(|n| *n == c.name))
            .collect()
    }

    /// This node's answer.
    async fn answer_here(&self, node: &Api) -> Vec<Value> {
        let conns = self.connections(node);
        match self.what {
            What::Connections => conns.iter().map(|c| connection_json(node, c)).collect(),
            What::Channels => channels_of(&conns).await.iter().map(|(c, ch)| channel_json(node, c, ch)).collect(),
            What::Consumers => consumers_json(node, &conns, self.queue.as_deref()).await,
            What::Close => {
                let reason = self.reason.clone().unwrap_or_default();
                let closed = conns.iter().any(|c| {
                    tracing::info!(connection = %c.name, reason = %reason, "closing connection via the management API");
                    c.close(reason.clone())
                });
                if closed { vec![Value::Bool(true)] } else { Vec::new() }
            }
            What::QueueStats => super::queues::counted_here(node, self.vhost.as_deref(), self.queue.as_deref()),
            What::Node => vec![super::overview::node_json(node)],
        }
    }

    /// This node's answer and every other running node's, in one list.
    async fn answer(&self, node: &Api) -> Vec<Value> {
        let mut out = self.answer_here(node).await;
        out.extend(self.answer_elsewhere(node).await);
        out
    }

    /// Every other running node's answer, in one list.
    async fn answer_elsewhere(&self, node: &Api) -> Vec<Value> {
        let mut out = Vec::new();
        let Ok(q) = serde_json::to_vec(self) else { return out };
        for a in node.peek_peers(q.into()).await {
            if let Ok(Value::Array(items)) = serde_json::from_slice(&a) {
                out.extend(items);
            }
        }
        out
    }
}

/// The other running nodes as each shows itself (`/api/nodes` lists them with this node).
pub async fn other_nodes(node: &Api) -> Vec<Value> {
    Question { what: What::Node, ..Question::default() }.answer_elsewhere(node).await
}

/// How this node answers the other nodes' questions (`node/peek.rs`).
pub fn answer_peeks(node: &Api) {
    let weak = Arc::downgrade(node);
    node.answer_peeks(Arc::new(move |body: bytes::Bytes| {
        let weak = weak.clone();
        Box::pin(async move {
            let (Some(node), Ok(q)) = (weak.upgrade(), serde_json::from_slice::<Question>(&body)) else {
                return bytes::Bytes::from_static(b"[]");
            };
            serde_json::to_vec(&q.answer_here(&node).await).unwrap_or_default().into()
        })
    }));
}

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/connections", get(list_connections))
        .route("/api/vhosts/{vhost}/connections", get(vhost_connections))
        .route("/api/connections/{name}", get(show_connection).delete(close_connection))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(list_channels))
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/channels/{name}", get(show_channel))
        .route("/api/consumers", get(list_consumers))
        .route("/api/consumers/{vhost}", get(vhost_consumers))
}

/// The connections `user` may see, optionally of one vhost.
pub fn visible(node: &Api, user: &User, vhost: Option<&str>) -> Vec<Arc<ClientInfo>> {
    node.clients()
        .all()
        .into_iter()
        .filter(|c| (user.sees_all() || c.user == user.name) && vhost.is_none_or(|v| v == c.vhost))
        .collect()
}

fn connection_json(node: &Api, c: &ClientInfo) -> Value {
    let mut v = json!({
        "name": c.name,
        "node": node.name(),
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "state": c.state().as_str(),
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "ssl": false,
        "auth_mechanism": c.auth_mechanism,
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "client_properties": json::table(&c.client_properties),
        "channels": c.channel_count(),
        "frame_max": c.frame_max,
        "channel_max": c.channel_max,
        "timeout": c.heartbeat,
        "connected_at": c.connected_at,
        "recv_oct": Io::get(&c.io.recv_oct),
        "recv_cnt": Io::get(&c.io.recv_cnt),
        "send_oct": Io::get(&c.io.send_oct),
        "send_cnt": Io::get(&c.io.send_cnt),
    });
    if let Some(n) = &c.user_provided_name {
        v["user_provided_name"] = json!(n);
    }
    v
}

/// The connection named `name` as `user` may see it, on whichever node it is.
async fn find(node: &Api, user: &User, name: &str) -> Result<Value, ApiError> {
    let q = Question::new(What::Connections, user, None).named(name);
    q.answer(node).await.into_iter().next().ok_or_else(ApiError::not_found)
}

async fn list_connections(State(node): State<Api>, user: User) -> Json<Value> {
    Json(Value::Array(Question::new(What::Connections, &user, None).answer(&node).await))
}

async fn vhost_connections(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Json<Value> {
    Json(Value::Array(Question::new(What::Connections, &user, Some(&vhost)).answer(&node).await))
}

async fn show_connection(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(find(&node, &user, &name).await?))
}

async fn close_connection(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let c = find(&node, &user, &name).await?;
    if !user.is_admin() && c["user"].as_str() != Some(user.name.as_str()) {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .filter(|r| !r.is_empty())
        .unwrap_or("Closed via management plugin");
    tracing::info!(connection = %name, by = %user.name, reason, "closing connection via the management API");
    let mut q = Question::new(What::Close, &user, None).named(&name);
    q.reason = Some(reason.to_owned());
    q.answer(&node).await;
    Ok(StatusCode::NO_CONTENT)
}

fn channel_json(node: &Api, c: &ClientInfo, ch: &ChannelInfo) -> Value {
    json!({
        "name": format!("{} ({})", c.name, ch.number),
        "number": ch.number,
        "node": node.name(),
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "state": "running",
        "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "confirm": ch.confirm,
        "transactional": ch.transactional,
        "consumer_count": ch.consumers.len(),
        "messages_unacknowledged": ch.unacked,
        "messages_unconfirmed": ch.unconfirmed,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "connection_details": { "name": c.name, "peer_host": c.peer.ip().to_string(), "peer_port": c.peer.port() },
    })
}

/// Every channel of these connections, with the connection each belongs to.
async fn channels_of(conns: &[Arc<ClientInfo>]) -> Vec<(Arc<ClientInfo>, ChannelInfo)> {
    let snapshots = futures::future::join_all(conns.iter().map(|c| c.inspect())).await;
    conns.iter().zip(snapshots).flat_map(|(c, chans)| chans.into_iter().map(move |ch| (c.clone(), ch))).collect()
}

async fn list_channels(State(node): State<Api>, user: User) -> Json<Value> {
    Json(Value::Array(Question::new(What::Channels, &user, None).answer(&node).await))
}

async fn vhost_channels(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Json<Value> {
    Json(Value::Array(Question::new(What::Channels, &user, Some(&vhost)).answer(&node).await))
}

async fn connection_channels(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    find(&node, &user, &name).await?;
    Ok(Json(Value::Array(Question::new(What::Channels, &user, None).named(&name).answer(&node).await)))
}

async fn show_channel(State(node): State<Api>, user: User, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let (conn, number) = name
        .strip_suffix(')')
        .and_then(|n| n.rsplit_once(" ("))
        .and_then(|(c, n)| Some((c, n.parse::<u16>().ok()?)))
        .ok_or_else(ApiError::not_found)?;
    let chans = Question::new(What::Channels, &user, None).named(conn).answer(&node).await;
    let ch = chans.into_iter().find(|ch| ch["number"] == number).ok_or_else(ApiError::not_found)?;
    Ok(Json(ch))
}

/// The message counters the other nodes' connections kept for queues (of `vhost`, named
/// `queue`), as `[{vhost, name, message_stats}]`.
pub async fn queue_stats_elsewhere(node: &Api, vhost: Option<&str>, queue: Option<&str>) -> Vec<Value> {
    let q = Question {
        what: What::QueueStats,
        vhost: vhost.map(str::to_owned),
        queue: queue.map(str::to_owned),
        ..Question::default()
    };
    q.answer_elsewhere(node).await
}

/// The consumers of queue `queue` in `vhost` on every node's connections (a queue's details).
pub async fn queue_consumers(node: &Api, vhost: &str, queue: &str) -> Vec<Value> {
    let mut q = Question { what: What::Consumers, vhost: Some(vhost.to_owned()), ..Question::default() };
    q.queue = Some(queue.to_owned());
    q.answer(node).await
}

/// The consumers on these connections, optionally only those of one queue.
async fn consumers_json(node: &Api, conns: &[Arc<ClientInfo>], queue: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for (c, ch) in channels_of(conns).await {
        for k in ch.consumers.iter().filter(|k| queue.is_none_or(|q| q == k.queue)) {
            out.push(json!({
                "consumer_tag": k.tag,
                "queue": { "name": k.queue, "vhost": c.vhost },
                "ack_required": k.ack_required,
                "exclusive": k.exclusive,
                "prefetch_count": k.prefetch_count,
                "arguments": json::table(&k.arguments),
                "active": true,
                "activity_status": "up",
                "channel_details": {
                    "name": format!("{} ({})", c.name, ch.number),
                    "number": ch.number,
                    "connection_name": c.name,
                    "peer_host": c.peer.ip().to_string(),
                    "peer_port": c.peer.port(),
                    "user": c.user,
                    "node": node.name(),
                },
            }));
        }
    }
    out
}

async fn list_consumers(State(node): State<Api>, user: User) -> Json<Value> {
    Json(Value::Array(Question::new(What::Consumers, &user, None).answer(&node).await))
}

async fn vhost_consumers(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Json<Value> {
    Json(Value::Array(Question::new(What::Consumers, &user, Some(&vhost)).answer(&node).await))
}
