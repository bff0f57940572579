//! Definitions (`/api/definitions[/{vhost}]`): export and import of users, vhosts,
//! permissions, policies, exchanges, queues and bindings in RabbitMQ's JSON format, so a
//! RabbitMQ export loads into Warren and back (`rabbit_mgmt_wm_definitions`).
//!
//! As RabbitMQ: administrator only; the predeclared exchanges (`""`, `amq.*`) and exclusive
//! queues are not exported; a per-vhost export has no users, vhosts or permissions and its
//! objects no `vhost` field; an import declares what is missing and leaves what exists
//! (importing the same document twice changes nothing). Import goes through the same
//! metadata commands as everything else, in dependency order.

use super::auth::User;
use super::json::{self, Body};
use super::overview::RABBITMQ_VERSION;
use super::{Api, ApiError, policies};
use crate::broker::exchange::{Destination, ExchangeType};
use crate::meta::{MetaCommand, MetaReply, MetaState, Vhost};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Map, Value, json};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route("/api/definitions/{vhost}", get(export_vhost).post(import_vhost))
}

fn predeclared(name: &str) -> bool {
    name.is_empty() || name.starts_with(crate::broker::name::RESERVED_PREFIX)
}

/// The objects of one vhost; `with_vhost` adds the `vhost` field to each.
fn vhost_objects(v: &Vhost, with_vhost: bool, out: &mut Map<String, Value>) {
    let tag = |mut o: Value| {
        if with_vhost {
            o["vhost"] = json!(v.name);
        }
        o
    };
    let push = |out: &mut Map<String, Value>, key: &str, o: Value| {
        if let Some(Value::Array(a)) = out.get_mut(key) {
            a.push(o);
        }
    };
    for p in v.policies.values() {
        let mut o = policies::policy_json(&v.name, p);
        if !with_vhost {
            o.as_object_mut().map(|m| m.remove("vhost"));
        }
        push(out, "policies", o);
    }
    for q in v.queues.values().filter(|q| q.exclusive_owner.is_none()) {
        let o = json!({ "name": q.name, "durable": q.durable, "auto_delete": q.auto_delete, "arguments": json::table(&q.args) });
        push(out, "queues", tag(o));
    }
    for x in v.exchanges.values().filter(|x| !predeclared(&x.name)) {
        let o = json!({
            "name": x.name,
            "type": x.exchange_type().as_str(),
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": x.internal,
            "arguments": json::table(&x.args),
        });
        push(out, "exchanges", tag(o));
    }
    for x in v.exchanges.values() {
        for b in x.bindings.iter() {
            let (kind, dest) = match &b.destination {
                Destination::Queue(q) => ("queue", q),
                Destination::Exchange(e) => ("exchange", e),
            };
            let o = json!({
                "source": x.name,
                "destination": dest,
                "destination_type": kind,
                "routing_key": b.key,
                "arguments": json::table(&b.args),
            });
            push(out, "bindings", tag(o));
        }
    }
}

fn empty_lists(keys: &[&str]) -> Map<String, Value> {
    keys.iter().map(|k| ((*k).to_owned(), json!([]))).collect()
}

fn export(meta: &MetaState) -> Value {
    let mut out = empty_lists(&[
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ]);
    out.insert("rabbit_version".into(), json!(RABBITMQ_VERSION));
    out.insert("rabbitmq_version".into(), json!(RABBITMQ_VERSION));
    out.insert("product_name".into(), json!("Warren"));
    out.insert("product_version".into(), json!(env!("CARGO_PKG_VERSION")));
    out.insert(
        "users".into(),
        meta.users
            .values()
            .map(|u| {
                json!({
                    "name": u.name,
                    "password_hash": u.password_hash,
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": u.tags,
                    "limits": {},
                })
            })
            .collect(),
    );
    out.insert(
        "vhosts".into(),
        meta.vhosts
            .values()
            .map(|v| json!({ "name": v.name, "description": v.description, "tags": v.tags, "metadata": { "description": v.description, "tags": v.tags } }))
            .collect(),
    );
    let permissions: Vec<Value> = meta
        .vhosts
        .values()
        .flat_map(|v| {
            v.permissions.iter().map(|(user, p)| {
                json!({ "user": user, "vhost": v.name, "configure": p.source[0], "write": p.source[1], "read": p.source[2] })
            })
        })
        .collect();
    out.insert("permissions".into(), Value::Array(permissions));
    for v in meta.vhosts.values() {
        vhost_objects(v, true, &mut out);
    }
    Value::Object(out)
}

async fn export_all(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    Ok(Json(export(&node.topology().meta)))
}

async fn export_vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let topo = node.topology();
    let v = topo.meta.vhosts.get(&vhost).ok_or_else(ApiError::not_found)?;
    let mut out = empty_lists(&["parameters", "policies", "queues", "exchanges", "bindings"]);
    out.insert("rabbit_version".into(), json!(RABBITMQ_VERSION));
    out.insert("rabbitmq_version".into(), json!(RABBITMQ_VERSION));
    vhost_objects(v, false, &mut out);
    Ok(Json(Value::Object(out)))
}

fn items<'a>(doc: &'a Value, key: &str) -> impl Iterator<Item = Body> + 'a {
    doc.get(key).and_then(Value::as_array).into_iter().flatten().filter(|v| v.is_object()).cloned().map(Body)
}

fn text(b: &Body, key: &str) -> Result<String, ApiError> {
    b.str(key).map(str::to_owned).ok_or_else(|| ApiError::bad_request(format!("{key} is required in every definition")))
}

/// Imports a document; `only` is the vhost of a per-vhost import (objects' `vhost` ignored).
async fn import(node: &Api, doc: &Value, only: Option<&str>) -> Result<(), ApiError> {
    let vhost_of = |b: &Body| -> Result<String, ApiError> {
        match only {
            Some(v) => Ok(v.to_owned()),
            None => text(b, "vhost"),
        }
    };
    let mut cmds = Vec::new();
    if only.is_none() {
        for u in items(doc, "users") {
            let tags = super::admin::tags_of(u.get("tags"))?.unwrap_or_default();
            let password_hash = u.str("password_hash").unwrap_or("").to_owned();
            cmds.push(MetaCommand::PutUser { name: text(&u, "name")?, password_hash, tags });
        }
        for v in items(doc, "vhosts") {
            let name = text(&v, "name")?;
            cmds.push(MetaCommand::AddVhost { name: name.clone() });
            let description = v.str("description").map(str::to_owned);
            cmds.push(MetaCommand::UpdateVhost { name, description, tags: None, tracing: None });
        }
        for p in items(doc, "permissions") {
            cmds.push(MetaCommand::SetPermissions {
                vhost: text(&p, "vhost")?,
                user: text(&p, "user")?,
                configure: text(&p, "configure")?,
                write: text(&p, "write")?,
                read: text(&p, "read")?,
            });
        }
    }
    for p in items(doc, "policies") {
        cmds.push(policies::set_command(vhost_of(&p)?, text(&p, "name")?, &p.0)?);
    }
    for x in items(doc, "exchanges") {
        let name = text(&x, "name")?;
        if predeclared(&name) {
            continue;
        }
        let args = x.arguments()?;
        cmds.push(MetaCommand::DeclareExchange {
            vhost: vhost_of(&x)?,
            kind: ExchangeType::parse(x.str("type").unwrap_or("direct"), &args)?,
            name,
            durable: x.flag("durable", true)?,
            auto_delete: x.flag("auto_delete", false)?,
            internal: x.flag("internal", false)?,
            args,
            members: Vec::new(),
        });
    }
    for q in items(doc, "queues") {
        cmds.push(MetaCommand::DeclareQueue {
            vhost: vhost_of(&q)?,
            name: text(&q, "name")?,
            durable: q.flag("durable", true)?,
            exclusive: false,
            auto_delete: q.flag("auto_delete", false)?,
            args: q.arguments()?,
            connection: node.no_connection(),
            members: Vec::new(),
        });
    }
    for b in items(doc, "bindings") {
        let dest = text(&b, "destination")?;
        let destination = match b.str("destination_type") {
            Some("exchange") => Destination::Exchange(dest),
            _ => Destination::Queue(dest),
        };
        let (vhost, source) = (vhost_of(&b)?, text(&b, "source")?);
        let key = b.str("routing_key").unwrap_or("").to_owned();
        cmds.push(MetaCommand::Bind { vhost, source, destination, key, args: b.arguments()? });
    }
    let n = cmds.len();
    for cmd in cmds {
        if let MetaReply::Refused(e) = node.propose_meta(cmd).await {
            return Err(ApiError::bad_request(e.reply_text()));
        }
    }
    tracing::info!(commands = n, vhost = ?only, "definitions imported");
    Ok(())
}

async fn import_all(State(node): State<Api>, user: User, body: Body) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    import(&node, &body.0, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import_vhost(
    State(node): State<Api>,
    user: User,
    Path(vhost): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if !node.topology().meta.vhosts.contains_key(&vhost) {
        return Err(ApiError::not_found());
    }
    import(&node, &body.0, Some(&vhost)).await?;
    Ok(StatusCode::NO_CONTENT)
}
