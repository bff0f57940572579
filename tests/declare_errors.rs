//! Declare, delete and bind errors with RabbitMQ's reply codes and texts; exclusivity;
//! server-named queues; the empty queue name; declare-ok counts.

mod common;

use common::{Broker, expect_err};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn exchange_redeclare_with_other_type_is_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.exchange_declare("x".into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.exchange_declare("x".into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    expect_err(
        ch.exchange_declare("x".into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default())
            .await,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'",
    );
    let ch = b.connect().await.create_channel().await.unwrap();
    expect_err(
        ch.exchange_declare(
            "x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'true' but current is 'false'",
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_redeclare_with_other_arguments_is_406() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    ch.queue_declare("q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    expect_err(
        ch.queue_declare(
            "q".into(),
            QueueDeclareOptions::default(),
            args(&[("x-message-ttl", AMQPValue::LongInt(2000))]),
        )
        .await,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value '2000' of type 'signedint' but current is none",
    );
    let ch = c.create_channel().await.unwrap();
    expect_err(
        ch.queue_declare(
            "q".into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'",
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_declares_of_missing_things_are_404() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    expect_err(
        ch.queue_declare(
            "nope".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await,
        404,
        "NOT_FOUND - no queue 'nope' in vhost '/'",
    );
    let ch = c.create_channel().await.unwrap();
    expect_err(
        ch.exchange_declare(
            "nope".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await,
        404,
        "NOT_FOUND - no exchange 'nope' in vhost '/'",
    );
    // The connection survives channel errors.
    let ch = c.create_channel().await.unwrap();
    ch.exchange_declare(
        "amq.topic".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions { passive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_names_and_default_exchange_are_403() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    expect_err(
        ch.exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'",
    );
    let ch = c.create_channel().await.unwrap();
    expect_err(
        ch.queue_declare("amq.q".into(), QueueDeclareOptions::default(), FieldTable::default()).await,
        403,
        "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'",
    );
    let ch = c.create_channel().await.unwrap();
    ch.queue_declare("q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    expect_err(
        ch.queue_bind("q".into(), "".into(), "q".into(), QueueBindOptions::default(), FieldTable::default()).await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    let ch = c.create_channel().await.unwrap();
    expect_err(
        ch.exchange_delete("".into(), ExchangeDeleteOptions::default()).await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    let ch = c.create_channel().await.unwrap();
    expect_err(
        ch.exchange_declare(
            "e".into(),
            ExchangeKind::Custom("nonsense".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        406,
        "PRECONDITION_FAILED - unknown exchange type 'nonsense'",
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_if_unused_and_if_empty() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    ch.queue_declare("q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    common::publish(&ch, "", "q", b"m").await;
    expect_err(
        ch.queue_delete("q".into(), QueueDeleteOptions { if_empty: true, ..Default::default() }).await,
        406,
        "PRECONDITION_FAILED - queue 'q' in vhost '/' not empty",
    );
    let ch = c.create_channel().await.unwrap();
    // lapin cancels a consumer when its stream is dropped: keep it.
    let _consumer =
        ch.basic_consume("q".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    let ch2 = c.create_channel().await.unwrap();
    expect_err(
        ch2.queue_delete("q".into(), QueueDeleteOptions { if_unused: true, ..Default::default() }).await,
        406,
        "PRECONDITION_FAILED - queue 'q' in vhost '/' in use",
    );
    let ch2 = c.create_channel().await.unwrap();
    ch2.exchange_declare("e".into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch2.queue_bind("q".into(), "e".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    expect_err(
        ch2.exchange_delete("e".into(), ExchangeDeleteOptions { if_unused: true, ..Default::default() }).await,
        406,
        "PRECONDITION_FAILED - exchange 'e' in vhost '/' in use",
    );
    let ch2 = c.create_channel().await.unwrap();
    assert_eq!(
        ch2.queue_delete("q".into(), QueueDeleteOptions::default()).await.unwrap(),
        0,
        "the one message is unacked, not ready"
    );
    // Deleting what does not exist is fine.
    ch2.queue_delete("q".into(), QueueDeleteOptions::default()).await.unwrap();
    ch2.exchange_delete("gone".into(), ExchangeDeleteOptions::default()).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_named_queues_counts_and_the_empty_name() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let q = ch.queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-") && q.name().as_str().len() > 10);
    for _ in 0..3 {
        ch.basic_publish("".into(), q.name().clone(), BasicPublishOptions::default(), b"m", BasicProperties::default())
            .await
            .unwrap();
    }
    let _consumer = ch
        .basic_consume(q.name().clone(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let again = ch
        .queue_declare(
            q.name().clone(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!((again.message_count(), again.consumer_count()), (0, 1), "ready count excludes delivered messages");
    let p = ch.queue_declare("plain".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    common::publish(&ch, "", "plain", b"m").await;
    common::publish(&ch, "", "plain", b"m").await;
    assert_eq!(p.message_count(), 0);
    // An empty queue name means the last queue declared on this channel.
    let purged = ch.queue_purge("".into(), QueuePurgeOptions::default()).await.unwrap();
    assert_eq!(purged, 2);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exclusive_queues_are_locked_to_their_connection_and_go_with_it() {
    let b = Broker::start().await;
    let (owner, ch) = b.channel().await;
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions { exclusive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (_other, och) = b.channel().await;
    let e = och
        .basic_consume("mine".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap_err();
    let (code, text) = common::amqp_error(&e);
    assert_eq!(code, 405);
    assert!(
        text.starts_with("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost '/'"),
        "{text}"
    );
    owner.close(200, "bye".into()).await.unwrap();
    let (_c3, ch3) = b.channel().await;
    let mut gone = false;
    for _ in 0..100 {
        let probe = b.connect().await.create_channel().await.unwrap();
        if probe
            .queue_declare(
                "mine".into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .is_err()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "exclusive queue deleted with its connection");
    // Another connection may now declare it.
    ch3.queue_declare(
        "mine".into(),
        QueueDeclareOptions { exclusive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.queue_declare(
        "ad".into(),
        QueueDeclareOptions { auto_delete: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let _c1 = ch
        .basic_consume("ad".into(), "c1".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let _c2 = ch
        .basic_consume("ad".into(), "c2".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.basic_cancel("c1".into(), BasicCancelOptions::default()).await.unwrap();
    let probe = |b: &Broker| {
        let uri = b.uri();
        async move {
            let c = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await.unwrap();
            let ch = c.create_channel().await.unwrap();
            ch.queue_declare(
                "ad".into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .is_ok()
        }
    };
    assert!(probe(&b).await, "still one consumer");
    ch.basic_cancel("c2".into(), BasicCancelOptions::default()).await.unwrap();
    let mut exists = true;
    for _ in 0..100 {
        exists = probe(&b).await;
        if !exists {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!exists, "auto-delete queue removed after last consumer");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_queue_arguments_are_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    expect_err(
        ch.queue_declare(
            "q".into(),
            QueueDeclareOptions::default(),
            args(&[("x-message-ttl", AMQPValue::LongInt(-5))]),
        )
        .await,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-5}",
    );
    b.stop().await;
}

fn quorum() -> FieldTable {
    args(&[("x-queue-type", AMQPValue::LongString("quorum".into()))])
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_queues_refuse_exclusive_auto_delete_transient_and_server_named() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    let cases = [
        (
            QueueDeclareOptions { auto_delete: true, ..durable },
            "qa",
            "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'qa' in vhost '/'",
        ),
        (
            QueueDeclareOptions { exclusive: true, ..durable },
            "qe",
            "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'qe' in vhost '/'",
        ),
        (
            QueueDeclareOptions::default(),
            "qt",
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'qt' in vhost '/'",
        ),
        (durable, "", "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"),
    ];
    for (opts, name, text) in cases {
        let ch = c.create_channel().await.unwrap();
        expect_err(ch.queue_declare(name.into(), opts, quorum()).await, 406, text);
    }
    let ch = c.create_channel().await.unwrap();
    ch.queue_declare("qq".into(), durable, quorum()).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_queue_type_applies_to_plain_durable_declares() {
    let b = Broker::with(|c| c.default_queue_type = warren::broker::argument::QueueType::Quorum).await;
    let (c, ch) = b.channel().await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("plain".into(), durable, FieldTable::default()).await.unwrap();
    // It is a quorum queue: an explicit quorum redeclare is equivalent, a classic one is not.
    ch.queue_declare("plain".into(), durable, quorum()).await.unwrap();
    let classic = args(&[("x-queue-type", AMQPValue::LongString("classic".into()))]);
    let e = ch.queue_declare("plain".into(), durable, classic).await.unwrap_err();
    assert_eq!(common::amqp_error(&e).0, 406);
    // Exclusive and server-named queues stay classic.
    let ch = c.create_channel().await.unwrap();
    ch.queue_declare(
        "".into(),
        QueueDeclareOptions { exclusive: true, durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    b.stop().await;
}
