//! Client connections, their channels and consumers (`/api/connections…`, `/api/channels…`,
//! `/api/consumers…`), read from the node's registry and each connection's own snapshot, and
//! `DELETE /api/connections/{name}`, which closes one with 320 CONNECTION_FORCED and the
//! `X-Reason` header's text or RabbitMQ's "Closed via management plugin".
//!
//! As RabbitMQ: `administrator` and `monitoring` users see every connection, other management
//! users only their own.

use super::auth::User;
use super::json;
use super::{Api, ApiError};
use crate::node::clients::{ChannelInfo, ClientInfo, Io};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::Arc;

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
        "state": "running",
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

fn find(node: &Api, user: &User, name: &str) -> Result<Arc<ClientInfo>, ApiError> {
    node.clients().by_name(name).filter(|c| user.sees_all() || c.user == user.name).ok_or_else(ApiError::not_found)
}

async fn list_connections(State(node): State<Api>, user: User) -> Json<Value> {
    Json(visible(&node, &user, None).iter().map(|c| connection_json(&node, c)).collect())
}

async fn vhost_connections(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Json<Value> {
    Json(visible(&node, &user, Some(&vhost)).iter().map(|c| connection_json(&node, c)).collect())
}

async fn show_connection(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = find(&node, &user, &name)?;
    Ok(Json(connection_json(&node, &c)))
}

async fn close_connection(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let c = find(&node, &user, &name)?;
    if !user.is_admin() && c.user != user.name {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .filter(|r| !r.is_empty())
        .unwrap_or("Closed via management plugin");
    tracing::info!(connection = %c.name, by = %user.name, reason, "closing connection via the management API");
    c.close(reason.to_owned());
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

async fn channel_list(node: &Api, conns: &[Arc<ClientInfo>]) -> Json<Value> {
    Json(channels_of(conns).await.iter().map(|(c, ch)| channel_json(node, c, ch)).collect())
}

async fn list_channels(State(node): State<Api>, user: User) -> Json<Value> {
    channel_list(&node, &visible(&node, &user, None)).await
}

async fn vhost_channels(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Json<Value> {
    channel_list(&node, &visible(&node, &user, Some(&vhost))).await
}

async fn connection_channels(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(channel_list(&node, &[find(&node, &user, &name)?]).await)
}

async fn show_channel(State(node): State<Api>, user: User, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let (conn, number) = name
        .strip_suffix(')')
        .and_then(|n| n.rsplit_once(" ("))
        .and_then(|(c, n)| Some((c, n.parse::<u16>().ok()?)))
        .ok_or_else(ApiError::not_found)?;
    let c = find(&node, &user, conn)?;
    let chans = c.inspect().await;
    let ch = chans.iter().find(|ch| ch.number == number).ok_or_else(ApiError::not_found)?;
    Ok(Json(channel_json(&node, &c, ch)))
}

/// The consumers on these connections, optionally only those of one queue.
pub async fn consumers_json(node: &Api, conns: &[Arc<ClientInfo>], queue: Option<&str>) -> Vec<Value> {
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
    Json(Value::Array(consumers_json(&node, &visible(&node, &user, None), None).await))
}

async fn vhost_consumers(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Json<Value> {
    Json(Value::Array(consumers_json(&node, &visible(&node, &user, Some(&vhost)), None).await))
}
