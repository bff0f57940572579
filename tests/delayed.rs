//! The delayed-message exchange (`x-delayed-message`) over the wire (lapin): messages wait
//! for their `x-delay`, come out in due order through the exchange's routing type with
//! `x-delay` negated, are confirmed once held, survive a restart on a durable exchange, and
//! go with their exchange when it is deleted.

mod common;

use common::{Broker, publish_acked as publish, s, table};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::{Duration, Instant};

fn delayed() -> ExchangeKind {
    ExchangeKind::Custom("x-delayed-message".into())
}

fn routed_as(kind: &str) -> FieldTable {
    table(&[("x-delayed-type", s(kind))])
}

fn after(ms: i64) -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2).with_headers(table(&[("x-delay", AMQPValue::LongLongInt(ms))]))
}

async fn declare_delayed(ch: &Channel, name: &str, kind: &str, durable: bool) {
    let opts = ExchangeDeclareOptions { durable, ..Default::default() };
    ch.exchange_declare(name.into(), delayed(), opts, routed_as(kind)).await.unwrap();
}

async fn bound_queue(ch: &Channel, q: &str, ex: &str, key: &str) {
    let opts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(q.into(), opts, FieldTable::default()).await.unwrap();
    ch.queue_bind(q.into(), ex.into(), key.into(), QueueBindOptions::default(), FieldTable::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_wait_for_their_delay_and_leave_in_due_order() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_delayed(&ch, "later", "topic", true).await;
    bound_queue(&ch, "jobs", "later", "job.*").await;
    let t0 = Instant::now();
    publish(&ch, "later", "job.slow", "second", after(1200)).await;
    publish(&ch, "later", "job.fast", "first", after(400)).await;
    publish(&ch, "later", "job.now", "at once", BasicProperties::default()).await;
    publish(&ch, "later", "other", "unrouted", after(100)).await;
    // Held messages are confirmed but not in the queue yet; the undelayed one is.
    assert_eq!(common::ready_count(&ch, "jobs").await, 1);
    let mut c = ch
        .basic_consume("jobs".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let d = common::next_delivery(&mut c).await;
        d.ack(BasicAckOptions::default()).await.unwrap();
        let delay = d.properties.headers().as_ref().and_then(|h| h.inner().get("x-delay").cloned());
        seen.push((String::from_utf8(d.data.clone()).unwrap(), delay, t0.elapsed()));
    }
    assert_eq!(seen[0].0, "at once");
    assert_eq!(seen[0].1, None, "an undelayed message is untouched");
    assert_eq!(seen[1].0, "first");
    assert_eq!(seen[2].0, "second");
    assert!(seen[1].2 >= Duration::from_millis(400), "not before its delay: {:?}", seen[1].2);
    assert!(seen[2].2 >= Duration::from_millis(1200), "not before its delay: {:?}", seen[2].2);
    assert!(seen[2].2 < Duration::from_millis(4000), "not long after its delay: {:?}", seen[2].2);
    // As the plugin: the released message carries `x-delay` negated.
    assert_eq!(seen[1].1.as_ref().and_then(warren::broker::argument::as_i64), Some(-400));
    assert_eq!(seen[2].1.as_ref().and_then(warren::broker::argument::as_i64), Some(-1200));
    assert!(tokio::time::timeout(Duration::from_millis(300), c.next()).await.is_err(), "nothing else");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn declares_are_checked_as_the_plugin_checks_them() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    let r = ch.exchange_declare("x".into(), delayed(), ExchangeDeclareOptions::default(), FieldTable::default()).await;
    common::expect_err(
        r,
        406,
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type",
    );
    let ch = c.create_channel().await.unwrap();
    declare_delayed(&ch, "later", "direct", false).await;
    declare_delayed(&ch, "later", "direct", false).await;
    let r =
        ch.exchange_declare("later".into(), delayed(), ExchangeDeclareOptions::default(), routed_as("fanout")).await;
    common::expect_err(
        r,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-delayed-type' for exchange 'later' in vhost '/': received 'fanout' but current is 'direct'",
    );
    let ch = c.create_channel().await.unwrap();
    let r = ch
        .exchange_declare(
            "later".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    common::expect_err(
        r,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'later' in vhost '/': received 'direct' but current is 'x-delayed-message'",
    );
    b.stop().await;
}

/// Bindings are those of the release, not of the publish; a held message is not returned to
/// a mandatory publisher (the plugin returns every delayed message as unroutable).
#[tokio::test(flavor = "multi_thread")]
async fn routing_happens_at_release_and_mandatory_does_not_return_held_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_delayed(&ch, "fan", "fanout", false).await;
    let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
    let c = ch.basic_publish("fan".into(), "".into(), mandatory, b"later", after(600)).await.unwrap().await.unwrap();
    assert!(c.is_ack() && c.take_message().is_none(), "confirmed, no basic.return");
    bound_queue(&ch, "late-binder", "fan", "").await;
    let mut cons = ch
        .basic_consume("late-binder".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let d = common::next_delivery(&mut cons).await;
    assert_eq!(d.data, b"later");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn held_messages_survive_a_restart_and_leave_once() {
    let b = Broker::start().await;
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_delayed(&ch, "later", "direct", true).await;
    bound_queue(&ch, "after-restart", "later", "k").await;
    for i in 0..50 {
        publish(&ch, "later", "k", &format!("m{i}"), after(1500 + i)).await;
    }
    let t0 = Instant::now();
    conn.close(200, "bye".into()).await.unwrap();
    let dir = b.stop_keeping_data().await;

    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(common::ready_count(&ch, "after-restart").await, 0, "still held");
    let mut cons = ch
        .basic_consume("after-restart".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in 0..50 {
        let d = common::next_delivery(&mut cons).await;
        assert_eq!(String::from_utf8(d.data.clone()).unwrap(), format!("m{i}"), "in due order");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    assert!(tokio::time::timeout(Duration::from_millis(500), cons.next()).await.is_err(), "each message once");
    // Released messages are forgotten: another restart brings none back.
    let dir = b.stop_keeping_data().await;
    let b = Broker::in_dir(dir, |_| {}).await;
    let (_c, ch) = b.channel().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::ready_count(&ch, "after-restart").await, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_exchange_drops_what_it_held() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_delayed(&ch, "gone", "direct", true).await;
    bound_queue(&ch, "never", "gone", "k").await;
    publish(&ch, "gone", "k", "dropped", after(500)).await;
    ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default()).await.unwrap();
    declare_delayed(&ch, "gone", "direct", true).await;
    ch.queue_bind("never".into(), "gone".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    publish(&ch, "gone", "k", "kept", after(300)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let got = ch.basic_get("never".into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    assert_eq!(got.delivery.data, b"kept");
    assert!(ch.basic_get("never".into(), BasicGetOptions { no_ack: true }).await.unwrap().is_none());
    b.stop().await;
}

/// A delayed exchange as a dead-letter exchange: retries with back-off, a common recipe.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_through_a_delayed_exchange_wait_too() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_delayed(&ch, "retry", "direct", true).await;
    bound_queue(&ch, "retried", "retry", "work").await;
    let args = table(&[("x-dead-letter-exchange", s("retry")), ("x-dead-letter-routing-key", s("work"))]);
    ch.queue_declare("work".into(), QueueDeclareOptions { durable: true, ..Default::default() }, args).await.unwrap();
    publish(&ch, "", "work", "try again", after(700)).await;
    let got = ch.basic_get("work".into(), BasicGetOptions::default()).await.unwrap().unwrap();
    let t0 = Instant::now();
    got.delivery.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(common::ready_count(&ch, "retried").await, 0, "held by the delayed exchange");
    let mut cons = ch
        .basic_consume("retried".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let d = common::next_delivery(&mut cons).await;
    assert!(t0.elapsed() >= Duration::from_millis(600), "{:?}", t0.elapsed());
    assert_eq!(d.data, b"try again");
    b.stop().await;
}
