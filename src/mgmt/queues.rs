//! Queues (`/api/queues…`): list, show, declare, delete, purge and get messages, through the
//! same metadata and queue commands an AMQP client's methods become.

use super::auth::User;
use super::json::{self, Body};
use super::{Api, ApiError, admin::propose, rates};
use crate::broker::permission::Access;
use crate::ids::{ChannelId, QueueKey};
use crate::meta::{MetaCommand, QueueRecord};
use crate::queue::runner::Request;
use crate::queue::{Command, Holder, Outcome, QueueHandle, Reply};
use crate::stats::Stat;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::sync::oneshot;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/queues", get(list_all))
        .route("/api/queues/{vhost}", get(list_vhost))
        .route("/api/queues/{vhost}/{name}", get(show).put(put).delete(remove))
        .route("/api/queues/{vhost}/{name}/contents", delete(purge))
        .route("/api/queues/{vhost}/{name}/get", post(get_messages))
}

/// A queue's counts, as its runner answers them (or their sum over queues).
#[derive(Default)]
pub struct Stats {
    pub messages: u64,
    pub unacked: u64,
    pub consumers: u64,
    pub bytes: u64,
}

/// Asks a queue's runner for a command's reply (`None` if the queue went away).
pub async fn call(h: &QueueHandle, cmd: Command) -> Option<Reply> {
    let (tx, rx) = oneshot::channel();
    h.tx.send(Request::Call { cmd, reply: tx }).await.ok()?;
    rx.await.ok()
}

/// How long a total, or a queue's entry in a listing, waits for counts: a queue busy taking
/// over as leader (a node of thousands of queues just lost one of its peers) shows none
/// rather than holding up the overview, the queues page or a Prometheus scrape.
const COUNT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// Queues asked at once for a total or a listing.
const COUNT_AT_ONCE: usize = 64;

/// The counts of these queues added up (queues that went away, or have not answered within
/// [`COUNT_PATIENCE`], count nothing).
pub async fn totals(handles: &[QueueHandle]) -> Stats {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + COUNT_PATIENCE;
    let counts = futures::stream::iter(handles.to_vec())
        .map(|h| async move { tokio::time::timeout_at(deadline, stats(&h)).await })
        .buffer_unordered(COUNT_AT_ONCE);
    counts
        .fold(Stats::default(), |mut t, s| async move {
            if let Ok(Some(s)) = s {
                t.messages += s.messages;
                t.unacked += s.unacked;
                t.consumers += s.consumers;
                t.bytes += s.bytes;
            }
            t
        })
        .await
}

pub async fn stats(h: &QueueHandle) -> Option<Stats> {
    match call(h, Command::Stats).await? {
        Reply::Stats { messages, consumers, unacked, bytes } => {
            Some(Stats { messages: messages.into(), unacked: unacked.into(), consumers: consumers.into(), bytes })
        }
        _ => None,
    }
}

/// A queue as the API shows it; `details` adds its consumers (on the single-queue answer).
async fn queue_json(node: &Api, rec: &QueueRecord, details: bool) -> Value {
    let h = node.topology().queues.get(&QueueKey::new(rec.vhost.clone(), rec.name.clone())).cloned();
    let s = match &h {
        Some(h) => tokio::time::timeout(COUNT_PATIENCE, stats(h)).await.ok().flatten(),
        None => None,
    };
    let (ready, unacked, consumers, bytes) =
        s.as_ref().map_or((0, 0, 0, 0), |s| (s.messages, s.unacked, s.consumers, s.bytes));
    let consumer_details =
        if details { super::connections::queue_consumers(node, &rec.vhost, &rec.name).await } else { Vec::new() };
    let message_stats = h.as_ref().map_or_else(|| json!({}), |h| rates::message_stats(&h.stats, Stat::QUEUE));
    let mut v = json!({
        "name": rec.name,
        "vhost": rec.vhost,
        "durable": rec.durable,
        "auto_delete": rec.auto_delete,
        "exclusive": rec.exclusive_owner.is_some(),
        "arguments": json::table(&rec.args),
        "type": rec.parsed.queue_type.as_str(),
        // Where it runs (its home, or a replicated queue's leader); a remote queue whose home
        // does not answer is down.
        "node": node.name_of(node.queue_node(rec)),
        "state": match (&h, &s) {
            (Some(h), Some(_)) if h.flow.is_closed() => "flow",
            (Some(_), Some(_)) => "running",
            (Some(_), None) => "down",
            (None, _) => "stopped",
        },
        "policy": rec.policy.as_ref().map(|p| p.name.clone()),
        "effective_policy_definition": rec.policy.as_ref().map_or_else(|| json!({}), |p| json::table(&p.definition)),
        "consumers": consumers,
        "consumer_details": consumer_details,
        "message_bytes": bytes,
        "message_stats": message_stats,
    });
    if let (Value::Object(m), true) = (&mut v, rec.replicated()) {
        // RabbitMQ's quorum-queue fields: the leader, the members, and those running.
        let names = |ids: &mut dyn Iterator<Item = &u64>| ids.map(|&n| node.name_of(n)).collect::<Vec<_>>();
        m.insert("leader".into(), json!(node.name_of(node.queue_node(rec))));
        m.insert("members".into(), json!(names(&mut rec.members.iter())));
        m.insert("online".into(), json!(names(&mut rec.members.iter().filter(|&&n| node.node_running(n)))));
    }
    if let Value::Object(m) = &mut v {
        rates::with_details(m, "messages", ready + unacked);
        rates::with_details(m, "messages_ready", ready);
        rates::with_details(m, "messages_unacknowledged", unacked);
    }
    v
}

async fn listing(node: &Api, user: &User, only: Option<&str>) -> Result<Json<Value>, ApiError> {
    let records: Vec<std::sync::Arc<QueueRecord>> = {
        let topo = node.topology();
        user.vhosts(&topo, only)?.iter().flat_map(|v| v.queues.values().cloned()).collect()
    };
    let mut elsewhere = counted_elsewhere(node, only, None).await;
    use futures::StreamExt;
    let shown: Vec<Value> = futures::stream::iter(records.clone())
        .map(|r| {
            let node = node.clone();
            async move { queue_json(&node, &r, false).await }
        })
        .buffered(COUNT_AT_ONCE)
        .collect()
        .await;
    let mut out = Vec::with_capacity(records.len());
    for (r, mut q) in records.iter().zip(shown) {
        add_counts(&mut q, elsewhere.remove(&(r.vhost.clone(), r.name.clone())));
        out.push(q);
    }
    Ok(Json(Value::Array(out)))
}

/// The queues whose counters this node's connections bumped (of `vhost`, named `queue`), as
/// another node's listing asks (`connections.rs`, `What::QueueStats`).
pub(super) fn counted_here(node: &Api, vhost: Option<&str>, queue: Option<&str>) -> Vec<Value> {
    let topo = node.topology();
    topo.queues
        .iter()
        .filter(|(k, h)| vhost.is_none_or(|v| v == k.vhost) && queue.is_none_or(|q| q == k.name) && h.stats.any())
        .map(|(k, h)| json!({ "vhost": k.vhost, "name": k.name, "message_stats": rates::message_stats(&h.stats, Stat::QUEUE) }))
        .collect()
}

/// What the other nodes' connections counted for queues, by (vhost, name).
async fn counted_elsewhere(
    node: &Api,
    vhost: Option<&str>,
    queue: Option<&str>,
) -> HashMap<(String, String), Vec<Value>> {
    let mut by_queue: HashMap<(String, String), Vec<Value>> = HashMap::new();
    for mut v in super::connections::queue_stats_elsewhere(node, vhost, queue).await {
        let (Some(vh), Some(n)) = (v["vhost"].as_str(), v["name"].as_str()) else { continue };
        let key = (vh.to_owned(), n.to_owned());
        by_queue.entry(key).or_default().push(v["message_stats"].take());
    }
    by_queue
}

/// Adds other nodes' counters into a queue's `message_stats` (RabbitMQ shows a queue's
/// figures summed over the channels of every node).
fn add_counts(queue: &mut Value, others: Option<Vec<Value>>) {
    for o in others.into_iter().flatten() {
        add_numbers(&mut queue["message_stats"], &o);
    }
}

fn add_numbers(into: &mut Value, from: &Value) {
    let Value::Object(from) = from else { return };
    if !into.is_object() {
        *into = json!({});
    }
    for (k, v) in from {
        let slot = &mut into[k.as_str()];
        match (v.as_u64(), v.as_f64()) {
            (Some(n), _) => *slot = json!(slot.as_u64().unwrap_or(0) + n),
            (None, Some(f)) => *slot = json!(slot.as_f64().unwrap_or(0.0) + f),
            _ => add_numbers(slot, v),
        }
    }
}

async fn list_all(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    listing(&node, &user, None).await
}

async fn list_vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<Json<Value>, ApiError> {
    listing(&node, &user, Some(&vhost)).await
}

fn record(node: &Api, user: &User, vhost: &str, name: &str) -> Result<std::sync::Arc<QueueRecord>, ApiError> {
    let topo = node.topology();
    if !user.sees_vhost(&topo, vhost) {
        return Err(ApiError::not_found());
    }
    topo.meta.vhosts.get(vhost).and_then(|v| v.queues.get(name)).cloned().ok_or_else(ApiError::not_found)
}

fn handle(node: &Api, vhost: &str, name: &str) -> Result<QueueHandle, ApiError> {
    node.topology().queues.get(&QueueKey::new(vhost, name)).cloned().ok_or_else(ApiError::not_found)
}

async fn show(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let rec = record(&node, &user, &vhost, &name)?;
    let mut q = queue_json(&node, &rec, true).await;
    let mut elsewhere = counted_elsewhere(&node, Some(&vhost), Some(&name)).await;
    add_counts(&mut q, elsewhere.remove(&(vhost, name)));
    Ok(Json(q))
}

/// Declares a queue (201) or checks an existing one is equivalent (204), as `queue.declare`.
async fn put(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    {
        let topo = node.topology();
        if !topo.meta.vhosts.contains_key(&vhost) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found"));
        }
        if name.starts_with(crate::broker::name::RESERVED_PREFIX) {
            return Err(ApiError::not_authorised("Access refused."));
        }
        user.check(&topo, &vhost, Access::Configure, &name)?;
    }
    let cmd = MetaCommand::DeclareQueue {
        vhost,
        name,
        durable: body.flag("durable", false)?,
        exclusive: false,
        auto_delete: body.flag("auto_delete", false)?,
        args: body.arguments()?,
        connection: node.no_connection(),
        members: Vec::new(),
    };
    match node.propose_meta(cmd).await {
        crate::meta::MetaReply::QueueDeclared { created: true } => Ok(StatusCode::CREATED),
        crate::meta::MetaReply::Refused(e) => Err(e.into()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

async fn remove(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    record(&node, &user, &vhost, &name)?;
    user.check(&node.topology(), &vhost, Access::Configure, &name)?;
    let (if_empty, if_unused) =
        (q.get("if-empty").is_some_and(|v| v == "true"), q.get("if-unused").is_some_and(|v| v == "true"));
    if if_empty || if_unused {
        let h = handle(&node, &vhost, &name)?;
        let s = stats(&h).await.ok_or_else(ApiError::not_found)?;
        let what = QueueKey::new(vhost.clone(), name.clone());
        if if_empty && s.messages + s.unacked > 0 {
            return Err(ApiError::bad_request(format!("{what} not empty")));
        }
        if if_unused && s.consumers > 0 {
            return Err(ApiError::bad_request(format!("{what} in use")));
        }
    }
    propose(&node, MetaCommand::DeleteQueue { vhost, name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    record(&node, &user, &vhost, &name)?;
    user.check(&node.topology(), &vhost, Access::Read, &name)?;
    let h = handle(&node, &vhost, &name)?;
    match call(&h, Command::Purge).await {
        Some(Reply::Refused(e)) => Err(e.into()),
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found()),
    }
}

/// `POST …/get`: takes up to `count` messages and, per `ackmode`, acks, requeues or rejects
/// them; payloads as UTF-8 text where they are (`encoding: auto`) or base64.
async fn get_messages(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    record(&node, &user, &vhost, &name).map_err(|_| crate::broker::Error::no_queue(&vhost, &name).into_api())?;
    user.check(&node.topology(), &vhost, Access::Read, &name)?;
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(1).min(10_000);
    let outcome = match body.str("ackmode") {
        Some("ack_requeue_true") | Some("reject_requeue_true") => Some(Outcome::Requeue),
        Some("ack_requeue_false") => None,
        Some("reject_requeue_false") => Some(Outcome::Discard),
        _ => {
            return Err(ApiError::bad_request(
                "ackmode must be ack_requeue_true, reject_requeue_true, ack_requeue_false or reject_requeue_false",
            ));
        }
    };
    let base64_only = match body.str("encoding") {
        Some("auto") => false,
        Some("base64") => true,
        _ => return Err(ApiError::bad_request("encoding must be auto or base64")),
    };
    let truncate = body.get("truncate").and_then(Value::as_u64).map(|t| t as usize);
    let h = handle(&node, &vhost, &name)?;
    let holder = Holder::Get(node.no_connection(), ChannelId(0));
    let mut out = Vec::new();
    let mut taken = Vec::new();
    for _ in 0..count {
        let got = match call(&h, Command::Get { holder, no_ack: outcome.is_none() }).await {
            Some(Reply::Got(Some(g))) => g,
            Some(Reply::Refused(e)) => return Err(e.into()),
            _ => break,
        };
        let Some(msg) = got.msg.clone() else { continue };
        taken.push(got.id);
        let body = msg.body.to_vec();
        let full = body.len();
        let shown = &body[..truncate.unwrap_or(full).min(full)];
        let (payload, encoding) = match std::str::from_utf8(shown) {
            Ok(s) if !base64_only => (s.to_owned(), "string"),
            _ => (base64::engine::general_purpose::STANDARD.encode(shown), "base64"),
        };
        out.push(json!({
            "payload_bytes": full,
            "redelivered": got.redelivered,
            "exchange": msg.exchange,
            "routing_key": msg.routing_key,
            "message_count": got.remaining,
            "properties": super::exchanges::properties_json(&msg.properties),
            "payload": payload,
            "payload_encoding": encoding,
        }));
    }
    // Settled after all were taken, so requeued ones are not taken again by this request.
    if let (Some(outcome), false) = (outcome, taken.is_empty()) {
        let _ = h.ctl.send(Request::Cast { cmd: Command::Settle { ids: taken, outcome } }).await;
    }
    Ok(Json(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues whose runners do not answer (busy taking over) delay a total by
    /// [`COUNT_PATIENCE`] at most, however many they are.
    #[tokio::test]
    async fn totals_do_not_wait_for_queues_that_do_not_answer() {
        let mut held = Vec::new();
        let handles: Vec<QueueHandle> = (0..200)
            .map(|i| {
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                let (ctl, ctl_rx) = tokio::sync::mpsc::channel(8);
                held.push((rx, ctl_rx));
                let key = std::sync::Arc::new(QueueKey::new("/", format!("q{i}")));
                QueueHandle { key, tx, ctl, stats: Default::default(), flow: Default::default() }
            })
            .collect();
        let started = std::time::Instant::now();
        let t = totals(&handles).await;
        assert_eq!((t.messages, t.consumers), (0, 0));
        assert!(started.elapsed() < COUNT_PATIENCE * 2, "took {:?}", started.elapsed());
    }
}
