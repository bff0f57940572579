//! The delayed-message exchange (`x-delayed-message`), as RabbitMQ's community plugin
//! `rabbitmq-delayed-message-exchange` defines it: the exchange routes with the algorithm its
//! `x-delayed-type` argument names, and a message published with a positive `x-delay` header
//! (milliseconds, at most 2^32-1) is held until then, routed against the bindings of that
//! moment, and delivered with `x-delay` negated (`rabbit_delayed_message_utils`). Other
//! messages route at once.
//!
//! Warren differs where the plugin is known to fall short: the held messages of a durable
//! exchange live in a replicated log (not one node's Mnesia table), a publisher's confirm means
//! the message is stored, and a held message is not returned as unroutable to a `mandatory`
//! publisher (the plugin always returns it).

use super::Error;
use super::argument::{self, as_i64};
use super::exchange::ExchangeKind;
use amq_protocol::types::{AMQPValue, FieldTable};

/// The exchange type's name.
pub const TYPE: &str = "x-delayed-message";
/// The argument naming the routing algorithm.
pub const TYPE_ARG: &str = "x-delayed-type";
/// The message header holding the delay.
pub const DELAY_HEADER: &str = "x-delay";
/// The longest delay the plugin accepts (Erlang's largest timer); longer ones route at once.
pub const MAX_DELAY_MS: u64 = u32::MAX as u64;

/// The routing algorithm of a delayed exchange, from its `x-delayed-type` argument (406 with
/// the plugin's text when missing or not a known type).
pub fn inner_kind(args: &FieldTable) -> Result<ExchangeKind, Error> {
    argument::get(args, TYPE_ARG)
        .and_then(argument::as_str)
        .and_then(|t| ExchangeKind::parse(&t).ok())
        .ok_or_else(|| Error::precondition("Invalid argument, 'x-delayed-type' must be an existing exchange type"))
}

/// How long a message asks to be held: its `x-delay` header as an integer (strings holding
/// an integer and floats, truncated, are taken too), if positive and at most
/// [`MAX_DELAY_MS`]; otherwise `None` (route at once).
pub fn delay_of(headers: Option<&FieldTable>) -> Option<u64> {
    let v = argument::get(headers?, DELAY_HEADER)?;
    let ms = match v {
        AMQPValue::Float(f) => *f as i64,
        AMQPValue::Double(f) => *f as i64,
        AMQPValue::DecimalValue(d) => (d.value as f64 / 10f64.powi(i32::from(d.scale))) as i64,
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => argument::as_str(v)?.trim().parse().ok()?,
        AMQPValue::Timestamp(_) => return None,
        other => as_i64(other)?,
    };
    u64::try_from(ms).ok().filter(|&ms| ms > 0 && ms <= MAX_DELAY_MS)
}

/// The headers a held message is released with: `x-delay` set to minus the delay, so it is
/// not held again when it passes through another delayed exchange, and consumers can tell it
/// was delayed.
pub fn released_headers(headers: &FieldTable, delay_ms: u64) -> FieldTable {
    let mut h = headers.clone();
    let v = match i32::try_from(delay_ms) {
        Ok(ms) => AMQPValue::LongInt(-ms),
        Err(_) => AMQPValue::LongLongInt(-(delay_ms as i64)),
    };
    h.insert(DELAY_HEADER.into(), v);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, LongString};

    fn h(v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(DELAY_HEADER.into(), v);
        t
    }

    #[test]
    fn delays_as_the_plugin_reads_them() {
        assert_eq!(delay_of(None), None);
        assert_eq!(delay_of(Some(&FieldTable::default())), None);
        assert_eq!(delay_of(Some(&h(AMQPValue::LongInt(5000)))), Some(5000));
        assert_eq!(delay_of(Some(&h(AMQPValue::ShortShortUInt(7)))), Some(7));
        assert_eq!(delay_of(Some(&h(AMQPValue::LongLongInt(MAX_DELAY_MS as i64)))), Some(MAX_DELAY_MS));
        assert_eq!(delay_of(Some(&h(AMQPValue::LongLongInt(MAX_DELAY_MS as i64 + 1)))), None);
        assert_eq!(delay_of(Some(&h(AMQPValue::LongInt(0)))), None);
        assert_eq!(delay_of(Some(&h(AMQPValue::LongInt(-3000)))), None, "a released message is not held again");
        assert_eq!(delay_of(Some(&h(AMQPValue::LongString(LongString::from(b"1500".to_vec()))))), Some(1500));
        assert_eq!(delay_of(Some(&h(AMQPValue::LongString(LongString::from(b"soon".to_vec()))))), None);
        assert_eq!(delay_of(Some(&h(AMQPValue::Double(250.9)))), Some(250));
        assert_eq!(delay_of(Some(&h(AMQPValue::DecimalValue(DecimalValue { scale: 1, value: 15 })))), Some(1));
        assert_eq!(delay_of(Some(&h(AMQPValue::Boolean(true)))), None);
    }

    #[test]
    fn released_messages_carry_the_negated_delay() {
        let out = released_headers(&h(AMQPValue::LongInt(5000)), 5000);
        assert_eq!(argument::get(&out, DELAY_HEADER), Some(&AMQPValue::LongInt(-5000)));
        assert_eq!(delay_of(Some(&out)), None);
        let long = released_headers(&FieldTable::default(), MAX_DELAY_MS);
        assert_eq!(argument::get(&long, DELAY_HEADER), Some(&AMQPValue::LongLongInt(-(MAX_DELAY_MS as i64))));
    }

    #[test]
    fn the_routing_type_is_required() {
        let mut args = FieldTable::default();
        let e = inner_kind(&args).unwrap_err();
        assert_eq!(
            e.reply_text(),
            "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
        );
        args.insert(TYPE_ARG.into(), AMQPValue::LongString(LongString::from(b"x-nope".to_vec())));
        assert!(inner_kind(&args).is_err());
        args.insert(TYPE_ARG.into(), AMQPValue::LongString(LongString::from(b"topic".to_vec())));
        assert_eq!(inner_kind(&args).unwrap(), ExchangeKind::Topic);
    }
}
