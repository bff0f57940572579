//! Vhosts, users and permissions (`/api/vhosts`, `/api/users`, `/api/permissions`): reading
//! needs a management tag (vhosts filtered to those the user may see), changing them needs
//! `administrator`, as RabbitMQ.

use super::auth::User;
use super::json::Body;
use super::{Api, ApiError};
use crate::broker::password;
use crate::meta::{MetaCommand, MetaReply};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/vhosts", get(vhosts))
        .route("/api/vhosts/{vhost}", get(vhost).put(put_vhost).delete(delete_vhost))
        .route("/api/vhosts/{vhost}/permissions", get(vhost_permissions))
        .route("/api/users", get(users))
        .route("/api/users/{user}", get(user).put(put_user).delete(delete_user))
        .route("/api/users/{user}/permissions", get(user_permissions))
        .route("/api/permissions", get(permissions))
        .route("/api/permissions/{vhost}/{user}", get(permission).put(put_permission).delete(delete_permission))
}

/// Proposes a metadata command; a refusal becomes the API's error.
pub async fn propose(node: &Api, cmd: MetaCommand) -> Result<(), ApiError> {
    match node.propose_meta(cmd).await {
        MetaReply::Refused(e) => Err(e.into()),
        _ => Ok(()),
    }
}

fn vhost_json(v: &crate::meta::Vhost) -> Value {
    json!({
        "name": v.name,
        "description": v.description,
        "tags": v.tags,
        "metadata": { "description": v.description, "tags": v.tags },
        "default_queue_type": "undefined",
        "tracing": v.tracing,
    })
}

async fn vhosts(State(node): State<Api>, user: User) -> Json<Value> {
    let topo = node.topology();
    Json(topo.meta.vhosts.values().filter(|v| user.sees_vhost(&topo, &v.name)).map(|v| vhost_json(v)).collect())
}

async fn vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<Json<Value>, ApiError> {
    let topo = node.topology();
    match topo.meta.vhosts.get(&vhost) {
        Some(v) if user.sees_vhost(&topo, &vhost) => Ok(Json(vhost_json(v))),
        _ => Err(ApiError::not_found()),
    }
}

/// Creates a vhost (201) or updates an existing one (204): `description`, `tags` and
/// `tracing` (firehose on or off) where given. As RabbitMQ, the creator of a new vhost gets
/// full permissions in it.
async fn put_vhost(
    State(node): State<Api>,
    user: User,
    Path(vhost): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    let tracing = match body.get("tracing") {
        None | Some(Value::Null) => None,
        Some(_) => Some(body.flag("tracing", false)?),
    };
    let update = MetaCommand::UpdateVhost {
        name: vhost.clone(),
        description: body.str("description").map(str::to_owned),
        tags: tags_of(body.get("tags"))?,
        tracing,
    };
    let existed = node.topology().meta.vhosts.contains_key(&vhost);
    if !existed {
        propose(&node, MetaCommand::AddVhost { name: vhost.clone() }).await?;
        let all = ".*".to_owned();
        let grant = MetaCommand::SetPermissions {
            vhost: vhost.clone(),
            user: user.name.clone(),
            configure: all.clone(),
            write: all.clone(),
            read: all,
        };
        propose(&node, grant).await?;
    }
    propose(&node, update).await?;
    if let Some(on) = tracing {
        tracing::info!(vhost = %vhost, by = %user.name, on, "firehose tracing switched");
    }
    Ok(if existed { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

async fn delete_vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if !node.topology().meta.vhosts.contains_key(&vhost) {
        return Err(ApiError::not_found());
    }
    propose(&node, MetaCommand::DeleteVhost { name: vhost }).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_json(u: &crate::meta::User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": u.tags,
        "limits": {},
    })
}

async fn users(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    Ok(Json(node.topology().meta.users.values().map(|u| user_json(u)).collect()))
}

async fn user(State(node): State<Api>, me: User, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    me.require_admin()?;
    let topo = node.topology();
    topo.meta.users.get(&name).map(|u| Json(user_json(u))).ok_or_else(ApiError::not_found)
}

/// Tags as RabbitMQ takes them: a comma-separated string or a list.
pub(super) fn tags_of(v: Option<&Value>) -> Result<Option<Vec<String>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Ok(Some(s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()))
        }
        Some(Value::Array(a)) => Ok(Some(a.iter().filter_map(Value::as_str).map(str::to_owned).collect())),
        Some(_) => Err(ApiError::bad_request("tags must be a string or a list")),
    }
}

async fn put_user(
    State(node): State<Api>,
    me: User,
    Path(name): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    me.require_admin()?;
    let existing = node.topology().meta.users.get(&name).cloned();
    let password_hash = match (body.str("password"), body.str("password_hash")) {
        (Some(p), _) => password::hash(p, rand::random()),
        (None, Some(h)) => h.to_owned(),
        // No password: keep the current one, or none at all (the user cannot log in).
        (None, None) => existing.as_ref().map(|u| u.password_hash.clone()).unwrap_or_default(),
    };
    let tags = tags_of(body.get("tags"))?.or_else(|| existing.as_ref().map(|u| u.tags.clone())).unwrap_or_default();
    propose(&node, MetaCommand::PutUser { name, password_hash, tags }).await?;
    Ok(if existing.is_some() { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

async fn delete_user(State(node): State<Api>, me: User, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    me.require_admin()?;
    if !node.topology().meta.users.contains_key(&name) {
        return Err(ApiError::not_found());
    }
    propose(&node, MetaCommand::DeleteUser { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every permission, filtered by `keep(vhost, user)`.
fn permissions_where(node: &Api, keep: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    let topo = node.topology();
    topo.meta
        .vhosts
        .values()
        .flat_map(|v| {
            v.permissions.iter().filter(|(u, _)| keep(&v.name, u)).map(|(u, p)| {
                json!({ "user": u, "vhost": v.name, "configure": p.source[0], "write": p.source[1], "read": p.source[2] })
            })
        })
        .collect()
}

async fn permissions(State(node): State<Api>, me: User) -> Result<Json<Value>, ApiError> {
    me.require_admin()?;
    Ok(Json(Value::Array(permissions_where(&node, |_, _| true))))
}

async fn vhost_permissions(
    State(node): State<Api>,
    me: User,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    me.require_admin()?;
    if !node.topology().meta.vhosts.contains_key(&vhost) {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(permissions_where(&node, |v, _| v == vhost))))
}

async fn user_permissions(
    State(node): State<Api>,
    me: User,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    me.require_admin()?;
    if !node.topology().meta.users.contains_key(&user) {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(permissions_where(&node, |_, u| u == user))))
}

async fn permission(
    State(node): State<Api>,
    me: User,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    me.require_admin()?;
    permissions_where(&node, |v, u| v == vhost && u == user).pop().map(Json).ok_or_else(ApiError::not_found)
}

async fn put_permission(
    State(node): State<Api>,
    me: User,
    Path((vhost, user)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    me.require_admin()?;
    let existed = {
        let topo = node.topology();
        let Some(v) = topo.meta.vhosts.get(&vhost) else {
            return Err(ApiError::bad_request("vhost_or_user_not_found"));
        };
        if !topo.meta.users.contains_key(&user) {
            return Err(ApiError::bad_request("vhost_or_user_not_found"));
        }
        v.permissions.contains_key(&user)
    };
    let field = |k: &str| body.str(k).map(str::to_owned).ok_or_else(|| ApiError::bad_request(format!("{k} missing")));
    let cmd = MetaCommand::SetPermissions {
        vhost,
        user,
        configure: field("configure")?,
        write: field("write")?,
        read: field("read")?,
    };
    propose(&node, cmd).await?;
    Ok(if existed { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

async fn delete_permission(
    State(node): State<Api>,
    me: User,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    me.require_admin()?;
    let exists = node.topology().meta.vhosts.get(&vhost).is_some_and(|v| v.permissions.contains_key(&user));
    if !exists {
        return Err(ApiError::not_found());
    }
    propose(&node, MetaCommand::ClearPermissions { vhost, user }).await?;
    Ok(StatusCode::NO_CONTENT)
}
