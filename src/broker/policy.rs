//! Policies: settings applied to the queues and exchanges whose names match a pattern, as
//! RabbitMQ's (`rabbit_policy.erl`, <https://www.rabbitmq.com/docs/policies>).
//!
//! - A policy has a name, a regex `pattern`, `apply-to` (`queues`, `exchanges`, `all`,
//!   `classic_queues`, `quorum_queues`), a `priority` and a `definition` whose keys are the
//!   queue arguments without `x-` (`message-ttl`, `expires`, `max-length`, `max-length-bytes`,
//!   `overflow`, `dead-letter-exchange`, `dead-letter-routing-key`, `delivery-limit`,
//!   `consumer-timeout`) plus the exchange setting `alternate-exchange`.
//! - At most one policy applies to an object: the matching one with the highest priority (ties
//!   go to the first name).
//! - Precedence between an object's own arguments and its policy follows
//!   `rabbit_amqqueue_process:process_args_policy`: for `expires`, `message-ttl`,
//!   `max-length`, `max-length-bytes`, `delivery-limit` and `consumer-timeout` the lower value
//!   wins; for `overflow`, `dead-letter-exchange`, `dead-letter-routing-key` and
//!   `alternate-exchange` the argument wins.
//! - Keys RabbitMQ knows that Warren has no use for (mirroring's `ha-*`, `queue-mode`, …) are
//!   accepted and ignored, so definitions exported from RabbitMQ import; unknown keys are
//!   refused with RabbitMQ's "not recognised" text.

use super::argument::{self, QueueArgs, QueueType, parse_queue_args};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use regex::Regex;

/// Definition keys that configure queues (each the name of an `x-` argument).
const QUEUE_KEYS: &[&str] = &[
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "overflow",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "delivery-limit",
    "consumer-timeout",
];

/// Keys RabbitMQ accepts that change nothing here.
const IGNORED_KEYS: &[&str] = &[
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-mode",
    "queue-master-locator",
    "queue-leader-locator",
    "queue-version",
    "max-age",
    "stream-max-segment-size-bytes",
    "initial-cluster-size",
    "federation-upstream",
    "federation-upstream-set",
    "single-active-consumer",
];

/// What a policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyTo {
    All,
    Queues,
    Exchanges,
    ClassicQueues,
    QuorumQueues,
}

impl ApplyTo {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => Self::All,
            "queues" => Self::Queues,
            "exchanges" => Self::Exchanges,
            "classic_queues" => Self::ClassicQueues,
            "quorum_queues" => Self::QuorumQueues,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Queues => "queues",
            Self::Exchanges => "exchanges",
            Self::ClassicQueues => "classic_queues",
            Self::QuorumQueues => "quorum_queues",
        }
    }
}

/// The kind of object a policy is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Queue(QueueType),
    Exchange,
}

impl ApplyTo {
    fn covers(self, t: Target) -> bool {
        match (self, t) {
            (Self::All, _) => true,
            (Self::Queues, Target::Queue(_)) => true,
            (Self::Exchanges, Target::Exchange) => true,
            (Self::ClassicQueues, Target::Queue(QueueType::Classic)) => true,
            (Self::QuorumQueues, Target::Queue(QueueType::Quorum)) => true,
            _ => false,
        }
    }
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    pub priority: i64,
    /// As given (policy keys, no `x-`).
    pub definition: FieldTable,
    /// The queue settings of the definition, as queue arguments would give them.
    queue_table: FieldTable,
    pub queue: QueueArgs,
    pub alternate_exchange: Option<String>,
}

/// RabbitMQ's text for definition keys it does not know.
fn not_recognised(key: &str, v: &AMQPValue) -> String {
    format!(
        "Validation failed\n\n[{{<<\"{key}\">>,{}}}] are not recognised policy settings\n",
        argument::display_value(v)
    )
}

impl Policy {
    /// Validates a policy; the error is the reason RabbitMQ's API gives (a 400).
    pub fn new(
        name: String,
        pattern: String,
        apply_to: ApplyTo,
        priority: i64,
        definition: FieldTable,
    ) -> Result<Self, String> {
        let regex = Regex::new(&pattern)
            .map_err(|e| format!("Validation failed\n\n{pattern} is not a valid regular expression: {e}\n"))?;
        if definition.inner().is_empty() {
            return Err("Validation failed\n\nno policy settings given\n".into());
        }
        let mut queue_table = FieldTable::default();
        let mut alternate_exchange = None;
        for (k, v) in definition.inner() {
            let k = k.as_str();
            if QUEUE_KEYS.contains(&k) {
                queue_table.insert(ShortString::from(format!("x-{k}")), v.clone());
            } else if k == "alternate-exchange" {
                alternate_exchange = Some(argument::as_str(v).ok_or_else(|| {
                    format!("Validation failed\n\n{} is not a valid exchange name\n", argument::display_value(v))
                })?);
            } else if !IGNORED_KEYS.contains(&k) {
                return Err(not_recognised(k, v));
            }
        }
        let queue = parse_queue_args(&queue_table, &format!("policy '{name}'"))
            .map_err(|e| format!("Validation failed\n\n{}\n", e.detail))?;
        Ok(Self { name, pattern, regex, apply_to, priority, definition, queue_table, queue, alternate_exchange })
    }

    pub fn matches(&self, name: &str, target: Target) -> bool {
        self.apply_to.covers(target) && self.regex.is_match(name)
    }
}

/// The policy that applies to an object: the matching one with the highest priority.
pub fn select<'a, P: AsRef<Policy>>(
    policies: impl IntoIterator<Item = &'a P>,
    name: &str,
    target: Target,
) -> Option<&'a P> {
    let mut best: Option<&P> = None;
    for p in policies.into_iter().filter(|p| p.as_ref().matches(name, target)) {
        let (a, b) = (p.as_ref(), best.map(AsRef::as_ref));
        if b.is_none_or(|b| a.priority > b.priority || (a.priority == b.priority && a.name < b.name)) {
            best = Some(p);
        }
    }
    best
}

impl AsRef<Policy> for Policy {
    fn as_ref(&self) -> &Policy {
        self
    }
}

fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A queue's settings with its policy applied (`args` is its declared table, `parsed` what
/// was read from it).
pub fn effective_queue_args(args: &FieldTable, parsed: &QueueArgs, policy: Option<&Policy>) -> QueueArgs {
    let Some(p) = policy else { return parsed.clone() };
    let q = &p.queue;
    let declared = |k: &str| argument::get(args, k).is_some();
    let policy_has = |k: &str| argument::get(&p.queue_table, k).is_some();
    QueueArgs {
        message_ttl: lower(parsed.message_ttl, q.message_ttl),
        expires: lower(parsed.expires, q.expires),
        max_length: lower(parsed.max_length, q.max_length),
        max_length_bytes: lower(parsed.max_length_bytes, q.max_length_bytes),
        delivery_limit: lower(parsed.delivery_limit, q.delivery_limit),
        consumer_timeout: lower(parsed.consumer_timeout, q.consumer_timeout),
        overflow: if !declared("x-overflow") && policy_has("x-overflow") { q.overflow } else { parsed.overflow },
        dead_letter_exchange: parsed.dead_letter_exchange.clone().or_else(|| q.dead_letter_exchange.clone()),
        dead_letter_routing_key: parsed.dead_letter_routing_key.clone().or_else(|| q.dead_letter_routing_key.clone()),
        ..parsed.clone()
    }
}

/// An exchange's alternate exchange: its argument, else its policy's.
pub fn effective_alternate(args: &FieldTable, policy: Option<&Policy>) -> Option<String> {
    argument::get(args, "alternate-exchange")
        .and_then(argument::as_str)
        .or_else(|| policy.and_then(|p| p.alternate_exchange.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    use crate::broker::argument::tests::table;

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
    }

    fn policy(name: &str, pattern: &str, apply_to: ApplyTo, priority: i64, def: &[(&str, AMQPValue)]) -> Policy {
        Policy::new(name.into(), pattern.into(), apply_to, priority, table(def)).unwrap()
    }

    #[test]
    fn validation_follows_rabbitmq() {
        let e =
            Policy::new("p".into(), "^x".into(), ApplyTo::All, 0, table(&[("no-such-setting", AMQPValue::LongInt(5))]))
                .unwrap_err();
        assert!(e.contains("not recognised"), "{e}");
        assert!(
            Policy::new("p".into(), "(".into(), ApplyTo::All, 0, table(&[("max-length", AMQPValue::LongInt(1))]))
                .is_err()
        );
        assert!(
            Policy::new("p".into(), "^x".into(), ApplyTo::All, 0, table(&[("max-length", AMQPValue::LongInt(-1))]))
                .is_err()
        );
        assert!(Policy::new("p".into(), "^x".into(), ApplyTo::All, 0, table(&[("overflow", s("nope"))])).is_err());
        assert!(Policy::new("p".into(), "^x".into(), ApplyTo::All, 0, FieldTable::default()).is_err());
        // RabbitMQ's mirroring keys are accepted (and ignored).
        assert!(Policy::new("p".into(), "^x".into(), ApplyTo::All, 0, table(&[("ha-mode", s("all"))])).is_ok());
    }

    #[test]
    fn the_highest_priority_match_applies_to_its_kind() {
        let a = policy("a", "^q", ApplyTo::Queues, 1, &[("max-length", AMQPValue::LongInt(1))]);
        let b = policy("b", "^q", ApplyTo::All, 5, &[("max-length", AMQPValue::LongInt(2))]);
        let c = policy("c", "^q", ApplyTo::Exchanges, 9, &[("alternate-exchange", s("ae"))]);
        let d = policy("d", "^q", ApplyTo::QuorumQueues, 7, &[("delivery-limit", AMQPValue::LongInt(3))]);
        let all = [a, b, c, d];
        let q = Target::Queue(QueueType::Classic);
        assert_eq!(select(&all, "q1", q).map(|p| p.name.as_str()), Some("b"));
        assert_eq!(select(&all, "q1", Target::Queue(QueueType::Quorum)).map(|p| p.name.as_str()), Some("d"));
        assert_eq!(select(&all, "q1", Target::Exchange).map(|p| p.name.as_str()), Some("c"));
        assert!(select(&all, "other", q).is_none());
    }

    #[test]
    fn lower_limits_win_and_arguments_win_the_rest() {
        let p = policy(
            "p",
            ".*",
            ApplyTo::All,
            0,
            &[
                ("max-length", AMQPValue::LongInt(10)),
                ("message-ttl", AMQPValue::LongInt(500)),
                ("overflow", s("reject-publish")),
                ("dead-letter-exchange", s("policy-dlx")),
                ("alternate-exchange", s("policy-ae")),
            ],
        );
        let args = table(&[
            ("x-max-length", AMQPValue::LongInt(5)),
            ("x-message-ttl", AMQPValue::LongInt(1000)),
            ("x-dead-letter-exchange", s("arg-dlx")),
        ]);
        let parsed = parse_queue_args(&args, "q").unwrap();
        let e = effective_queue_args(&args, &parsed, Some(&p));
        assert_eq!((e.max_length, e.message_ttl), (Some(5), Some(500)));
        assert_eq!(e.overflow, argument::Overflow::RejectPublish);
        assert_eq!(e.dead_letter_exchange.as_deref(), Some("arg-dlx"));
        let declared_overflow = table(&[("x-overflow", s("drop-head"))]);
        let parsed = parse_queue_args(&declared_overflow, "q").unwrap();
        assert_eq!(effective_queue_args(&declared_overflow, &parsed, Some(&p)).overflow, argument::Overflow::DropHead);
        assert_eq!(effective_alternate(&FieldTable::default(), Some(&p)).as_deref(), Some("policy-ae"));
        assert_eq!(
            effective_alternate(&table(&[("alternate-exchange", s("arg-ae"))]), Some(&p)).as_deref(),
            Some("arg-ae")
        );
        assert_eq!(effective_queue_args(&args, &parse_queue_args(&args, "q").unwrap(), None).max_length, Some(5));
    }
}
