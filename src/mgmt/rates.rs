//! `message_stats` objects: each counter with its `_details.rate`, plus RabbitMQ's derived
//! `deliver_get` (deliveries and gets, with and without acks).

use crate::stats::{Counters, Stat};
use serde_json::{Map, Value, json};

/// The counters `which` of `c`, as RabbitMQ's `message_stats` (an empty object before any
/// traffic, as RabbitMQ omits what never happened).
pub fn message_stats(c: &Counters, which: &[Stat]) -> Value {
    let mut m = Map::new();
    if !c.any() {
        return Value::Object(m);
    }
    let (mut dg, mut dg_rate) = (0u64, 0f64);
    for &s in which {
        let (v, r) = (c.get(s), c.rate(s));
        if s.is_deliver_get() {
            dg += v;
            dg_rate += r;
        }
        m.insert(s.name().into(), json!(v));
        m.insert(format!("{}_details", s.name()), json!({ "rate": r }));
    }
    if which.iter().any(|s| s.is_deliver_get()) {
        m.insert("deliver_get".into(), json!(dg));
        m.insert("deliver_get_details".into(), json!({ "rate": dg_rate }));
    }
    Value::Object(m)
}

/// A count with RabbitMQ's `_details` companion (for gauges such as `messages`).
pub fn with_details(m: &mut Map<String, Value>, key: &str, value: u64) {
    m.insert(key.into(), json!(value));
    m.insert(format!("{key}_details"), json!({ "rate": 0.0 }));
}
