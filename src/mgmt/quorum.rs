//! Quorum queues' replicas and leaders (`/api/queues/quorum/…`, `/api/rebalance/queues`):
//! RabbitMQ 4's `…/status` route (`rabbitmq-queues quorum_status`), a transfer of one
//! queue's leadership (`rabbitmq-queues transfer_leadership`, which RabbitMQ's API lacks) and
//! RabbitMQ's `POST /api/rebalance/queues`. Administrators only, as in RabbitMQ.

use super::auth::User;
use super::json::Body;
use super::{Api, ApiError};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/queues/quorum/{vhost}/{name}/status", get(status))
        .route("/api/queues/quorum/{vhost}/{name}/transfer_leadership", post(transfer))
        .route("/api/rebalance/queues", post(rebalance))
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
