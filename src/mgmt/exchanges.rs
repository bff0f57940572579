//! Exchanges and bindings (`/api/exchanges…`, `/api/bindings…`, `…/publish`).

use super::auth::User;
use super::json::{self, Body};
use super::{Api, ApiError, admin::propose};
use crate::broker::exchange::{Destination, ExchangeType};
use crate::broker::permission::Access;
use crate::broker::router::Binding;
use crate::meta::{Exchange, MetaCommand};
use crate::queue::message::encode_header;
use crate::queue::runner::forward_confirmed;
use crate::queue::{Body as MsgBody, Message};
use crate::stats::Stat;
use amq_protocol::protocol::BasicProperties;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/exchanges", get(list_all))
        .route("/api/exchanges/{vhost}", get(list_vhost))
        .route("/api/exchanges/{vhost}/{name}", get(show).put(put).delete(remove))
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
        .route("/api/exchanges/{vhost}/{name}/bindings/source", get(bindings_from))
        .route("/api/exchanges/{vhost}/{name}/bindings/destination", get(bindings_to))
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/bindings", get(all_bindings))
        .route("/api/bindings/{vhost}", get(vhost_bindings))
        .route("/api/bindings/{vhost}/e/{source}/{kind}/{dest}", get(pair_bindings).post(bind))
        .route("/api/bindings/{vhost}/e/{source}/{kind}/{dest}/{props}", get(one_binding).delete(unbind))
}

/// The default exchange's name in the API.
const DEFAULT: &str = "amq.default";

fn internal_name(name: &str) -> &str {
    if name == DEFAULT { "" } else { name }
}

fn exchange_json(vhost: &str, x: &Exchange) -> Value {
    let message_stats = super::rates::message_stats(&x.stats, Stat::EXCHANGE);
    json!({
        "name": x.name,
        "vhost": vhost,
        "type": x.exchange_type().as_str(),
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": json::table(&x.args),
        "policy": x.policy,
        "message_stats": message_stats,
    })
}

fn listing(node: &Api, user: &User, only: Option<&str>) -> Result<Json<Value>, ApiError> {
    let topo = node.topology();
    let vhosts = user.vhosts(&topo, only)?;
    Ok(Json(vhosts.iter().flat_map(|v| v.exchanges.values().map(|x| exchange_json(&v.name, x))).collect()))
}

async fn list_all(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    listing(&node, &user, None)
}

async fn list_vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<Json<Value>, ApiError> {
    listing(&node, &user, Some(&vhost))
}

fn exchange(node: &Api, user: &User, vhost: &str, name: &str) -> Result<Arc<Exchange>, ApiError> {
    let topo = node.topology();
    if !user.sees_vhost(&topo, vhost) {
        return Err(ApiError::not_found());
    }
    topo.meta
        .vhosts
        .get(vhost)
        .and_then(|v| v.exchanges.get(internal_name(name)))
        .cloned()
        .ok_or_else(ApiError::not_found)
}

async fn show(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let x = exchange(&node, &user, &vhost, &name)?;
    Ok(Json(exchange_json(&vhost, &x)))
}

/// Declares an exchange (201) or checks an existing one is equivalent (204).
async fn put(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let exists = {
        let topo = node.topology();
        let Some(v) = topo.meta.vhosts.get(&vhost) else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found"));
        };
        if name.starts_with(crate::broker::name::RESERVED_PREFIX) || name.is_empty() {
            return Err(ApiError::not_authorised("Access refused."));
        }
        user.check(&topo, &vhost, Access::Configure, &name)?;
        v.exchanges.contains_key(&name)
    };
    let args = body.arguments()?;
    let kind = ExchangeType::parse(body.str("type").unwrap_or("direct"), &args)?;
    crate::broker::argument::check_exchange_args(&args, &format!("exchange '{name}' in vhost '{vhost}'"))?;
    let cmd = MetaCommand::DeclareExchange {
        vhost,
        name,
        kind,
        durable: body.flag("durable", false)?,
        auto_delete: body.flag("auto_delete", false)?,
        internal: body.flag("internal", false)?,
        args,
        members: Vec::new(),
    };
    propose(&node, cmd).await?;
    Ok(if exists { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

async fn remove(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    exchange(&node, &user, &vhost, &name)?;
    if name.starts_with(crate::broker::name::RESERVED_PREFIX) || name == DEFAULT {
        return Err(ApiError::not_authorised("Access refused."));
    }
    user.check(&node.topology(), &vhost, Access::Configure, &name)?;
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    propose(&node, MetaCommand::DeleteExchange { vhost, name, if_unused }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Message properties as the management plugin shows them (`[]` when there are none).
pub fn properties_json(p: &BasicProperties) -> Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("content_type", p.content_type().as_ref().map(|s| Value::from(s.as_str())));
    put("content_encoding", p.content_encoding().as_ref().map(|s| Value::from(s.as_str())));
    put("headers", p.headers().as_ref().map(json::table));
    put("delivery_mode", p.delivery_mode().map(Value::from));
    put("priority", p.priority().map(Value::from));
    put("correlation_id", p.correlation_id().as_ref().map(|s| Value::from(s.as_str())));
    put("reply_to", p.reply_to().as_ref().map(|s| Value::from(s.as_str())));
    put("expiration", p.expiration().as_ref().map(|s| Value::from(s.as_str())));
    put("message_id", p.message_id().as_ref().map(|s| Value::from(s.as_str())));
    put("timestamp", p.timestamp().map(Value::from));
    put("type", p.kind().as_ref().map(|s| Value::from(s.as_str())));
    put("user_id", p.user_id().as_ref().map(|s| Value::from(s.as_str())));
    put("app_id", p.app_id().as_ref().map(|s| Value::from(s.as_str())));
    if m.is_empty() { Value::Array(Vec::new()) } else { Value::Object(m) }
}

fn properties_from(v: Option<&Value>) -> BasicProperties {
    let mut p = BasicProperties::default();
    let Some(Value::Object(m)) = v else { return p };
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(|s| s.into());
    if let Some(v) = s("content_type") {
        p = p.with_content_type(v);
    }
    if let Some(v) = s("content_encoding") {
        p = p.with_content_encoding(v);
    }
    if let Some(Value::Object(h)) = m.get("headers") {
        p = p.with_headers(json::table_from_json(h));
    }
    if let Some(d) = m.get("delivery_mode").and_then(Value::as_u64) {
        p = p.with_delivery_mode(d as u8);
    }
    if let Some(d) = m.get("priority").and_then(Value::as_u64) {
        p = p.with_priority(d as u8);
    }
    for (k, f) in [
        ("correlation_id", BasicProperties::with_correlation_id as fn(BasicProperties, _) -> BasicProperties),
        ("reply_to", BasicProperties::with_reply_to),
        ("expiration", BasicProperties::with_expiration),
        ("message_id", BasicProperties::with_message_id),
        ("type", BasicProperties::with_type),
        ("user_id", BasicProperties::with_user_id),
        ("app_id", BasicProperties::with_app_id),
    ] {
        if let Some(v) = s(k) {
            p = f(p, v);
        }
    }
    if let Some(t) = m.get("timestamp").and_then(Value::as_u64) {
        p = p.with_timestamp(t);
    }
    p
}

/// `POST …/publish`: routes one message as `basic.publish` would and answers whether any
/// queue took it (`{"routed": …}`), once they all confirmed it.
async fn publish(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let x = exchange(&node, &user, &vhost, &name).map_err(|_| {
        ApiError::bad_request(format!("404 NOT_FOUND - no exchange '{}' in vhost '{vhost}'", internal_name(&name)))
    })?;
    user.check(&node.topology(), &vhost, Access::Write, &x.name)?;
    let (Some(payload), Some(encoding), Some(_)) =
        (body.str("payload"), body.str("payload_encoding"), body.get("properties"))
    else {
        return Err(ApiError::bad_request("properties, routing_key, payload and payload_encoding are required"));
    };
    let bytes = match encoding {
        "string" => payload.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|_| ApiError::bad_request("payload is not base64"))?,
        other => return Err(ApiError::bad_request(format!("unknown payload_encoding '{other}'"))),
    };
    let properties = properties_from(body.get("properties"));
    let routing_key = body.str("routing_key").unwrap_or("").to_owned();
    let msg = Arc::new(Message {
        exchange: x.name.clone(),
        routing_key: routing_key.clone(),
        header: encode_header(bytes.len() as u64, &properties),
        properties,
        body: MsgBody::from(bytes::Bytes::from(bytes)),
    });
    let targets =
        node.topology().targets(&vhost, &x.name, &[routing_key.as_str()], msg.properties.headers().as_ref(), |_| true);
    let routed = !targets.is_empty();
    if !forward_confirmed(vec![(targets, msg)]).await {
        let why = "a queue did not take the message (it may have no leader now); publish it again";
        return Err(ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", why));
    }
    Ok(Json(json!({ "routed": routed })))
}

/// RabbitMQ's key for a binding in URLs: the routing key (`~` if empty), then `~` and a hash
/// of the arguments if there are any.
fn props_key(b: &Binding) -> String {
    let key = if b.key.is_empty() {
        "~".to_owned()
    } else {
        b.key.replace('%', "%25").replace('#', "%23").replace('*', "%2A")
    };
    if b.args.inner().is_empty() {
        return key;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", b.args).hash(&mut h);
    format!("{}~{:x}", if b.key.is_empty() { "" } else { &key }, h.finish() & 0xffff_ffff)
}

fn binding_json(vhost: &str, source: &str, b: &Binding) -> Value {
    let (dest_type, dest) = match &b.destination {
        Destination::Queue(q) => ("queue", q),
        Destination::Exchange(e) => ("exchange", e),
    };
    json!({
        "source": source,
        "vhost": vhost,
        "destination": dest,
        "destination_type": dest_type,
        "routing_key": b.key,
        "arguments": json::table(&b.args),
        "properties_key": props_key(b),
    })
}

/// Every binding visible to the user in `vhost` (or all vhosts) that `keep(source, binding)`.
fn bindings_where(node: &Api, user: &User, vhost: Option<&str>, keep: impl Fn(&str, &Binding) -> bool) -> Vec<Value> {
    let topo = node.topology();
    let mut out = Vec::new();
    for v in topo.meta.vhosts.values().filter(|v| vhost.is_none_or(|o| o == v.name) && user.sees_vhost(&topo, &v.name))
    {
        // The default exchange's implicit bindings, as RabbitMQ lists them.
        for q in v.queues.keys() {
            let b = Binding { destination: Destination::Queue(q.clone()), key: q.clone(), args: Default::default() };
            if keep("", &b) {
                out.push(binding_json(&v.name, "", &b));
            }
        }
        for x in v.exchanges.values() {
            out.extend(x.bindings.iter().filter(|b| keep(&x.name, b)).map(|b| binding_json(&v.name, &x.name, b)));
        }
    }
    out
}

async fn all_bindings(State(node): State<Api>, user: User) -> Json<Value> {
    Json(Value::Array(bindings_where(&node, &user, None, |_, _| true)))
}

async fn vhost_bindings(
    State(node): State<Api>,
    user: User,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !node.topology().meta.vhosts.contains_key(&vhost) {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(bindings_where(&node, &user, Some(&vhost), |_, _| true))))
}

async fn bindings_from(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let x = exchange(&node, &user, &vhost, &name)?;
    Ok(Json(Value::Array(bindings_where(&node, &user, Some(&vhost), |s, _| s == x.name && !s.is_empty()))))
}

async fn bindings_to(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let x = exchange(&node, &user, &vhost, &name)?;
    let dest = Destination::Exchange(x.name.clone());
    Ok(Json(Value::Array(bindings_where(&node, &user, Some(&vhost), |_, b| b.destination == dest))))
}

async fn queue_bindings(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let exists = node.topology().meta.vhosts.get(&vhost).is_some_and(|v| v.queues.contains_key(&name));
    if !exists || !user.sees_vhost(&node.topology(), &vhost) {
        return Err(ApiError::not_found());
    }
    let dest = Destination::Queue(name);
    Ok(Json(Value::Array(bindings_where(&node, &user, Some(&vhost), |_, b| b.destination == dest))))
}

fn destination(kind: &str, name: String) -> Result<Destination, ApiError> {
    match kind {
        "q" => Ok(Destination::Queue(name)),
        "e" => Ok(Destination::Exchange(name)),
        _ => Err(ApiError::not_found()),
    }
}

async fn pair_bindings(
    State(node): State<Api>,
    user: User,
    Path((vhost, source, kind, dest)): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let dest = destination(&kind, dest)?;
    let source = internal_name(&source).to_owned();
    Ok(Json(Value::Array(bindings_where(&node, &user, Some(&vhost), |s, b| s == source && b.destination == dest))))
}

/// Creates a binding; answers 201 with its URL (relative, as RabbitMQ) in `Location`.
async fn bind(
    State(node): State<Api>,
    user: User,
    Path((vhost, source, kind, dest)): Path<(String, String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let destination = destination(&kind, dest)?;
    {
        let topo = node.topology();
        if !topo.meta.vhosts.contains_key(&vhost) {
            return Err(ApiError::not_found());
        }
        user.check(&topo, &vhost, Access::Write, destination.name())?;
        user.check(&topo, &vhost, Access::Read, &source)?;
    }
    let key = body.str("routing_key").unwrap_or("").to_owned();
    let args = body.arguments()?;
    let b = Binding { destination: destination.clone(), key: key.clone(), args: args.clone() };
    propose(&node, MetaCommand::Bind { vhost, source, destination, key, args }).await?;
    let location = format!("{}/{}", quote(b.destination.name()), quote(&props_key(&b)));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// Percent-encodes a path segment (RabbitMQ's `Location` encodes the properties key again).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn find_binding(node: &Api, vhost: &str, source: &str, dest: &Destination, props: &str) -> Option<Binding> {
    let topo = node.topology();
    let x = topo.meta.vhosts.get(vhost)?.exchanges.get(source)?.clone();
    x.bindings.iter().find(|b| &b.destination == dest && props_key(b) == props).cloned()
}

async fn one_binding(
    State(node): State<Api>,
    user: User,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let dest = destination(&kind, dest)?;
    if !user.sees_vhost(&node.topology(), &vhost) {
        return Err(ApiError::not_found());
    }
    let b = find_binding(&node, &vhost, &source, &dest, &props).ok_or_else(ApiError::not_found)?;
    Ok(Json(binding_json(&vhost, &source, &b)))
}

async fn unbind(
    State(node): State<Api>,
    user: User,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let dest = destination(&kind, dest)?;
    user.check(&node.topology(), &vhost, Access::Write, dest.name())?;
    let b = find_binding(&node, &vhost, &source, &dest, &props).ok_or_else(ApiError::not_found)?;
    propose(&node, MetaCommand::Unbind { vhost, source, destination: b.destination, key: b.key, args: b.args }).await?;
    Ok(StatusCode::NO_CONTENT)
}
