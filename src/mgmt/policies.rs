//! Policies (`/api/policies[/{vhost}[/{name}]]`): list, show, set (201 new, 204 replaced) and
//! clear, as RabbitMQ's `rabbit_mgmt_wm_policy`; needs the `policymaker` or `administrator`
//! tag. A definition is validated before it is proposed (`broker::policy::Policy::new`), so a
//! bad one is a 400 with RabbitMQ's reason and nothing changes.

use super::auth::User;
use super::json::{self, Body};
use super::{Api, ApiError, admin::propose};
use crate::broker::policy::{ApplyTo, Policy};
use crate::meta::MetaCommand;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/policies", get(list_all))
        .route("/api/policies/{vhost}", get(list_vhost))
        .route("/api/policies/{vhost}/{name}", get(show).put(put).delete(remove))
        .route("/api/operator-policies", get(|_: User| async { Json(json!([])) }))
}

pub fn policy_json(vhost: &str, p: &Policy) -> Value {
    json!({
        "vhost": vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to.as_str(),
        "definition": json::table(&p.definition),
        "priority": p.priority,
    })
}

fn listing(node: &Api, user: &User, only: Option<&str>) -> Result<Json<Value>, ApiError> {
    user.require_policymaker()?;
    let topo = node.topology();
    let vhosts = user.vhosts(&topo, only)?;
    Ok(Json(vhosts.iter().flat_map(|v| v.policies.values().map(|p| policy_json(&v.name, p))).collect()))
}

async fn list_all(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    listing(&node, &user, None)
}

async fn list_vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<Json<Value>, ApiError> {
    listing(&node, &user, Some(&vhost))
}

async fn show(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    user.require_policymaker()?;
    let topo = node.topology();
    let v = topo.meta.vhosts.get(&vhost).filter(|_| user.sees_vhost(&topo, &vhost)).ok_or_else(ApiError::not_found)?;
    v.policies.get(&name).map(|p| Json(policy_json(&vhost, p))).ok_or_else(ApiError::not_found)
}

/// Reads a policy document (RabbitMQ's fields: `pattern` and `definition` required,
/// `priority` 0 and `apply-to` `all` by default) into the command that sets it.
pub fn set_command(vhost: String, name: String, body: &Value) -> Result<MetaCommand, ApiError> {
    let bad = |why: String| ApiError::bad_request(why);
    let pattern = body.get("pattern").and_then(Value::as_str).ok_or_else(|| bad("pattern is required".into()))?;
    let definition = match body.get("definition") {
        Some(Value::Object(m)) => json::table_from_json(m),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => json::table_from_json(&m),
            _ => return Err(bad("definition must be a JSON object".into())),
        },
        _ => return Err(bad("definition is required and must be a JSON object".into())),
    };
    let priority = match body.get("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad("priority must be an integer".into()))?,
        Some(Value::String(s)) => s.parse().map_err(|_| bad("priority must be an integer".into()))?,
        Some(_) => return Err(bad("priority must be an integer".into())),
    };
    let apply_to = body.get("apply-to").and_then(Value::as_str).unwrap_or("all");
    let kind = ApplyTo::parse(apply_to)
        .ok_or_else(|| bad(format!("Validation failed\n\n'{apply_to}' is not a valid apply-to value\n")))?;
    Policy::new(name.clone(), pattern.to_owned(), kind, priority, definition.clone()).map_err(bad)?;
    Ok(MetaCommand::SetPolicy {
        vhost,
        name,
        pattern: pattern.to_owned(),
        apply_to: apply_to.to_owned(),
        priority,
        definition,
    })
}

async fn put(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    user.require_policymaker()?;
    let existed = {
        let topo = node.topology();
        let v =
            topo.meta.vhosts.get(&vhost).filter(|_| user.sees_vhost(&topo, &vhost)).ok_or_else(ApiError::not_found)?;
        v.policies.contains_key(&name)
    };
    let cmd = set_command(vhost.clone(), name.clone(), &body.0)?;
    propose(&node, cmd).await?;
    tracing::info!(vhost = %vhost, policy = %name, by = %user.name, "policy set");
    Ok(if existed { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

async fn remove(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    user.require_policymaker()?;
    {
        let topo = node.topology();
        let v =
            topo.meta.vhosts.get(&vhost).filter(|_| user.sees_vhost(&topo, &vhost)).ok_or_else(ApiError::not_found)?;
        if !v.policies.contains_key(&name) {
            return Err(ApiError::not_found());
        }
    }
    propose(&node, MetaCommand::ClearPolicy { vhost: vhost.clone(), name: name.clone() }).await?;
    tracing::info!(vhost = %vhost, policy = %name, by = %user.name, "policy cleared");
    Ok(StatusCode::NO_CONTENT)
}
