//! A load generator in the style of RabbitMQ's PerfTest, for Warren or any AMQP 0-9-1 broker.
//!
//! ```text
//! cargo bench --bench loadgen -- --addr 127.0.0.1:5672 --size 16 --duration 10
//!   --producers N --consumers N --size BYTES --confirm WINDOW --prefetch N --auto-ack
//!   --multi-ack-every N --persistent --durable --quorum --queue NAME --label TEXT
//!   --rate MSGS_PER_SEC (per producer; 0 = as fast as possible)
//!   --keep (neither purge the queue first nor delete it after: accumulate a backlog)
//!   --count N (per producer: stop after N messages; the run ends once they are all sent and,
//!   with consumers, all received, or at --duration)
//!   --ttl MS (declare the queue with x-message-ttl)
//!   --delay MS (publish through a delayed-message exchange bound to the queue, with x-delay;
//!   latencies then include the delay)
//!   --publish-addr HOST:PORT, --consume-addr HOST:PORT (producers, consumers connect there
//!   instead of --addr: a cluster's other nodes; the queue is declared through --addr)
//!   --fanout N (N queues NAME-0.. bound to a fanout exchange NAME.fanout that producers
//!   publish to; --consumers consumers on each queue; rates count deliveries)
//!   --queues N (N queues NAME-0..; producers publish to them in turn through the default
//!   exchange; --consumers consumers on each queue; --rate is then the producer's total)
//! ```
//!
//! With confirms it also reports confirm latency: from a publish's write to its `basic.ack`,
//! and the longest time between two consecutive confirms (a leader's failover, measured by
//! publishing through a node that survives it).
//!
//! It speaks AMQP over raw sockets (amq-protocol for encoding, Warren's frame splitter for
//! decoding) and pipelines: producers write batches of publishes without waiting, bounded by the
//! confirm window when confirms are on; consumers ack every message (or every N with
//! `multiple`, or auto-ack) and flush acks once per read. So the client costs far less than
//! either broker and the same client measures both. Every body starts with its send time, so
//! consumers measure end-to-end latency. Bounded: stops after `--duration` s (at most 600).

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, confirm, exchange, queue};
use amq_protocol::types::{AMQPValue, FieldTable};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use warren::amqp::frame::{FRAME_BODY, FRAME_METHOD, decode_method, next_frame};

#[derive(Clone)]
struct Args {
    addr: String,
    user: String,
    pass: String,
    producers: usize,
    consumers: usize,
    size: usize,
    confirm: usize,
    prefetch: u16,
    auto_ack: bool,
    multi_ack_every: u64,
    persistent: bool,
    durable: bool,
    quorum: bool,
    duration: u64,
    rate: u64,
    keep: bool,
    count: u64,
    ttl: u64,
    delay: u64,
    queue: String,
    label: String,
    publish_addr: Option<String>,
    consume_addr: Option<String>,
    fanout: usize,
    queues: usize,
}

impl Args {
    /// The exchange producers publish to: the default one, with `--delay` a delayed one, with
    /// `--fanout` a fanout one.
    fn exchange(&self) -> String {
        if self.delay > 0 {
            format!("{}.delayed", self.queue)
        } else if self.fanout > 0 {
            format!("{}.fanout", self.queue)
        } else {
            String::new()
        }
    }

    /// Every queue of the run: one, or `--fanout` / `--queues` of them.
    fn queue_names(&self) -> Vec<String> {
        match self.fanout.max(self.queues) {
            0 => vec![self.queue.clone()],
            n => (0..n).map(|i| format!("{}-{i}", self.queue)).collect(),
        }
    }

    /// The routing keys producers take in turn (the bound queue's name, or each queue's).
    fn routing_keys(&self) -> Vec<String> {
        if self.queues > 0 { self.queue_names() } else { vec![self.queue.clone()] }
    }
}

fn parse() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:5672".into(),
        user: "guest".into(),
        pass: "guest".into(),
        producers: 1,
        consumers: 1,
        size: 16,
        confirm: 0,
        prefetch: 0,
        auto_ack: false,
        multi_ack_every: 0,
        persistent: false,
        durable: false,
        quorum: false,
        duration: 10,
        rate: 0,
        keep: false,
        count: 0,
        ttl: 0,
        delay: 0,
        queue: format!("loadgen-{}", std::process::id()),
        label: String::new(),
        publish_addr: None,
        consume_addr: None,
        fanout: 0,
        queues: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].clone();
        let mut val = || {
            i += 1;
            argv.get(i).cloned().unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--addr" => a.addr = val(),
            "--publish-addr" => a.publish_addr = Some(val()),
            "--consume-addr" => a.consume_addr = Some(val()),
            "--user" => a.user = val(),
            "--pass" => a.pass = val(),
            "--producers" | "-x" => a.producers = val().parse().expect("producers"),
            "--consumers" | "-y" => a.consumers = val().parse().expect("consumers"),
            "--size" | "-s" => a.size = val().parse().expect("size"),
            "--confirm" | "-c" => a.confirm = val().parse().expect("confirm window"),
            "--prefetch" | "-q" => a.prefetch = val().parse().expect("prefetch"),
            "--multi-ack-every" => a.multi_ack_every = val().parse().expect("multi-ack-every"),
            "--duration" | "-z" => a.duration = val().parse::<u64>().expect("duration").clamp(1, 600),
            "--queue" => a.queue = val(),
            "--rate" | "-r" => a.rate = val().parse().expect("rate"),
            "--label" => a.label = val(),
            "--auto-ack" | "-a" => a.auto_ack = true,
            "--persistent" => a.persistent = true,
            "--keep" => a.keep = true,
            "--count" | "-C" => a.count = val().parse().expect("count"),
            "--ttl" => a.ttl = val().parse().expect("ttl (ms)"),
            "--delay" => a.delay = val().parse().expect("delay (ms)"),
            "--durable" => a.durable = true,
            "--fanout" => a.fanout = val().parse().expect("fanout queues"),
            "--queues" => a.queues = val().parse().expect("queues"),
            "--quorum" => {
                a.quorum = true;
                a.durable = true;
            }
            other => panic!("unknown flag {other}; see the module docs"),
        }
        i += 1;
    }
    a.size = a.size.max(16);
    a
}

#[path = "loadgen/client.rs"]
mod client;
#[path = "loadgen/consumer.rs"]
mod consumer;
use client::{Client, encode, method};
use consumer::consumer;

fn queue_args(a: &Args) -> FieldTable {
    let mut t = FieldTable::default();
    if a.quorum {
        t.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    if a.ttl > 0 {
        t.insert("x-message-ttl".into(), AMQPValue::LongLongInt(a.ttl as i64));
    }
    t
}

/// Confirm latencies (µs), shared by the producers; and the longest time between two
/// consecutive confirms (of any producer) with when the last one came: a failover's pause.
type ConfirmTimes = Arc<std::sync::Mutex<(Histogram<u64>, Option<Instant>, Duration)>>;

async fn producer(
    a: Args,
    start: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    confirmed: Arc<AtomicU64>,
    confirm_times: ConfirmTimes,
) {
    let mut c = Client::connect_to(&a, a.publish_addr.as_deref().unwrap_or(&a.addr)).await;
    // When each publish not yet confirmed was written, in publish order.
    let written: Arc<std::sync::Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let written2 = written.clone();
    let window = Arc::new(Semaphore::new(if a.confirm > 0 { a.confirm } else { Semaphore::MAX_PERMITS }));
    if a.confirm > 0 {
        c.call(AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))).await;
    }
    let Client { mut rd, mut wr, mut buf, frame_max } = c;
    // Confirms come back on the read half.
    let (w2, confirmed2) = (window.clone(), confirmed.clone());
    let acks = tokio::spawn(async move {
        let mut acked = 0u64;
        loop {
            while let Ok(Some(f)) = next_frame(&mut buf, u32::MAX) {
                if f.kind != FRAME_METHOD {
                    continue;
                }
                let settled = match decode_method(&f.payload) {
                    Ok(AMQPClass::Basic(basic::AMQPMethod::Ack(x))) => Some((x.delivery_tag, x.multiple)),
                    Ok(AMQPClass::Basic(basic::AMQPMethod::Nack(x))) => Some((x.delivery_tag, x.multiple)),
                    _ => None,
                };
                if let Some((delivery_tag, multiple)) = settled {
                    let n = if multiple { delivery_tag.saturating_sub(acked) } else { 1 };
                    acked = acked.max(delivery_tag);
                    confirmed2.fetch_add(n, Ordering::Relaxed);
                    w2.add_permits(n as usize);
                    let now = Instant::now();
                    let mut w = written2.lock().unwrap();
                    let mut times = confirm_times.lock().unwrap();
                    let (h, last, gap) = &mut *times;
                    for _ in 0..n {
                        if let Some(t) = w.pop_front() {
                            let _ = h.record((now - t).as_micros().max(1) as u64);
                        }
                    }
                    if let Some(l) = last.replace(now) {
                        *gap = (*gap).max(now - l);
                    }
                }
            }
            if !matches!(rd.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        }
    });
    let mut props =
        if a.persistent { BasicProperties::default().with_delivery_mode(2) } else { BasicProperties::default() };
    if a.delay > 0 {
        let mut h = FieldTable::default();
        h.insert("x-delay".into(), AMQPValue::LongLongInt(a.delay as i64));
        props = props.with_headers(h);
    }
    let mut header = Vec::new();
    encode(
        &mut header,
        &AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: a.size as u64, properties: props }),
    );
    let publishes: Vec<Vec<u8>> = a
        .routing_keys()
        .iter()
        .map(|key| {
            let mut publish = Vec::new();
            method(
                &mut publish,
                1,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: a.exchange().into(),
                    routing_key: key.as_str().into(),
                    mandatory: false,
                    immediate: false,
                })),
            );
            publish
        })
        .collect();
    let mut turn = 0usize;
    let max_body = frame_max as usize - 8;
    let mut batch = if a.confirm > 0 { a.confirm.clamp(1, 64) } else { 64 };
    if a.rate > 0 {
        // Small batches keep a rate-limited run smooth (latency is measured per message).
        batch = batch.min((a.rate / 1000).clamp(1, 64) as usize);
    }
    let began = Instant::now();
    let mut published = 0u64;
    let mut out = Vec::with_capacity(batch * (a.size + 64));
    // Incompressible bodies (as most real payloads are to a storage engine's compressor).
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ a.size as u64;
    let mut body: Vec<u8> = (0..a.size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        if a.count > 0 {
            if published >= a.count {
                break;
            }
            batch = batch.min((a.count - published) as usize);
        }
        if a.rate > 0 {
            let due = (began.elapsed().as_secs_f64() * a.rate as f64) as u64;
            if published >= due {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
        }
        if a.confirm > 0 {
            match tokio::time::timeout(Duration::from_millis(200), window.acquire_many(batch as u32)).await {
                Ok(Ok(p)) => p.forget(),
                _ => continue,
            }
        }
        out.clear();
        for _ in 0..batch {
            body[0..8].copy_from_slice(&(start.elapsed().as_micros() as u64).to_be_bytes());
            out.extend_from_slice(&publishes[turn % publishes.len()]);
            turn += 1;
            out.extend_from_slice(&header);
            for chunk in body.chunks(max_body) {
                out.push(FRAME_BODY);
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                out.extend_from_slice(chunk);
                out.push(0xCE);
            }
        }
        if a.confirm > 0 {
            let now = Instant::now();
            written.lock().unwrap().extend(std::iter::repeat_n(now, batch));
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
        sent.fetch_add(batch as u64, Ordering::Relaxed);
        published += batch as u64;
    }
    if a.confirm > 0 {
        let _ = tokio::time::timeout(Duration::from_secs(10), window.acquire_many(a.confirm as u32)).await;
    }
    acks.abort();
}

fn main() {
    let a = parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, confirmed, received) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut setup = Client::connect(&a).await;
    let names = a.queue_names();
    for name in &names {
        setup
            .call(AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.as_str().into(),
                passive: false,
                durable: a.durable,
                exclusive: false,
                auto_delete: false,
                nowait: false,
                arguments: queue_args(&a),
            })))
            .await;
    }
    if a.delay > 0 || a.fanout > 0 {
        let (kind, mut args) = ("x-delayed-message", FieldTable::default());
        let kind = if a.delay > 0 {
            args.insert("x-delayed-type".into(), AMQPValue::LongString("direct".into()));
            kind
        } else {
            "fanout"
        };
        let declare = exchange::Declare {
            exchange: a.exchange().into(),
            kind: kind.into(),
            passive: false,
            durable: a.durable,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: args,
        };
        setup.call(AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare))).await;
        for name in &names {
            let bind = queue::Bind {
                queue: name.as_str().into(),
                exchange: a.exchange().into(),
                routing_key: a.queue.as_str().into(),
                nowait: false,
                arguments: FieldTable::default(),
            };
            setup.call(AMQPClass::Queue(queue::AMQPMethod::Bind(bind))).await;
        }
    }
    if !a.keep {
        for name in &names {
            let purge = queue::Purge { queue: name.as_str().into(), nowait: false };
            setup.call(AMQPClass::Queue(queue::AMQPMethod::Purge(purge))).await;
        }
    }
    let ready = Arc::new(Semaphore::new(0));
    let consumers: Vec<_> = names
        .iter()
        .flat_map(|name| std::iter::repeat_n(name, a.consumers))
        .map(|name| {
            let a = Args { queue: name.clone(), ..a.clone() };
            tokio::spawn(consumer(a, start, stop.clone(), received.clone(), ready.clone()))
        })
        .collect();
    let _ = ready.acquire_many((a.consumers * names.len()) as u32).await;
    let confirm_times: ConfirmTimes = Arc::new(std::sync::Mutex::new((
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
        None,
        Duration::ZERO,
    )));
    let producers: Vec<_> = (0..a.producers)
        .map(|_| {
            let (a, stop, sent, confirmed, times) =
                (a.clone(), stop.clone(), sent.clone(), confirmed.clone(), confirm_times.clone());
            tokio::spawn(producer(a, start, stop, sent, confirmed, times))
        })
        .collect();
    let t0 = Instant::now();
    let (mut ls, mut lr) = (0, 0);
    // Sent and not yet received, at the end of each second: what waits in the broker (a
    // fanout's publish is received once per queue).
    let mut peak = 0u64;
    let copies = a.fanout.max(1) as u64;
    for sec in 1..=a.duration {
        tokio::time::sleep_until((t0 + Duration::from_secs(sec)).into()).await;
        let (s, r) = (sent.load(Ordering::Relaxed), received.load(Ordering::Relaxed));
        eprintln!("{sec:>3}s  sent {:>9}/s  received {:>9}/s", s - ls, r - lr);
        (ls, lr) = (s, r);
        peak = peak.max((s * copies).saturating_sub(r));
        let total = a.count * a.producers as u64 * a.fanout.max(1) as u64;
        let done = producers.iter().all(|p| p.is_finished()) && (a.consumers == 0 || r >= total);
        if a.count > 0 && done {
            break;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (s, r, cf) =
        (sent.load(Ordering::Relaxed), received.load(Ordering::Relaxed), confirmed.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = tokio::time::timeout(Duration::from_secs(15), p).await;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    for c in consumers {
        if let Ok(Ok(h)) = tokio::time::timeout(Duration::from_secs(5), c).await {
            let _ = hist.add(h);
        }
    }
    if !a.keep {
        for name in &names {
            let delete =
                queue::Delete { queue: name.as_str().into(), if_unused: false, if_empty: false, nowait: false };
            setup.call(AMQPClass::Queue(queue::AMQPMethod::Delete(delete))).await;
        }
        if a.fanout > 0 {
            let delete = exchange::Delete { exchange: a.exchange().into(), if_unused: false, nowait: false };
            setup.call(AMQPClass::Exchange(exchange::AMQPMethod::Delete(delete))).await;
        }
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{}producers={} consumers={} queues={}{} size={}B confirm={} prefetch={} auto_ack={} persistent={} rate={} duration={:.1}s | sent {:.0} msg/s, received {:.0} msg/s{}, backlog peak {} end {} | latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}",
        if a.label.is_empty() { String::new() } else { format!("[{}] ", a.label) },
        a.producers,
        a.consumers,
        a.queue_names().len(),
        if a.fanout > 0 { " (fanout)" } else { "" },
        a.size,
        a.confirm,
        a.prefetch,
        a.auto_ack,
        a.persistent,
        if a.rate > 0 { a.rate.to_string() } else { "max".into() },
        elapsed,
        s as f64 / elapsed,
        r as f64 / elapsed,
        if a.confirm > 0 { format!(", confirmed {:.0} msg/s", cf as f64 / elapsed) } else { String::new() },
        peak,
        (s * copies).saturating_sub(r),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        hist.max() as f64 / 1000.0,
    );
    let times = confirm_times.lock().unwrap();
    let (c, _, gap) = &*times;
    if a.confirm > 0 && !c.is_empty() {
        let q = |x: f64| c.value_at_quantile(x) as f64 / 1000.0;
        println!(
            "{}confirm latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}; longest time between confirms {:.0} ms",
            if a.label.is_empty() { String::new() } else { format!("[{}] ", a.label) },
            q(0.5),
            q(0.95),
            q(0.99),
            c.max() as f64 / 1000.0,
            gap.as_secs_f64() * 1000.0
        );
    }
}
