//! Closing a connection from the broker's side (AMQP 0-9-1 §4.2.3, "connection.close"): the
//! `connection.close` with the reply code and text, then waiting, bounded, for the client's
//! `close-ok` while discarding everything else it sends.

use super::error::AmqpError;
use super::frame::{self, FRAME_METHOD};
use super::out::Out;
use amq_protocol::protocol::{AMQPClass, connection};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

pub(super) fn send_connection_close(out: &mut Out, e: &AmqpError) {
    out.method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: e.code.code(),
            reply_text: e.text.as_str().into(),
            class_id: e.class_id,
            method_id: e.method_id,
        })),
    );
}

/// After sending `connection.close`, discards frames until `close-ok` (or the client's own
/// close, or a bounded wait), as the spec asks.
pub(super) async fn await_close_ok(reader: &mut OwnedReadHalf, rbuf: &mut BytesMut, out: &mut Out) {
    out.flush().await;
    let wait = async {
        loop {
            while let Ok(Some(f)) = frame::next_frame(rbuf, u32::MAX) {
                if f.kind == FRAME_METHOD && f.channel == 0 {
                    match frame::decode_method(&f.payload) {
                        Ok(AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => return,
                        Ok(AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                            out.method(
                                0,
                                AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                            );
                            out.flush().await;
                            return;
                        }
                        _ => {}
                    }
                }
            }
            if frame::next_frame(rbuf, u32::MAX).is_err() {
                return;
            }
            match reader.read_buf(rbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
}
