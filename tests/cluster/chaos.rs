//! Failover under load, checked: a publisher (confirms) and a consumer (manual acks) work a
//! quorum queue through the cluster's nodes while its leader, and sometimes a follower, is
//! killed with SIGKILL and started again, ten times; or while its leader is paused with
//! SIGSTOP for ten seconds and resumed. The clients move to another node when
//! theirs dies. At the end everything confirmed must have been delivered, nothing delivered
//! that was never published, and no message delivered twice without `redelivered`
//! (`checker.rs`); a consumer on a node that stayed up is never cancelled. The longest time
//! without a confirm after a fault is printed.

use super::checker::{History, check, longest_gap_after};
use super::{harness, passive};
use futures::StreamExt;
use harness::Cluster;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const QUEUE: &str = "chaos";
/// Publishes awaiting their confirm at most.
const WINDOW: usize = 64;
/// Faults per run.
const FAULTS: usize = 10;
/// How long a publisher waits for a confirm (as the RabbitMQ team's Jepsen test,
/// `waitForConfirms(5000)`): then the publish is indeterminate and it moves on.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(5);

/// What the clients share with the test.
struct Shared {
    addrs: Vec<SocketAddr>,
    /// Whether each node is up, as the test made it.
    alive: Vec<AtomicBool>,
    history: Mutex<History>,
    /// Publishers stop; then, once all is drained, consumers.
    stop_publishing: AtomicBool,
    stop_consuming: AtomicBool,
    /// Times a consumer was cancelled while its node was up.
    cancelled_while_alive: AtomicUsize,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut History)) {
        f(&mut self.history.lock().unwrap());
    }
}

async fn connect(addr: SocketAddr) -> Option<Connection> {
    let uri = format!("amqp://guest:guest@{addr}/%2f");
    tokio::time::timeout(Duration::from_secs(3), Connection::connect(&uri, ConnectionProperties::default()))
        .await
        .ok()?
        .ok()
}

/// Publishes increasing integers with confirms, about two thousand a second, moving to the
/// next node whenever its connection fails. A publish whose confirm does not come is
/// indeterminate (never published again).
async fn publisher(sh: Arc<Shared>, mut node: usize) {
    let mut next: u64 = 0;
    let props = BasicProperties::default().with_delivery_mode(2);
    while !sh.stop_publishing.load(Ordering::Relaxed) {
        let Some(conn) = connect(sh.addrs[node]).await else {
            node = (node + 1) % sh.addrs.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let setup = async {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await.map(|_| ch)
        };
        let Ok(Ok(ch)) = tokio::time::timeout(Duration::from_secs(5), setup).await else {
            node = (node + 1) % sh.addrs.len();
            continue;
        };
        let mut pending = VecDeque::new();
        let mut broken = false;
        while !broken && !sh.stop_publishing.load(Ordering::Relaxed) {
            next += 1;
            let v = next;
            sh.record(|h| {
                h.attempted.insert(v);
            });
            let body = v.to_string();
            let sent = ch
                .basic_publish("".into(), QUEUE.into(), BasicPublishOptions::default(), body.as_bytes(), props.clone())
                .await;
            match sent {
                Ok(c) => pending.push_back((v, c)),
                Err(_) => {
                    sh.record(|h| {
                        h.indeterminate.insert(v);
                    });
                    broken = true;
                }
            }
            while pending.len() >= WINDOW || (broken && !pending.is_empty()) {
                let (v, c) = pending.pop_front().unwrap();
                // Once the channel failed, what is still pending gets no more patience.
                let patience = if broken { Duration::ZERO } else { CONFIRM_PATIENCE };
                broken |= !settle(&sh, v, c, patience).await;
            }
            if v % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        while let Some((v, c)) = pending.pop_front() {
            let patience = if broken { Duration::ZERO } else { CONFIRM_PATIENCE };
            broken |= !settle(&sh, v, c, patience).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye".into())).await;
        node = (node + 1) % sh.addrs.len();
    }
}

/// Waits (up to `patience`) for one confirm; false if the channel failed or it did not come.
async fn settle(sh: &Shared, v: u64, c: lapin::PublisherConfirm, patience: Duration) -> bool {
    let mut c = std::pin::pin!(c);
    let outcome = match futures::FutureExt::now_or_never(c.as_mut()) {
        Some(r) => Ok(r),
        None => tokio::time::timeout(patience, c).await,
    };
    match outcome {
        Ok(Ok(conf)) if conf.is_ack() => {
            let now = Instant::now();
            sh.record(|h| {
                h.confirmed.insert(v);
                h.confirm_times.push(now);
            });
            true
        }
        Ok(Ok(_)) => {
            sh.record(|h| {
                h.indeterminate.insert(v);
            });
            true
        }
        _ => {
            sh.record(|h| {
                h.indeterminate.insert(v);
            });
            false
        }
    }
}

/// Consumes with manual acks (prefetch 100), moving to the next node when its connection
/// fails; notes a cancellation while its node is up.
async fn consumer(sh: Arc<Shared>, mut node: usize) {
    while !sh.stop_consuming.load(Ordering::Relaxed) {
        let Some(conn) = connect(sh.addrs[node]).await else {
            node = (node + 1) % sh.addrs.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // A node that is paused answers nothing: every step is bounded.
        let subscribe = async {
            let ch = conn.create_channel().await?;
            ch.basic_qos(100, BasicQosOptions::default()).await?;
            let opts = BasicConsumeOptions::default();
            ch.basic_consume(QUEUE.into(), "chaos".into(), opts, FieldTable::default()).await
        };
        let Ok(Ok(mut deliveries)) = tokio::time::timeout(Duration::from_secs(5), subscribe).await else {
            eprintln!("consumer: consume on node {} failed", node + 1);
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye".into())).await;
            node = (node + 1) % sh.addrs.len();
            continue;
        };
        eprintln!("consumer: consuming on node {}", node + 1);
        let mut last = Instant::now();
        while !sh.stop_consuming.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(500), deliveries.next()).await {
                Err(_) => {
                    if last.elapsed() > Duration::from_secs(10) {
                        eprintln!("consumer: nothing on node {} for 10 s", node + 1);
                        last = Instant::now();
                    }
                    continue;
                }
                Ok(Some(Ok(d))) => {
                    last = Instant::now();
                    let v: u64 = String::from_utf8_lossy(&d.data).parse().expect("a published integer");
                    sh.record(|h| h.delivered.push((v, d.redelivered)));
                    // Bounded too: lapin's ack on a connection its node's death left half-open
                    // was seen to wait forever.
                    let ack = tokio::time::timeout(Duration::from_secs(3), d.ack(BasicAckOptions::default()));
                    if !matches!(ack.await, Ok(Ok(_))) {
                        break;
                    }
                }
                Ok(Some(Err(_))) => break,
                Ok(None) => {
                    if sh.alive[node].load(Ordering::Relaxed) && conn.status().connected() {
                        sh.cancelled_while_alive.fetch_add(1, Ordering::Relaxed);
                        eprintln!("consumer on node {} cancelled while its node was up", node + 1);
                    }
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye".into())).await;
        node = (node + 1) % sh.addrs.len();
    }
}

/// The index of the node leading the chaos queue, as a live node's management API tells it.
pub async fn leader(c: &Cluster, alive: &[bool]) -> Option<usize> {
    leader_of(c, alive, QUEUE).await
}

/// The index of the node leading `queue`, as a live node's management API tells it.
pub async fn leader_of(c: &Cluster, alive: &[bool], queue: &str) -> Option<usize> {
    for i in (0..c.nodes.len()).filter(|&i| alive[i]) {
        let out = c.ctl(i, &["-q", "list_queues", "name", "leader"]).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines() {
            let mut cols = line.split('\t');
            if cols.next() == Some(queue) {
                let name = cols.next().unwrap_or_default();
                if let Some(i) = c.nodes.iter().position(|n| n.name == name) {
                    return Some(i);
                }
            }
        }
    }
    None
}

/// A quorum queue with a publisher and a consumer at work on it, through the nodes.
pub struct Workload {
    sh: Arc<Shared>,
    publisher: tokio::task::JoinHandle<()>,
    consumer: tokio::task::JoinHandle<()>,
    pub faults: Vec<Instant>,
}

impl Workload {
    /// Declares the queue through node 1 and starts the clients (publishing through node 2,
    /// consuming through node 3, each moving on when its node fails it).
    pub async fn start(c: &Cluster) -> Self {
        let (_c0, ch0) = super::channel(c, 0).await;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        ch0.queue_declare(QUEUE.into(), durable, args).await.unwrap();
        drop((_c0, ch0));
        for i in 0..c.nodes.len() {
            c.await_up(i).await;
        }
        let sh = Arc::new(Shared {
            addrs: c.nodes.iter().map(|n| n.amqp).collect(),
            alive: c.nodes.iter().map(|_| AtomicBool::new(true)).collect(),
            history: Mutex::default(),
            stop_publishing: AtomicBool::new(false),
            stop_consuming: AtomicBool::new(false),
            cancelled_while_alive: AtomicUsize::new(0),
        });
        let publisher = tokio::spawn(publisher(sh.clone(), 1));
        let consumer = tokio::spawn(consumer(sh.clone(), 2));
        Self { sh, publisher, consumer, faults: Vec::new() }
    }

    /// Notes that node `i` is down (or up again), as the clients should know it.
    pub fn set_alive(&self, i: usize, up: bool) {
        self.sh.alive[i].store(up, Ordering::Relaxed);
    }

    pub fn alive(&self) -> Vec<bool> {
        self.sh.alive.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    }

    /// Stops publishing, drains the queue, stops consuming, and checks the history.
    pub async fn finish(self, c: &Cluster) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sh = self.sh;
        sh.stop_publishing.store(true, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(30), self.publisher)
            .await
            .expect("the publisher never stopped")
            .unwrap();
        // Everything confirmed comes out; then the queue is empty.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let missing = {
                let h = sh.history.lock().unwrap();
                let got: std::collections::BTreeSet<u64> = h.delivered.iter().map(|(v, _)| *v).collect();
                h.confirmed.iter().filter(|v| !got.contains(v)).count()
            };
            if missing == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while passive(c, 0, QUEUE).await != Ok(0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sh.stop_consuming.store(true, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(30), self.consumer)
            .await
            .expect("the consumer never stopped")
            .unwrap();
        let left = passive(c, 0, QUEUE).await;

        let h = sh.history.lock().unwrap();
        let verdict = check(&h);
        if !verdict.valid() {
            for i in 0..c.nodes.len() {
                let cols = ["list_queues", "name", "leader", "messages_ready", "messages_unacknowledged", "consumers"];
                let out = c.ctl(i, &cols).await;
                eprintln!("node {}: {}", i + 1, String::from_utf8_lossy(&out.stdout));
            }
        }
        let gap = longest_gap_after(&self.faults, &h.confirm_times);
        eprintln!("{verdict}");
        eprintln!("longest time without a confirm after a fault: {} ms", gap.as_millis());
        assert!(verdict.valid(), "{verdict}");
        assert!(verdict.confirmed > 1000, "too little got through: {verdict}");
        assert_eq!(sh.cancelled_while_alive.load(Ordering::Relaxed), 0, "a consumer on a live node was cancelled");
        assert_eq!(left, Ok(0), "messages left in the queue after the drain");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_the_leader_ten_times_under_load_and_lose_nothing_confirmed() {
    let mut c = Cluster::new(3);
    c.start_all();
    let mut w = Workload::start(&c).await;
    for fault in 0..FAULTS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let lead = leader(&c, &w.alive()).await.expect("a leader is shown");
        // Mostly the leader; every third fault a follower.
        let victim = if fault % 3 == 2 { (lead + 1 + fault % 2) % 3 } else { lead };
        eprintln!("fault {}: SIGKILL node {} (leader: node {})", fault + 1, victim + 1, lead + 1);
        w.set_alive(victim, false);
        c.kill(victim);
        w.faults.push(Instant::now());
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.start(victim);
        c.await_up(victim).await;
        w.set_alive(victim, true);
    }
    w.finish(&c).await;
}

/// A leader paused (SIGSTOP) for ten seconds is replaced; resumed, it has been deposed: it
/// must not deliver what its old term decided (the new leader gave those messages back and
/// delivers them again, redelivered) nor lose anything confirmed. Three times.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_resumes_deposed_and_delivers_nothing_of_its_old_term() {
    let mut c = Cluster::new(3);
    c.start_all();
    let mut w = Workload::start(&c).await;
    for fault in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let lead = leader(&c, &w.alive()).await.expect("a leader is shown");
        eprintln!("fault {}: SIGSTOP node {} (the leader) for 10 s", fault + 1, lead + 1);
        w.set_alive(lead, false);
        c.pause(lead);
        w.faults.push(Instant::now());
        tokio::time::sleep(Duration::from_secs(10)).await;
        c.resume(lead);
        c.await_up(lead).await;
        w.set_alive(lead, true);
        // Resumed, it learns of the new term from the new leader's next heartbeat: until then
        // it may still show itself leading (it delivers nothing meanwhile: it is fenced).
        let resumed = Instant::now();
        while leader(&c, &w.alive()).await == Some(lead) {
            assert!(
                resumed.elapsed() < Duration::from_secs(10),
                "the paused node still shown leading 10 s after it resumed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("node {} shown deposed {} ms after it resumed", lead + 1, resumed.elapsed().as_millis());
    }
    w.finish(&c).await;
}
