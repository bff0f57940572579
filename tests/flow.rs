//! Flow control: a queue behind its consumers holds the connections publishing into it (their
//! sockets stop being read, their state shows `flow`) and lets them go once the consumers catch
//! up, losing nothing; a connection publishing into another queue is never held meanwhile
//! (RabbitMQ's credit flow, `queue::flow`).

mod common;

use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use common::{Acking, Broker, Raw, declare, eventually, ready_count};
use futures_lite::StreamExt;
use lapin::options::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warren::node::clients::{ConnState, Io};

/// Messages the fast publisher sends.
const SENT: u32 = 40_000;
const NAME: &str = "fast publisher";

fn named(name: &str) -> FieldTable {
    let mut props = FieldTable::default();
    props.insert("connection_name".into(), AMQPValue::LongString(LongString::from(name)));
    props
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_ahead_of_its_consumers_is_held_until_they_catch_up() {
    let b = Broker::start().await;
    let node = b.running.as_ref().expect("running").node.clone();
    let (_oc, observer) = b.channel().await;
    declare(&observer, "slow").await;
    declare(&observer, "other").await;

    // A consumer that takes about 400 messages a second until told to go fast.
    let (_cc, consumer_ch) = b.channel().await;
    consumer_ch.basic_qos(100, BasicQosOptions::default()).await.expect("qos");
    let consumer = consumer_ch
        .basic_consume("slow".into(), "c".into(), BasicConsumeOptions::default(), Default::default())
        .await
        .expect("consume");
    let acking = Acking::start(consumer, SENT);

    // The publisher writes as fast as its socket takes it.
    let mut p = Raw::open_with(b.addr, 0, named(NAME)).await;
    p.open_channel(1).await;
    let batch = common::publishes_1k("slow", 1000);
    let writer = tokio::spawn(async move {
        for _ in 0..SENT / 1000 {
            p.send(&batch).await;
        }
        p
    });
    let info = || {
        node.clients()
            .all()
            .into_iter()
            .find(|c| c.user_provided_name.as_deref() == Some(NAME))
            .expect("the publisher's connection")
    };
    eventually(|| info().state() == ConnState::Flow, "the publisher to be held").await;

    // Held: its socket is not read, and the backlog stays bounded.
    let read = Io::get(&info().io.recv_oct);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(info().state(), ConnState::Flow, "still held while the consumer lags");
    assert_eq!(Io::get(&info().io.recv_oct), read, "a held connection's socket is not read");
    let ready = ready_count(&observer, "slow").await;
    assert!(ready < 15_000, "the backlog stays bounded while the publisher is held: {ready} ready");
    assert!(!writer.is_finished(), "the publisher cannot have written everything");

    // Another connection publishing into another queue goes at full speed meanwhile.
    let (_pc, other) = b.channel().await;
    other.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let mut confirms = Vec::new();
    for i in 0..2000u32 {
        let c = other
            .basic_publish(
                "".into(),
                "other".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                Default::default(),
            )
            .await
            .expect("publish");
        confirms.push(c);
    }
    for c in confirms {
        let c = tokio::time::timeout(Duration::from_secs(10), c).await.expect("confirmed in time").expect("confirm");
        assert!(c.is_ack());
    }
    assert_eq!(ready_count(&observer, "other").await, 2000);
    assert_eq!(info().state(), ConnState::Flow, "the slow queue's publisher is still held");

    // The consumer catches up: the publisher is let go, and every message arrives once.
    acking.fast.store(true, Ordering::Relaxed);
    let received = acking.received.clone();
    let consumed = tokio::time::timeout(Duration::from_secs(150), acking.task).await;
    let got = received.load(Ordering::Relaxed);
    let state = info().state();
    consumed
        .unwrap_or_else(|_| panic!("everything consumed in time: {got} of {SENT}, publisher {state:?}"))
        .expect("consumer");
    assert_eq!(acking.received.load(Ordering::Relaxed), SENT);
    let _p = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the publisher wrote everything")
        .expect("writer");
    eventually(|| info().state() == ConnState::Running, "the publisher to run again").await;
    assert_eq!(ready_count(&observer, "slow").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_consuming_from_the_queue_it_publishes_into_is_not_held_by_it() {
    let b = Broker::start().await;
    let node = b.running.as_ref().expect("running").node.clone();
    let c = lapin::Connection::connect(
        &b.uri(),
        lapin::ConnectionProperties::default().with_connection_name("loop".into()),
    )
    .await
    .expect("connect");
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "loop").await;
    // Held, it would stay in `flow` until the gate gave up on its stalled consumer (seconds).
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let done = done.clone();
        async move {
            let mut held = false;
            while !done.load(Ordering::Relaxed) {
                held |= node.clients().all().iter().any(|c| c.state() == ConnState::Flow);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            held
        }
    });
    ch.basic_qos(100, BasicQosOptions::default()).await.expect("qos");
    let mut consumer = ch
        .basic_consume("loop".into(), "c".into(), BasicConsumeOptions::default(), Default::default())
        .await
        .expect("consume");
    // Publish far past the gate's mark on the connection that must ack: it never waits on
    // itself (its acks would be behind the gate).
    let pub_ch = c.create_channel().await.expect("channel");
    let n = 20_000u32;
    for i in 0..n {
        pub_ch
            .basic_publish(
                "".into(),
                "loop".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                Default::default(),
            )
            .await
            .expect("publish");
    }
    // Acked fifty at a time (`multiple`): the client may be short of CPU on a busy machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    for i in 1..=n {
        let d = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .expect("everything consumed in time")
            .expect("open")
            .expect("delivery");
        if i % 50 == 0 {
            d.ack(BasicAckOptions { multiple: true }).await.expect("ack");
        }
    }
    assert_eq!(ready_count(&ch, "loop").await, 0);
    done.store(true, Ordering::Relaxed);
    assert!(!watcher.await.expect("watcher"), "the connection was held by the queue it consumes from");
}
