//! The node at a glance: `/api/overview`, `/api/whoami`, `/api/cluster-name`, `/api/nodes`,
//! and the health checks load balancers and Kubernetes probe (`/api/health/checks/…`: 200
//! `{"status":"ok"}` or 503 with a reason, as RabbitMQ).

use super::auth::User;
use super::{Api, ApiError, queues};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

/// The version RabbitMQ clients and tools see as the management and broker version.
pub const RABBITMQ_VERSION: &str = "3.13.7";

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/cluster-name", get(cluster_name))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node).delete(forget))
        .route("/api/nodes/{node}/limits", put(set_limits))
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/health/checks/local-alarms", get(local_alarms))
        .route("/api/health/checks/ready-to-serve-clients", get(ready))
        .route("/api/node/drain", post(drain))
        .route("/api/node/revive", post(revive))
        .route("/api/health/checks/virtual-hosts", get(ok))
        .route("/api/health/checks/node-is-quorum-critical", get(quorum_critical))
        .route("/api/health/checks/quorum-queues-without-elected-leaders/all-vhosts", get(leaderless))
        .route("/api/health/checks/quorum-queues-without-elected-leaders/all-vhosts/", get(leaderless))
}

async fn whoami(user: User) -> Json<Value> {
    Json(json!({ "name": user.name, "tags": user.tags }))
}

/// A cluster's configured name (`--cluster-name`); a single node's is its node name, as
/// RabbitMQ names a cluster after its first node.
pub(super) fn cluster_name_of(node: &Api) -> String {
    let c = &node.config().cluster;
    if c.peers.is_empty() { node.name().to_owned() } else { c.name.clone() }
}

async fn cluster_name(State(node): State<Api>, _user: User) -> Json<Value> {
    Json(json!({ "name": cluster_name_of(&node) }))
}

async fn overview(State(node): State<Api>, user: User) -> Json<Value> {
    let topo = node.topology();
    let visible: Vec<_> = topo.meta.vhosts.values().filter(|v| user.sees_vhost(&topo, &v.name)).collect();
    let exchanges: usize = visible.iter().map(|v| v.exchanges.len()).sum();
    let handles: Vec<_> = visible
        .iter()
        .flat_map(|v| {
            v.queues.keys().filter_map(|q| topo.queues.get(&crate::ids::QueueKey::new(v.name.clone(), q.clone())))
        })
        .cloned()
        .collect();
    let queue_count = handles.len();
    drop(visible);
    drop(topo);
    let conns = super::connections::visible(&node, &user, None);
    let channels: u64 = conns.iter().map(|c| c.channel_count()).sum();
    let t = queues::totals(&handles).await;
    let (ready, unacked, consumers) = (t.messages, t.unacked, t.consumers);
    let name = node.name();
    let amqp = node.amqp_addr();
    let exchange_types: Vec<Value> = ["direct", "fanout", "topic", "headers", "x-delayed-message"]
        .iter()
        .map(|t| json!({ "name": t, "description": "", "enabled": true }))
        .collect();
    Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "erlang_version": "none (Rust)",
        "cluster_name": cluster_name_of(&node),
        "node": name,
        "rates_mode": "basic",
        "exchange_types": exchange_types,
        "object_totals": {
            "connections": conns.len(),
            "channels": channels,
            "exchanges": exchanges,
            "queues": queue_count,
            "consumers": consumers,
        },
        "queue_totals": {
            "messages": ready + unacked,
            "messages_details": { "rate": 0.0 },
            "messages_ready": ready,
            "messages_ready_details": { "rate": 0.0 },
            "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": { "rate": 0.0 },
        },
        "message_stats": super::rates::message_stats(node.stats(), crate::stats::Stat::NODE),
        "listeners": [
            { "node": name, "protocol": "amqp", "ip_address": amqp.ip().to_string(), "port": amqp.port() },
        ],
    }))
}

pub(super) fn node_json(node: &Api) -> Value {
    let alarms = node.local_alarms();
    json!({
        "name": node.name(),
        "type": "disc",
        "running": true,
        "being_drained": node.in_maintenance(),
        "quorum_leaders": node.quorum_leaders_here(),
        "mem_used": crate::alarm::resident_bytes().unwrap_or(0),
        "mem_limit": node.memory_limit(),
        "mem_alarm": alarms.memory,
        "disk_free": crate::alarm::free_bytes(&node.config().data_dir).unwrap_or(0),
        "disk_free_limit": node.disk_free_limit(),
        "disk_free_alarm": alarms.disk,
        "processors": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "fd_used": crate::alarm::open_fds().unwrap_or(0),
        "fd_total": crate::alarm::fd_limit().unwrap_or(0),
        "sockets_used": node.clients().len(),
        "sockets_total": crate::alarm::fd_limit().unwrap_or(0),
        "proc_used": crate::alarm::threads().unwrap_or(0),
        "proc_total": 1_048_576,
        "uptime": node.uptime_ms(),
        "os_pid": std::process::id().to_string(),
        "partitions": [],
    })
}

/// Another member of the cluster that did not describe itself (down, or slow to answer): what
/// this node knows of it.
fn peer_json(p: &crate::node::peers::PeerState) -> Value {
    json!({
        "name": p.name.clone().unwrap_or_else(|| format!("node {} (never answered)", p.id)),
        "type": "disc",
        "running": p.running,
        "mem_alarm": p.alarms.memory,
        "disk_free_alarm": p.alarms.disk,
        "partitions": [],
    })
}

/// Every member: this node, and each other one as it describes itself (memory, uptime,
/// disk, alarms, as RabbitMQ's nodes table shows them) or, when it does not answer, what this
/// node knows of it.
async fn all_nodes(node: &Api) -> Vec<Value> {
    let mut all = vec![node_json(node)];
    let answers = super::connections::other_nodes(node).await;
    for p in node.cluster_peers() {
        let described = answers.iter().find(|a| p.name.as_deref().is_some_and(|n| a["name"] == n));
        all.push(described.cloned().unwrap_or_else(|| peer_json(&p)));
    }
    all
}

async fn nodes(State(node): State<Api>, _user: User) -> Json<Value> {
    Json(Value::Array(all_nodes(&node).await))
}

async fn node(State(node): State<Api>, _user: User, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    all_nodes(&node).await.into_iter().find(|n| n["name"] == name.as_str()).map(Json).ok_or_else(ApiError::not_found)
}

/// `forget_cluster_node` (Warren's; RabbitMQ's API has no such call): a member that is down
/// for good leaves the cluster. 204, or 404 for an unknown node, 400 for a running one.
async fn forget(State(node): State<Api>, user: User, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    node.forget_node(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// RabbitMQ's `alarms` health check: 503 while any node of the cluster has an alarm raised.
async fn alarms(State(node): State<Api>, _user: User) -> Response {
    let mine = (node.name().to_owned(), node.local_alarms());
    let peers =
        node.cluster_peers().into_iter().map(|p| (p.name.unwrap_or_else(|| format!("node {}", p.id)), p.alarms));
    alarms_check(std::iter::once(mine).chain(peers), "resource alarm(s) in effect in the cluster")
}

/// RabbitMQ's `local-alarms` health check: this node's own alarms only.
async fn local_alarms(State(node): State<Api>, _user: User) -> Response {
    let mine = (node.name().to_owned(), node.local_alarms());
    alarms_check(std::iter::once(mine), "resource alarm(s) in effect on the node")
}

fn alarms_check(nodes: impl Iterator<Item = (String, crate::alarm::Alarms)>, reason: &str) -> Response {
    let mut raised = Vec::new();
    for (name, a) in nodes {
        if a.memory {
            raised.push(json!({ "node": name, "resource": "memory" }));
        }
        if a.disk {
            raised.push(json!({ "node": name, "resource": "disk" }));
        }
    }
    if raised.is_empty() {
        return Json(json!({ "status": "ok" })).into_response();
    }
    let body = json!({ "status": "failed", "reason": reason, "alarms": raised });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Changes this node's alarm thresholds at run time (Warren's, behind `warren ctl
/// set_vm_memory_high_watermark` and `set_disk_free_limit`, as rabbitmqctl's change the node
/// they run against): `vm_memory_high_watermark` (a fraction of RAM) or
/// `vm_memory_high_watermark_bytes`, and `disk_free_limit` (bytes). 204; 404 for another
/// node's name (ask that node), 400 for a bad value.
async fn set_limits(
    State(node): State<Api>,
    user: User,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if name != node.name() {
        return Err(ApiError::not_found());
    }
    let bytes = |key: &str| {
        body.get(key)
            .map(|v| v.as_u64().ok_or_else(|| ApiError::bad_request(format!("{key} must be a number of bytes"))))
    };
    if let Some(f) = body.get("vm_memory_high_watermark") {
        let f = f.as_f64().filter(|f| *f > 0.0 && *f <= 1.0);
        let f =
            f.ok_or_else(|| ApiError::bad_request("vm_memory_high_watermark must be a fraction of RAM in (0, 1]"))?;
        let total =
            crate::alarm::total_memory().ok_or_else(|| ApiError::bad_request("total memory unknown: give bytes"))?;
        node.set_memory_limit((total as f64 * f) as u64);
    }
    if let Some(b) = bytes("vm_memory_high_watermark_bytes") {
        node.set_memory_limit(b?);
    }
    if let Some(b) = bytes("disk_free_limit") {
        node.set_disk_free_limit(b?);
    }
    tracing::info!(memory = node.memory_limit(), disk_free = node.disk_free_limit(), by = %user.name, "alarm thresholds changed");
    Ok(StatusCode::NO_CONTENT)
}

/// 503 with `reason` and the queues named, as RabbitMQ's quorum-queue checks answer.
fn queues_failed(reason: &str, queues: Vec<crate::ids::QueueKey>) -> Response {
    if queues.is_empty() {
        return Json(json!({ "status": "ok" })).into_response();
    }
    let list: Vec<Value> =
        queues.iter().map(|k| json!({ "name": k.name, "vhost": k.vhost, "readable_name": k.to_string() })).collect();
    let body = json!({ "status": "failed", "reason": reason, "queues": list });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Whether stopping this node would leave a quorum queue without a majority (RabbitMQ's
/// `node-is-quorum-critical`: a rolling restart waits while it fails).
async fn quorum_critical(State(node): State<Api>, _user: User) -> Response {
    let reason = "There are quorum queues that would lose their quorum if the target node is shut down";
    queues_failed(reason, node.quorum_critical())
}

/// Quorum queues whose leader is unknown or down, as this node sees them.
async fn leaderless(State(node): State<Api>, _user: User) -> Response {
    queues_failed("There are quorum queues without an elected leader", node.leaderless_queues())
}

/// Ready to serve clients: running and accepting AMQP connections, and, in a cluster, part of
/// a majority with a live metadata leader (the check HAProxy and Kubernetes use: a node cut
/// off from the others is taken out of rotation).
async fn ready(State(node): State<Api>, _user: User) -> Response {
    let why = if !node.is_serving() {
        Err("the node is not serving clients".to_owned())
    } else if node.in_maintenance() {
        Err("the node is in maintenance mode".to_owned())
    } else {
        node.in_majority()
    };
    match why {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(reason) => {
            let body = json!({ "status": "failed", "reason": reason });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Puts this node into maintenance mode (`rabbitmq-upgrade drain`; `node/maintenance.rs`).
async fn drain(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let d = node.drain().await;
    Ok(Json(json!({ "leaderships_moved": d.leaderships_moved, "connections_closed": d.connections_closed })))
}

/// Takes this node out of maintenance mode (`rabbitmq-upgrade revive`).
async fn revive(State(node): State<Api>, user: User) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    node.revive();
    Ok(StatusCode::NO_CONTENT)
}

async fn ok(_user: User) -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
