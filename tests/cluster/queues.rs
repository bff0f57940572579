//! Any node serves any queue: a queue runs on the node it was declared on (its home) and
//! clients of every other node publish to it, consume from it and fetch from it through that
//! node. When the home dies, its remote consumers are cancelled (`basic.cancel`) and callers
//! get 404 "home node … is down or inaccessible"; once it is back, every message that was
//! confirmed and not acked is there again.

use super::{channel, passive, publish_confirmed};
use futures::StreamExt;
use harness::Cluster;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use std::time::Duration;

use super::harness;

/// Waits until a passive declare on node `i` satisfies `ok`.
async fn until(c: &Cluster, i: usize, queue: &str, what: &str, ok: impl Fn(&Result<u32, String>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = passive(c, i, queue).await;
        if ok(&r) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "node {} never saw {what} (last: {r:?})", i + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn consume(ch: &Channel, tag: &str) -> lapin::Consumer {
    ch.basic_consume("jobs".into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap()
}

/// The next delivery, which must be `job-{i}`.
async fn next_job(consumer: &mut lapin::Consumer, i: usize) -> lapin::message::Delivery {
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.expect("delivery").unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&d.data), format!("job-{i}"));
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_is_served_by_every_node_and_its_homes_death_loses_nothing_confirmed() {
    let mut c = Cluster::new(3);
    c.start_all();
    let (_c0, ch0) = channel(&c, 0).await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch0.queue_declare("jobs".into(), durable, FieldTable::default()).await.unwrap();
    until(&c, 2, "jobs", "the queue", |r| r.is_ok()).await;

    // Published through node 2, confirmed by node 1 (the home), counted on node 3.
    let (_c1, ch1) = channel(&c, 1).await;
    ch1.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_confirmed(&ch1, "jobs", (0..200).map(|i| format!("job-{i}"))).await;
    assert_eq!(passive(&c, 2, "jobs").await, Ok(200));

    // Consumed on node 3 in order, with a prefetch window, acked one by one.
    let (_c2, ch2) = channel(&c, 2).await;
    ch2.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch2, "c3").await;
    for i in 0..190 {
        next_job(&mut consumer, i).await.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Closing the channel gives back what it held unacked (the rest of its window).
    ch2.close(200, "bye".into()).await.unwrap();
    until(&c, 0, "jobs", "10 ready", |r| r == &Ok(10)).await;
    // Fetched on node 2, acked there.
    let got = ch1.basic_get("jobs".into(), BasicGetOptions::default()).await.unwrap().expect("a message");
    assert_eq!(String::from_utf8_lossy(&got.delivery.data), "job-190");
    assert!(got.delivery.redelivered);
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    until(&c, 0, "jobs", "9 left", |r| r == &Ok(9)).await;

    // Node 3 holds the 9 unacked when the home is killed: its consumer is cancelled.
    let ch2 = _c2.create_channel().await.unwrap();
    let mut held = consume(&ch2, "held").await;
    for i in 191..200 {
        next_job(&mut held, i).await;
    }
    c.kill(0);
    let end = tokio::time::timeout(Duration::from_secs(10), held.next()).await.expect("the consumer is cancelled");
    assert!(end.is_none(), "expected the consumer to end, got {end:?}");
    let refused = passive(&c, 1, "jobs").await.unwrap_err();
    assert_eq!(
        refused,
        format!("404 NOT_FOUND - home node '{}' of queue 'jobs' in vhost '/' is down or inaccessible", c.nodes[0].name)
    );

    // What an operator sees on node 2: the dead node is not running, the queue is down there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = c.ctl(1, &["--formatter", "json", "cluster_status"]).await;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cluster_status json");
        let nodes = status["nodes"].as_array().expect("nodes").clone();
        assert_eq!(nodes.len(), 3, "{status}");
        let dead = nodes.iter().find(|n| n["name"] == c.nodes[0].name.as_str());
        if dead.is_some_and(|n| n["running"] == false) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 1 still shown running: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = c.ctl(1, &["-s", "list_queues", "name", "node", "state"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("jobs\t{}\tdown\n", c.nodes[0].name));

    // Back: the 9 are there (requeued), redelivered to a consumer on node 2.
    c.start(0);
    c.await_up(0).await;
    until(&c, 1, "jobs", "the 9 back", |r| r == &Ok(9)).await;
    let (_c1b, ch1b) = channel(&c, 1).await;
    let mut again = consume(&ch1b, "c2").await;
    for i in 191..200 {
        let d = next_job(&mut again, i).await;
        assert!(d.redelivered, "job-{i} was delivered before");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Deleted through node 3: gone on every node. (Node 3 first has to find node 1 up again:
    // it asks each peer once a second.)
    until(&c, 2, "jobs", "node 3 reaching the queue's home again", |r| r == &Ok(0)).await;
    let (_c2b, ch2b) = channel(&c, 2).await;
    ch1b.basic_cancel("c2".into(), Default::default()).await.unwrap();
    assert_eq!(ch2b.queue_delete("jobs".into(), QueueDeleteOptions::default()).await.unwrap(), 0);
    until(&c, 0, "jobs", "the queue gone", |r| r.as_ref().is_err_and(|e| e.starts_with("404"))).await;
    // A graceful stop of the home ends the other nodes' streams to it, not waits for them.
    drop((_c0, _c1, _c1b, _c2, _c2b));
    c.terminate(0, Duration::from_secs(10));
}
