//! Firehose tracing (RabbitMQ's `rabbit_trace`, <https://www.rabbitmq.com/docs/firehose>):
//! while a vhost's `tracing` flag is on, every publish is copied to `amq.rabbitmq.trace`
//! with routing key `publish.<exchange>` and every delivery (and `basic.get`) with
//! `deliver.<queue>`. The copy has the original body and these headers: `exchange_name`,
//! `routing_keys` (the routing key and its `CC` keys), `properties` (the message properties
//! as a table), `node`, `vhost`, `user`, `channel` and `connection`; publishes add
//! `routed_queues`, deliveries `redelivered` (a signed int, as RabbitMQ).
//!
//! Messages that went through the trace exchange are not traced again (as `rabbit_trace`).
//! Copies go to the queues bound to the trace exchange after the current batch of frames,
//! without confirms; a vhost without tracing costs one flag lookup per publish or delivery
//! batch.

use super::connection::Connection;
use crate::queue::message::encode_header;
use crate::queue::runner::Request;
use crate::queue::{Message, QueueHandle};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, ShortString};
use std::sync::Arc;

/// The trace exchange every vhost has.
pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

use crate::broker::argument::long_string as s;

fn strings<'a>(v: impl IntoIterator<Item = &'a str>) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(v.into_iter().map(s).collect::<Vec<_>>()))
}

/// The message properties as RabbitMQ's trace headers show them (only those set).
fn properties_table(p: &BasicProperties) -> FieldTable {
    let mut t = FieldTable::default();
    let mut put = |k: &str, v: AMQPValue| {
        t.insert(ShortString::from(k), v);
    };
    let text = |v: &Option<ShortString>| v.as_ref().map(|v| s(v.as_str()));
    for (k, v) in [
        ("content_type", text(p.content_type())),
        ("content_encoding", text(p.content_encoding())),
        ("correlation_id", text(p.correlation_id())),
        ("reply_to", text(p.reply_to())),
        ("expiration", text(p.expiration())),
        ("message_id", text(p.message_id())),
        ("type", text(p.kind())),
        ("user_id", text(p.user_id())),
        ("app_id", text(p.app_id())),
        ("cluster_id", text(p.cluster_id())),
    ] {
        if let Some(v) = v {
            put(k, v);
        }
    }
    if let Some(h) = p.headers() {
        put("headers", AMQPValue::FieldTable(h.clone()));
    }
    if let Some(m) = p.delivery_mode() {
        put("delivery_mode", AMQPValue::ShortShortUInt(*m));
    }
    if let Some(n) = p.priority() {
        put("priority", AMQPValue::ShortShortUInt(*n));
    }
    if let Some(ts) = p.timestamp() {
        put("timestamp", AMQPValue::Timestamp(*ts));
    }
    t
}

impl Connection {
    /// Whether this connection's vhost is traced now.
    pub(super) fn tracing(&self) -> bool {
        self.node.topology().meta.vhosts.get(&self.vhost).is_some_and(|v| v.tracing)
    }

    /// Copies a publish on channel `ch`, routed to `routed` (the caller checked the flag).
    pub(super) fn trace_publish(&mut self, ch: u16, msg: &Message, routed: &[QueueHandle]) {
        let mut h = self.trace_headers(ch, msg);
        h.insert("routed_queues".into(), strings(routed.iter().map(|q| q.key.name.as_str())));
        self.trace(format!("publish.{}", msg.exchange), msg, h);
    }

    /// Copies a delivery (or get) from `queue` on channel `ch`.
    pub(super) fn trace_deliver(&mut self, ch: u16, queue: &str, msg: &Message, redelivered: bool) {
        let mut h = self.trace_headers(ch, msg);
        h.insert("redelivered".into(), AMQPValue::LongInt(i32::from(redelivered)));
        self.trace(format!("deliver.{queue}"), msg, h);
    }

    fn trace_headers(&self, ch: u16, msg: &Message) -> FieldTable {
        let mut h = FieldTable::default();
        h.insert("exchange_name".into(), s(&msg.exchange));
        h.insert("routing_keys".into(), strings(msg.routing_keys().iter().map(String::as_str)));
        h.insert("properties".into(), AMQPValue::FieldTable(properties_table(&msg.properties)));
        h.insert("node".into(), s(self.node.name()));
        h.insert("vhost".into(), s(&self.vhost));
        h.insert("user".into(), s(&self.user));
        h.insert("channel".into(), AMQPValue::LongInt(i32::from(ch)));
        h.insert("connection".into(), s(&self.registered.info.name));
        h
    }

    fn trace(&mut self, routing_key: String, msg: &Message, headers: FieldTable) {
        // Copies are never copied again (rabbit_trace skips its own exchange's messages).
        if msg.exchange == TRACE_EXCHANGE {
            return;
        }
        let properties = BasicProperties::default().with_headers(headers);
        let copy = Arc::new(Message {
            exchange: TRACE_EXCHANGE.into(),
            header: encode_header(msg.body_len() as u64, &properties),
            properties,
            routing_key,
            body: msg.body.clone(),
        });
        let targets =
            self.node.topology().targets(&self.vhost, TRACE_EXCHANGE, &[copy.routing_key.as_str()], None, |_| true);
        self.traces.extend(targets.into_iter().map(|q| (q, copy.clone())));
    }

    /// Hands the trace copies of this batch to their queues.
    pub(super) async fn flush_traces(&mut self) {
        for (q, msg) in std::mem::take(&mut self.traces) {
            let _ = self.send_now(&q, Request::Publish { msg, confirm: None }).await;
        }
    }
}
