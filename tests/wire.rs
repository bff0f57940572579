//! Malformed and hostile input over raw sockets: each gets RabbitMQ's close code, and other
//! connections are not disturbed. Also heartbeats, AMQPLAIN, tune limits and shutdown (320).

mod common;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, channel};
use amq_protocol::types::FieldTable;
use common::{Broker, Raw};
use lapin::options::*;
use lapin::types::FieldTable as LFieldTable;
use std::time::Duration;

/// A lapin connection opened before the abuse must still work after it.
async fn bystander_still_works(b: &Broker, ch: &lapin::Channel) {
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, LFieldTable::default())
        .await
        .expect("bystander channel works");
    ch.basic_publish("".into(), q.name().clone(), BasicPublishOptions::default(), b"ok", Default::default())
        .await
        .unwrap();
    let m = ch.basic_get(q.name().clone(), BasicGetOptions { no_ack: true }).await.unwrap();
    assert!(m.is_some());
    let _ = b;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_protocol_header_gets_ours_back_and_a_close() {
    let b = Broker::start().await;
    let mut r = Raw::connect(b.addr).await;
    r.send(b"AMQP\x00\x00\x09\x00").await;
    assert_eq!(r.read_to_close().await, b"AMQP\x00\x00\x09\x01");
    let mut r = Raw::connect(b.addr).await;
    r.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.read_to_close().await, b"AMQP\x00\x00\x09\x01");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frame_end_is_501_and_spares_other_connections() {
    let b = Broker::start().await;
    let (_keep, ch) = b.channel().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    let mut frame = common::encode(&AMQPFrame::Method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 1, global: false })),
    ));
    let last = frame.len() - 1;
    frame[last] = 0x00;
    r.send(&frame).await;
    r.expect_connection_close(501).await;
    bystander_still_works(&b, &ch).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_frame_is_501() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    // A body frame claiming 1 MiB, above frame_max 131072.
    let mut f = vec![3u8, 0, 1];
    f.extend_from_slice(&(1u32 << 20).to_be_bytes());
    r.send(&f).await;
    r.expect_connection_close(501).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_method_closes_the_connection() {
    let b = Broker::start().await;
    let (_keep, ch) = b.channel().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    // class 60 (basic), method 99: not in the spec.
    r.send(&[1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 99, 0xCE]).await;
    let text = r.expect_connection_close(503).await;
    assert!(text.starts_with("COMMAND_INVALID"), "{text}");
    bystander_still_works(&b, &ch).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_channel_open_is_504() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send_method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).await;
    assert_eq!(r.expect_connection_close(504).await, "CHANNEL_ERROR - second 'channel.open' seen");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_on_a_channel_never_opened_are_504() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    r.send_method(7, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 1, global: false }))).await;
    r.expect_connection_close(504).await;
    // Content on a channel never opened is 505, as RabbitMQ.
    let mut r = Raw::open(b.addr).await;
    r.send(&[3, 0, 9, 0, 0, 0, 2, b'h', b'i', 0xCE]).await;
    assert_eq!(
        r.expect_connection_close(505).await,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_out_of_order_is_505() {
    let b = Broker::start().await;
    // A body with no publish before it.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&[3, 0, 1, 0, 0, 0, 2, b'h', b'i', 0xCE]).await;
    r.expect_connection_close(505).await;
    // A method where a content header was due.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send_method(1, common::publish_method("q", false)).await;
    r.send_method(1, AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 1, global: false }))).await;
    assert_eq!(
        r.expect_connection_close(505).await,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
    );
    // A heartbeat on a channel other than 0.
    let mut r = Raw::open(b.addr).await;
    r.send(&[8, 0, 1, 0, 0, 0, 0, 0xCE]).await;
    r.expect_connection_close(505).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn immediate_publish_is_540() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send_method(1, common::publish_method("q", true)).await;
    assert_eq!(r.expect_connection_close(540).await, "NOT_IMPLEMENTED - immediate=true");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_client_is_dropped_after_missed_heartbeats() {
    let b = Broker::start().await;
    let mut r = Raw::open_with_heartbeat(b.addr, 1).await;
    // Say nothing more: the server sends heartbeats, then gives up after two missed intervals.
    let started = std::time::Instant::now();
    let mut heartbeats = 0;
    let mut tmp = [0u8; 64];
    loop {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_secs(10), r.sock.read(&mut tmp)).await.expect("closed in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => heartbeats += tmp[..n].iter().filter(|b| **b == 8).count(),
        }
    }
    let waited = started.elapsed();
    assert!(heartbeats >= 1, "server sent heartbeats");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6), "closed after {waited:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn amqplain_login_and_tune_limits() {
    let b = Broker::start().await;
    let mut r = Raw::connect(b.addr).await;
    // AMQPLAIN: a field table without its length prefix.
    let mut t = FieldTable::default();
    t.insert("LOGIN".into(), amq_protocol::types::AMQPValue::LongString("guest".into()));
    t.insert("PASSWORD".into(), amq_protocol::types::AMQPValue::LongString("guest".into()));
    let mut enc =
        amq_protocol::types::generation::gen_field_table(&t)(amq_protocol::frame::WriteContext::from(Vec::new()))
            .unwrap()
            .write;
    enc.drain(..4);
    r.start("AMQPLAIN", enc).await;
    // frame_max below 8192 is refused with 530, as RabbitMQ.
    r.tune_ok(10, 4096, 0).await;
    assert_eq!(r.expect_connection_close(530).await, "NOT_ALLOWED - frame_max=4096 < 8192 min size");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_clients_with_320() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    let stop = tokio::spawn(b.stop());
    let text = r.expect_connection_close(320).await;
    assert_eq!(text, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'");
    tokio::time::timeout(Duration::from_secs(10), stop).await.expect("shutdown completes").unwrap();
}
