//! Declare arguments: validation, equivalence checks, and RabbitMQ's wording of both.
//!
//! RabbitMQ compares only the arguments it knows when a queue or exchange is redeclared
//! (`rabbit_amqqueue:assert_args_equivalence`, `rabbit_exchange:assert_equivalence`); unknown
//! `x-` keys are stored but never compared. Mismatches are 406 PRECONDITION_FAILED.

use super::Error;
use amq_protocol::types::{AMQPValue, FieldTable};

/// Queue arguments RabbitMQ compares on redeclare.
pub const QUEUE_EQUIVALENCE_KEYS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
];

/// Exchange arguments RabbitMQ compares on redeclare.
pub const EXCHANGE_EQUIVALENCE_KEYS: &[&str] = &["alternate-exchange"];

/// RabbitMQ's name for an AMQP field type, as it appears in reply texts.
pub fn type_name(v: &AMQPValue) -> &'static str {
    use AMQPValue::*;
    match v {
        Boolean(_) => "bool",
        ShortShortInt(_) => "byte",
        ShortShortUInt(_) => "unsignedbyte",
        ShortInt(_) => "short",
        ShortUInt(_) => "unsignedshort",
        LongInt(_) => "signedint",
        LongUInt(_) => "unsignedint",
        LongLongInt(_) => "long",
        Float(_) => "float",
        Double(_) => "double",
        DecimalValue(_) => "decimal",
        ShortString(_) | LongString(_) => "longstr",
        FieldArray(_) => "array",
        Timestamp(_) => "timestamp",
        FieldTable(_) => "table",
        ByteArray(_) => "binary",
        Void => "void",
    }
}

/// Renders a value the way RabbitMQ's reply texts show it.
pub fn display_value(v: &AMQPValue) -> String {
    use AMQPValue::*;
    match v {
        Boolean(b) => b.to_string(),
        ShortShortInt(n) => n.to_string(),
        ShortShortUInt(n) => n.to_string(),
        ShortInt(n) => n.to_string(),
        ShortUInt(n) => n.to_string(),
        LongInt(n) => n.to_string(),
        LongUInt(n) => n.to_string(),
        LongLongInt(n) => n.to_string(),
        Timestamp(n) => n.to_string(),
        Float(f) => f.to_string(),
        Double(f) => f.to_string(),
        ShortString(s) => s.as_str().to_owned(),
        LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => format!("{other:?}"),
    }
}

/// An integer argument value, whatever its AMQP integer width.
pub fn as_i64(v: &AMQPValue) -> Option<i64> {
    use AMQPValue::*;
    Some(match v {
        ShortShortInt(n) => *n as i64,
        ShortShortUInt(n) => *n as i64,
        ShortInt(n) => *n as i64,
        ShortUInt(n) => *n as i64,
        LongInt(n) => *n as i64,
        LongUInt(n) => *n as i64,
        LongLongInt(n) => *n,
        Timestamp(n) => *n as i64,
        _ => return None,
    })
}

/// A long-string value (how RabbitMQ writes strings into headers and tables).
pub fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(amq_protocol::types::LongString::from(s.as_bytes().to_vec()))
}

/// A string argument value (short or long string).
pub fn as_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

pub fn get<'a>(args: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    args.inner().get(key)
}

/// Compares the known keys of two argument tables; `what` is e.g. `queue 'q' in vhost '/'`.
///
/// As `rabbit_misc:assert_args_equivalence`: integer types are compatible with each other;
/// when both sides are present the text shows bare values, otherwise the typed value is
/// compared with "none".
pub fn assert_equivalent(current: &FieldTable, received: &FieldTable, keys: &[&str], what: &str) -> Result<(), Error> {
    let compatible =
        |a: &AMQPValue, b: &AMQPValue| type_name(a) == type_name(b) || (as_i64(a).is_some() && as_i64(b).is_some());
    let typed = |v: Option<&AMQPValue>| match v {
        Some(v) => format!("the value '{}' of type '{}'", display_value(v), type_name(v)),
        None => "none".to_owned(),
    };
    for key in keys {
        let (c, r) = (get(current, key), get(received, key));
        let same = match (c, r) {
            (None, None) => true,
            (Some(a), Some(b)) => compatible(a, b) && super::headers::values_equal(a, b),
            _ => false,
        };
        if !same {
            let (received, current) = match (r, c) {
                (Some(r), Some(c)) => (format!("'{}'", display_value(r)), format!("'{}'", display_value(c))),
                _ => (typed(r), typed(c)),
            };
            return Err(Error::precondition(format!(
                "inequivalent arg '{key}' for {what}: received {received} but current is {current}"
            )));
        }
    }
    Ok(())
}

/// The queue type chosen at declare time (`x-queue-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// What a queue does with a publish that would take it past its length limit (`x-overflow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest ready messages.
    #[default]
    DropHead,
    /// Refuse the publish (`basic.nack` under confirms).
    RejectPublish,
    /// Refuse the publish and dead-letter it.
    RejectPublishDlx,
}

/// What the broker reads from queue arguments; the rest stays in the stored table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueArgs {
    pub queue_type: QueueType,
    pub single_active_consumer: bool,
    pub max_priority: Option<u8>,
    /// `x-message-ttl`, in milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-max-length`: ready messages at most.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`: bytes of ready messages' bodies at most.
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-expires`: delete the queue once unused this long (ms).
    pub expires: Option<u64>,
    /// `x-delivery-limit`.
    pub delivery_limit: Option<u64>,
    /// `x-consumer-timeout` (ms).
    pub consumer_timeout: Option<u64>,
    /// `x-message-deduplication: true`, with `x-cache-size` and `x-cache-ttl` (ms).
    pub deduplication: bool,
    pub cache_size: Option<u64>,
    pub cache_ttl: Option<u64>,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `x-quorum-initial-group-size`: replicas of a quorum queue (default 3, capped by the
    /// cluster's size).
    pub initial_group_size: Option<u64>,
    /// `x-queue-leader-locator`: where a quorum queue's first leader goes.
    pub leader_locator: LeaderLocator,
}

/// Where a new quorum queue's leader goes (`x-queue-leader-locator`, RabbitMQ's
/// `queue_leader_locator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeaderLocator {
    /// On the node of the declaring client.
    #[default]
    ClientLocal,
    /// On the node leading the fewest queues (`balanced`; RabbitMQ 3.10's `least-leaders`
    /// and `random` are read as it).
    Balanced,
}

fn invalid(key: &str, what: &str, why: String) -> Error {
    Error::precondition(format!("invalid arg '{key}' for {what}: {why}"))
}

fn wrong_type(key: &str, what: &str, v: &AMQPValue) -> Error {
    invalid(key, what, format!("{{unacceptable_type,{}}}", type_name(v)))
}

/// A non-negative integer argument (`rabbit_amqqueue:check_non_neg_int_arg` and friends).
fn non_negative(key: &str, what: &str, v: &AMQPValue) -> Result<i64, Error> {
    match as_i64(v) {
        Some(n) if n >= 0 => Ok(n),
        Some(n) => Err(invalid(key, what, format!("{{value_negative,{n}}}"))),
        None => Err(invalid(key, what, format!("\"expected integer, got {}\"", type_name(v)))),
    }
}

/// Validates queue arguments the way RabbitMQ does at declare (`rabbit_amqqueue:check_arguments`):
/// known keys must have the right type and range; unknown keys are ignored.
pub fn parse_queue_args(args: &FieldTable, what: &str) -> Result<QueueArgs, Error> {
    let mut out = QueueArgs {
        queue_type: QueueType::Classic,
        single_active_consumer: false,
        max_priority: None,
        message_ttl: None,
        max_length: None,
        max_length_bytes: None,
        overflow: Overflow::DropHead,
        expires: None,
        delivery_limit: None,
        consumer_timeout: None,
        deduplication: false,
        cache_size: None,
        cache_ttl: None,
        dead_letter_exchange: None,
        dead_letter_routing_key: None,
        initial_group_size: None,
        leader_locator: LeaderLocator::ClientLocal,
    };
    for (key, v) in args.inner() {
        let key = key.as_str();
        match key {
            "x-queue-type" => {
                out.queue_type = match as_str(v).as_deref() {
                    Some("classic") => QueueType::Classic,
                    Some("quorum") => QueueType::Quorum,
                    Some(other) => return Err(invalid(key, what, format!("\"unsupported queue type '{other}'\""))),
                    None => return Err(wrong_type(key, what, v)),
                }
            }
            "x-single-active-consumer" => match v {
                AMQPValue::Boolean(b) => out.single_active_consumer = *b,
                _ => return Err(wrong_type(key, what, v)),
            },
            "x-max-priority" => match non_negative(key, what, v)? {
                n @ 0..=255 => out.max_priority = Some(n as u8),
                n => return Err(invalid(key, what, format!("{{max_value_exceeded,{n}}}"))),
            },
            "x-message-ttl" => out.message_ttl = Some(non_negative(key, what, v)? as u64),
            "x-max-length" => out.max_length = Some(non_negative(key, what, v)? as u64),
            "x-max-length-bytes" => out.max_length_bytes = Some(non_negative(key, what, v)? as u64),
            "x-delivery-limit" => out.delivery_limit = Some(non_negative(key, what, v)? as u64),
            "x-consumer-timeout" => out.consumer_timeout = Some(non_negative(key, what, v)? as u64),
            "x-message-deduplication" => match v {
                AMQPValue::Boolean(b) => out.deduplication = *b,
                _ => return Err(wrong_type(key, what, v)),
            },
            "x-cache-size" => out.cache_size = Some(non_negative(key, what, v)? as u64),
            "x-cache-ttl" => out.cache_ttl = Some(non_negative(key, what, v)? as u64),
            "x-quorum-initial-group-size" => match non_negative(key, what, v)? {
                0 => return Err(invalid(key, what, "{value_zero,0}".into())),
                n => out.initial_group_size = Some(n as u64),
            },
            "x-queue-leader-locator" => match as_str(v).as_deref() {
                Some("client-local") => out.leader_locator = LeaderLocator::ClientLocal,
                Some("balanced" | "least-leaders" | "random") => out.leader_locator = LeaderLocator::Balanced,
                Some(other) => {
                    return Err(invalid(key, what, format!("\"unsupported queue leader locator '{other}'\"")));
                }
                None => return Err(wrong_type(key, what, v)),
            },
            "x-expires" => match non_negative(key, what, v)? {
                0 => return Err(invalid(key, what, "{value_zero,0}".into())),
                n => out.expires = Some(n as u64),
            },
            "x-dead-letter-exchange" | "x-dead-letter-routing-key" => {
                let Some(s) = as_str(v) else {
                    return Err(wrong_type(key, what, v));
                };
                if key == "x-dead-letter-exchange" {
                    out.dead_letter_exchange = Some(s);
                } else {
                    out.dead_letter_routing_key = Some(s);
                }
            }
            "x-overflow" => match as_str(v).as_deref() {
                Some("drop-head") => out.overflow = Overflow::DropHead,
                Some("reject-publish") => out.overflow = Overflow::RejectPublish,
                Some("reject-publish-dlx") => out.overflow = Overflow::RejectPublishDlx,
                Some(_) => return Err(invalid(key, what, "invalid_overflow".into())),
                None => return Err(wrong_type(key, what, v)),
            },
            _ => {}
        }
    }
    Ok(out)
}

/// Validates exchange arguments: `alternate-exchange` must be a string.
pub fn check_exchange_args(args: &FieldTable, what: &str) -> Result<(), Error> {
    match get(args, "alternate-exchange") {
        Some(v) if as_str(v).is_none() => {
            Err(Error::precondition(format!("invalid type '{}' for arg 'alternate-exchange' in {what}", type_name(v))))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    /// A field table from pairs (shared by the broker's tests).
    pub(crate) fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    #[test]
    fn equivalence_text_matches_rabbitmq() {
        let ten = table(&[("x-max-length", AMQPValue::LongInt(10))]);
        let twenty = table(&[("x-max-length", AMQPValue::ShortShortUInt(20))]);
        let e = assert_equivalent(&ten, &twenty, QUEUE_EQUIVALENCE_KEYS, "queue 'q' in vhost '/'").unwrap_err();
        assert_eq!(
            e.reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received '20' but current is '10'"
        );
        let ten_short = table(&[("x-max-length", AMQPValue::ShortShortUInt(10))]);
        assert!(
            assert_equivalent(&ten, &ten_short, QUEUE_EQUIVALENCE_KEYS, "q").is_ok(),
            "integer types are compatible"
        );
        let cur = FieldTable::default();
        let rec = table(&[("x-message-ttl", AMQPValue::LongInt(2000))]);
        let e = assert_equivalent(&cur, &rec, QUEUE_EQUIVALENCE_KEYS, "queue 'q' in vhost '/'").unwrap_err();
        assert_eq!(
            e.reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value '2000' of type 'signedint' but current is none"
        );
        // Unknown keys are not compared.
        let other = table(&[("x-custom", AMQPValue::LongInt(1))]);
        assert!(assert_equivalent(&cur, &other, QUEUE_EQUIVALENCE_KEYS, "q").is_ok());
    }

    #[test]
    fn validation() {
        let q = |pairs: &[(&str, AMQPValue)]| parse_queue_args(&table(pairs), "queue 'q' in vhost '/'");
        assert!(q(&[("x-message-ttl", AMQPValue::LongInt(-1))]).is_err());
        assert!(q(&[("x-expires", AMQPValue::LongInt(0))]).is_err());
        assert!(q(&[("x-overflow", AMQPValue::LongString(LongString::from(b"nope".to_vec())))]).is_err());
        let a = q(&[
            ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ("x-max-priority", AMQPValue::ShortShortUInt(10)),
        ])
        .unwrap();
        assert!(a.single_active_consumer);
        assert_eq!(a.max_priority, Some(10));
        let qt = q(&[("x-queue-type", AMQPValue::LongString(LongString::from(b"quorum".to_vec())))]).unwrap();
        assert_eq!(qt.queue_type, QueueType::Quorum);
    }
}
