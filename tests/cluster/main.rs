//! Three real `warren` processes on loopback form one cluster (`--peers`): the metadata is
//! one Raft group across them (gRPC between the nodes, the shared secret on every call).
//! What a user sees: an exchange, a user or a permission made through any node is there on
//! every node; a node killed with SIGKILL misses nothing made while it was down; whatever the
//! start order and timing, the nodes form one cluster, never two.

mod alarms;
mod chaos;
mod checker;
mod delayed;
mod flow;
mod harness;
mod leadership;
mod membership;
mod netproxy;
mod partition;
mod queues;
mod quorum;
mod replicas;

use harness::Cluster;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Duration;

async fn channel(c: &Cluster, i: usize) -> (lapin::Connection, Channel) {
    let conn = c.connect(i).await;
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn declare(ch: &Channel, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
    let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(name.into(), kind, opts, FieldTable::default()).await
}

/// Whether node `i` knows the exchange (a passive declare, on a channel of its own).
async fn exists(c: &Cluster, i: usize, name: &str) -> bool {
    let (conn, ch) = channel(c, i).await;
    let opts = ExchangeDeclareOptions { passive: true, ..Default::default() };
    let found = ch.exchange_declare(name.into(), ExchangeKind::Direct, opts, FieldTable::default()).await.is_ok();
    let _ = conn.close(200, "bye".into()).await;
    found
}

/// A passive declare on node `i`: its message count, or the refusal's code and text.
pub async fn passive(c: &Cluster, i: usize, queue: &str) -> Result<u32, String> {
    let (conn, ch) = channel(c, i).await;
    let opts = QueueDeclareOptions { passive: true, ..Default::default() };
    let r = ch.queue_declare(queue.into(), opts, FieldTable::default()).await;
    let _ = conn.close(200, "bye".into()).await;
    r.map(|q| q.message_count()).map_err(|e| reply_text(&e))
}

/// Publishes `bodies` persistent with confirms; every one must be acked.
pub async fn publish_confirmed(ch: &Channel, queue: &str, bodies: impl Iterator<Item = String>) {
    publish_to(ch, "", queue, BasicProperties::default(), bodies).await;
}

/// Publishes `bodies` persistent (with `props`) to `exchange` with `key` on a channel in
/// confirm mode; every one must be acked.
pub async fn publish_to(
    ch: &Channel,
    exchange: &str,
    key: &str,
    props: BasicProperties,
    bodies: impl Iterator<Item = String>,
) {
    let props = props.with_delivery_mode(2);
    let mut pending = Vec::new();
    for b in bodies {
        let c = ch
            .basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), b.as_bytes(), props.clone())
            .await
            .unwrap();
        pending.push(c);
    }
    for c in pending {
        assert!(c.await.unwrap().is_ack(), "a publish to '{exchange}' with key '{key}' was nacked");
    }
}

fn reply_text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => format!("{} {}", p.get_id(), p.get_message()),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_made_on_any_node_is_on_every_node() {
    let mut c = Cluster::new(3);
    c.start_all();
    let (_c0, ch0) = channel(&c, 0).await;
    declare(&ch0, "orders", ExchangeKind::Topic).await.unwrap();
    // The declaring node answered after applying it; the others apply it within a heartbeat.
    // A client of another node sees it, with its type: redeclaring it as another type is 406.
    let (_c1, ch1) = channel(&c, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !exists(&c, 1, "orders").await {
        assert!(tokio::time::Instant::now() < deadline, "node 2 never saw the exchange");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = declare(&ch1, "orders", ExchangeKind::Fanout).await.unwrap_err();
    assert_eq!(
        reply_text(&e),
        "406 PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'orders' in vhost '/': received 'fanout' but current is 'topic'"
    );
    // A user made through node 2's management API logs in on node 3.
    let out = c.ctl(1, &["add_user", "alice", "s3cret"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.ctl(1, &["set_permissions", "alice", ".*", ".*", ".*"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        c.await_up(2).await;
        let uri = format!("amqp://alice:s3cret@{}/%2f", c.nodes[2].amqp);
        match lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await {
            Ok(conn) => {
                let ch = conn.create_channel().await.unwrap();
                declare(&ch, "alices", ExchangeKind::Fanout).await.unwrap();
                break;
            }
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "alice cannot log in on node 3: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deleted through node 3: gone on node 1 (node 3 answered after applying the delete;
    // node 1 within a heartbeat).
    let (_c2, ch2) = channel(&c, 2).await;
    ch2.exchange_delete("orders".into(), ExchangeDeleteOptions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while exists(&c, 0, "orders").await {
        assert!(tokio::time::Instant::now() < deadline, "node 1 still has the deleted exchange");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exists(&c, 0, "alices").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_misses_nothing_and_the_others_go_on() {
    let mut c = Cluster::new(3);
    c.start_all();
    for i in 0..3 {
        c.await_up(i).await;
    }
    for victim in 0..3 {
        c.kill(victim);
        // Two of three are a majority: metadata changes go on, through either of them,
        // whether or not the victim led the group (a new leader is elected within seconds).
        let (a, b) = ((victim + 1) % 3, (victim + 2) % 3);
        let (_ca, cha) = channel(&c, a).await;
        let name = format!("while-{victim}-was-down");
        declare(&cha, &name, ExchangeKind::Direct).await.unwrap();
        let (_cb, chb) = channel(&c, b).await;
        declare(&chb, &format!("{name}-too"), ExchangeKind::Direct).await.unwrap();
        // Back with its data directory: it catches up before it serves clients again.
        c.start(victim);
        c.await_up(victim).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for x in [name.clone(), format!("{name}-too")] {
            while !exists(&c, victim, &x).await {
                assert!(tokio::time::Instant::now() < deadline, "node {} missed {x}\n{}", victim + 1, c.log(victim));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn any_start_order_forms_one_cluster() {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..3 {
        let mut c = Cluster::new(3);
        let mut order = vec![0, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for &i in &order {
            c.start(i);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        }
        // Two clusters would show as an exchange made on one node missing on another.
        for i in 0..3 {
            let (_conn, ch) = channel(&c, i).await;
            declare(&ch, &format!("made-on-{i}"), ExchangeKind::Fanout).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for i in 0..3 {
            for j in 0..3 {
                while !exists(&c, i, &format!("made-on-{j}")).await {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "round {round} (order {order:?}, seed {seed}): node {} lacks made-on-{j}",
                        i + 1
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A node waiting at start-up for a majority of its cluster answers health checks at once:
/// 503 with the reason (HAProxy and probes fail fast and say why), then 200 once the others
/// are up and it serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_waiting_for_its_cluster_says_so_on_its_management_port() {
    let mut c = Cluster::new(3);
    c.start(0);
    let ready = "/api/health/checks/ready-to-serve-clients";
    // (Before, the port accepted the connection and never answered: `http_get` gave up.)
    let (status, body) = c.http_get(0, ready).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the node is starting"), "{body}");
    c.start(1);
    c.start(2);
    c.await_up(0).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = c.http_get(0, ready).await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
