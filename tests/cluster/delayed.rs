//! A durable delayed-message exchange in a cluster: its store of held messages is a Raft group
//! over three nodes, so a message held through any node is released on time by whichever
//! member leads, and the death of the store's leader, even with the node messages were
//! published through, loses nothing confirmed: another member is elected and releases them.
//! A node that joined later and is no member holds nothing itself: its holds go to the
//! store's leader, and they outlive it.

use super::{channel, harness, publish_to};
use futures::StreamExt;
use harness::Cluster;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const HELD: usize = 20;
const DELAY_MS: i64 = 6000;
const LEADS: &str = "this node leads the delayed exchange's store";

/// The node of `alive` whose log says it leads the store now (its last word on it), waiting
/// until exactly one does.
async fn store_leader(c: &Cluster, alive: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leading: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&i| {
                let log = c.log(i);
                let led = log.rfind(LEADS);
                let lost = log.rfind("this node no longer leads the delayed exchange's store");
                led.is_some() && (lost.is_none() || lost < led)
            })
            .collect();
        if let [one] = leading[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no single leader of the store: {leading:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Declares durable delayed exchange `later` (direct) and quorum queue `due` bound to it
/// with key `k`.
pub(super) async fn declare_later_and_due(ch: &lapin::Channel) {
    let mut xargs = FieldTable::default();
    xargs.insert("x-delayed-type".into(), AMQPValue::LongString("direct".into()));
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare("later".into(), ExchangeKind::Custom("x-delayed-message".into()), durable, xargs)
        .await
        .unwrap();
    let mut qargs = FieldTable::default();
    qargs.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let qopts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("due".into(), qopts, qargs).await.unwrap();
    ch.queue_bind("due".into(), "later".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
}

/// Properties of a message held `ms` milliseconds.
pub(super) fn delay(ms: i64) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-delay".into(), AMQPValue::LongLongInt(ms));
    BasicProperties::default().with_headers(headers)
}

#[tokio::test(flavor = "multi_thread")]
async fn held_messages_outlive_the_store_leaders_death() {
    let mut c = Cluster::new(3);
    c.start_all();
    let (_c0, ch0) = channel(&c, 0).await;
    declare_later_and_due(&ch0).await;

    // Half held through the store leader's node, half through another (whose member forwards
    // each hold to the leader), each confirmed once the store's majority has it.
    let leader = store_leader(&c, &[0, 1, 2]).await;
    let published = Instant::now();
    let mut conns = Vec::new();
    for (via, bodies) in [(leader, 0..HELD / 2), ((leader + 1) % 3, HELD / 2..HELD)] {
        let (conn, ch) = channel(&c, via).await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        publish_to(&ch, "later", "k", delay(DELAY_MS), bodies.map(|i| format!("held-{i}"))).await;
        conns.push(conn);
    }
    assert!(published.elapsed() < Duration::from_millis(DELAY_MS as u64 / 2), "holding took too long to test");

    // The store's leader dies before anything is due.
    c.kill(leader);
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (got, mut consumer, _cc) = released(&c, alive[0], published, DELAY_MS as u64, HELD).await;
    let want: BTreeSet<String> = (0..HELD).map(|i| format!("held-{i}")).collect();
    assert_eq!(got, want);
    // Another member took the store over, and nothing more comes.
    store_leader(&c, &alive).await;
    no_unmarked_copy(&mut consumer, Duration::from_secs(2)).await;
}

/// Nothing more comes within `wait`, but copies marked redelivered.
async fn no_unmarked_copy(consumer: &mut lapin::Consumer, wait: Duration) {
    while let Ok(more) = tokio::time::timeout(wait, consumer.next()).await {
        let d = more.expect("the consumer goes on").unwrap();
        assert!(d.redelivered, "a message came twice, unmarked: {}", String::from_utf8_lossy(&d.data));
    }
}

/// Consumes `want` messages from `due` through node `via`, each released no earlier than
/// `delay_ms` after `published`; their bodies, and the consumer with its connection.
async fn released(
    c: &Cluster,
    via: usize,
    published: Instant,
    delay_ms: u64,
    want: usize,
) -> (BTreeSet<String>, lapin::Consumer, lapin::Connection) {
    let (conn, ch) = channel(c, via).await;
    let mut consumer = ch
        .basic_consume("due".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    while got.len() < want {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await;
        let d = next.expect("the held messages were released").unwrap().unwrap();
        let since = published.elapsed();
        assert!(since >= Duration::from_millis(delay_ms - 500), "released early, after {since:?}");
        let body = String::from_utf8_lossy(&d.data).into_owned();
        // A copy is allowed only marked redelivered: a store leader that died between a
        // queue taking a message and recording its release leaves its successor in doubt.
        assert!(got.insert(body.clone()) || d.redelivered, "{body} released twice, the copy not marked redelivered");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    (got, consumer, conn)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_outside_the_store_holds_through_its_members() {
    // Four nodes listed; three found the cluster and the store is placed on them.
    let mut c = Cluster::new(4);
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.await_up(i).await;
    }
    let (_c0, ch0) = channel(&c, 0).await;
    declare_later_and_due(&ch0).await;
    // The fourth joins later: it is no member of the store.
    c.start(3);
    c.await_up(3).await;
    let (conn, ch) = channel(&c, 3).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let published = Instant::now();
    publish_to(&ch, "later", "k", delay(DELAY_MS), (0..HELD).map(|i| format!("outside-{i}"))).await;
    assert!(published.elapsed() < Duration::from_millis(DELAY_MS as u64 / 2), "holding took too long to test");
    let log = c.log(3);
    assert!(log.contains("holds no member of the delayed exchange's store"), "{log}");

    // Confirmed means held by the store's members: the node they went through dies before
    // any is due, and all are released on time all the same.
    drop(conn);
    c.kill(3);
    let (got, ..) = released(&c, 1, published, DELAY_MS as u64, HELD).await;
    assert_eq!(got, (0..HELD).map(|i| format!("outside-{i}")).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_due_while_its_queue_is_down_is_released_once_the_queue_is_back() {
    let mut c = Cluster::new(3);
    c.start_all();
    let (_c0, ch0) = channel(&c, 0).await;
    declare_later_and_due(&ch0).await;
    // A durable classic queue on a node that does not lead the store, bound to it.
    let leader = store_leader(&c, &[0, 1, 2]).await;
    let home = (leader + 1) % 3;
    let (conn_home, ch_home) = channel(&c, home).await;
    ch_home
        .queue_declare("far".into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    ch_home
        .queue_bind("far".into(), "later".into(), "f".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    drop(conn_home);
    let (_cl, chl) = channel(&c, leader).await;
    chl.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_to(&chl, "later", "f", delay(2000), (0..HELD).map(|i| format!("far-{i}"))).await;

    // The queue's node is down when they are due: the store keeps them until it is back.
    c.kill(home);
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.start(home);
    c.await_up(home).await;
    let (_ch, chh) = channel(&c, home).await;
    let mut consumer = chh
        .basic_consume("far".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    while got.len() < HELD {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await;
        let d = next.unwrap_or_else(|_| panic!("only {} of {HELD} released: {got:?}", got.len())).unwrap().unwrap();
        got.insert(String::from_utf8_lossy(&d.data).into_owned());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let log = c.log(leader);
    assert!(log.contains("queues did not take released delayed messages"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_due_while_every_node_was_down_are_released_once_all_restart() {
    let mut c = Cluster::new(3);
    c.start_all();
    let (conn, ch) = channel(&c, 0).await;
    declare_later_and_due(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let published = Instant::now();
    publish_to(&ch, "later", "k", delay(1500), (0..HELD).map(|i| format!("power-{i}"))).await;
    drop(conn);
    // A power loss: every node dies before anything is due, and comes back after.
    for i in 0..3 {
        c.kill(i);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        c.start(i);
    }
    for i in 0..3 {
        c.await_up(i).await;
    }
    // Each released once: not dropped by a store that led before its node knew the routes,
    // not released twice by one that led before it had applied its predecessor's releases.
    let (got, mut consumer, _conn) = released(&c, 1, published, 1500, HELD).await;
    assert_eq!(got, (0..HELD).map(|i| format!("power-{i}")).collect::<BTreeSet<_>>());
    no_unmarked_copy(&mut consumer, Duration::from_secs(3)).await;
}
