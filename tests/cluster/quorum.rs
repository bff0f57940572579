//! Quorum queues across the cluster: each one a Raft group with a member on every node (three
//! replicas by default), served by its leader to clients of any node. When the leader's node
//! dies, another member is elected and serves: nothing confirmed is lost, a consumer on a
//! surviving node keeps its subscription (what it held comes again, redelivered), and
//! publishing goes on.

use super::{channel, passive as count, publish_confirmed};
use futures::StreamExt;
use harness::Cluster;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use std::collections::BTreeMap;
use std::time::Duration;

use super::harness;

fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_queue_survives_its_leaders_death_with_its_consumers() {
    let mut c = Cluster::new(3);
    c.start_all();
    // Declared through node 1: it leads first (client-local).
    let (_c0, ch0) = channel(&c, 0).await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch0.queue_declare("orders".into(), durable, quorum()).await.unwrap();

    // Published through node 2, confirmed once a majority of the members has it.
    let (_c1, ch1) = channel(&c, 1).await;
    ch1.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_confirmed(&ch1, "orders", (0..300).map(|i| format!("m-{i}"))).await;
    assert_eq!(count(&c, 2, "orders").await, Ok(300));

    // A consumer on node 3 takes 100 and acks them, then holds a window of 50 unacked.
    let (_c2, ch2) = channel(&c, 2).await;
    ch2.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch2
        .basic_consume("orders".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut held = Vec::new();
    while seen.len() < 150 {
        let d =
            tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.expect("a delivery").unwrap().unwrap();
        let body = String::from_utf8_lossy(&d.data).into_owned();
        *seen.entry(body.clone()).or_default() += 1;
        if seen.len() <= 100 {
            d.ack(BasicAckOptions::default()).await.unwrap();
        } else {
            held.push(d);
        }
    }

    // The leader's node dies. The consumer on node 3 is not cancelled: what it held comes
    // again, redelivered, from the new leader, and the rest follows.
    c.kill(0);
    // Acks of what it held reach the new leader (or the message comes again, redelivered).
    for d in held {
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    publish_confirmed(&ch1, "orders", (300..400).map(|i| format!("m-{i}"))).await;
    while seen.len() < 400 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("deliveries go on after the leader's death")
            .expect("the consumer is not cancelled")
            .unwrap();
        let body = String::from_utf8_lossy(&d.data).into_owned();
        let n = seen.entry(body.clone()).or_default();
        *n += 1;
        assert!(*n == 1 || d.redelivered, "{body} came again without the redelivered flag");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let expected: Vec<String> = (0..400).map(|i| format!("m-{i}")).collect();
    let mut got: Vec<String> = seen.keys().cloned().collect();
    got.sort_by_key(|b| b[2..].parse::<u32>().unwrap());
    assert_eq!(got, expected, "every confirmed message, nothing else");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(&c, 1, "orders").await != Ok(0) {
        assert!(tokio::time::Instant::now() < deadline, "acked messages still counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back with its data: it catches up as a follower; the queue keeps serving.
    c.start(0);
    c.await_up(0).await;
    publish_confirmed(&ch1, "orders", (400..410).map(|i| format!("m-{i}"))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut got = Vec::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
            got.push(String::from_utf8_lossy(&d.data).into_owned());
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        for b in got {
            *seen.entry(b).or_default() += 1;
        }
        if seen.len() == 410 || tokio::time::Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(seen.len(), 410, "the messages published after the restart are delivered");
}
