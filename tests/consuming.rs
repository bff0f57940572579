//! Consuming: get/get-empty, ack/nack/reject with requeue (original position, redelivered),
//! unknown tags, requeue on channel close, recover, consumer priorities, single active
//! consumer, exclusive consumers, cancel notification, consumer tag reuse.

mod common;

use common::{Broker, expect_err};
use futures_lite::StreamExt;
use lapin::Channel;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

async fn setup(ch: &Channel, q: &str, bodies: &[&str]) {
    common::declare(ch, q).await;
    for b in bodies {
        common::publish(ch, "", q, b.as_bytes()).await;
    }
}

async fn get(ch: &Channel, q: &str, no_ack: bool) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(q.into(), BasicGetOptions { no_ack }).await.unwrap()
}

fn body(m: &lapin::message::BasicGetMessage) -> String {
    String::from_utf8(m.delivery.data.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_reports_remaining_and_get_empty() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "q", &["a", "b"]).await;
    let m = get(&ch, "q", true).await.unwrap();
    assert_eq!((body(&m), m.message_count), ("a".into(), 1));
    let m = get(&ch, "q", true).await.unwrap();
    assert_eq!((body(&m), m.message_count), ("b".into(), 0));
    assert!(get(&ch, "q", true).await.is_none());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_messages_return_to_their_place_marked_redelivered() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "q", &["a", "b", "c"]).await;
    let a = get(&ch, "q", false).await.unwrap();
    let bm = get(&ch, "q", false).await.unwrap();
    ch.basic_reject(bm.delivery.delivery_tag, BasicRejectOptions { requeue: true }).await.unwrap();
    ch.basic_nack(a.delivery.delivery_tag, BasicNackOptions { requeue: true, multiple: false }).await.unwrap();
    let order: Vec<(String, bool)> = futures_lite::stream::iter(0..3)
        .then(|_| {
            let ch = ch.clone();
            async move {
                let m = get(&ch, "q", true).await.unwrap();
                (body(&m), m.delivery.redelivered)
            }
        })
        .collect()
        .await;
    assert_eq!(order, vec![("a".into(), true), ("b".into(), true), ("c".into(), false)]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nack_multiple_without_requeue_discards() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "q", &["a", "b", "c"]).await;
    let mut last = 0;
    for _ in 0..3 {
        last = get(&ch, "q", false).await.unwrap().delivery.delivery_tag;
    }
    ch.basic_nack(last - 1, BasicNackOptions { requeue: false, multiple: true }).await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true }).await.unwrap();
    let m = get(&ch, "q", true).await.unwrap();
    assert_eq!((body(&m), m.delivery.redelivered), ("c".into(), true));
    assert!(get(&ch, "q", true).await.is_none());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_double_acks_are_406() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    setup(&ch, "q", &["a"]).await;
    // The error arrives asynchronously as channel.close (an ack has no reply), so it is read
    // from the connection's events, not from whichever call happens to come next.
    let mut errors = common::channel_errors(&c);
    ch.basic_ack(99, BasicAckOptions::default()).await.unwrap();
    assert_eq!(errors.next().await, (406, "PRECONDITION_FAILED - unknown delivery tag 99".into()));
    let ch = c.create_channel().await.unwrap();
    let m = get(&ch, "q", false).await.unwrap();
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()).await.unwrap();
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()).await.unwrap();
    let text = format!("PRECONDITION_FAILED - unknown delivery tag {}", m.delivery.delivery_tag);
    assert_eq!(errors.next().await, (406, text));
    // The connection lives on.
    let ch = c.create_channel().await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_channel_requeues_its_unacked_messages() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    setup(&ch, "q", &["a", "b"]).await;
    let ch1 = c.create_channel().await.unwrap();
    let mut consumer =
        ch1.basic_consume("q".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    for _ in 0..2 {
        common::next_delivery(&mut consumer).await;
    }
    ch1.close(200, "done".into()).await.unwrap();
    let a = get(&ch, "q", true).await.unwrap();
    let bm = get(&ch, "q", true).await.unwrap();
    assert_eq!((body(&a), a.delivery.redelivered, body(&bm)), ("a".into(), true, "b".into()));
    // Same for a whole connection going away.
    let (c2, ch2) = b.channel().await;
    setup(&ch2, "q", &["x"]).await;
    let held = get(&ch2, "q", false).await.unwrap();
    assert_eq!(body(&held), "x");
    c2.close(200, "bye".into()).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(m) = get(&ch, "q", true).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(back.delivery.redelivered);
    drop(c);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_priorities() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "q", &[]).await;
    let (_c1, low_ch) = b.channel().await;
    let (_c2, high_ch) = b.channel().await;
    let mut hi_args = FieldTable::default();
    hi_args.insert("x-priority".into(), AMQPValue::LongInt(10));
    let mut low = low_ch
        .basic_consume(
            "q".into(),
            "low".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut high = high_ch
        .basic_consume("q".into(), "high".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, hi_args)
        .await
        .unwrap();
    for i in 0..5 {
        common::publish(&ch, "", "q", i.to_string().as_bytes()).await;
    }
    for _ in 0..5 {
        common::next_delivery(&mut high).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), low.next()).await.is_err(),
        "low-priority consumer got nothing"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_active_consumer_fails_over() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare("sac".into(), QueueDeclareOptions::default(), args).await.unwrap();
    let (_c1, ch1) = b.channel().await;
    let (_c2, ch2) = b.channel().await;
    let mut first = ch1
        .basic_consume(
            "sac".into(),
            "first".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut second = ch2
        .basic_consume(
            "sac".into(),
            "second".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..4 {
        common::publish(&ch, "", "sac", i.to_string().as_bytes()).await;
    }
    for _ in 0..4 {
        common::next_delivery(&mut first).await;
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), second.next()).await.is_err());
    ch1.basic_cancel("first".into(), BasicCancelOptions::default()).await.unwrap();
    common::publish(&ch, "", "sac", b"after").await;
    let d = common::next_delivery(&mut second).await;
    assert_eq!(d.data, b"after");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exclusive_consumer_excludes_others() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    setup(&ch, "q", &[]).await;
    let _ex = ch
        .basic_consume(
            "q".into(),
            "ex".into(),
            BasicConsumeOptions { exclusive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch2 = c.create_channel().await.unwrap();
    expect_err(
        ch2.basic_consume("q".into(), "other".into(), BasicConsumeOptions::default(), FieldTable::default()).await,
        403,
        "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use",
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "q", &[]).await;
    let (_c2, ch2) = b.channel().await;
    let mut consumer = ch2
        .basic_consume("q".into(), "watcher".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_delete("q".into(), QueueDeleteOptions::default()).await.unwrap();
    // lapin ends the consumer stream when the server sends basic.cancel.
    let end = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("cancel notification arrives");
    assert!(end.is_none(), "stream ended by basic.cancel, got {end:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_a_consumer_tag_closes_the_connection() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    setup(&ch, "q", &[]).await;
    let _first = ch
        .basic_consume("q".into(), "dup".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let e = ch
        .basic_consume("q".into(), "dup".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(common::amqp_error(&e), (530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'".to_string()));
    common::eventually(|| !c.status().connected(), "connection closed").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetch_limits_unacked_deliveries() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "q", &["1", "2", "3", "4", "5"]).await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer =
        ch.basic_consume("q".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    let d1 = common::next_delivery(&mut consumer).await;
    let _d2 = common::next_delivery(&mut consumer).await;
    assert!(tokio::time::timeout(Duration::from_millis(200), consumer.next()).await.is_err(), "third waits for an ack");
    d1.ack(BasicAckOptions::default()).await.unwrap();
    let d3 = common::next_delivery(&mut consumer).await;
    assert_eq!(d3.data, b"3");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn channel_wide_prefetch_limits_unacked_across_consumers() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    setup(&ch, "qa", &["a1", "a2", "a3"]).await;
    setup(&ch, "qb", &["b1", "b2", "b3"]).await;
    let (_c2, cch) = b.channel().await;
    cch.basic_qos(2, BasicQosOptions { global: true }).await.unwrap();
    let mut ca = cch
        .basic_consume("qa".into(), "ca".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut cb = cch
        .basic_consume("qb".into(), "cb".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    // Collect whatever arrives in a quiet period: never more than 2 unacked on the channel.
    let mut held = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                Some(Ok(d)) = ca.next() => d,
                Some(Ok(d)) = cb.next() => d,
            }
        })
        .await
        .expect("delivery within the limit");
        held.push(d);
    }
    let more = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! {
            Some(Ok(d)) = ca.next() => d,
            Some(Ok(d)) = cb.next() => d,
        }
    })
    .await;
    assert!(more.is_err(), "a third delivery exceeded the channel-wide limit of 2");
    // One ack frees exactly one slot.
    held.remove(0).ack(BasicAckOptions::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            Some(Ok(d)) = ca.next() => d,
            Some(Ok(d)) = cb.next() => d,
        }
    })
    .await
    .expect("a delivery after the ack");
    b.stop().await;
}
