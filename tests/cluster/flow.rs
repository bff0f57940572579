//! Flow control across nodes: a quorum queue led by node 1 whose consumer falls behind holds a
//! publisher connected to node 2 (the leader's gate is mirrored over the link to node 2's
//! front, `queue/remote`): node 2's API shows that connection in state `flow`, and once the
//! consumer catches up it runs again and every message arrives.

use super::harness::Cluster;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[path = "../common/mod.rs"]
mod common;

const SENT: u32 = 20_000;
const NAME: &str = "remote publisher";

/// Waits until node `i`'s API shows the publisher's connection in state `want`.
async fn until_state(c: &Cluster, i: usize, want: &str) {
    let shows = |status: u16, body: &str| {
        let list: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let publisher = list.as_array().and_then(|l| l.iter().find(|c| c["user_provided_name"] == NAME));
        status == 200 && publisher.is_some_and(|c| c["state"] == want)
    };
    let what = format!("the publisher's connection in state '{want}'");
    c.until_http(i, "/api/connections", &what, Duration::from_secs(30), shows).await;
}

async fn until_metric(c: &Cluster, i: usize, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !c.metrics(i).await.contains(line) {
        assert!(tokio::time::Instant::now() < deadline, "node {} never showed {line:?}", i + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_behind_its_consumers_holds_publishers_on_other_nodes() {
    let mut c = Cluster::new(3);
    c.start_all();
    // Declared through node 1, which leads it.
    let conn = c.connect(0).await;
    let ch = conn.create_channel().await.unwrap();
    let mut args = lapin::types::FieldTable::default();
    args.insert("x-queue-type".into(), lapin::types::AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("flowq".into(), durable, args).await.unwrap();

    // A consumer on node 1 taking a few hundred messages a second until told to go fast.
    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let consumer =
        ch.basic_consume("flowq".into(), "c".into(), BasicConsumeOptions::default(), Default::default()).await.unwrap();
    let acking = common::Acking::start(consumer, SENT);

    // A publisher on node 2 writing as fast as its socket takes it.
    c.await_up(1).await;
    let mut props = FieldTable::default();
    props.insert("connection_name".into(), AMQPValue::LongString(LongString::from(NAME)));
    let mut p = common::Raw::open_with(c.nodes[1].amqp, 0, props).await;
    p.open_channel(1).await;
    let batch = common::publishes_1k("flowq", 500);
    let writer = tokio::spawn(async move {
        for _ in 0..SENT / 500 {
            p.send(&batch).await;
        }
        p
    });
    until_state(&c, 1, "flow").await;
    // The gate opens for a moment each time the backlog halves: looked at until seen.
    until_metric(&c, 1, "\nwarren_connections_flow 1\n").await;
    until_metric(&c, 0, "\nwarren_queues_flow 1\n").await;

    // The consumer catches up: the publisher is let go and everything arrives.
    acking.fast.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(150), acking.task).await.expect("everything consumed in time").unwrap();
    assert_eq!(acking.received.load(Ordering::Relaxed), SENT);
    let _p =
        tokio::time::timeout(Duration::from_secs(10), writer).await.expect("the publisher wrote everything").unwrap();
    until_state(&c, 1, "running").await;
}
