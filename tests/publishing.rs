//! Publishing: confirms, mandatory returns before the confirm, alternate exchanges, CC/BCC,
//! headers and exchange-to-exchange routing, transactions, the message size limit.

mod common;

use common::{Broker, expect_err};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::Duration;

async fn bind(ch: &Channel, q: &str, x: &str, k: &str) {
    ch.queue_bind(q.into(), x.into(), k.into(), QueueBindOptions::default(), FieldTable::default()).await.unwrap();
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

#[tokio::test(flavor = "multi_thread")]
async fn confirms_ack_every_publish() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    common::declare(&ch, "q").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for i in 0..2000u32 {
        common::publish(&ch, "", "q", &i.to_be_bytes()).await;
    }
    let returned = ch.wait_for_confirms().await.unwrap();
    assert!(returned.is_empty());
    assert_eq!(common::ready_count(&ch, "q").await, 2000);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mandatory_unroutable_is_returned_before_its_ack() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            "nowhere".into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "unroutable messages are still acked");
    let returned = confirm.take_message().expect("returned with the ack");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"lost");
    // Not mandatory: silently dropped, still acked.
    let c2 = ch
        .basic_publish(
            "amq.direct".into(),
            "nowhere".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c2.is_ack() && c2.take_message().is_none());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alternate_exchange_takes_unroutable_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.exchange_declare("ae".into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), lstr("ae"));
    ch.exchange_declare("main".into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), args).await.unwrap();
    common::declare(&ch, "routed").await;
    common::declare(&ch, "unrouted").await;
    bind(&ch, "routed", "main", "yes").await;
    bind(&ch, "unrouted", "ae", "").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for k in ["yes", "no", "other"] {
        let c = ch
            .basic_publish(
                "main".into(),
                k.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                k.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(c.take_message().is_none(), "routed via the AE counts as routed");
    }
    assert_eq!((common::ready_count(&ch, "routed").await, common::ready_count(&ch, "unrouted").await), (1, 2));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cc_and_bcc_add_routing_keys_and_bcc_is_stripped() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for q in ["k1", "k2", "k3"] {
        common::declare(&ch, q).await;
        bind(&ch, q, "amq.direct", q).await;
    }
    let mut h = FieldTable::default();
    h.insert("CC".into(), AMQPValue::FieldArray(FieldArray::from(vec![lstr("k2")])));
    h.insert("BCC".into(), AMQPValue::FieldArray(FieldArray::from(vec![lstr("k3")])));
    ch.basic_publish(
        "amq.direct".into(),
        "k1".into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default().with_headers(h),
    )
    .await
    .unwrap();
    for q in ["k1", "k2", "k3"] {
        let m = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(m) = ch.basic_get(q.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                    return m;
                }
            }
        })
        .await
        .unwrap();
        let headers = m.delivery.properties.headers().clone().unwrap();
        assert!(headers.contains_key("CC"), "{q}: CC kept");
        assert!(!headers.contains_key("BCC"), "{q}: BCC removed");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_exchange_all_and_any() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for (q, mode) in [("all", "all"), ("any", "any")] {
        common::declare(&ch, q).await;
        let mut a = FieldTable::default();
        a.insert("x-match".into(), lstr(mode));
        a.insert("format".into(), lstr("pdf"));
        a.insert("type".into(), lstr("report"));
        ch.queue_bind(q.into(), "amq.headers".into(), "".into(), QueueBindOptions::default(), a).await.unwrap();
    }
    let publish = |f: &'static str, t: &'static str| {
        let ch = ch.clone();
        async move {
            let mut h = FieldTable::default();
            h.insert("format".into(), lstr(f));
            h.insert("type".into(), lstr(t));
            ch.basic_publish(
                "amq.headers".into(),
                "".into(),
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default().with_headers(h),
            )
            .await
            .unwrap();
        }
    };
    publish("pdf", "report").await;
    publish("pdf", "log").await;
    publish("zip", "log").await;
    // A passive declare is answered after the publishes before it on this channel.
    assert_eq!((common::ready_count(&ch, "all").await, common::ready_count(&ch, "any").await), (1, 2));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exchange_to_exchange_bindings() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.exchange_declare("front".into(), ExchangeKind::Topic, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.exchange_declare("back".into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.exchange_bind(
        "back".into(),
        "front".into(),
        "orders.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    common::declare(&ch, "q").await;
    bind(&ch, "q", "back", "").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for k in ["orders.new", "users.new", "orders"] {
        ch.basic_publish(
            "front".into(),
            k.into(),
            BasicPublishOptions::default(),
            k.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.wait_for_confirms().await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 2);
    ch.exchange_unbind(
        "back".into(),
        "front".into(),
        "orders.#".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    common::publish(&ch, "front", "orders.x", b"x").await;
    ch.wait_for_confirms().await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 2);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_commit_and_roll_back_publishes_and_acks() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    common::declare(&ch, "q").await;
    ch.tx_select().await.unwrap();
    for _ in 0..3 {
        common::publish(&ch, "", "q", b"r").await;
    }
    ch.tx_rollback().await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 0);
    for _ in 0..2 {
        common::publish(&ch, "", "q", b"c").await;
    }
    assert_eq!(common::ready_count(&ch, "q").await, 0, "nothing visible before commit");
    ch.tx_commit().await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 2);
    // Acks inside a transaction take effect on commit only.
    let m = ch.basic_get("q".into(), BasicGetOptions::default()).await.unwrap().unwrap();
    m.ack(BasicAckOptions::default()).await.unwrap();
    ch.tx_rollback().await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true }).await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 2, "rolled-back ack did not remove the message");
    let m = ch.basic_get("q".into(), BasicGetOptions::default()).await.unwrap().unwrap();
    assert!(m.delivery.redelivered);
    m.ack(BasicAckOptions::default()).await.unwrap();
    ch.tx_commit().await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true }).await.unwrap();
    assert_eq!(common::ready_count(&ch, "q").await, 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn confirm_and_tx_do_not_mix() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.tx_select().await.unwrap();
    expect_err(
        ch.confirm_select(ConfirmSelectOptions::default()).await,
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_close_the_channel_only() {
    let b = Broker::with(|c| c.max_message_size = 1024).await;
    let (c, ch) = b.channel().await;
    common::declare(&ch, "q").await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let r = ch
        .basic_publish("".into(), "q".into(), BasicPublishOptions::default(), &[7u8; 2000], BasicProperties::default())
        .await
        .unwrap()
        .await;
    let (code, text) = common::amqp_error(&r.unwrap_err());
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - message size 2000 is larger than configured max size 1024")
    );
    let ch2 = c.create_channel().await.unwrap();
    common::publish(&ch2, "", "q", &[7u8; 1024]).await;
    let mut consumer = ch2
        .basic_consume(
            "q".into(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = common::next_delivery(&mut consumer).await;
    assert_eq!(d.data.len(), 1024);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_span_frames_intact() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    common::declare(&ch, "big").await;
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    common::publish(&ch, "", "big", &body).await;
    let m = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(m) = ch.basic_get("big".into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                return m;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(m.delivery.data, body);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_to_a_missing_or_internal_exchange() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let r = ch
        .basic_publish("missing".into(), "k".into(), BasicPublishOptions::default(), b"x", BasicProperties::default())
        .await
        .unwrap()
        .await;
    assert_eq!(
        common::amqp_error(&r.unwrap_err()),
        (404, "NOT_FOUND - no exchange 'missing' in vhost '/'".to_string())
    );
    let ch = c.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let r = ch
        .basic_publish(
            "amq.rabbitmq.trace".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await;
    assert_eq!(
        common::amqp_error(&r.unwrap_err()),
        (403, "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'".to_string())
    );
    b.stop().await;
}
