//! State-machine tests: command sequences in, replies and effects out.

use super::*;
use crate::raft::LogIndex;
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeSet;

/// A machine and the log index of its next `Enqueue` (the machine reads the index only there,
/// so only enqueues advance it: message ids are then 1, 2, 3…).
pub(super) struct TestQueue {
    pub(super) m: QueueMachine,
    pub(super) enqueues: u64,
}

impl std::ops::Deref for TestQueue {
    type Target = QueueMachine;
    fn deref(&self) -> &QueueMachine {
        &self.m
    }
}

pub(super) fn machine(sac: bool, auto_delete: bool) -> TestQueue {
    let config = QueueConfig { auto_delete, single_active_consumer: sac, ..QueueConfig::new(QueueKey::new("/", "q")) };
    TestQueue { m: QueueMachine::new(config), enqueues: 0 }
}

pub(super) fn msg(n: u32) -> Arc<Message> {
    Arc::new(Message {
        exchange: String::new(),
        routing_key: "q".into(),
        properties: BasicProperties::default(),
        header: Bytes::new(),
        body: Bytes::from(n.to_string()).into(),
    })
}

pub(super) fn spec(id: u64, prefetch: u32) -> ConsumerSpec {
    ConsumerSpec {
        id: ConsumerId(id),
        tag: format!("c{id}").into(),
        connection: ConnectionId(1),
        channel: ChannelId(1),
        prefetch,
        credit: None,
        no_ack: false,
        exclusive: false,
        priority: 0,
    }
}

pub(super) fn run(q: &mut TestQueue, cmd: Command) -> (Reply, Vec<Effect>) {
    run_at(q, 0, cmd)
}

/// Applies `cmd` stamped with the time `now_ms`.
pub(super) fn run_at(q: &mut TestQueue, now_ms: u64, cmd: Command) -> (Reply, Vec<Effect>) {
    if matches!(cmd, Command::Enqueue { .. }) {
        q.enqueues += 1;
    }
    let mut fx = Vec::new();
    let r = q.m.apply(ApplyMeta { index: LogIndex(q.enqueues), now_ms }, cmd, &mut fx);
    (r, fx)
}

pub(super) fn with(config: QueueConfig) -> TestQueue {
    TestQueue { m: QueueMachine::new(config), enqueues: 0 }
}

pub(super) fn get_body(q: &mut TestQueue, now: u64) -> Option<String> {
    let holder = Holder::Get(ConnectionId(1), ChannelId(1));
    match run_at(q, now, Command::Get { holder, no_ack: true }).0 {
        Reply::Got(Some(g)) => Some(String::from_utf8(g.msg.unwrap().body.to_vec()).unwrap()),
        _ => None,
    }
}

pub(super) fn delivered(fx: &[Effect]) -> Vec<(u64, u64, bool)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Deliver { consumer, id, redelivered, .. } => Some((consumer.0, id.0, *redelivered)),
            _ => None,
        })
        .collect()
}

#[test]
fn round_robin_without_prefetch_splits_evenly() {
    let mut m = machine(false, false);
    run(&mut m, Command::Consume(spec(1, 0)));
    run(&mut m, Command::Consume(spec(2, 0)));
    let mut per = [0; 3];
    for i in 0..10 {
        let (_, fx) = run(&mut m, Command::Enqueue { msg: msg(i) });
        for (c, _, _) in delivered(&fx) {
            per[c as usize] += 1;
        }
    }
    assert_eq!((per[1], per[2]), (5, 5));
}

#[test]
fn prefetch_bounds_in_flight_and_acks_release_credit() {
    let mut m = machine(false, false);
    run(&mut m, Command::Consume(spec(1, 1)));
    let mut all = Vec::new();
    for i in 0..3 {
        all.extend(delivered(&run(&mut m, Command::Enqueue { msg: msg(i) }).1));
    }
    assert_eq!(all, vec![(1, 1, false)]);
    assert_eq!(m.ready_count(), 2);
    let (r, fx) = run(&mut m, Command::Settle { ids: vec![MsgId(1)], outcome: Outcome::Ack });
    assert!(matches!(r, Reply::Settled(1)));
    assert_eq!(delivered(&fx), vec![(1, 2, false)]);
}

#[test]
fn requeue_keeps_position_and_marks_redelivered() {
    let mut m = machine(false, false);
    for i in 0..3 {
        run(&mut m, Command::Enqueue { msg: msg(i) });
    }
    let holder = Holder::Get(ConnectionId(1), ChannelId(1));
    let Reply::Got(Some(g1)) = run(&mut m, Command::Get { holder, no_ack: false }).0 else { panic!() };
    let Reply::Got(Some(g2)) = run(&mut m, Command::Get { holder, no_ack: false }).0 else { panic!() };
    assert_eq!((g1.id, g2.id, g2.remaining), (MsgId(1), MsgId(2), 1));
    run(&mut m, Command::Settle { ids: vec![MsgId(2), MsgId(1)], outcome: Outcome::Requeue });
    let order: Vec<(u64, bool)> = (0..3)
        .map(|_| match run(&mut m, Command::Get { holder, no_ack: true }).0 {
            Reply::Got(Some(g)) => (g.id.0, g.redelivered),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, vec![(1, true), (2, true), (3, false)]);
    assert!(matches!(run(&mut m, Command::Get { holder, no_ack: true }).0, Reply::Got(None)));
}

#[test]
fn priorities_then_round_robin() {
    let mut m = machine(false, false);
    let mut hi = spec(1, 1);
    hi.priority = 10;
    run(&mut m, Command::Consume(spec(2, 0)));
    run(&mut m, Command::Consume(hi));
    let mut got = Vec::new();
    for i in 0..3 {
        got.extend(delivered(&run(&mut m, Command::Enqueue { msg: msg(i) }).1).into_iter().map(|d| d.0));
    }
    // The high-priority consumer takes one (its prefetch), then the low one gets the rest.
    assert_eq!(got, vec![1, 2, 2]);
}

#[test]
fn credit_mode_delivers_only_what_was_granted() {
    let mut m = machine(false, false);
    let mut c = spec(1, 0);
    c.credit = Some(1);
    run(&mut m, Command::Consume(c));
    let mut got = Vec::new();
    for i in 0..4 {
        got.extend(delivered(&run(&mut m, Command::Enqueue { msg: msg(i) }).1));
    }
    assert_eq!(got.len(), 1, "one credit, one delivery");
    let fx = run(&mut m, Command::Credit { consumer: ConsumerId(1), add: 2 }).1;
    assert_eq!(delivered(&fx).len(), 2);
    // Acks do not add credit in credit mode: only grants do.
    let fx = run(&mut m, Command::Settle { ids: vec![MsgId(1)], outcome: Outcome::Ack }).1;
    assert!(delivered(&fx).is_empty());
}

#[test]
fn single_active_consumer_fails_over_in_order() {
    let mut m = machine(true, false);
    run(&mut m, Command::Consume(spec(1, 0)));
    run(&mut m, Command::Consume(spec(2, 0)));
    let fx = run(&mut m, Command::Enqueue { msg: msg(0) }).1;
    assert_eq!(delivered(&fx)[0].0, 1);
    run(&mut m, Command::Cancel { consumer: ConsumerId(1) });
    let fx = run(&mut m, Command::Enqueue { msg: msg(1) }).1;
    assert_eq!(delivered(&fx)[0].0, 2);
}

#[test]
fn exclusive_consumers_and_auto_delete() {
    let mut m = machine(false, true);
    let mut ex = spec(1, 0);
    ex.exclusive = true;
    assert!(matches!(run(&mut m, Command::Consume(ex)).0, Reply::Consumed));
    match run(&mut m, Command::Consume(spec(2, 0))).0 {
        Reply::Refused(e) => assert_eq!(e.reply_text(), "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"),
        other => panic!("{other:?}"),
    }
    let (_, fx) = run(&mut m, Command::Cancel { consumer: ConsumerId(1) });
    assert!(matches!(fx.as_slice(), [Effect::AutoDelete]));
}

#[test]
fn delete_checks_and_cancels_consumers() {
    let mut m = machine(false, false);
    run(&mut m, Command::Consume(spec(1, 1)));
    run(&mut m, Command::Enqueue { msg: msg(0) });
    run(&mut m, Command::Enqueue { msg: msg(1) });
    assert!(matches!(run(&mut m, Command::Delete { if_unused: true, if_empty: false }).0, Reply::Refused(_)));
    let (r, fx) = run(&mut m, Command::Delete { if_unused: false, if_empty: false });
    assert!(matches!(r, Reply::Deleted(1)));
    assert!(matches!(fx.as_slice(), [Effect::ConsumerCancelled { consumer: ConsumerId(1) }]));
    assert!(matches!(run(&mut m, Command::Enqueue { msg: msg(2) }).0, Reply::Dropped));
}

/// Random command sequences against a naive model: every message is delivered or got exactly
/// once until settled, acked messages never come back, requeued ones do (marked redelivered),
/// and nothing is invented.
#[test]
fn random_sequences_lose_and_duplicate_nothing() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = machine(false, false);
        let mut published = BTreeSet::new();
        let mut acked = BTreeSet::new();
        let mut outstanding: BTreeSet<u64> = BTreeSet::new();
        let mut next_consumer = 1;
        let mut consumers: Vec<u64> = Vec::new();
        for step in 0..300 {
            let cmd = match rng.random_range(0..10) {
                0..=3 => Command::Enqueue { msg: msg(step) },
                4 if consumers.len() < 3 => {
                    next_consumer += 1;
                    consumers.push(next_consumer);
                    Command::Consume(spec(next_consumer, rng.random_range(0..3)))
                }
                5 if !consumers.is_empty() => Command::Cancel { consumer: ConsumerId(consumers.remove(0)) },
                6 => Command::Get { holder: Holder::Get(ConnectionId(1), ChannelId(1)), no_ack: false },
                _ if !outstanding.is_empty() => {
                    let id = *outstanding.iter().nth(rng.random_range(0..outstanding.len())).unwrap();
                    outstanding.remove(&id);
                    let outcome = if rng.random_bool(0.5) { Outcome::Ack } else { Outcome::Requeue };
                    if outcome == Outcome::Ack {
                        acked.insert(id);
                    }
                    Command::Settle { ids: vec![MsgId(id)], outcome }
                }
                _ => Command::Stats,
            };
            let (r, fx) = run(&mut m, cmd);
            if let Reply::Enqueued(id) = r {
                assert!(published.insert(id.0));
            }
            let mut handed: Vec<(u64, bool)> = delivered(&fx).into_iter().map(|(_, id, re)| (id, re)).collect();
            if let Reply::Got(Some(g)) = r {
                handed.push((g.id.0, g.redelivered));
            }
            for (id, _) in handed {
                assert!(published.contains(&id), "seed {seed}: invented {id}");
                assert!(!acked.contains(&id), "seed {seed}: acked {id} came back");
                assert!(outstanding.insert(id), "seed {seed}: {id} handed out twice");
            }
        }
        // Conservation: published = acked + outstanding + ready.
        assert_eq!(published.len(), acked.len() + outstanding.len() + m.ready_count() as usize, "seed {seed}");
    }
}

#[test]
fn recover_cancels_consumers_requeues_unacked_and_can_drop_transient() {
    let mut m = machine(false, false);
    run(&mut m, Command::Consume(spec(1, 0)));
    let persistent = Arc::new(Message {
        exchange: String::new(),
        routing_key: "q".into(),
        properties: BasicProperties::default().with_delivery_mode(2),
        header: Bytes::new(),
        body: Bytes::from_static(b"p").into(),
    });
    run(&mut m, Command::Enqueue { msg: persistent });
    run(&mut m, Command::Enqueue { msg: msg(1) });
    assert_eq!((m.unacked_count(), m.consumer_count()), (2, 1));
    let mut classic = machine(false, false);
    run(&mut classic, Command::Enqueue { msg: msg(2) });
    // Quorum-like: everything comes back, redelivered, in its place.
    run(&mut m, Command::Recover { drop_transient: false });
    assert_eq!((m.ready_count(), m.unacked_count(), m.consumer_count()), (2, 0, 0));
    let Reply::Got(Some(g)) =
        run(&mut m, Command::Get { holder: Holder::Get(ConnectionId(1), ChannelId(1)), no_ack: true }).0
    else {
        panic!()
    };
    assert!(g.redelivered && g.id == MsgId(1));
    // Classic: transient messages are gone after a restart.
    run(&mut classic, Command::Recover { drop_transient: true });
    assert_eq!(classic.ready_count(), 0);
}

/// A durable queue holds bodies only within its budget; the rest are delivered without one
/// (read back from the log), and the first live index follows the oldest message.
#[test]
fn durable_queue_holds_bodies_within_its_budget() {
    let config = QueueConfig::new(QueueKey::new("/", "q"));
    let mut q = TestQueue { m: QueueMachine::durable(config), enqueues: 0 };
    let big = |n: u32| {
        Arc::new(Message {
            exchange: String::new(),
            routing_key: "q".into(),
            properties: BasicProperties::default(),
            header: Bytes::new(),
            body: Bytes::from(vec![n as u8; 64 * 1024]).into(),
        })
    };
    let n = (BODY_BUDGET / (64 * 1024)) as u32 + 20;
    for i in 0..n {
        run(&mut q, Command::Enqueue { msg: big(i) });
    }
    assert!(q.held_bytes() <= BODY_BUDGET && q.held_bytes() > BODY_BUDGET / 2, "{}", q.held_bytes());
    assert_eq!(q.first_live_index(), Some(1));
    let (_, fx) = run(&mut q, Command::Consume(spec(1, 0)));
    assert_eq!(delivered(&fx).len() as u32, n);
    assert_eq!(q.unacked_count(), n);
    assert_eq!(q.held_bytes(), 0, "an unacked message's body is with its consumer");
    let ids: Vec<MsgId> = (1..=10).map(MsgId).collect();
    run(&mut q, Command::Settle { ids, outcome: Outcome::Ack });
    assert_eq!(q.first_live_index(), Some(11));
    run(&mut q, Command::Settle { ids: (11..=u64::from(n)).map(MsgId).collect(), outcome: Outcome::Ack });
    assert_eq!(q.first_live_index(), None);
}

#[test]
fn durable_deliveries_beyond_the_budget_carry_no_body() {
    let config = QueueConfig::new(QueueKey::new("/", "q"));
    let mut q = TestQueue { m: QueueMachine::durable(config), enqueues: 0 };
    let n = (BODY_BUDGET / MESSAGE_OVERHEAD) as u32 + 10;
    for i in 0..n {
        run(&mut q, Command::Enqueue { msg: msg(i) });
    }
    let (_, fx) = run(&mut q, Command::Consume(spec(1, 0)));
    let with_body = fx.iter().filter(|e| matches!(e, Effect::Deliver { msg: Some(_), .. })).count() as u32;
    assert!(with_body < n && with_body > n / 2, "{with_body} of {n} held");
    // Held ones come first (the oldest), then those only in the log.
    assert!(matches!(fx.first(), Some(Effect::Deliver { msg: Some(_), .. })));
    assert!(matches!(fx.last(), Some(Effect::Deliver { msg: None, .. })));
    // An in-memory queue (no log) holds every body.
    let mut mem = machine(false, false);
    for i in 0..n {
        run(&mut mem, Command::Enqueue { msg: msg(i) });
    }
    let (_, fx) = run(&mut mem, Command::Consume(spec(1, 0)));
    assert!(fx.iter().all(|e| matches!(e, Effect::Deliver { msg: Some(_), .. })));
}
