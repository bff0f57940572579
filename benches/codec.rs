//! Encoding cost of `basic.deliver`: amq-protocol's generic encoder against Warren's
//! hand-written one (`amqp::out::Out::deliver`), which exists only because of this
//! measurement. `cargo bench --bench codec`
use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::{AMQPClass, basic};
use std::time::Instant;

fn main() {
    const N: u32 = 2_000_000;
    let mut sink = 0usize;
    let t = Instant::now();
    for i in 0..N {
        let frame = AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "amq.ctag-abcdefghijklmnopqrstuv".into(),
                delivery_tag: i as u64,
                redelivered: false,
                exchange: "".into(),
                routing_key: "loadgen-12345".into(),
            })),
        );
        let w = gen_frame(&frame)(WriteContext::from(Vec::with_capacity(64))).expect("encode");
        sink += w.write.len();
    }
    let generic = t.elapsed();
    let mut out = warren::amqp::out::Out::detached();
    let t = Instant::now();
    for i in 0..N {
        out.deliver(1, "amq.ctag-abcdefghijklmnopqrstuv", i as u64, false, "", "loadgen-12345");
        if i % 1024 == 0 {
            sink += out.take_len();
        }
    }
    let hand = t.elapsed();
    println!(
        "basic.deliver encode, {N} frames: amq-protocol {:.0} ns/frame, hand-written {:.0} ns/frame ({sink} bytes)",
        generic.as_nanos() as f64 / N as f64,
        hand.as_nanos() as f64 / N as f64
    );
}
