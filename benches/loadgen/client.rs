//! The load generator's AMQP client: a handshaken connection (PLAIN, no heartbeats) with one
//! open channel, over raw sockets, and the frame encoders its producers and consumers share.

use super::Args;
use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::{AMQPClass, channel, connection};
use amq_protocol::types::{FieldTable, LongString};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use warren::amqp::frame::{FRAME_METHOD, decode_method, next_frame};

pub(crate) fn encode(out: &mut Vec<u8>, frame: &AMQPFrame) {
    let w = gen_frame(frame)(WriteContext::from(std::mem::take(out))).expect("encode");
    *out = w.write;
}

pub(crate) fn method(out: &mut Vec<u8>, ch: u16, m: AMQPClass) {
    encode(out, &AMQPFrame::Method(ch, m));
}

/// A handshaken connection with one open channel.
pub(crate) struct Client {
    pub(crate) rd: OwnedReadHalf,
    pub(crate) wr: OwnedWriteHalf,
    pub(crate) buf: BytesMut,
    pub(crate) frame_max: u32,
}

impl Client {
    pub(crate) async fn connect(a: &Args) -> Client {
        Self::connect_to(a, &a.addr).await
    }

    pub(crate) async fn connect_to(a: &Args, addr: &str) -> Client {
        let sock = TcpStream::connect(addr).await.expect("connect");
        sock.set_nodelay(true).ok();
        let (rd, wr) = sock.into_split();
        let mut c = Client { rd, wr, buf: BytesMut::with_capacity(1 << 20), frame_max: 131072 };
        c.wr.write_all(b"AMQP\x00\x00\x09\x01").await.expect("header");
        c.expect_method().await;
        let mut out = Vec::new();
        method(
            &mut out,
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: LongString::from(format!("\0{}\0{}", a.user, a.pass).into_bytes()),
                locale: "en_US".into(),
            })),
        );
        c.wr.write_all(&out).await.expect("write");
        let AMQPClass::Connection(connection::AMQPMethod::Tune(t)) = c.expect_method().await else {
            panic!("expected tune")
        };
        c.frame_max = t.frame_max;
        let mut out = Vec::new();
        method(
            &mut out,
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat: 0,
            })),
        );
        method(
            &mut out,
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open { virtual_host: "/".into() })),
        );
        method(&mut out, 1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
        c.wr.write_all(&out).await.expect("write");
        c.expect_method().await; // open-ok
        c.expect_method().await; // channel open-ok
        c
    }

    pub(crate) async fn read_more(&mut self) -> bool {
        matches!(self.rd.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    pub(crate) async fn expect_method(&mut self) -> AMQPClass {
        loop {
            if let Some(f) = next_frame(&mut self.buf, u32::MAX).expect("frame") {
                if f.kind == FRAME_METHOD {
                    return decode_method(&f.payload).expect("method");
                }
                continue;
            }
            assert!(self.read_more().await, "server closed the connection");
        }
    }

    pub(crate) async fn call(&mut self, m: AMQPClass) -> AMQPClass {
        let mut out = Vec::new();
        method(&mut out, 1, m);
        self.wr.write_all(&out).await.expect("write");
        self.expect_method().await
    }
}
