//! Test harness: a broker node on a loopback port, lapin clients, and a raw AMQP socket for
//! malformed-input tests.
#![allow(dead_code)]

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::config::Config;
use warren::server::{self, Running};

pub struct Broker {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    /// The data directory (removed when the broker is dropped, unless handed over).
    pub dir: Option<tempfile::TempDir>,
}

impl Broker {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl FnOnce(&mut Config)) -> Self {
        Self::in_dir(tempfile::tempdir().expect("data dir"), f).await
    }

    /// Starts a broker on an existing data directory (restart tests).
    pub async fn in_dir(dir: tempfile::TempDir, f: impl FnOnce(&mut Config)) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
            .with_test_writer()
            .try_init();
        let mut c = Config {
            amqp_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            prometheus_addr: ([127, 0, 0, 1], 0).into(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        f(&mut c);
        let running = server::start(c).await.expect("broker starts");
        let addr = running.amqp_addr;
        Self { running: Some(running), addr, dir: Some(dir) }
    }

    pub fn uri(&self) -> String {
        self.uri_for("guest", "guest", "%2f")
    }

    pub fn uri_for(&self, user: &str, pass: &str, vhost: &str) -> String {
        format!("amqp://{user}:{pass}@{}/{vhost}", self.addr)
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default()).await.expect("connect")
    }

    pub async fn channel(&self) -> (Connection, Channel) {
        let c = self.connect().await;
        let ch = c.create_channel().await.expect("channel");
        (c, ch)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// Stops the broker gracefully and returns its data directory for a restart.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir.take().expect("data dir")
    }
}

/// Declares a queue with default options.
pub async fn declare(ch: &Channel, q: &str) {
    ch.queue_declare(q.into(), lapin::options::QueueDeclareOptions::default(), lapin::types::FieldTable::default())
        .await
        .expect("declare");
}

/// The ready count of a queue (passive declare).
pub async fn ready_count(ch: &Channel, q: &str) -> u32 {
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(q.into(), passive, lapin::types::FieldTable::default())
        .await
        .expect("passive declare")
        .message_count()
}

/// Publishes a body with default properties (not waiting for a confirm).
pub async fn publish(ch: &Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        lapin::BasicProperties::default(),
    )
    .await
    .expect("publish");
}

/// Publishes on a channel in confirm mode and asserts the broker confirmed it.
pub async fn publish_acked(ch: &Channel, ex: &str, rk: &str, body: &str, props: lapin::BasicProperties) {
    let c = ch
        .basic_publish(ex.into(), rk.into(), lapin::options::BasicPublishOptions::default(), body.as_bytes(), props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(c.is_ack(), "confirmed");
}

/// The consumer's next delivery, within 5 s.
pub async fn next_delivery(c: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_lite::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .expect("a delivery within 5 s")
        .expect("consumer open")
        .expect("delivery")
}

/// The reply code and text of a lapin error the broker caused.
pub fn amqp_error(e: &lapin::Error) -> (u16, String) {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => (p.get_id(), p.get_message().to_string()),
        other => panic!("expected an AMQP error, got {other:?}"),
    }
}

/// The errors a connection's channels are closed with, as they happen (lapin's connection
/// events). Subscribe before the action that provokes one: an error that arrives
/// asynchronously (after an ack or a publish) is then seen however the race with the client's
/// next call goes.
pub struct ChannelErrors(std::pin::Pin<Box<dyn futures_lite::Stream<Item = lapin::Event> + Send>>);

pub fn channel_errors(c: &Connection) -> ChannelErrors {
    ChannelErrors(Box::pin(c.events_listener()))
}

impl ChannelErrors {
    /// The next channel or connection error's code and text, within 5 s.
    pub async fn next(&mut self) -> (u16, String) {
        use futures_lite::StreamExt;
        let wait = async {
            loop {
                match self.0.next().await {
                    Some(lapin::Event::Error(e)) => return amqp_error(&e),
                    Some(_) => continue,
                    None => panic!("connection events ended"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("a channel error within 5 s")
    }
}

pub fn expect_err<T: std::fmt::Debug>(r: lapin::Result<T>, code: u16, text: &str) {
    let e = r.expect_err("the broker should refuse");
    let (c, t) = amqp_error(&e);
    assert_eq!((c, t.as_str()), (code, text));
}

/// Waits for a condition with a deadline.
pub async fn eventually<F: FnMut() -> bool>(mut f: F, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 5 s) until an async condition holds.
pub async fn eventually_async<F, Fut>(mut f: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw AMQP socket that completes the handshake by hand.
pub struct Raw {
    pub sock: TcpStream,
    pub buf: Vec<u8>,
}

/// `basic.publish` to the default exchange with this routing key.
pub fn publish_method(routing_key: &str, immediate: bool) -> AMQPClass {
    use amq_protocol::protocol::basic;
    let p = basic::Publish { exchange: "".into(), routing_key: routing_key.into(), mandatory: false, immediate };
    AMQPClass::Basic(basic::AMQPMethod::Publish(p))
}

pub fn encode(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new())).expect("encode").write
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self { sock: TcpStream::connect(addr).await.expect("tcp"), buf: Vec::new() }
    }

    /// Sends the protocol header and negotiates up to open-ok.
    pub async fn open(addr: SocketAddr) -> Self {
        Self::open_with_heartbeat(addr, 0).await
    }

    /// Sends the protocol header and the start-ok for `mechanism`; returns the tune values.
    pub async fn start(&mut self, mechanism: &str, response: Vec<u8>) -> connection::Tune {
        self.start_with(mechanism, response, FieldTable::default()).await
    }

    /// Like `start`, with these client properties (e.g. a capabilities table).
    pub async fn start_with(
        &mut self,
        mechanism: &str,
        response: Vec<u8>,
        client_properties: FieldTable,
    ) -> connection::Tune {
        self.send(b"AMQP\x00\x00\x09\x01").await;
        assert!(matches!(self.method().await, (0, AMQPClass::Connection(connection::AMQPMethod::Start(_)))));
        let start_ok = connection::StartOk {
            client_properties,
            mechanism: mechanism.into(),
            response: LongString::from(response),
            locale: "en_US".into(),
        };
        self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok))).await;
        match self.method().await {
            (0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => t,
            other => panic!("expected tune, got {other:?}"),
        }
    }

    pub async fn tune_ok(&mut self, channel_max: u16, frame_max: u32, heartbeat: u16) {
        let ok = connection::TuneOk { channel_max, frame_max, heartbeat };
        self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(ok))).await;
    }

    /// Negotiates with PLAIN guest/guest and the given heartbeat, up to open-ok.
    pub async fn open_with_heartbeat(addr: SocketAddr, heartbeat: u16) -> Self {
        Self::open_with(addr, heartbeat, FieldTable::default()).await
    }

    /// Negotiates with PLAIN guest/guest, the given heartbeat and client properties.
    pub async fn open_with(addr: SocketAddr, heartbeat: u16, client_properties: FieldTable) -> Self {
        let mut r = Self::connect(addr).await;
        let t = r.start_with("PLAIN", b"\0guest\0guest".to_vec(), client_properties).await;
        r.tune_ok(t.channel_max, t.frame_max, heartbeat).await;
        let open = connection::Open { virtual_host: "/".into() };
        r.send_method(0, AMQPClass::Connection(connection::AMQPMethod::Open(open))).await;
        assert!(matches!(r.method().await, (0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))));
        r
    }

    /// Opens channel `ch` and expects open-ok.
    pub async fn open_channel(&mut self, ch: u16) {
        use amq_protocol::protocol::channel;
        self.send_method(ch, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).await;
        assert!(matches!(self.method().await, (c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))) if c == ch));
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.expect("write");
    }

    pub async fn send_method(&mut self, channel: u16, m: AMQPClass) {
        let b = encode(&AMQPFrame::Method(channel, m));
        self.send(&b).await;
    }

    /// Reads the next frame (skipping heartbeats); None when the server closed the socket.
    pub async fn frame(&mut self) -> Option<AMQPFrame> {
        loop {
            if let Ok((rest, f)) = amq_protocol::frame::parse_frame(&self.buf[..]) {
                let used = self.buf.len() - rest.len();
                self.buf.drain(..used);
                if matches!(f, AMQPFrame::Heartbeat) {
                    continue;
                }
                return Some(f);
            }
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.sock.read(&mut tmp))
                .await
                .expect("read timed out")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    pub async fn method(&mut self) -> (u16, AMQPClass) {
        match self.frame().await {
            Some(AMQPFrame::Method(ch, m)) => (ch, m),
            other => panic!("expected a method frame, got {other:?}"),
        }
    }

    /// Reads raw bytes until the server closes the socket.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sock.read_to_end(&mut out)).await;
        out
    }

    /// Expects `connection.close` with this code; answers close-ok.
    pub async fn expect_connection_close(&mut self, code: u16) -> String {
        match self.method().await {
            (0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                assert_eq!(c.reply_code, code, "reply text: {}", c.reply_text);
                self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})))
                    .await;
                c.reply_text.to_string()
            }
            other => panic!("expected connection.close {code}, got {other:?}"),
        }
    }
}

/// A long-string field value.
pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

/// A field table (queue arguments, headers) from pairs.
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// `n` publishes of a 1 KB body to queue `q` through the default exchange on channel 1, as
/// bytes for a [`Raw`] socket (a publisher that writes as fast as its socket takes it).
pub fn publishes_1k(q: &str, n: usize) -> Vec<u8> {
    use amq_protocol::frame::AMQPContentHeader;
    use amq_protocol::protocol::BasicProperties;
    let body = vec![b'x'; 1024];
    let mut one = encode(&AMQPFrame::Method(1, publish_method(q, false)));
    one.extend(encode(&AMQPFrame::Header(
        1,
        AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties: BasicProperties::default() },
    )));
    one.extend(encode(&AMQPFrame::Body(1, body)));
    one.repeat(n)
}

/// A consumer that acks every delivery, slowly (about 2 ms each) until `fast` is set, then
/// every 50th with `multiple` (cheap for the client, which may be short of CPU); it stops
/// after `total`, and `received` counts what it took. Its channel's prefetch must be above 50.
pub struct Acking {
    pub fast: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub received: std::sync::Arc<std::sync::atomic::AtomicU32>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Acking {
    pub fn start(mut consumer: lapin::Consumer, total: u32) -> Self {
        use futures_lite::StreamExt;
        use std::sync::atomic::Ordering;
        let (fast, received) = (
            std::sync::Arc::<std::sync::atomic::AtomicBool>::default(),
            std::sync::Arc::<std::sync::atomic::AtomicU32>::default(),
        );
        let task = tokio::spawn({
            let (fast, received) = (fast.clone(), received.clone());
            async move {
                while let Some(d) = consumer.next().await {
                    let d = d.expect("delivery");
                    let n = received.fetch_add(1, Ordering::Relaxed) + 1;
                    if !fast.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        d.ack(lapin::options::BasicAckOptions::default()).await.expect("ack");
                    } else if n % 50 == 0 || n == total {
                        d.ack(lapin::options::BasicAckOptions { multiple: true }).await.expect("ack");
                    }
                    if n == total {
                        break;
                    }
                }
            }
        });
        Self { fast, received, task }
    }
}
