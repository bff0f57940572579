//! Policies applied to running queues and exchanges (lapin, with the policy set through the
//! node's metadata commands as the management API sets it): a lowered max-length drops the
//! oldest messages at once and holds across a restart; a policy's dead-letter exchange and
//! message TTL act on a queue declared without arguments; a declared argument beats the
//! policy's; clearing the policy lifts its limits; an alternate exchange by policy.

mod common;

use common::{Broker, publish, ready_count, s, table};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use warren::meta::{MetaCommand, MetaReply};

async fn set_policy(b: &Broker, name: &str, pattern: &str, apply_to: &str, def: FieldTable) {
    let node = &b.running.as_ref().expect("running").node;
    let cmd = MetaCommand::SetPolicy {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to: apply_to.into(),
        priority: 0,
        definition: def,
    };
    assert!(!matches!(node.propose_meta(cmd).await, MetaReply::Refused(_)));
}

async fn clear_policy(b: &Broker, name: &str) {
    let node = &b.running.as_ref().expect("running").node;
    let cmd = MetaCommand::ClearPolicy { vhost: "/".into(), name: name.into() };
    assert!(!matches!(node.propose_meta(cmd).await, MetaReply::Refused(_)));
}

async fn durable_queue(ch: &lapin::Channel, q: &str, args: FieldTable) {
    let opts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(q.into(), opts, args).await.unwrap();
}

async fn persistent(ch: &lapin::Channel, q: &str, body: &str) {
    let props = lapin::BasicProperties::default().with_delivery_mode(2);
    ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), body.as_bytes(), props).await.unwrap();
}

async fn bodies(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = ch.basic_get(q.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lowered_max_length_drops_the_oldest_now_and_after_a_restart() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    durable_queue(&ch, "pol-len", FieldTable::default()).await;
    for i in 0..5 {
        persistent(&ch, "pol-len", &format!("m{i}")).await;
    }
    common::eventually_async(|| async { ready_count(&ch, "pol-len").await == 5 }, "5 queued").await;
    set_policy(&b, "len", "^pol-", "queues", table(&[("max-length", AMQPValue::LongInt(2))])).await;
    common::eventually_async(|| async { ready_count(&ch, "pol-len").await == 2 }, "trimmed to 2").await;
    c.close(200, "bye".into()).await.unwrap();
    let dir = b.stop_keeping_data().await;

    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(ready_count(&ch, "pol-len").await, 2);
    persistent(&ch, "pol-len", "m5").await;
    common::eventually_async(|| async { ready_count(&ch, "pol-len").await == 2 }, "still 2").await;
    assert_eq!(bodies(&ch, "pol-len").await, ["m4", "m5"]);
    // Cleared: no limit any more.
    clear_policy(&b, "len").await;
    for i in 0..4 {
        publish(&ch, "", "pol-len", format!("n{i}").as_bytes()).await;
    }
    common::eventually_async(|| async { ready_count(&ch, "pol-len").await == 4 }, "4 kept").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_lettering_and_ttl_by_policy_and_the_argument_wins() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    durable_queue(&ch, "dlq", FieldTable::default()).await;
    durable_queue(&ch, "other-dlq", FieldTable::default()).await;
    durable_queue(&ch, "ttl-plain", FieldTable::default()).await;
    // Declared with its own dead-letter exchange: the argument beats the policy's.
    durable_queue(&ch, "ttl-own", table(&[("x-dead-letter-exchange", s("amq.fanout"))])).await;
    ch.queue_bind(
        "other-dlq".into(),
        "amq.fanout".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind("dlq".into(), "amq.direct".into(), "dead".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let def = table(&[
        ("message-ttl", AMQPValue::LongInt(100)),
        ("dead-letter-exchange", s("amq.direct")),
        ("dead-letter-routing-key", s("dead")),
    ]);
    set_policy(&b, "ttl", "^ttl-", "all", def).await;
    publish(&ch, "", "ttl-plain", b"expires").await;
    publish(&ch, "", "ttl-own", b"expires too").await;
    common::eventually_async(|| async { ready_count(&ch, "dlq").await == 1 }, "dead-lettered by policy").await;
    common::eventually_async(|| async { ready_count(&ch, "other-dlq").await == 1 }, "to its own DLX").await;
    assert_eq!(bodies(&ch, "dlq").await, ["expires"]);
    assert_eq!(bodies(&ch, "other-dlq").await, ["expires too"]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alternate_exchange_by_policy() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    durable_queue(&ch, "unrouted", FieldTable::default()).await;
    ch.queue_bind(
        "unrouted".into(),
        "amq.fanout".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare("orders".into(), lapin::ExchangeKind::Direct, opts, FieldTable::default()).await.unwrap();
    set_policy(&b, "ae", "^orders$", "exchanges", table(&[("alternate-exchange", s("amq.fanout"))])).await;
    publish(&ch, "orders", "nowhere", b"caught").await;
    common::eventually_async(|| async { ready_count(&ch, "unrouted").await == 1 }, "caught by the AE").await;
    b.stop().await;
}
