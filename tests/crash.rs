//! Crash safety: publish with confirms (and consume with acks) while the broker is killed with
//! SIGKILL at random moments, 20 times; then prove that every confirmed message was delivered
//! at least once, that nothing was delivered that was never published, and that every repeat
//! delivery carries `redelivered`. The real binary runs in a child process.

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: usize = 20;
const QUEUE: &str = "crash";

/// A port free now, below Linux's ephemeral range (32768 and up), so no outgoing connection
/// takes it while the broker is down between restarts.
fn free_addr() -> SocketAddr {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap();
        }
    }
}

/// A broker process that is killed (SIGKILL) and reaped when dropped, so a failing test
/// never leaves one behind.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(dir: &std::path::Path, addr: SocketAddr, log: &std::path::Path) -> Proc {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["server", "--amqp-addr", &addr.to_string(), "--data-dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start warren");
    Proc(child)
}

#[derive(Default)]
struct Ledger {
    published: BTreeSet<String>,
    confirmed: BTreeSet<String>,
    /// Every delivery seen, in order: (body, redelivered).
    delivered: Vec<(String, bool)>,
}

async fn connect(addr: SocketAddr) -> Connection {
    warren::ctl::await_startup(addr, Duration::from_secs(30)).await.expect("node up");
    Connection::connect(&format!("amqp://guest:guest@{addr}/%2f"), ConnectionProperties::default())
        .await
        .expect("connect")
}

/// Publishes until the connection dies; records what was sent and what was confirmed.
async fn publisher(conn: Connection, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let Ok(ch) = conn.create_channel().await else { return };
    if ch.confirm_select(ConfirmSelectOptions::default()).await.is_err() {
        return;
    }
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = std::collections::VecDeque::new();
    for i in 0.. {
        let body = format!("r{round}-{i}");
        ledger.lock().unwrap().published.insert(body.clone());
        let Ok(confirm) = ch
            .basic_publish("".into(), QUEUE.into(), BasicPublishOptions::default(), body.as_bytes(), props.clone())
            .await
        else {
            return;
        };
        pending.push_back((body, confirm));
        while pending.len() > 64 {
            let (body, c) = pending.pop_front().unwrap();
            match c.await {
                Ok(c) if c.is_ack() => {
                    ledger.lock().unwrap().confirmed.insert(body);
                }
                _ => return,
            }
        }
    }
}

/// Consumes with manual acks until the connection dies; records every delivery.
async fn consumer(conn: Connection, ledger: Arc<Mutex<Ledger>>) {
    let Ok(ch) = conn.create_channel().await else { return };
    let _ = ch.basic_qos(50, BasicQosOptions::default()).await;
    let Ok(mut c) =
        ch.basic_consume(QUEUE.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await
    else {
        return;
    };
    while let Some(Ok(d)) = c.next().await {
        ledger.lock().unwrap().delivered.push((String::from_utf8_lossy(&d.data).into_owned(), d.redelivered));
        if d.ack(BasicAckOptions::default()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmed_messages_survive_repeated_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broker.log");
    let data = dir.path().join("data");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..ROUNDS {
        let addr = free_addr();
        let mut child = start(&data, addr, &log);
        let setup = connect(addr).await;
        let ch = setup.create_channel().await.unwrap();
        ch.queue_declare(
            QUEUE.into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
        let p = tokio::spawn(publisher(connect(addr).await, round, ledger.clone()));
        let c = tokio::spawn(consumer(connect(addr).await, ledger.clone()));
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        child.kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), p).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    // Drain what is left.
    let addr = free_addr();
    let mut child = start(&data, addr, &log);
    let conn = connect(addr).await;
    let ch = conn.create_channel().await.unwrap();
    while let Some(m) = ch.basic_get(QUEUE.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        ledger
            .lock()
            .unwrap()
            .delivered
            .push((String::from_utf8_lossy(&m.delivery.data).into_owned(), m.delivery.redelivered));
    }
    child.kill();

    let l = ledger.lock().unwrap();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unflagged_repeats = Vec::new();
    for (body, redelivered) in &l.delivered {
        let n = seen.entry(body.as_str()).or_insert(0);
        *n += 1;
        if *n > 1 && !redelivered {
            unflagged_repeats.push(body.clone());
        }
    }
    let lost: Vec<&String> = l.confirmed.iter().filter(|b| !seen.contains_key(b.as_str())).collect();
    let invented: Vec<&&str> = seen.keys().filter(|b| !l.published.contains(**b)).collect();
    let duplicates = seen.values().filter(|n| **n > 1).count();
    eprintln!(
        "{ROUNDS} kills: published {}, confirmed {}, deliveries {}, distinct delivered {}, delivered more than once {}",
        l.published.len(),
        l.confirmed.len(),
        l.delivered.len(),
        seen.len(),
        duplicates
    );
    assert!(l.confirmed.len() > 100, "the test must confirm a meaningful number of messages");
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert!(invented.is_empty(), "delivered but never published: {invented:?}");
    assert!(
        unflagged_repeats.is_empty(),
        "repeat deliveries without redelivered: {:?}",
        &unflagged_repeats[..unflagged_repeats.len().min(5)]
    );
}
