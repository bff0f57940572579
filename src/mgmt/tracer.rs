//! Named traces into files, as RabbitMQ's `rabbitmq_tracing` plugin: `PUT
//! /api/traces/{vhost}/{name}` `{"format": "text"|"json", "pattern": "#",
//! "max_payload_bytes": N}` switches firehose tracing on for the vhost and starts a writer
//! that reads a queue bound to `amq.rabbitmq.trace` with the pattern and appends each copy
//! to `<data-dir>/traces/<name>.log`; `DELETE` stops it (and tracing, with the vhost's last
//! trace). `/api/trace-files[/{name}]` lists, reads and deletes the files.
//!
//! The text format follows `rabbit_tracing_consumer` (a ruler, the time, "Message published"
//! or "Message received", then node, connection, vhost, user, channel, exchange, routing keys,
//! routed queues or queue, properties and payload); the json format writes one object per
//! line with the payload in base64. The trace queue is capped (drop-head) so a slow disk
//! cannot make it grow without bound.

use super::auth::User;
use super::json::{self, Body};
use super::{Api, ApiError, admin::propose};
use crate::amqp::trace::TRACE_EXCHANGE;
use crate::broker::argument::{as_i64, as_str};
use crate::broker::exchange::Destination;
use crate::ids::{ChannelId, ConnectionId, QueueKey};
use crate::meta::MetaCommand;
use crate::node::traces::Trace;
use crate::queue::machine::ConsumerSpec;
use crate::queue::runner::Request;
use crate::queue::{ClientEvent, Message};
use amq_protocol::types::{AMQPValue, FieldTable};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// Messages a trace queue holds at most before it drops the oldest.
const TRACE_QUEUE_MAX: i64 = 100_000;
/// Largest trace file the API returns (read bigger ones on disk).
const MAX_READ: u64 = 64 << 20;
/// Pseudo connection ids owning trace queues (counting down from the top, never a client's).
static NEXT_OWNER: AtomicU64 = AtomicU64::new(0);

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/traces", get(list_all))
        .route("/api/traces/{vhost}", get(list_vhost))
        .route("/api/traces/{vhost}/{name}", get(show).put(put).delete(remove))
        .route("/api/trace-files", get(files))
        .route("/api/trace-files/{name}", get(read_file).delete(delete_file))
}

fn trace_json(t: &Trace) -> Value {
    json!({
        "vhost": t.vhost,
        "name": t.name,
        "format": t.format,
        "pattern": t.pattern,
        "max_payload_bytes": t.max_payload_bytes,
        "queue": { "name": t.queue, "vhost": t.vhost },
    })
}

/// A trace or file name: letters, digits, `.`, `-`, `_`, not starting with a dot (it names a
/// file in the trace directory).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

async fn list_all(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    Ok(Json(node.traces().with(|it| it.map(trace_json).collect())))
}

async fn list_vhost(State(node): State<Api>, user: User, Path(vhost): Path<String>) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    Ok(Json(node.traces().with(|it| it.filter(|t| t.vhost == vhost).map(trace_json).collect())))
}

async fn show(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    node.traces()
        .with(|mut it| it.find(|t| t.vhost == vhost && t.name == name).map(trace_json))
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Starts a trace (201), or restarts it with the new settings (204).
async fn put(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if !node.topology().meta.vhosts.contains_key(&vhost) {
        return Err(ApiError::not_found());
    }
    if !valid_name(&name) {
        return Err(ApiError::bad_request("trace names may hold letters, digits, '.', '-' and '_'"));
    }
    let format = body.str("format").unwrap_or("text").to_owned();
    if format != "text" && format != "json" {
        return Err(ApiError::bad_request("format must be text or json"));
    }
    let pattern = body.str("pattern").unwrap_or("#").to_owned();
    let max_payload_bytes = match body.get("max_payload_bytes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| ApiError::bad_request("max_payload_bytes must be an integer"))?),
    };
    let existed = stop(&node, &vhost, &name).await?;
    // Counting down from the top of this node's id space, so the queue's home is this node.
    let owner = ConnectionId(crate::ids::node_base(node.id() + 1) - 1 - NEXT_OWNER.fetch_add(1, Ordering::Relaxed));
    let queue = format!("amq.tracer.{name}");
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(TRACE_QUEUE_MAX));
    let declare = MetaCommand::DeclareQueue {
        vhost: vhost.clone(),
        name: queue.clone(),
        durable: false,
        exclusive: true,
        auto_delete: false,
        args,
        connection: owner,
        members: Vec::new(),
    };
    propose(&node, declare).await?;
    let bind = MetaCommand::Bind {
        vhost: vhost.clone(),
        source: TRACE_EXCHANGE.into(),
        destination: Destination::Queue(queue.clone()),
        key: pattern.clone(),
        args: FieldTable::default(),
    };
    propose(&node, bind).await?;
    let on = MetaCommand::UpdateVhost { name: vhost.clone(), description: None, tags: None, tracing: Some(true) };
    propose(&node, on).await?;
    let dir = node.trace_dir();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::internal(format!("trace directory: {e}")))?;
    let file = dir.join(format!("{name}.log"));
    let handle = node
        .topology()
        .queues
        .get(&QueueKey::new(vhost.as_str(), queue.as_str()))
        .cloned()
        .ok_or_else(|| ApiError::internal("the trace queue did not start"))?;
    let (sink, inbox) = mpsc::channel(256);
    let spec = ConsumerSpec {
        id: node.next_consumer_id(),
        tag: format!("amq.tracer-{name}").into(),
        connection: owner,
        channel: ChannelId(1),
        prefetch: 0,
        credit: None,
        no_ack: true,
        exclusive: true,
        priority: 0,
    };
    let (reply, answer) = oneshot::channel();
    let consume = Request::Consume { spec, sink, reply };
    if handle.tx.send(consume).await.is_err() || answer.await.is_err() {
        return Err(ApiError::internal("the trace queue did not take its consumer"));
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let writer = Writer { file: file.clone(), json: format == "json", max_payload: max_payload_bytes };
    tokio::spawn(writer.run(inbox, stop_rx));
    tracing::info!(vhost = %vhost, trace = %name, file = %file.display(), pattern = %pattern, "trace started");
    node.traces().insert(Trace { vhost, name, format, pattern, max_payload_bytes, queue, file, stop: Some(stop_tx) });
    Ok(if existed { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

/// Stops a trace if it runs: its writer, its queue and, with the vhost's last trace, the
/// vhost's tracing. Returns whether it ran.
async fn stop(node: &Api, vhost: &str, name: &str) -> Result<bool, ApiError> {
    let Some(mut t) = node.traces().remove(vhost, name) else { return Ok(false) };
    if let Some(s) = t.stop.take() {
        let _ = s.send(());
    }
    propose(node, MetaCommand::DeleteQueue { vhost: vhost.into(), name: t.queue.clone() }).await?;
    if !node.traces().any_in(vhost) {
        let off = MetaCommand::UpdateVhost { name: vhost.into(), description: None, tags: None, tracing: Some(false) };
        propose(node, off).await?;
    }
    tracing::info!(vhost, trace = name, "trace stopped");
    Ok(true)
}

async fn remove(
    State(node): State<Api>,
    user: User,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if stop(&node, &vhost, &name).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found()) }
}

async fn files(State(node): State<Api>, user: User) -> Result<Json<Value>, ApiError> {
    user.require_admin()?;
    let mut out = Vec::new();
    if let Ok(mut dir) = tokio::fs::read_dir(node.trace_dir()).await {
        while let Ok(Some(e)) = dir.next_entry().await {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().await.map(|m| m.len()).unwrap_or(0);
            if name.ends_with(".log") {
                out.push(json!({ "name": name, "size": size }));
            }
        }
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(Value::Array(out)))
}

async fn read_file(State(node): State<Api>, user: User, Path(name): Path<String>) -> Result<Response, ApiError> {
    user.require_admin()?;
    if !valid_name(&name) {
        return Err(ApiError::not_found());
    }
    let path = node.trace_dir().join(&name);
    let meta = tokio::fs::metadata(&path).await.map_err(|_| ApiError::not_found())?;
    if meta.len() > MAX_READ {
        let why = format!("{name} is {} bytes; read it in {}", meta.len(), path.display());
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "bad_request", why));
    }
    let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::not_found())?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

async fn delete_file(State(node): State<Api>, user: User, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    user.require_admin()?;
    if !valid_name(&name) {
        return Err(ApiError::not_found());
    }
    tokio::fs::remove_file(node.trace_dir().join(&name)).await.map_err(|_| ApiError::not_found())?;
    Ok(StatusCode::NO_CONTENT)
}

/// Appends the copies a trace queue delivers to the trace's file.
struct Writer {
    file: std::path::PathBuf,
    json: bool,
    max_payload: Option<u64>,
}

impl Writer {
    async fn run(self, mut inbox: mpsc::Receiver<ClientEvent>, mut stop: oneshot::Receiver<()>) {
        let open = tokio::fs::OpenOptions::new().create(true).append(true).open(&self.file).await;
        let mut f = match open {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file = %self.file.display(), error = %e, "cannot open the trace file");
                return;
            }
        };
        loop {
            let ev = tokio::select! {
                _ = &mut stop => break,
                ev = inbox.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            let ClientEvent::Deliveries { items, .. } = ev else { continue };
            let mut out = String::new();
            for d in &items {
                out.push_str(&self.entry(&d.msg));
            }
            if let Err(e) = f.write_all(out.as_bytes()).await {
                tracing::warn!(file = %self.file.display(), error = %e, "cannot write the trace file; trace stops");
                break;
            }
        }
        let _ = f.flush().await;
    }

    fn entry(&self, m: &Message) -> String {
        let h = m.properties.headers().clone().unwrap_or_default();
        let text = |k: &str| h.inner().get(k).and_then(as_str).unwrap_or_default();
        let list = |k: &str| -> Vec<String> {
            match h.inner().get(k) {
                Some(AMQPValue::FieldArray(a)) => a.as_slice().iter().filter_map(as_str).collect(),
                _ => Vec::new(),
            }
        };
        let published = m.routing_key.starts_with("publish.");
        let queue = m.routing_key.strip_prefix("deliver.").unwrap_or("none").to_owned();
        let channel = h.inner().get("channel").and_then(as_i64).unwrap_or(0);
        let properties = match h.inner().get("properties") {
            Some(AMQPValue::FieldTable(t)) => json::table(t),
            _ => json!({}),
        };
        let mut payload: Vec<u8> = m.body.parts().iter().flat_map(|p| p.iter().copied()).collect();
        if let Some(max) = self.max_payload {
            payload.truncate(max as usize);
        }
        let when = timestamp(crate::node::now_ms());
        if self.json {
            let mut v = json!({
                "timestamp": when,
                "type": if published { "published" } else { "received" },
                "node": text("node"),
                "connection": text("connection"),
                "vhost": text("vhost"),
                "user": text("user"),
                "channel": channel,
                "exchange": text("exchange_name"),
                "queue": queue,
                "routing_keys": list("routing_keys"),
                "properties": properties,
                "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
            });
            if published {
                v["routed_queues"] = json!(list("routed_queues"));
            }
            return format!("{v}\n");
        }
        let erl =
            |v: Vec<String>| format!("[{}]", v.iter().map(|s| format!("<<\"{s}\">>")).collect::<Vec<_>>().join(","));
        let mut s = String::new();
        s.push_str(&"=".repeat(80));
        s.push('\n');
        s.push_str(&format!("{when}: Message {}\n\n", if published { "published" } else { "received" }));
        s.push_str(&format!("Node:         {}\n", text("node")));
        s.push_str(&format!("Connection:   {}\n", text("connection")));
        s.push_str(&format!("Virtual host: {}\n", text("vhost")));
        s.push_str(&format!("User:         {}\n", text("user")));
        s.push_str(&format!("Channel:      {channel}\n"));
        s.push_str(&format!("Exchange:     {}\n", text("exchange_name")));
        s.push_str(&format!("Routing keys: {}\n", erl(list("routing_keys"))));
        if published {
            s.push_str(&format!("Routed queues: {}\n", erl(list("routed_queues"))));
        } else {
            s.push_str(&format!("Queue:        {queue}\n"));
        }
        s.push_str(&format!("Properties:   {properties}\n"));
        s.push_str(&format!("Payload: \n{}\n\n", String::from_utf8_lossy(&payload)));
        s
    }
}

/// `YYYY-MM-DD hh:mm:ss:mmm` (UTC), the trace plugin's time format.
fn timestamp(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}:{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00:000");
        assert_eq!(timestamp(951_782_400_000 + 1_234), "2000-02-29 00:00:01:234");
        assert_eq!(timestamp(1_795_000_000_000), "2026-11-18 11:06:40:000");
    }

    #[test]
    fn names_stay_inside_the_trace_directory() {
        assert!(valid_name("orders-1.log") && valid_name("t_2"));
        assert!(!valid_name("../x") && !valid_name(".hidden") && !valid_name("a/b") && !valid_name(""));
    }
}
