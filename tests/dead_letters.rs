//! Dead letters over the wire (lapin): the seed's delay queue (TTL + DLX), `x-death` as
//! RabbitMQ writes it, every reason, cycles, a missing exchange, and bodies read back from a
//! durable queue's log.

mod common;

use common::{Broker, s, table};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::{Duration, Instant};

async fn declare_with(ch: &Channel, q: &str, durable: bool, args: FieldTable) {
    ch.queue_declare(q.into(), QueueDeclareOptions { durable, ..Default::default() }, args).await.unwrap();
}

async fn send(ch: &Channel, q: &str, body: &[u8], props: BasicProperties) {
    let c = ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), body, props).await.unwrap();
    assert!(c.await.unwrap().is_ack());
}

/// The next message on `q` within 5 s (polling with basic.get).
async fn next(ch: &Channel, q: &str) -> lapin::message::BasicGetMessage {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(m) = ch.basic_get(q.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            return m;
        }
        assert!(Instant::now() < deadline, "nothing on '{q}' within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn header(m: &lapin::message::BasicGetMessage, k: &str) -> Option<AMQPValue> {
    m.delivery.properties.headers().as_ref().and_then(|h| h.inner().get(k).cloned())
}

fn deaths(m: &lapin::message::BasicGetMessage) -> Vec<FieldTable> {
    match header(m, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|d| match d {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("x-death: {other:?}"),
    }
}

fn field(t: &FieldTable, k: &str) -> AMQPValue {
    t.inner().get(k).cloned().unwrap_or(AMQPValue::Void)
}

/// The seed's order-timeout recipe: orders wait in a TTL queue whose dead-letter exchange
/// feeds the work queue, so the consumer sees each order only after the delay.
#[tokio::test(flavor = "multi_thread")]
async fn a_ttl_queue_with_a_dead_letter_exchange_delays_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare("order.dlx".into(), ExchangeKind::Direct, durable, FieldTable::default()).await.unwrap();
    declare_with(&ch, "order.work", true, FieldTable::default()).await;
    let bind = QueueBindOptions::default();
    ch.queue_bind("order.work".into(), "order.dlx".into(), "timeout".into(), bind, FieldTable::default())
        .await
        .unwrap();
    let delay = table(&[
        ("x-message-ttl", AMQPValue::LongInt(1500)),
        ("x-dead-letter-exchange", s("order.dlx")),
        ("x-dead-letter-routing-key", s("timeout")),
    ]);
    declare_with(&ch, "order.delay", true, delay).await;
    let sent = Instant::now();
    send(&ch, "order.delay", b"order 42", BasicProperties::default().with_delivery_mode(2)).await;
    assert!(ch.basic_get("order.work".into(), BasicGetOptions::default()).await.unwrap().is_none(), "not yet");
    let m = next(&ch, "order.work").await;
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(1500), "delivered after {waited:?}, before the delay");
    assert_eq!(m.delivery.data, b"order 42");
    assert_eq!((m.delivery.exchange.as_str(), m.delivery.routing_key.as_str()), ("order.dlx", "timeout"));
    let [d] = deaths(&m).try_into().unwrap();
    assert_eq!((field(&d, "reason"), field(&d, "queue")), (s("expired"), s("order.delay")));
    assert_eq!(field(&d, "original-expiration"), AMQPValue::Void, "the queue's TTL is not the message's");
    assert_eq!(header(&m, "x-first-death-reason"), Some(s("expired")));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_and_maxlen_deaths_are_recorded_and_counted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch.exchange_declare("dlx".into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    declare_with(&ch, "dead", false, FieldTable::default()).await;
    ch.queue_bind("dead".into(), "dlx".into(), "".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let args = table(&[("x-dead-letter-exchange", s("dlx")), ("x-max-length", AMQPValue::LongInt(1))]);
    declare_with(&ch, "src", false, args).await;
    let cc = table(&[("CC", AMQPValue::FieldArray(FieldArray::from(vec![s("copy-key")])))]);
    send(&ch, "src", b"first", BasicProperties::default().with_headers(cc).with_expiration("60000".into())).await;
    send(&ch, "src", b"second", BasicProperties::default()).await;
    let m = next(&ch, "dead").await;
    assert_eq!(m.delivery.data, b"first");
    let [d] = deaths(&m).try_into().unwrap();
    assert_eq!(field(&d, "reason"), s("maxlen"));
    assert_eq!(field(&d, "count"), AMQPValue::LongLongInt(1));
    assert_eq!(field(&d, "exchange"), s(""));
    assert_eq!(field(&d, "routing-keys"), AMQPValue::FieldArray(FieldArray::from(vec![s("src"), s("copy-key")])));
    assert_eq!(field(&d, "original-expiration"), s("60000"));
    assert!(matches!(field(&d, "time"), AMQPValue::Timestamp(t) if t > 1_700_000_000));
    assert!(m.delivery.properties.expiration().is_none(), "expiration removed");
    // Rejected: nack without requeue.
    let got = ch.basic_get("src".into(), BasicGetOptions::default()).await.unwrap().unwrap();
    got.nack(BasicNackOptions { requeue: false, ..Default::default() }).await.unwrap();
    let m = next(&ch, "dead").await;
    assert_eq!(m.delivery.data, b"second");
    assert_eq!(field(&deaths(&m)[0], "reason"), s("rejected"));
    assert_eq!(header(&m, "x-last-death-queue"), Some(s("src")));
    b.stop().await;
}

/// A message that expires from a to b and back to a (no rejection) is dropped at the cycle;
/// a rejection on the way lets it go round, with its counts.
#[tokio::test(flavor = "multi_thread")]
async fn automatic_cycles_are_dropped_and_rejections_break_them() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let to = |q: &str| table(&[("x-dead-letter-exchange", s("")), ("x-dead-letter-routing-key", s(q))]);
    let mut a_args = to("b");
    a_args.insert("x-message-ttl".into(), AMQPValue::LongInt(50));
    declare_with(&ch, "a", false, a_args).await;
    declare_with(&ch, "b", false, to("a")).await;
    send(&ch, "a", b"round", BasicProperties::default()).await;
    // a -> b by expiry; b -> a by rejection; a -> b by expiry again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        if let Some(m) = ch.basic_get("b".into(), BasicGetOptions::default()).await.unwrap() {
            break m;
        }
        assert!(Instant::now() < deadline, "nothing expired into b");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    m.nack(BasicNackOptions { requeue: false, ..Default::default() }).await.unwrap();
    let m = next(&ch, "b").await;
    let ds = deaths(&m);
    assert_eq!(ds.len(), 2);
    assert_eq!((field(&ds[0], "queue"), field(&ds[0], "count")), (s("a"), AMQPValue::LongLongInt(2)));
    assert_eq!((field(&ds[1], "queue"), field(&ds[1], "reason")), (s("b"), s("rejected")));
    // A queue that dead-letters to itself by expiry alone: the cycle is dropped.
    let mut c_args = to("c");
    c_args.insert("x-message-ttl".into(), AMQPValue::LongInt(20));
    declare_with(&ch, "c", false, c_args).await;
    send(&ch, "c", b"spin", BasicProperties::default()).await;
    // Were the cycle kept, the message would sit in c nearly all the time (re-enqueued at once,
    // 20 ms to live): once gone, it stays gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::ready_count(&ch, "c").await != 0 {
        assert!(Instant::now() < deadline, "the message never left c");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(common::ready_count(&ch, "c").await, 0, "c -> c by expiry alone is dropped");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_dead_letter_exchange_drops_silently() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_with(&ch, "lonely", false, table(&[("x-dead-letter-exchange", s("nowhere"))])).await;
    send(&ch, "lonely", b"x", BasicProperties::default()).await;
    let m = ch.basic_get("lonely".into(), BasicGetOptions::default()).await.unwrap().unwrap();
    m.nack(BasicNackOptions { requeue: false, ..Default::default() }).await.unwrap();
    assert_eq!(common::ready_count(&ch, "lonely").await, 0);
    // The channel is still fine.
    send(&ch, "lonely", b"y", BasicProperties::default()).await;
    b.stop().await;
}

/// A durable queue whose backlog is beyond its memory budget dead-letters bodies it reads back
/// from its log; reject-publish-dlx refuses the publish and dead-letters it.
#[tokio::test(flavor = "multi_thread")]
async fn durable_dead_letters_read_their_bodies_from_the_log() {
    const N: usize = 4_000;
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_with(&ch, "graveyard", true, FieldTable::default()).await;
    let args = table(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("graveyard")),
        ("x-message-ttl", AMQPValue::LongInt(1500)),
    ]);
    declare_with(&ch, "big", true, args).await;
    let body = |i: usize| {
        let mut v = format!("{i:06}").into_bytes();
        v.resize(1024, b'-');
        v
    };
    let mut confirms = Vec::new();
    for i in 0..N {
        let props = BasicProperties::default().with_delivery_mode(2);
        confirms.push(
            ch.basic_publish("".into(), "big".into(), BasicPublishOptions::default(), &body(i), props).await.unwrap(),
        );
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while common::ready_count(&ch, "graveyard").await < N as u32 {
        assert!(Instant::now() < deadline, "only {} dead letters", common::ready_count(&ch, "graveyard").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut graves = ch.basic_consume("graveyard".into(), "g".into(), opts, FieldTable::default()).await.unwrap();
    for i in 0..N {
        assert_eq!(common::next_delivery(&mut graves).await.data, body(i), "dead letter {i}, in order");
    }
    ch.basic_cancel("g".into(), BasicCancelOptions::default()).await.unwrap();
    let rp = table(&[
        ("x-max-length", AMQPValue::LongInt(0)),
        ("x-overflow", s("reject-publish-dlx")),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("graveyard")),
    ]);
    declare_with(&ch, "full", true, rp).await;
    let c = ch
        .basic_publish("".into(), "full".into(), BasicPublishOptions::default(), b"refused", BasicProperties::default())
        .await
        .unwrap();
    assert!(c.await.unwrap().is_nack());
    let m = next(&ch, "graveyard").await;
    assert_eq!(m.delivery.data, b"refused");
    assert_eq!(field(&deaths(&m)[0], "reason"), s("maxlen"));
    b.stop().await;
}

/// A quorum queue counts redeliveries in `x-delivery-count` and dead-letters a message that
/// came back more often than `x-delivery-limit` (reason `delivery_limit`).
#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_leave_a_quorum_queue_past_its_delivery_limit() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    declare_with(&ch, "poison-dlq", true, FieldTable::default()).await;
    let args = table(&[
        ("x-queue-type", s("quorum")),
        ("x-delivery-limit", AMQPValue::LongInt(2)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("poison-dlq")),
    ]);
    declare_with(&ch, "work-q", true, args).await;
    send(&ch, "work-q", b"poison", BasicProperties::default().with_delivery_mode(2)).await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let m = ch.basic_get("work-q".into(), BasicGetOptions::default()).await.unwrap().expect("a delivery");
        counts.push(header(&m, "x-delivery-count"));
        m.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();
    }
    assert_eq!(counts, vec![None, Some(AMQPValue::LongLongInt(1)), Some(AMQPValue::LongLongInt(2))]);
    let m = next(&ch, "poison-dlq").await;
    assert_eq!(m.delivery.data, b"poison");
    assert_eq!(field(&deaths(&m)[0], "reason"), s("delivery_limit"));
    assert!(ch.basic_get("work-q".into(), BasicGetOptions::default()).await.unwrap().is_none());
    b.stop().await;
}
