//! State-machine tests of the lifecycle rules: TTL, queue expiry, length limits, dead letters,
//! priorities, delivery limits, consumer timeouts, deduplication, and a property test of them
//! all against a model.

use super::super::tests::{TestQueue, delivered, get_body, msg, run, run_at, spec, with};
use super::super::*;
use crate::broker::argument::Overflow;
use crate::raft::DurableMachine;
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::{BTreeMap, BTreeSet};

fn expiring(body: &str, ttl: &str) -> Arc<Message> {
    Arc::new(Message {
        exchange: String::new(),
        routing_key: "q".into(),
        properties: BasicProperties::default().with_expiration(ttl.into()),
        header: Bytes::new(),
        body: Bytes::from(body.to_string()).into(),
    })
}
#[test]
fn queue_ttl_expires_messages_even_if_nobody_reads() {
    let mut q = with(QueueConfig { message_ttl: Some(100), ..QueueConfig::new(QueueKey::new("/", "q")) });
    run_at(&mut q, 1000, Command::Enqueue { msg: msg(1) });
    run_at(&mut q, 1050, Command::Enqueue { msg: msg(2) });
    assert_eq!(q.next_expiry(), Some(1100), "the runner wakes the queue then");
    run_at(&mut q, 1100, Command::Expire);
    assert_eq!((q.ready_count(), q.next_expiry()), (1, Some(1150)));
    assert_eq!(get_body(&mut q, 1149), Some("2".into()));
    run_at(&mut q, 1160, Command::Enqueue { msg: msg(3) });
    assert_eq!(get_body(&mut q, 1260), None, "expired messages are never delivered");
    assert_eq!(q.ready_count(), 0);
}

#[test]
fn the_shorter_ttl_wins_and_expiry_happens_at_the_head() {
    let mut q = with(QueueConfig { message_ttl: Some(1000), ..QueueConfig::new(QueueKey::new("/", "q")) });
    run_at(&mut q, 0, Command::Enqueue { msg: expiring("short", "10") });
    run_at(&mut q, 0, Command::Enqueue { msg: msg(2) });
    run_at(&mut q, 0, Command::Enqueue { msg: expiring("long", "5000") });
    assert_eq!(q.next_expiry(), Some(10));
    assert_eq!(get_body(&mut q, 20), Some("2".into()));
    // The queue's TTL is shorter than the message's own.
    assert_eq!(get_body(&mut q, 1000), None);
}

#[test]
fn ttl_zero_means_delivered_at_once_or_never() {
    let mut q = with(QueueConfig { message_ttl: Some(0), ..QueueConfig::new(QueueKey::new("/", "q")) });
    run_at(&mut q, 5, Command::Enqueue { msg: msg(1) });
    assert_eq!(q.ready_count(), 0, "nobody waiting: gone");
    run(&mut q, Command::Consume(spec(1, 0)));
    let (_, fx) = run_at(&mut q, 6, Command::Enqueue { msg: msg(2) });
    assert_eq!(delivered(&fx).len(), 1);
}

#[test]
fn max_length_drops_the_head_or_refuses_the_publish() {
    let key = || QueueKey::new("/", "q");
    let mut q = with(QueueConfig { max_length: Some(2), ..QueueConfig::new(key()) });
    for i in 0..5 {
        run(&mut q, Command::Enqueue { msg: msg(i) });
    }
    assert_eq!(
        (get_body(&mut q, 0), get_body(&mut q, 0), get_body(&mut q, 0)),
        (Some("3".into()), Some("4".into()), None)
    );
    let mut q = with(QueueConfig { max_length: Some(2), overflow: Overflow::RejectPublish, ..QueueConfig::new(key()) });
    let replies: Vec<bool> =
        (0..4).map(|i| matches!(run(&mut q, Command::Enqueue { msg: msg(i) }).0, Reply::Rejected)).collect();
    assert_eq!(replies, vec![false, false, true, true]);
    assert_eq!(get_body(&mut q, 0), Some("0".into()), "the oldest stay");
    // Bytes: bodies "10", "11", "12" are 2 bytes each; at most 4 bytes stay.
    let mut q = with(QueueConfig { max_length_bytes: Some(4), ..QueueConfig::new(key()) });
    for i in 10..13 {
        run(&mut q, Command::Enqueue { msg: msg(i) });
    }
    assert_eq!(q.ready_count(), 2);
    assert_eq!(get_body(&mut q, 0), Some("11".into()));
}

#[test]
fn dead_letters_leave_with_their_reason_only_when_the_queue_has_an_exchange_for_them() {
    use crate::queue::dead_letter::{Reason, Target};
    let target = Target { exchange: "dlx".into(), routing_key: None };
    let reasons = |fx: &[Effect]| -> Vec<(u64, Reason)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::DeadLetter { id, reason, msg } => {
                    assert!(msg.is_some(), "an in-memory queue hands the body along");
                    Some((id.0, *reason))
                }
                _ => None,
            })
            .collect()
    };
    let config = QueueConfig {
        dead_letter: Some(target),
        max_length: Some(1),
        message_ttl: Some(100),
        ..QueueConfig::new(QueueKey::new("/", "q"))
    };
    let mut q = with(config.clone());
    run_at(&mut q, 0, Command::Enqueue { msg: msg(1) });
    let (_, fx) = run_at(&mut q, 0, Command::Enqueue { msg: msg(2) });
    assert_eq!(reasons(&fx), vec![(1, Reason::Maxlen)]);
    let holder = Holder::Get(ConnectionId(1), ChannelId(1));
    run_at(&mut q, 10, Command::Get { holder, no_ack: false });
    let (_, fx) = run_at(&mut q, 10, Command::Settle { ids: vec![MsgId(2)], outcome: Outcome::Discard });
    assert_eq!(reasons(&fx), vec![(2, Reason::Rejected)]);
    run_at(&mut q, 20, Command::Enqueue { msg: msg(3) });
    let (_, fx) = run_at(&mut q, 120, Command::Expire);
    assert_eq!(reasons(&fx), vec![(3, Reason::Expired)]);
    // Purges are not dead-lettered; nor is anything without a dead-letter exchange.
    run_at(&mut q, 130, Command::Enqueue { msg: msg(4) });
    assert!(reasons(&run_at(&mut q, 130, Command::Purge).1).is_empty());
    let mut plain = with(QueueConfig { dead_letter: None, ..config });
    run_at(&mut plain, 0, Command::Enqueue { msg: msg(1) });
    assert!(reasons(&run_at(&mut plain, 0, Command::Enqueue { msg: msg(2) }).1).is_empty());
}

#[test]
fn priority_queues_deliver_higher_first_fifo_within_and_requeues_in_place() {
    let prio = |body: &str, p: Option<u8>| {
        let props = match p {
            Some(p) => BasicProperties::default().with_priority(p),
            None => BasicProperties::default(),
        };
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties: props,
            header: Bytes::new(),
            body: Bytes::from(body.to_string()).into(),
        })
    };
    let mut q = with(QueueConfig { max_priority: Some(5), ..QueueConfig::new(QueueKey::new("/", "q")) });
    for (b, p) in [("none", None), ("low", Some(1)), ("high1", Some(5)), ("over", Some(9)), ("mid", Some(3))] {
        run(&mut q, Command::Enqueue { msg: prio(b, p) });
    }
    // "over" counts as 5, behind "high1" (FIFO within a priority).
    let holder = Holder::Get(ConnectionId(1), ChannelId(1));
    let Reply::Got(Some(first)) = run(&mut q, Command::Get { holder, no_ack: false }).0 else { panic!() };
    assert_eq!(get_body(&mut q, 0), Some("over".into()));
    run(&mut q, Command::Settle { ids: vec![first.id], outcome: Outcome::Requeue });
    let order: Vec<String> = std::iter::from_fn(|| get_body(&mut q, 0)).collect();
    assert_eq!(order, vec!["high1", "mid", "low", "none"], "the requeued one is back in front of its priority");
    // Snapshots keep priorities.
    let mut q = with(QueueConfig { max_priority: Some(5), ..QueueConfig::new(QueueKey::new("/", "q")) });
    for (b, p) in [("a", Some(1)), ("b", Some(4))] {
        run(&mut q, Command::Enqueue { msg: prio(b, p) });
    }
    let copy = QueueMachine::decode_state(&Bytes::from(q.m.encode_state())).unwrap();
    assert_eq!(copy.head().map(|e| e.id), Some(MsgId(2)));
}

#[test]
fn an_unused_queue_expires_and_use_starts_its_clock_over() {
    let mut q = with(QueueConfig { expires: Some(1000), ..QueueConfig::new(QueueKey::new("/", "q")) });
    run_at(&mut q, 100, Command::Touch);
    assert_eq!(q.next_expiry(), Some(1100));
    let deleted = |fx: &[Effect]| fx.iter().any(|e| matches!(e, Effect::AutoDelete));
    assert!(!deleted(&run_at(&mut q, 1099, Command::Expire).1));
    let holder = Holder::Get(ConnectionId(1), ChannelId(1));
    run_at(&mut q, 1050, Command::Get { holder, no_ack: true });
    assert_eq!(q.next_expiry(), Some(2050), "a get is a use");
    run_at(&mut q, 1060, Command::Consume(spec(1, 0)));
    assert_eq!(q.next_expiry(), None, "a queue with consumers is in use");
    run_at(&mut q, 5000, Command::Cancel { consumer: ConsumerId(1) });
    assert_eq!(q.next_expiry(), Some(6000));
    assert!(deleted(&run_at(&mut q, 6000, Command::Expire).1));
}

#[test]
fn past_the_delivery_limit_a_message_is_dead_lettered_and_redeliveries_are_counted() {
    use crate::queue::dead_letter::{Reason, Target};
    let config = QueueConfig {
        delivery_limit: Some(2),
        dead_letter: Some(Target { exchange: "dlx".into(), routing_key: None }),
        ..QueueConfig::new(QueueKey::new("/", "q"))
    };
    let mut q = with(config);
    run(&mut q, Command::Enqueue { msg: msg(1) });
    let holder = Holder::Get(ConnectionId(1), ChannelId(1));
    let mut counts = Vec::new();
    for _ in 0..3 {
        let Reply::Got(Some(g)) = run(&mut q, Command::Get { holder, no_ack: false }).0 else { panic!() };
        counts.push(g.delivery_count);
        let (_, fx) = run(&mut q, Command::Settle { ids: vec![g.id], outcome: Outcome::Requeue });
        let dead: Vec<Reason> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::DeadLetter { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(dead.is_empty(), counts.len() < 3, "dead-lettered on the third return only: {dead:?}");
    }
    assert_eq!(counts, vec![None, Some(1), Some(2)]);
    assert_eq!(q.ready_count(), 0);
}

#[test]
fn a_delivery_unacked_past_the_consumer_timeout_times_its_consumer_out() {
    let mut q = with(QueueConfig { consumer_timeout: Some(1000), ..QueueConfig::new(QueueKey::new("/", "q")) });
    run_at(&mut q, 0, Command::Consume(spec(1, 0)));
    let mut auto = spec(2, 0);
    auto.no_ack = true;
    run_at(&mut q, 0, Command::Consume(auto));
    for i in 0..4 {
        run_at(&mut q, 100, Command::Enqueue { msg: msg(i) });
    }
    // Consumer 1 got messages 1 and 3 (round-robin); it acks 1 in time.
    run_at(&mut q, 500, Command::Settle { ids: vec![MsgId(1)], outcome: Outcome::Ack });
    assert_eq!(q.next_expiry(), Some(1100), "the runner wakes the queue at the deadline");
    let timed_out = |fx: &[Effect]| -> Vec<u64> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::AckTimeout { consumer, timeout_ms: 1000 } => Some(consumer.0),
                _ => None,
            })
            .collect()
    };
    assert!(timed_out(&run_at(&mut q, 1099, Command::Expire).1).is_empty());
    assert_eq!(timed_out(&run_at(&mut q, 1100, Command::Expire).1), vec![1], "once, for the late consumer only");
    assert_eq!(q.next_expiry(), None);
}

/// Random command sequences against a simple model, with priorities, per-message TTLs,
/// requeues, rejections and time passing: nothing is lost or duplicated, an expired message is
/// never delivered, and each first delivery respects priority order and FIFO within a priority.
#[test]
fn random_sequences_with_ttl_and_priorities_keep_every_rule() {
    use crate::queue::dead_letter::{Reason, Target};
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = QueueConfig {
            max_priority: Some(3),
            dead_letter: Some(Target { exchange: "dlx".into(), routing_key: None }),
            ..QueueConfig::new(QueueKey::new("/", "q"))
        };
        let mut q = with(config);
        // Model: per id, (priority as the queue sees it, expires at).
        let mut published: BTreeMap<u64, (u8, u64)> = BTreeMap::new();
        let mut ready: BTreeSet<u64> = BTreeSet::new();
        let mut outstanding: BTreeSet<u64> = BTreeSet::new();
        let (mut acked, mut dead) = (BTreeSet::new(), BTreeSet::new());
        let mut delivered_once: BTreeSet<u64> = BTreeSet::new();
        let mut consumers: Vec<u64> = Vec::new();
        let mut now = 1000u64;
        for step in 0..400 {
            now += rng.random_range(0..5);
            let cmd = match rng.random_range(0..12) {
                0..=4 => {
                    let mut props = BasicProperties::default();
                    if rng.random_bool(0.7) {
                        props = props.with_priority(rng.random_range(0..6));
                    }
                    if rng.random_bool(0.5) {
                        props = props.with_expiration(rng.random_range(0..40u32).to_string().into());
                    }
                    let m = Arc::new(Message {
                        exchange: String::new(),
                        routing_key: "q".into(),
                        properties: props,
                        header: Bytes::new(),
                        body: Bytes::from(format!("m{step}")).into(),
                    });
                    Command::Enqueue { msg: m }
                }
                5 if consumers.len() < 2 => {
                    let id = 100 + step;
                    consumers.push(id);
                    Command::Consume(spec(id, rng.random_range(0..3)))
                }
                6 if !consumers.is_empty() => Command::Cancel { consumer: ConsumerId(consumers.remove(0)) },
                7 => Command::Get { holder: Holder::Get(ConnectionId(1), ChannelId(1)), no_ack: false },
                8 => Command::Expire,
                _ if !outstanding.is_empty() => {
                    let id = *outstanding.iter().nth(rng.random_range(0..outstanding.len())).unwrap();
                    let outcome = [Outcome::Ack, Outcome::Requeue, Outcome::Discard][rng.random_range(0..3)];
                    Command::Settle { ids: vec![MsgId(id)], outcome }
                }
                _ => Command::Stats,
            };
            let (settled, enqueued_props) = match &cmd {
                Command::Settle { ids, outcome } => (Some((ids[0].0, *outcome)), None),
                Command::Enqueue { msg } => {
                    let p = msg.properties.priority().unwrap_or(0).min(3);
                    let ttl = msg.properties.expiration().as_ref().map(|s| s.as_str().parse::<u64>().unwrap());
                    (None, Some((p, ttl.map_or(u64::MAX, |t| now + t))))
                }
                _ => (None, None),
            };
            let (r, fx) = run_at(&mut q, now, cmd);
            if let (Reply::Enqueued(id), Some(p)) = (&r, enqueued_props) {
                assert!(published.insert(id.0, p).is_none());
                ready.insert(id.0);
            }
            if let Some((id, outcome)) = settled {
                outstanding.remove(&id);
                match outcome {
                    Outcome::Ack => {
                        acked.insert(id);
                    }
                    Outcome::Requeue => {
                        ready.insert(id);
                    }
                    Outcome::Discard => {}
                }
            }
            // Dead letters first: expiry at the start of a command comes before its deliveries.
            for e in &fx {
                if let Effect::DeadLetter { id, reason, .. } = e {
                    assert!(ready.remove(&id.0) || matches!(reason, Reason::Rejected), "seed {seed}: dead {id:?}");
                    if *reason == Reason::Expired {
                        assert!(published[&id.0].1 <= now, "seed {seed}: {id:?} expired early");
                    }
                    assert!(dead.insert(id.0), "seed {seed}: {id:?} dead twice");
                }
            }
            let mut handed: Vec<u64> = delivered(&fx).into_iter().map(|(_, id, _)| id).collect();
            if let Reply::Got(Some(g)) = &r {
                handed.push(g.id.0);
            }
            for id in handed {
                let (p, expires) = published[&id];
                assert!(expires >= now, "seed {seed}: {id} delivered at {now}, expired at {expires}");
                assert!(ready.remove(&id), "seed {seed}: {id} handed out but not ready");
                assert!(!acked.contains(&id) && !dead.contains(&id), "seed {seed}: {id} came back from the dead");
                // No deliverable message ranks before it: higher priority, or same priority
                // and older (first deliveries only: requeued ones keep their old place).
                if delivered_once.insert(id) {
                    let ahead = ready.iter().find(|&&o| {
                        let (op, oe) = published[&o];
                        oe >= now && !delivered_once.contains(&o) && (op > p || (op == p && o < id))
                    });
                    assert!(
                        ahead.is_none(),
                        "seed {seed}: {id} (prio {p}, expires {expires}) delivered at {now} before {ahead:?} {:?}",
                        ahead.map(|o| published[o])
                    );
                }
                if !consumers.is_empty() || matches!(r, Reply::Got(_)) {
                    outstanding.insert(id);
                }
            }
        }
        // Conservation: every message is acked, dead, outstanding or still ready.
        let total = acked.len() + dead.len() + outstanding.len() + q.ready_count() as usize;
        assert_eq!(published.len(), total, "seed {seed}");
        assert_eq!(ready.len(), q.ready_count() as usize, "seed {seed}: the model's ready set");
    }
}

#[test]
fn duplicates_within_the_window_are_confirmed_but_not_enqueued() {
    use crate::queue::machine::dedup::Window;
    use amq_protocol::types::{AMQPValue, FieldTable, LongString};
    let keyed = |key: Option<&str>, id: Option<&str>| {
        let mut props = BasicProperties::default();
        if let Some(k) = key {
            let mut h = FieldTable::default();
            h.insert("x-deduplication-header".into(), AMQPValue::LongString(LongString::from(k.as_bytes().to_vec())));
            props = props.with_headers(h);
        }
        if let Some(id) = id {
            props = props.with_message_id(id.into());
        }
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties: props,
            header: Bytes::new(),
            body: Bytes::from_static(b"x").into(),
        })
    };
    let window = Window { size: 2, ttl: Some(1000) };
    let mut q = with(QueueConfig { dedup: Some(window), ..QueueConfig::new(QueueKey::new("/", "q")) });
    let dup = |q: &mut TestQueue, at: u64, m: Arc<Message>| {
        matches!(run_at(q, at, Command::Enqueue { msg: m }).0, Reply::Duplicate)
    };
    assert!(!dup(&mut q, 0, keyed(Some("a"), None)));
    assert!(dup(&mut q, 10, keyed(Some("a"), Some("other"))), "the header wins over message_id");
    assert!(!dup(&mut q, 20, keyed(None, Some("b"))), "message_id when there is no header");
    assert!(dup(&mut q, 30, keyed(None, Some("b"))));
    assert!(!dup(&mut q, 40, keyed(None, None)), "no key: never a duplicate");
    assert!(!dup(&mut q, 50, keyed(None, None)));
    assert!(!dup(&mut q, 1000, keyed(Some("a"), None)), "a's window ended at 1000");
    // Size 2: "c" pushes out the oldest ("b", seen at 20).
    assert!(!dup(&mut q, 1001, keyed(Some("c"), None)));
    assert!(!dup(&mut q, 1002, keyed(None, Some("b"))));
    assert_eq!(q.ready_count(), 7, "a, b, two without a key, a again, c, b again");
    // The window is part of the replicated state.
    let mut copy = TestQueue { m: QueueMachine::decode_state(&Bytes::from(q.m.encode_state())).unwrap(), enqueues: 10 };
    assert!(dup(&mut copy, 1003, keyed(Some("c"), None)));
}
