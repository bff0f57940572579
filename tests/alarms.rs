//! Resource alarms: above the memory threshold, publishing connections are held and told with
//! connection.blocked; consumers keep draining; below it, connection.unblocked and publishing
//! resumes (RabbitMQ's flow control on alarms).

mod common;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, BasicProperties, channel, connection, queue};
use amq_protocol::types::{AMQPValue, FieldTable};
use common::{Broker, Raw, encode};
use lapin::options::*;
use std::time::Duration;

fn blocked_capable() -> FieldTable {
    let mut caps = FieldTable::default();
    caps.insert("connection.blocked".into(), AMQPValue::Boolean(true));
    let mut props = FieldTable::default();
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}

fn publish_frames(q: &str, body: &[u8]) -> Vec<u8> {
    let mut out = encode(&AMQPFrame::Method(1, common::publish_method(q, false)));
    out.extend(encode(&AMQPFrame::Header(
        1,
        amq_protocol::frame::AMQPContentHeader {
            class_id: 60,
            body_size: body.len() as u64,
            properties: BasicProperties::default(),
        },
    )));
    out.extend(encode(&AMQPFrame::Body(1, body.to_vec())));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn publishers_are_blocked_above_the_memory_threshold_and_released_below() {
    // A 1-byte threshold: the alarm is raised from the start.
    let b = Broker::with(|c| c.memory_high_watermark_bytes = Some(1)).await;
    let node = b.running.as_ref().unwrap().node.clone();
    let (_c, observer) = b.channel().await;
    observer.queue_declare("q".into(), QueueDeclareOptions::default(), Default::default()).await.unwrap();

    let mut r = Raw::open_with(b.addr, 0, blocked_capable()).await;
    r.send_method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).await;
    r.method().await;
    // Declaring is not publishing: not blocked yet.
    r.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            passive: true,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
    .await;
    assert!(matches!(r.method().await, (1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))));
    // The first publish gets through, then the connection is blocked and no longer read.
    r.send(&publish_frames("q", b"first")).await;
    match r.method().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) => {
            assert_eq!(b.reason.as_str(), "low on memory")
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    r.send(&publish_frames("q", b"second")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::ready_count(&observer, "q").await, 1, "the held connection's second publish is not read");
    // A consumer still drains while the alarm is raised.
    let got = observer
        .basic_get("q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("consumers are not blocked");
    assert_eq!(got.delivery.data, b"first");

    node.set_memory_limit(u64::MAX);
    assert!(matches!(r.method().await, (0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))));
    let mut n = 0;
    for _ in 0..100 {
        n = common::ready_count(&observer, "q").await;
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 1, "the held publish is read once unblocked");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_threshold_is_validated() {
    let bad = warren::config::Config { memory_high_watermark: 1.5, ..Default::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("memory_high_watermark"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_disk_alarm_blocks_publishers_until_space_returns() {
    // More free space required than any disk has: the alarm is raised from the start.
    let b = Broker::with(|c| c.disk_free_limit = u64::MAX).await;
    let node = b.running.as_ref().unwrap().node.clone();
    let (_c, observer) = b.channel().await;
    observer.queue_declare("d".into(), QueueDeclareOptions::default(), Default::default()).await.unwrap();
    let mut r = Raw::open_with(b.addr, 0, blocked_capable()).await;
    r.send_method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).await;
    r.method().await;
    r.send(&publish_frames("d", b"one")).await;
    match r.method().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) => assert_eq!(b.reason.as_str(), "low on disk"),
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    node.set_disk_free_limit(0);
    assert!(matches!(r.method().await, (0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))));
    b.stop().await;
}
