//! Partitions (`netproxy.rs`): a node cut off from the others confirms nothing while the
//! majority goes on, and what it took alone never appears; a member cut off while its
//! log is purged catches up through a snapshot that brings the live messages' bodies, and can
//! then lead the queue with nothing missing.

use super::{channel, passive, publish_confirmed};
use futures::StreamExt;
use harness::Cluster;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::collections::BTreeSet;
use std::time::Duration;

use super::harness;

fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    t
}

async fn declare(ch: &Channel, q: &str) {
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(q.into(), durable, quorum()).await.unwrap();
}

/// Publishes persistent with confirms, again and again for those nacked, until every one is
/// confirmed (bounded).
async fn publish_until_confirmed(ch: &Channel, queue: &str, mut bodies: Vec<String>) {
    let props = BasicProperties::default().with_delivery_mode(2);
    for _ in 0..10 {
        let mut pending = Vec::new();
        for b in bodies {
            let opts = BasicPublishOptions::default();
            let c = ch.basic_publish("".into(), queue.into(), opts, b.as_bytes(), props.clone()).await.unwrap();
            pending.push((b, c));
        }
        bodies = Vec::new();
        for (b, c) in pending {
            if !c.await.unwrap().is_ack() {
                bodies.push(b);
            }
        }
        if bodies.is_empty() {
            return;
        }
    }
    panic!("{} publishes never confirmed", bodies.len());
}

/// Consumes `n` messages from `queue` on `ch`, acking each; their bodies.
async fn take(ch: &Channel, queue: &str, n: usize, within: Duration) -> Vec<Vec<u8>> {
    let mut c = ch
        .basic_consume(queue.into(), "take".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(d) = tokio::time::timeout(left, c.next()).await else {
            let got: Vec<String> =
                out.iter().map(|b: &Vec<u8>| String::from_utf8_lossy(&b[..b.len().min(8)]).into_owned()).collect();
            panic!("{} of {n} deliveries in time; got {got:?}", out.len());
        };
        let d = d.unwrap().unwrap();
        out.push(d.data.clone());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    ch.basic_cancel("take".into(), Default::default()).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_confirms_nothing_and_the_majority_goes_on() {
    let mut c = Cluster::partitionable(3);
    c.start_all();
    let (_c0, ch0) = channel(&c, 0).await;
    declare(&ch0, "split").await;
    let (_c1, ch1) = channel(&c, 1).await;
    ch1.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_confirmed(&ch1, "split", (0..100).map(|i| format!("p-{i}"))).await;

    // The leader (node 1 mostly: it was declared there) cut off, it can confirm nothing.
    let leader = super::chaos::leader_of(&c, &[true, true, true], "split").await.expect("a leader");
    let (_cl, chl) = channel(&c, leader).await;
    let (_co, cho) = channel(&c, (leader + 1) % 3).await;
    let (_cc, chc) = channel(&c, (leader + 2) % 3).await;
    c.net.as_ref().unwrap().isolate(leader, 3);
    chl.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut alone = Vec::new();
    for i in 0..20 {
        let body = format!("i-{i}");
        let opts = BasicPublishOptions::default();
        let confirm = chl.basic_publish("".into(), "split".into(), opts, body.as_bytes(), props.clone()).await;
        alone.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(12), confirm.ok()?).await.ok()?.ok().map(|c| c.is_ack())
        }));
    }
    // The cut-off node says it is not ready for clients (HAProxy takes it out); the others
    // are, and each is now critical to the queue's majority.
    let ready = "/api/health/checks/ready-to-serve-clients";
    let critical = "/api/health/checks/node-is-quorum-critical";
    let other = (leader + 1) % 3;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.http_get(leader, ready).await.0 != 503 || c.http_get(other, critical).await.0 != 503 {
        assert!(tokio::time::Instant::now() < deadline, "health checks do not see the partition");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The majority is ready once it has a metadata leader of its own (if the cut-off node
    // led the metadata too, the two others elect one first: a second or two, more on a busy
    // machine).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = c.http_get(other, ready).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the majority never became ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c.http_get(other, critical).await.1.contains("queue 'split' in vhost '/'"));

    // The majority elects a leader of its own and takes publishes meanwhile (those that were
    // in flight to the old leader are nacked, and sent again).
    cho.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_until_confirmed(&cho, "split", (0..100).map(|i| format!("q-{i}")).collect()).await;
    for (i, a) in alone.into_iter().enumerate() {
        assert_ne!(a.await.unwrap(), Some(true), "i-{i} confirmed by a leader cut off from the majority");
    }

    // Healed: everything confirmed is there, and nothing the cut-off node took alone; the
    // node is ready again and no node is critical any more.
    c.net.as_ref().unwrap().heal();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.http_get(leader, ready).await.0 != 200 || c.http_get(other, critical).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "health checks do not see the heal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = take(&chc, "split", 200, Duration::from_secs(30)).await;
    let got: BTreeSet<String> = got.into_iter().map(|b| String::from_utf8(b).unwrap()).collect();
    let want: BTreeSet<String> = (0..100).flat_map(|i| [format!("p-{i}"), format!("q-{i}")]).collect();
    assert_eq!(got, want);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(passive(&c, 0, "split").await, Ok(0), "nothing else in the queue");
}

/// A 64 KiB body that says which message it is all through.
fn big(i: usize) -> Vec<u8> {
    format!("n-{i:04}|").into_bytes().into_iter().cycle().take(64 << 10).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_cut_off_while_its_log_is_purged_catches_up_through_a_snapshot() {
    let mut c = Cluster::partitionable(3);
    c.start_all();
    // Declared through node 3: it is the preferred leader, first to stand when its leader
    // goes.
    let (_c2, ch2) = channel(&c, 2).await;
    declare(&ch2, "catchup").await;
    let (_c1, ch1) = channel(&c, 1).await;
    ch1.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_confirmed(&ch1, "catchup", (0..1500).map(|i| format!("old-{i}"))).await;

    // Node 3 cut off; the others take the old messages out and 100 new ones in (6.4 MB), and
    // once idle snapshot the queue and purge the log up to its oldest live message (purges
    // go 1024 entries at a time): past everything node 3 has.
    c.net.as_ref().unwrap().isolate(2, 3);
    let (_c0, ch0) = channel(&c, 0).await;
    assert_eq!(take(&ch0, "catchup", 1500, Duration::from_secs(60)).await.len(), 1500);
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = Vec::new();
    for i in 0..100 {
        let body = big(i);
        let opts = BasicPublishOptions::default();
        pending.push(ch1.basic_publish("".into(), "catchup".into(), opts, &body, props.clone()).await.unwrap());
    }
    for p in pending {
        assert!(p.await.unwrap().is_ack());
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Healed, it is sent a snapshot (in chunks) with the new messages' bodies. Then it has to
    // lead, from what it got.
    c.net.as_ref().unwrap().heal();
    tokio::time::sleep(Duration::from_secs(3)).await;
    publish_confirmed(&ch1, "catchup", std::iter::once("marker".to_string())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Which live member stands first depends on who notices the death first: kill whoever
    // leads (bringing the one killed before back) until node 3 does.
    let mut killed: Option<usize> = None;
    for _ in 0..8 {
        let alive: Vec<bool> = (0..3).map(|i| Some(i) != killed).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let leader = loop {
            if let Some(l) = super::chaos::leader_of(&c, &alive, "catchup").await.filter(|&l| alive[l]) {
                break l;
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if leader == 2 {
            break;
        }
        if let Some(k) = killed.take() {
            c.start(k);
            c.await_up(k).await;
        }
        c.kill(leader);
        killed = Some(leader);
    }
    let alive: Vec<bool> = (0..3).map(|i| Some(i) != killed).collect();
    assert_eq!(super::chaos::leader_of(&c, &alive, "catchup").await, Some(2), "node 3 never took the lead");
    let got = take(&ch2, "catchup", 101, Duration::from_secs(30)).await;
    for (i, body) in got.iter().take(100).enumerate() {
        assert!(body == &big(i), "message {i} came back wrong ({} bytes)", body.len());
    }
    assert_eq!(got[100], b"marker");
}
