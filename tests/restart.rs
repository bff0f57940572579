//! Restarts: durable exchanges, queues, bindings and persistent messages survive a graceful
//! restart; transient queues are gone, and so are transient messages on classic queues
//! (quorum queues keep every message); unacked messages come back, redelivered, in place.

mod common;

use common::{Broker, publish_acked as publish};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn get(ch: &Channel, q: &str) -> Option<(String, bool)> {
    ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .map(|m| (String::from_utf8(m.delivery.data.clone()).unwrap(), m.delivery.redelivered))
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_state_and_persistent_messages_survive_a_restart() {
    let b = Broker::start().await;
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare("orders-x".into(), ExchangeKind::Direct, durable, FieldTable::default()).await.unwrap();
    let dq = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("orders".into(), dq, FieldTable::default()).await.unwrap();
    ch.queue_bind("orders".into(), "orders-x".into(), "new".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from(b"quorum".to_vec())));
    ch.queue_declare("qq".into(), dq, quorum).await.unwrap();
    ch.queue_declare("tmp".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    for i in 1..=3 {
        publish(&ch, "orders-x", "new", &format!("p{i}"), persistent()).await;
    }
    publish(&ch, "orders-x", "new", "transient", BasicProperties::default()).await;
    publish(&ch, "", "qq", "kept-by-quorum", BasicProperties::default()).await;
    publish(&ch, "", "tmp", "lost", persistent()).await;
    // Take p1 and keep it unacked across the restart.
    let held = ch.basic_get("orders".into(), BasicGetOptions { no_ack: false }).await.unwrap().unwrap();
    assert_eq!(held.delivery.data, b"p1");
    drop(conn);
    let dir = b.stop_keeping_data().await;

    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let q = ch.queue_declare("orders".into(), passive, FieldTable::default()).await.unwrap();
    assert_eq!(q.message_count(), 3, "p1 (returned), p2, p3; the transient message is gone");
    assert_eq!(get(&ch, "orders").await, Some(("p1".into(), true)), "unacked comes back first, redelivered");
    assert_eq!(get(&ch, "orders").await, Some(("p2".into(), false)));
    assert_eq!(get(&ch, "orders").await, Some(("p3".into(), false)));
    assert_eq!(get(&ch, "orders").await, None);
    assert_eq!(get(&ch, "qq").await, Some(("kept-by-quorum".into(), false)), "quorum queues keep every message");
    // The durable exchange and its binding still route.
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish(&ch, "orders-x", "new", "after", persistent()).await;
    assert_eq!(get(&ch, "orders").await, Some(("after".into(), false)));
    // The transient queue is gone.
    let e = ch.queue_declare("tmp".into(), passive, FieldTable::default()).await.unwrap_err();
    assert_eq!(common::amqp_error(&e).0, 404);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_queues_stay_deleted_and_names_can_be_reused() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let dq = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("gone".into(), dq, FieldTable::default()).await.unwrap();
    ch.basic_publish("".into(), "gone".into(), BasicPublishOptions::default(), b"x", persistent()).await.unwrap();
    ch.queue_delete("gone".into(), QueueDeleteOptions::default()).await.unwrap();
    ch.queue_declare("gone".into(), dq, FieldTable::default()).await.unwrap();
    let dir = b.stop_keeping_data().await;
    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    let q = ch
        .queue_declare(
            "gone".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0, "the new queue does not inherit the old one's messages");
    b.stop().await;
}

/// A backlog far larger than what a queue keeps in memory (its bodies are read back from the
/// log) is delivered whole and in order, before and after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_beyond_memory_is_served_from_the_log_across_a_restart() {
    const N: usize = 12_000;
    let body = |i: usize| {
        let mut b = format!("{i:08}").into_bytes();
        b.resize(1024, b'.');
        b
    };
    let b = Broker::start().await;
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let dq = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("big".into(), dq, FieldTable::default()).await.unwrap();
    for window in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut confirms = Vec::new();
        for &i in window {
            let opts = BasicPublishOptions::default();
            confirms.push(ch.basic_publish("".into(), "big".into(), opts, &body(i), persistent()).await.unwrap());
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
    }
    // Consume the first half, acking each.
    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume("big".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in 0..N / 2 {
        let d = common::next_delivery(&mut consumer).await;
        assert_eq!(d.data, body(i), "message {i}");
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    drop(consumer);
    conn.close(200, "bye".into()).await.unwrap();
    let dir = b.stop_keeping_data().await;

    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(common::ready_count(&ch, "big").await as usize, N / 2);
    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume("big".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in N / 2..N {
        let d = common::next_delivery(&mut consumer).await;
        assert_eq!(d.data, body(i), "message {i}");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(common::ready_count(&ch, "big").await, 0);
    b.stop().await;
}

/// Stored data that no queue owns (the node stopped between a queue's delete and the removal
/// of its data) is removed at start-up; the data of live queues is kept.
#[tokio::test(flavor = "multi_thread")]
async fn data_no_queue_owns_is_removed_at_start() {
    use warren::storage::{GroupId, StateTag, Storage};
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let dq = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("kept".into(), dq, FieldTable::default()).await.unwrap();
    publish(&ch, "", "kept", "still here", persistent()).await;
    let dir = b.stop_keeping_data().await;

    let orphan = GroupId(1_000_000);
    let groups = {
        let s = Storage::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        s.group(orphan).append([(1, b"entry".to_vec())], Box::new(move |r| tx.send(r.is_ok()).unwrap())).unwrap();
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
        s.group(orphan).save_state(StateTag::Vote, b"vote").unwrap();
        let groups = s.groups().unwrap();
        s.close(std::time::Duration::from_secs(10)).await.unwrap();
        groups
    };
    assert!(groups.contains(&orphan) && groups.len() >= 3, "{groups:?}: metadata, the queue, the orphan");

    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(get(&ch, "kept").await, Some(("still here".into(), false)));
    let dir = b.stop_keeping_data().await;
    let s = Storage::open(dir.path()).unwrap();
    let after = s.groups().unwrap();
    let mut want = groups.clone();
    want.retain(|g| *g != orphan);
    assert_eq!(after, want, "only the orphan is gone");
    assert!(s.group(orphan).entries(0..10).unwrap().is_empty());
}
