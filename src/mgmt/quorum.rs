//! Quorum queues' replicas and leaders (`/api/queues/quorum/…`, `/api/rebalance/queues`):
//! RabbitMQ 4's `…/status` route (`rabbitmq-queues quorum_status`), its `…/replicas/add`,
//! `…/replicas/delete`, `…/replicas/on/{node}/grow` and `…/shrink` routes, a transfer of one
//! queue's leadership (`rabbitmq-queues transfer_leadership`, which RabbitMQ's API lacks) and
//! RabbitMQ's `POST /api/rebalance/queues`. Administrators only, as in RabbitMQ.

use super::auth::User;
use super::json::Body;
use super::{Api, ApiError};
use crate::node::replicas::{GrowStrategy, MemberChange};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/queues/quorum/{vhost}/{name}/status", get(status))
        .route("/api/queues/quorum/{vhost}/{name}/transfer_leadership", post(transfer))
        .route("/api/rebalance/queues", post(rebalance))
        .route("/api/queues/quorum/{vhost}/{name}/replicas/add", post(add_member))
        .route("/api/queues/quorum/{vhost}/{name}/replicas/delete", delete(delete_member))
        .route("/api/queues/quorum/replicas/on/{node}/grow", post(grow))
        .route("/api/queues/quorum/replicas/on/{node}/shrink", delete(shrink))
}

/// `{"node": name}`: the node holds a replica of the queue too (204).
async fn add_member(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    change_member(&node, &user, &vhost, &name, &body, true).await
}

/// `{"node": name}`: the node no longer holds a replica of the queue (204).
async fn delete_member(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    change_member(&node, &user, &vhost, &name, &body, false).await
}

async fn change_member(
    node: &Api,
    user: &User,
    vhost: &str,
    name: &str,
    body: &Body,
    add: bool,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    let on = body.str("node").ok_or_else(|| ApiError::bad_request("node is required"))?;
    let r = if add { node.add_member(vhost, name, on).await } else { node.delete_member(vhost, name, on).await };
    r.map_err(|e| e.into_api())?;
    Ok(StatusCode::NO_CONTENT)
}

/// One row per queue changed: its vhost, name, replicas afterwards and the outcome.
fn changes_json(changes: Vec<MemberChange>) -> Json<Value> {
    let rows = changes
        .into_iter()
        .map(|c| match c.outcome {
            Ok(members) => {
                json!({ "vhost": c.vhost, "name": c.name, "size": members.len(), "members": members, "result": "ok" })
            }
            Err(e) => json!({ "vhost": c.vhost, "name": c.name, "result": format!("error: {e}") }),
        })
        .collect();
    Json(Value::Array(rows))
}

/// `{"strategy": "all"|"even", "vhost_pattern", "queue_pattern"}` (patterns default `.*`).
async fn grow(
    State(node): State<Api>,
    user: User,
    Path(on): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let strategy = match body.str("strategy").unwrap_or("all") {
        "all" => GrowStrategy::All,
        "even" => GrowStrategy::Even,
        s => return Err(ApiError::bad_request(format!("strategy must be all or even, not '{s}'"))),
    };
    let (v, q) = (body.str("vhost_pattern").unwrap_or(".*"), body.str("queue_pattern").unwrap_or(".*"));
    let changes = node.grow(&on, strategy, v, q).await.map_err(|e| e.into_api())?;
    Ok(changes_json(changes))
}

async fn shrink(State(node): State<Api>, user: User, Path(on): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let changes = node.shrink(&on).await.map_err(|e| e.into_api())?;
    Ok(changes_json(changes))
}

/// One row per member, as `rabbitmq-queues quorum_status` (a member whose node did not
/// answer shows `noproc`, as RabbitMQ's does).
async fn status(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let rows = node.quorum_status(&vhost, &name).await.map_err(|e| e.into_api())?;
    let rows = rows
        .into_iter()
        .map(|r| match r.status {
            Some(s) => json!({
                "node_name": r.node,
                "raft_state": s.raft_state,
                "membership": s.membership,
                "term": s.term,
                "last_log_index": s.last_log_index,
                "commit_index": s.commit_index,
                "last_applied": s.last_applied,
                "snapshot_index": s.snapshot_index,
            }),
            None => json!({ "node_name": r.node, "raft_state": "noproc" }),
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// `{"node": name}` (optional: the most up-to-date other member) → `{"leader": name}`.
async fn transfer(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let to = match body.get("node") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::bad_request("node must be a node's name")),
    };
    let leader = node.transfer_leadership(&vhost, &name, to).await.map_err(|e| e.into_api())?;
    Ok(Json(json!({ "leader": leader })))
}

/// Spreads leaders over the running nodes; answers how many each leads afterwards.
async fn rebalance(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let counts = node.rebalance().await.map_err(|e| e.into_api())?;
    Ok(Json(json!({ "leaders": counts })))
}
