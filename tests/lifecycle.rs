//! Message lifecycle over the wire (lapin): TTL expiry that needs no reader, TTL that survives
//! a restart, and length limits (drop-head, reject-publish with `basic.nack`).

mod common;

use common::{Broker, s, table};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::time::Duration;

async fn publish_confirmed(ch: &Channel, q: &str, body: &[u8], props: BasicProperties) -> bool {
    let c = ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), body, props).await.unwrap();
    c.await.unwrap().is_ack()
}

/// Waits (bounded) until the queue holds `n` ready messages, checking with passive declares
/// (which read, but never take, messages).
async fn until_count(ch: &Channel, q: &str, n: u32) {
    for _ in 0..100 {
        if common::ready_count(ch, q).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("queue '{q}' never held {n} messages (holds {})", common::ready_count(ch, q).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_messages_leave_a_queue_nobody_reads() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let ttl = table(&[("x-message-ttl", AMQPValue::LongInt(1000))]);
    ch.queue_declare("ttl".into(), QueueDeclareOptions::default(), ttl).await.unwrap();
    assert!(publish_confirmed(&ch, "ttl", b"a", BasicProperties::default()).await);
    let own = BasicProperties::default().with_expiration("100".into());
    ch.queue_declare("own".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    assert!(publish_confirmed(&ch, "own", b"b", own).await);
    assert!(publish_confirmed(&ch, "own", b"kept", BasicProperties::default()).await);
    assert_eq!(common::ready_count(&ch, "ttl").await, 1);
    until_count(&ch, "ttl", 0).await;
    until_count(&ch, "own", 1).await;
    let got = ch.basic_get("own".into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    assert_eq!(got.delivery.data, b"kept");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_queue_keeps_counting_ttl_across_a_restart() {
    let b = Broker::start().await;
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let ttl = table(&[("x-message-ttl", AMQPValue::LongInt(3000))]);
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("d-ttl".into(), durable, ttl).await.unwrap();
    let persistent = BasicProperties::default().with_delivery_mode(2);
    assert!(publish_confirmed(&ch, "d-ttl", b"soon gone", persistent).await);
    // Half its life passes before the restart.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(conn);
    let dir = b.stop_keeping_data().await;
    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(common::ready_count(&ch, "d-ttl").await, 1, "not expired yet");
    // It expires at its original time (set when published), not 3 s after the restart.
    let restarted = std::time::Instant::now();
    until_count(&ch, "d-ttl", 0).await;
    assert!(restarted.elapsed() < Duration::from_millis(2500), "expired {:?} after the restart", restarted.elapsed());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn length_limits_drop_the_head_or_nack_the_publish() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let drop_head = table(&[("x-max-length", AMQPValue::LongInt(2))]);
    ch.queue_declare("dh".into(), QueueDeclareOptions::default(), drop_head).await.unwrap();
    for body in [b"1", b"2", b"3"] {
        assert!(publish_confirmed(&ch, "dh", body, BasicProperties::default()).await);
    }
    let first = ch.basic_get("dh".into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    assert_eq!(first.delivery.data, b"2", "the oldest was dropped");
    let reject = table(&[("x-max-length", AMQPValue::LongInt(1)), ("x-overflow", s("reject-publish"))]);
    ch.queue_declare("rp".into(), QueueDeclareOptions::default(), reject).await.unwrap();
    assert!(publish_confirmed(&ch, "rp", b"in", BasicProperties::default()).await);
    assert!(!publish_confirmed(&ch, "rp", b"refused", BasicProperties::default()).await, "nacked");
    assert!(publish_confirmed(&ch, "", b"unroutable", BasicProperties::default()).await, "acks go on");
    let got = ch.basic_get("rp".into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    assert_eq!(got.delivery.data, b"in");
    assert!(publish_confirmed(&ch, "rp", b"room again", BasicProperties::default()).await);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_priority_queue_delivers_higher_priorities_first() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("prio".into(), durable, table(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]))
        .await
        .unwrap();
    for (body, p) in [(&b"low"[..], 1u8), (b"high", 9), (b"none", 0), (b"max", 200), (b"high-2", 9)] {
        let props = BasicProperties::default().with_delivery_mode(2);
        let props = if p > 0 { props.with_priority(p) } else { props };
        assert!(publish_confirmed(&ch, "prio", body, props).await);
    }
    let mut got = Vec::new();
    while let Some(m) = ch.basic_get("prio".into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        got.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    assert_eq!(got, vec!["max", "high", "high-2", "low", "none"]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unused_queue_expires_and_a_declare_counts_as_use() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let expires = || table(&[("x-expires", AMQPValue::LongInt(400))]);
    ch.queue_declare("fleeting".into(), QueueDeclareOptions::default(), expires()).await.unwrap();
    // Declaring it again every 200 ms keeps it alive past its 400 ms.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ch.queue_declare("fleeting".into(), QueueDeclareOptions::default(), expires()).await.unwrap();
    }
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let prober = b.connect().await;
    loop {
        // A failed passive declare closes the channel: use a fresh one each time.
        let probe = prober.create_channel().await.unwrap();
        match probe.queue_declare("fleeting".into(), passive, FieldTable::default()).await {
            Err(e) => {
                assert_eq!(common::amqp_error(&e).0, 404);
                break;
            }
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "never expired");
                // Passive declares count as use too: probe slower than the expiry.
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
        }
    }
    b.stop().await;
}

/// A delivery left unacked past the consumer timeout closes its channel with RabbitMQ's 406,
/// and the message comes back, redelivered.
#[tokio::test(flavor = "multi_thread")]
async fn an_unacked_delivery_past_the_consumer_timeout_closes_the_channel() {
    let b = Broker::with(|c| c.consumer_timeout = 400).await;
    let (conn, ch) = b.channel().await;
    ch.queue_declare("slow".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    common::publish(&ch, "", "slow", b"job").await;
    let mut consumer = ch
        .basic_consume("slow".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let d = common::next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    // Never acked: the broker closes the channel.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ch.status().connected() {
        assert!(std::time::Instant::now() < deadline, "channel still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = conn.create_channel().await.unwrap();
    let e = other.basic_qos(1, BasicQosOptions::default()).await.map(|_| ());
    assert!(e.is_ok(), "the connection goes on");
    let back = other.basic_get("slow".into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("requeued");
    assert!(back.delivery.redelivered);
    // The queue argument overrides the broker's timeout.
    let args = table(&[("x-consumer-timeout", AMQPValue::LongInt(60_000))]);
    other.queue_declare("patient".into(), QueueDeclareOptions::default(), args).await.unwrap();
    common::publish(&other, "", "patient", b"job").await;
    let mut c2 = other
        .basic_consume("patient".into(), "c2".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let _held = common::next_delivery(&mut c2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(other.status().connected(), "60 s allowed by x-consumer-timeout");
    b.stop().await;
}

/// `x-message-deduplication`: a second publish with the same `x-deduplication-header` within
/// the window is confirmed but not enqueued, also after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_confirmed_and_dropped_across_a_restart() {
    let b = Broker::start().await;
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let args =
        table(&[("x-message-deduplication", AMQPValue::Boolean(true)), ("x-cache-ttl", AMQPValue::LongInt(60_000))]);
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("dedup".into(), durable, args).await.unwrap();
    let with_key = |k: &str| {
        BasicProperties::default().with_delivery_mode(2).with_headers(table(&[("x-deduplication-header", s(k))]))
    };
    assert!(publish_confirmed(&ch, "dedup", b"order-1", with_key("order-1")).await);
    assert!(publish_confirmed(&ch, "dedup", b"order-1 again", with_key("order-1")).await, "a duplicate is acked");
    assert!(publish_confirmed(&ch, "dedup", b"order-2", with_key("order-2")).await);
    assert_eq!(common::ready_count(&ch, "dedup").await, 2);
    drop(conn);
    let dir = b.stop_keeping_data().await;
    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    assert!(publish_confirmed(&ch, "dedup", b"order-2 after restart", with_key("order-2")).await);
    assert_eq!(common::ready_count(&ch, "dedup").await, 2, "the window survived the restart");
    let first = ch.basic_get("dedup".into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    assert_eq!(first.delivery.data, b"order-1");
    b.stop().await;
}
