//! Channel closes that cross: the client closes a channel at the moment the server closes it.
//! Both sides answer the other's `channel.close` with `close-ok`, so the client's `close-ok`
//! for the server's close arrives after the channel is gone. RabbitMQ ignores it; it must
//! never cost the connection (and the client's other channels). Frames in flight on a
//! channel the server has just closed are discarded.

mod common;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic, channel, queue};
use amq_protocol::types::FieldTable;
use common::{Broker, Raw, encode};
use lapin::options::*;

fn close(code: u16) -> AMQPClass {
    let c = channel::Close { reply_code: code, reply_text: "bye".into(), class_id: 0, method_id: 0 };
    AMQPClass::Channel(channel::AMQPMethod::Close(c))
}

fn close_ok() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
}

fn passive_declare(name: &str) -> AMQPClass {
    let d =
        queue::Declare { queue: name.into(), passive: true, arguments: FieldTable::default(), ..Default::default() };
    AMQPClass::Queue(queue::AMQPMethod::Declare(d))
}

/// A publish with its content header and body, as one run of bytes.
fn publish_frames(ch: u16, exchange: &str, routing_key: &str, body: &[u8]) -> Vec<u8> {
    let p = basic::Publish { exchange: exchange.into(), routing_key: routing_key.into(), ..Default::default() };
    let header = AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties: Default::default() };
    let mut out = encode(&AMQPFrame::Method(ch, AMQPClass::Basic(basic::AMQPMethod::Publish(p))));
    out.extend(encode(&AMQPFrame::Header(ch, header)));
    out.extend(encode(&AMQPFrame::Body(ch, body.to_vec())));
    out
}

/// Reads the server's close (with this code) and its close-ok for `ch`, in either order.
async fn expect_crossed(r: &mut Raw, ch: u16, code: u16) -> String {
    let (mut text, mut ok) = (None, false);
    while text.is_none() || !ok {
        match r.method().await {
            (c, AMQPClass::Channel(channel::AMQPMethod::Close(m))) if c == ch => {
                assert_eq!(m.reply_code, code, "{}", m.reply_text);
                text = Some(m.reply_text.to_string());
            }
            (c, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) if c == ch => ok = true,
            other => panic!("expected channel.close and close-ok on {ch}, got {other:?}"),
        }
    }
    text.unwrap_or_default()
}

/// Channel `ch` of a raw connection still works: declare, publish, get.
async fn still_works(r: &mut Raw, ch: u16, q: &str) {
    let d = queue::Declare { queue: q.into(), arguments: FieldTable::default(), ..Default::default() };
    r.send_method(ch, AMQPClass::Queue(queue::AMQPMethod::Declare(d))).await;
    assert!(matches!(r.method().await, (c, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))) if c == ch));
    r.send(&publish_frames(ch, "", q, b"still here")).await;
    let get = basic::Get { queue: q.into(), no_ack: true };
    r.send_method(ch, AMQPClass::Basic(basic::AMQPMethod::Get(get))).await;
    match r.method().await {
        (c, AMQPClass::Basic(basic::AMQPMethod::GetOk(_))) if c == ch => {}
        other => panic!("expected get-ok on {ch}, got {other:?}"),
    }
    assert!(matches!(r.frame().await, Some(AMQPFrame::Header(..))));
    assert!(matches!(r.frame().await, Some(AMQPFrame::Body(c, b)) if c == ch && b == b"still here"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_close_ok_after_crossing_closes_is_ignored() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    // The refused method and the client's close in one write: the closes cross.
    let mut bytes = encode(&AMQPFrame::Method(1, passive_declare("missing")));
    bytes.extend(encode(&AMQPFrame::Method(1, close(200))));
    r.send(&bytes).await;
    assert_eq!(expect_crossed(&mut r, 1, 404).await, "NOT_FOUND - no queue 'missing' in vhost '/'");
    // The client's close-ok for the server's close comes after the channel is gone.
    r.send_method(1, close_ok()).await;
    still_works(&mut r, 2, "crossing-2").await;
    // The channel number can be opened again and used.
    r.open_channel(1).await;
    still_works(&mut r, 1, "crossing-1").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_in_flight_on_a_closed_channel_are_discarded() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    // A publish to a missing exchange, then more content the client sent before it saw the
    // server's close, then the client's own close.
    let mut bytes = publish_frames(1, "missing", "k", b"first");
    bytes.extend(publish_frames(1, "", "k", b"second"));
    bytes.extend(encode(&AMQPFrame::Method(1, passive_declare("missing"))));
    bytes.extend(encode(&AMQPFrame::Method(1, close(200))));
    r.send(&bytes).await;
    assert_eq!(expect_crossed(&mut r, 1, 404).await, "NOT_FOUND - no exchange 'missing' in vhost '/'");
    r.send_method(1, close_ok()).await;
    still_works(&mut r, 2, "in-flight").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answering_the_servers_close_with_a_close_keeps_the_connection() {
    let b = Broker::start().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    r.send_method(1, passive_declare("missing")).await;
    match r.method().await {
        (1, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => assert_eq!(c.reply_code, 404),
        other => panic!("expected channel.close 404, got {other:?}"),
    }
    // The client had started closing too: its close, answered with close-ok, then its close-ok.
    r.send_method(1, close(200)).await;
    assert!(matches!(r.method().await, (1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))));
    r.send_method(1, close_ok()).await;
    still_works(&mut r, 2, "answered").await;
    // A client that never sends that close-ok may still reopen the channel number.
    r.open_channel(1).await;
    let mut bytes = encode(&AMQPFrame::Method(1, passive_declare("missing")));
    bytes.extend(encode(&AMQPFrame::Method(1, close(200))));
    bytes.extend(encode(&AMQPFrame::Method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))));
    r.send(&bytes).await;
    expect_crossed(&mut r, 1, 404).await;
    assert!(matches!(r.method().await, (1, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))));
    still_works(&mut r, 1, "reopened").await;
    b.stop().await;
}

/// lapin 4 cannot take part in a crossing itself: when the server's close-ok for a channel
/// arrives after lapin dropped it, lapin closes its own connection ("invalid channel"), against
/// RabbitMQ 3.10.8 as against Warren. So lapin closes each channel only once the server's close
/// has reached it, twenty times on one connection, while another channel goes on publishing
/// with confirms; the crossings themselves are the raw-frame tests above and pika's.
#[tokio::test(flavor = "multi_thread")]
async fn lapin_channels_closed_by_the_server_spare_the_others() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    let mut errors = common::channel_errors(&c);
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    common::declare(&ch, "survivor").await;
    for round in 0..20u32 {
        let doomed = c.create_channel().await.unwrap();
        let _ = doomed
            .basic_publish("missing".into(), "k".into(), BasicPublishOptions::default(), b"x", Default::default())
            .await;
        assert_eq!(errors.next().await, (404, "NOT_FOUND - no exchange 'missing' in vhost '/'".into()));
        let _ = doomed.close(200, "done".into()).await;
        common::publish_acked(&ch, "", "survivor", &format!("m{round}"), Default::default()).await;
    }
    assert!(c.status().connected(), "the connection survived");
    let mut got = Vec::new();
    while let Some(m) = ch.basic_get("survivor".into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        got.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    assert_eq!(got, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    b.stop().await;
}
