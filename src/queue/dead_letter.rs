//! Dead-lettering: the message a queue hands to its dead-letter exchange, with the history
//! RabbitMQ writes (`rabbit_dead_letter.erl` in 3.x, [D:dlx]):
//! - `x-death` is an array of tables, most recent first, one per (queue, reason): `count`,
//!   `reason`, `queue`, `time`, `exchange`, `routing-keys` and, if the message had one,
//!   `original-expiration`. Dying again from the same queue for the same reason increments
//!   that entry's count and moves it to the front.
//! - `x-first-death-{reason,queue,exchange}` are set once; `x-last-death-*` every time.
//! - The `expiration` property is removed (so the message does not expire again at once).
//! - It is published to the dead-letter exchange with the dead-letter routing key if the queue
//!   has one, else with its original routing keys (routing key and `CC`).
//! - A message that would come back to a queue it already died in, with no rejection on the
//!   way (a fully automatic cycle), is not delivered to that queue.

use super::Message;
use super::message::encode_header;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable};
use std::collections::BTreeMap;

/// Why a message left its queue for the dead-letter exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `basic.reject` / `basic.nack` with `requeue=false`.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// Dropped (or refused) by a length limit.
    Maxlen,
    /// Delivered more often than `x-delivery-limit` allows.
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Where a queue sends its dead letters (`x-dead-letter-exchange`, `x-dead-letter-routing-key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub exchange: String,
    pub routing_key: Option<String>,
}

use crate::broker::argument::{as_str as text, long_string as long};

/// The message `queue` dead-letters to `target`, and the routing keys to publish it with.
pub fn dead_letter(
    msg: &Message,
    queue: &str,
    reason: Reason,
    target: &Target,
    now_secs: u64,
) -> (Message, Vec<String>) {
    let p = &msg.properties;
    let mut headers = p.headers().as_ref().map(|h| h.inner().clone()).unwrap_or_default();
    let keys = msg.routing_keys();
    let mut deaths: Vec<AMQPValue> = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |t: &FieldTable| {
        let get = |k: &str| t.inner().get(k).and_then(text);
        get("queue").as_deref() == Some(queue) && get("reason").as_deref() == Some(reason.as_str())
    };
    let previous = deaths.iter().position(|d| matches!(d, AMQPValue::FieldTable(t) if same(t)));
    let entry = match previous.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(t)) => {
            let mut t = t.inner().clone();
            let count = match t.get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                Some(v) => crate::broker::argument::as_i64(v).unwrap_or(0),
                None => 0,
            };
            t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
            t
        }
        _ => {
            let mut t = BTreeMap::new();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), long(reason.as_str()));
            t.insert("queue".into(), long(queue));
            t.insert("time".into(), AMQPValue::Timestamp(now_secs));
            t.insert("exchange".into(), long(&msg.exchange));
            let rks: Vec<AMQPValue> = keys.iter().map(|k| long(k)).collect();
            t.insert("routing-keys".into(), AMQPValue::FieldArray(FieldArray::from(rks)));
            if let Some(e) = p.expiration() {
                t.insert("original-expiration".into(), long(e.as_str()));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(FieldTable::from(entry)));
    headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(deaths)));
    for (k, v) in [("reason", reason.as_str()), ("queue", queue), ("exchange", msg.exchange.as_str())] {
        headers.entry(format!("x-first-death-{k}").into()).or_insert_with(|| long(v));
        headers.insert(format!("x-last-death-{k}").into(), long(v));
    }
    let properties = without_expiration(p).with_headers(FieldTable::from(headers));
    let (routing_key, route_keys) = match &target.routing_key {
        Some(rk) => (rk.clone(), vec![rk.clone()]),
        None => (msg.routing_key.clone(), keys),
    };
    let header = encode_header(msg.body_len() as u64, &properties);
    let out = Message { exchange: target.exchange.clone(), routing_key, properties, header, body: msg.body.clone() };
    (out, route_keys)
}

/// Whether delivering this dead letter to `queue` closes a cycle with no rejection in it.
pub fn is_cycle(msg: &Message, queue: &str) -> bool {
    let Some(AMQPValue::FieldArray(deaths)) = msg.properties.headers().as_ref().and_then(|h| h.inner().get("x-death"))
    else {
        return false;
    };
    let field = |d: &AMQPValue, k: &str| match d {
        AMQPValue::FieldTable(t) => t.inner().get(k).and_then(text),
        _ => None,
    };
    let deaths = deaths.as_slice();
    match deaths.iter().position(|d| field(d, "queue").as_deref() == Some(queue)) {
        None => false,
        Some(i) => deaths[..=i].iter().all(|d| field(d, "reason").as_deref() != Some(Reason::Rejected.as_str())),
    }
}

/// The same properties without `expiration`.
fn without_expiration(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(props: BasicProperties) -> Message {
        Message {
            exchange: "orders".into(),
            routing_key: "new".into(),
            header: encode_header(4, &props),
            properties: props,
            body: Bytes::from_static(b"body").into(),
        }
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        match m.properties.headers().as_ref().unwrap().inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|d| match d {
                    AMQPValue::FieldTable(t) => t.clone(),
                    _ => panic!(),
                })
                .collect(),
            _ => panic!("no x-death"),
        }
    }

    fn get(t: &FieldTable, k: &str) -> AMQPValue {
        t.inner().get(k).cloned().unwrap()
    }

    #[test]
    fn first_death_records_everything_and_drops_the_expiration() {
        let mut cc = FieldTable::default();
        cc.insert("CC".into(), AMQPValue::FieldArray(FieldArray::from(vec![long("copy")])));
        let m = message(BasicProperties::default().with_expiration("500".into()).with_headers(cc));
        let target = Target { exchange: "dlx".into(), routing_key: None };
        let (d, keys) = dead_letter(&m, "work", Reason::Expired, &target, 1_700_000_000);
        assert_eq!(keys, vec!["new".to_string(), "copy".to_string()]);
        assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("dlx", "new"));
        assert!(d.properties.expiration().is_none());
        let [death] = deaths(&d).try_into().unwrap();
        assert_eq!(get(&death, "count"), AMQPValue::LongLongInt(1));
        assert_eq!(get(&death, "reason"), long("expired"));
        assert_eq!(get(&death, "queue"), long("work"));
        assert_eq!(get(&death, "exchange"), long("orders"));
        assert_eq!(get(&death, "time"), AMQPValue::Timestamp(1_700_000_000));
        assert_eq!(get(&death, "original-expiration"), long("500"));
        assert_eq!(
            get(&death, "routing-keys"),
            AMQPValue::FieldArray(FieldArray::from(vec![long("new"), long("copy")]))
        );
        let h = d.properties.headers().clone().unwrap();
        assert_eq!(h.inner().get("x-first-death-reason"), Some(&long("expired")));
        assert_eq!(h.inner().get("x-last-death-queue"), Some(&long("work")));
        // The re-encoded content header carries the new properties.
        let (_, parsed) = amq_protocol::frame::parsing::parse_content_header(&d.header[..]).unwrap();
        assert_eq!(parsed.properties, d.properties);
    }

    #[test]
    fn dying_again_counts_and_moves_to_the_front_and_cycles_are_found() {
        let m = message(BasicProperties::default());
        let to_b = Target { exchange: "".into(), routing_key: Some("b".into()) };
        let to_a = Target { exchange: "".into(), routing_key: Some("a".into()) };
        let (d1, keys) = dead_letter(&m, "a", Reason::Expired, &to_b, 1);
        assert_eq!(keys, vec!["b".to_string()]);
        assert!(!is_cycle(&d1, "b"));
        assert!(is_cycle(&d1, "a"), "a -> b -> a by expiry alone");
        let (d2, _) = dead_letter(&d1, "b", Reason::Rejected, &to_a, 2);
        assert!(!is_cycle(&d2, "a"), "a rejection on the way breaks the cycle");
        let (d3, _) = dead_letter(&d2, "a", Reason::Expired, &to_b, 3);
        let ds = deaths(&d3);
        assert_eq!(ds.len(), 2);
        assert_eq!((get(&ds[0], "queue"), get(&ds[0], "count")), (long("a"), AMQPValue::LongLongInt(2)));
        assert_eq!(get(&ds[1], "queue"), long("b"));
        let h = d3.properties.headers().clone().unwrap();
        assert_eq!(h.inner().get("x-first-death-queue"), Some(&long("a")));
        assert_eq!(h.inner().get("x-last-death-reason"), Some(&long("expired")));
    }
}
