//! The load generator's consumer: consumes from the queue (with `--prefetch`, or auto-ack),
//! acks each message or every `--multi-ack-every`, flushing acks once per read, and records
//! each message's end-to-end latency from the send time its body starts with.

use super::{Args, Client, method};
use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::FieldTable;
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use warren::amqp::frame::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD, decode_method, next_frame};

pub(crate) async fn consumer(
    a: Args,
    start: Instant,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    ready: Arc<Semaphore>,
) -> Histogram<u64> {
    let mut c = Client::connect_to(&a, a.consume_addr.as_deref().unwrap_or(&a.addr)).await;
    if a.prefetch > 0 {
        c.call(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: a.prefetch, global: false })))
            .await;
    }
    c.call(AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: a.queue.as_str().into(),
        consumer_tag: "".into(),
        no_local: false,
        no_ack: a.auto_ack,
        exclusive: false,
        nowait: false,
        arguments: FieldTable::default(),
    })))
    .await;
    ready.add_permits(1);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    let mut acks = Vec::with_capacity(1 << 16);
    let (mut tag, mut unacked, mut in_body, mut expect) = (0u64, 0u64, false, 0usize);
    let mut first: Option<Bytes> = None;
    while !stop.load(Ordering::Relaxed) {
        while let Ok(Some(f)) = next_frame(&mut c.buf, u32::MAX) {
            match f.kind {
                FRAME_METHOD => {
                    if let Ok(AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) = decode_method(&f.payload) {
                        tag = d.delivery_tag;
                        in_body = false;
                    }
                }
                FRAME_HEADER => {
                    expect = u64::from_be_bytes(f.payload[4..12].try_into().unwrap_or_default()) as usize;
                    in_body = true;
                    first = None;
                }
                FRAME_BODY if in_body => {
                    if first.is_none() {
                        first = Some(f.payload.clone());
                    }
                    expect = expect.saturating_sub(f.payload.len());
                    if expect == 0 {
                        in_body = false;
                        if let Some(b) = first.take().filter(|b| b.len() >= 8) {
                            let sent_us = u64::from_be_bytes(b[0..8].try_into().unwrap_or_default());
                            let _ = hist.record((start.elapsed().as_micros() as u64).saturating_sub(sent_us).max(1));
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        if !a.auto_ack {
                            unacked += 1;
                            if a.multi_ack_every == 0 || unacked >= a.multi_ack_every {
                                method(
                                    &mut acks,
                                    1,
                                    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                                        delivery_tag: tag,
                                        multiple: a.multi_ack_every > 0,
                                    })),
                                );
                                unacked = 0;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !acks.is_empty() {
            if c.wr.write_all(&acks).await.is_err() {
                break;
            }
            acks.clear();
        }
        match tokio::time::timeout(Duration::from_millis(200), c.rd.read_buf(&mut c.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            _ => {}
        }
        if c.buf.capacity() - c.buf.len() < 65536 {
            c.buf.reserve(1 << 20);
        }
    }
    hist
}
