//! Members come and go: a node whose disk is lost comes back empty and takes the dead one's
//! place (a new id, its replicas caught up, then a full voter: the cluster survives losing
//! another node afterwards); `forget_cluster_node` removes a member that is down for good;
//! a node started a minute after the others joins the cluster they formed.

use super::delayed::{declare_later_and_due, delay};
use super::harness::Cluster;
use super::{channel, declare, exists, passive, publish_confirmed, publish_to};
use futures::StreamExt;
use lapin::ExchangeKind;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    t
}

async fn declare_quorum(c: &Cluster, i: usize, name: &str) {
    let (_conn, ch) = channel(c, i).await;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(name.into(), durable, quorum()).await.unwrap();
}

/// Publishes `range` as `m-<n>` through node `i`, every one confirmed.
async fn publish(c: &Cluster, i: usize, queue: &str, range: std::ops::Range<u32>) {
    let (_conn, ch) = channel(c, i).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_confirmed(&ch, queue, range.map(|n| format!("m-{n}"))).await;
}

/// Consumes through node `i` until `want` distinct bodies came; acks them all.
async fn consume(c: &Cluster, i: usize, queue: &str, want: usize) -> BTreeSet<String> {
    let (_conn, ch) = channel(c, i).await;
    let mut consumer =
        ch.basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < want {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} came from {queue}", seen.len()))
            .expect("consumer cancelled")
            .unwrap();
        seen.insert(String::from_utf8_lossy(&d.data).into_owned());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    seen
}

async fn json(c: &Cluster, i: usize, path: &str) -> Value {
    let (status, body) = c.http_get(i, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (up to 60 s) until `ok` holds of node `i`'s answer to `path`.
async fn until(c: &Cluster, i: usize, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = json(c, i, path).await;
        if ok(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn names(v: &Value, field: &str) -> BTreeSet<String> {
    v[field].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)).collect()
}

/// The node names `/api/nodes` lists as running.
fn running(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["running"] != Value::Bool(false))
        .filter_map(|n| n["name"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (up to 60 s) until some node's log has a line with every one of `parts` whose
/// `members=[..]` list is `members` (in any order).
async fn until_logged(c: &Cluster, parts: &[&str], members: &BTreeSet<u64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = (0..c.nodes.len()).any(|i| {
            c.log(i).lines().any(|l| parts.iter().all(|p| l.contains(p)) && logged_members(l).as_ref() == Some(members))
        });
        if found {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no node logged {parts:?} with members {members:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ids in a log line's `members=[a, b, c]`.
fn logged_members(line: &str) -> Option<BTreeSet<u64>> {
    let rest = &line[line.find("members=[")? + "members=[".len()..];
    let list = &rest[..rest.find(']')?];
    list.split(',').map(|n| n.trim().parse().ok()).collect()
}

/// The node id node `i` logged first on a line containing one of `what` (`node_id=N`).
fn logged_id(c: &Cluster, i: usize, what: &[&str]) -> u64 {
    let log = c.log(i);
    let line = log.lines().find(|l| what.iter().any(|w| l.contains(w)));
    let line = line.unwrap_or_else(|| panic!("node {i} never logged {what:?}"));
    let rest = &line[line.find("node_id=").expect("no node_id") + "node_id=".len()..];
    rest.split(|ch: char| !ch.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_an_empty_data_directory_takes_a_dead_ones_place() {
    let mut c = Cluster::new(3);
    c.start_all();
    declare_quorum(&c, 0, "kept").await;
    publish(&c, 0, "kept", 0..200).await;
    // A durable delayed exchange: its store is a group over the three nodes too.
    declare_later_and_due(&channel(&c, 0).await.1).await;

    // (A node slower than the two others to start joins the cluster they founded.)
    let ids: Vec<u64> = (0..3).map(|i| logged_id(&c, i, &["founding the cluster", "joined the cluster"])).collect();
    // Node 3 dies and its disk is lost; it comes back empty under the same name and address.
    c.kill(2);
    std::fs::remove_dir_all(&c.nodes[2].data).unwrap();
    c.start(2);
    c.await_up(2).await;
    let all = set(&["warren@n1", "warren@n2", "warren@n3"]);
    until(&c, 0, "/api/nodes", "three running nodes", |v| running(v) == all && v.as_array().unwrap().len() == 3).await;
    // The queue has its three replicas again, the new node's caught up and online.
    let q = until(&c, 0, "/api/queues/%2F/kept", "the new node a member of the queue", |v| {
        names(v, "members") == all && names(v, "online") == all
    })
    .await;
    assert_eq!(q["messages"], 200, "{q:#}");
    // The new node has a new id (4: ids are never reused) and votes in the metadata group
    // and in the queue's, in the dead one's place.
    let new = logged_id(&c, 2, &["joined the cluster"]);
    assert!(new > 3 && !ids.contains(&new), "node 3 came back as {new}, the nodes were {ids:?}");
    let members: BTreeSet<u64> = [ids[0], ids[1], new].into();
    until_logged(&c, &["the metadata group's members changed"], &members).await;
    until_logged(&c, &["the group has its members", "'kept'"], &members).await;
    until_logged(&c, &["the group has its members", "'later'"], &members).await;

    // The new node is a full member: with node 1 down, node 2 and it are the majority of
    // the metadata and of the queue; what they confirm meanwhile is on both.
    c.kill(0);
    let (_c1, ch1) = channel(&c, 1).await;
    declare(&ch1, "made-without-node-1", ExchangeKind::Direct).await.unwrap();
    publish(&c, 1, "kept", 200..300).await;
    // Held through node 2, each confirmed once the delayed store's majority (node 2 and the
    // new node) has it; released when due by whichever members are left then (node 2 is
    // usually gone by then).
    ch1.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish_to(&ch1, "later", "k", delay(8000), (0..10).map(|n| format!("held-{n}"))).await;
    // Node 1 comes back and node 2 goes: node 1 and the new node are the majority, and the
    // messages only node 2 and the new node had are all there.
    c.start(0);
    c.await_up(0).await;
    c.kill(1);
    assert!(exists(&c, 2, "made-without-node-1").await);
    let seen = consume(&c, 2, "kept", 300).await;
    assert_eq!(seen.len(), 300);
    let held = consume(&c, 2, "due", 10).await;
    assert_eq!(held, (0..10).map(|n| format!("held-{n}")).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn forget_cluster_node_removes_a_member_down_for_good() {
    let mut c = Cluster::new(3);
    c.start_all();
    declare_quorum(&c, 0, "q").await;
    publish(&c, 0, "q", 0..50).await;

    // A running node is not forgotten.
    let out = c.ctl(0, &["forget_cluster_node", "warren@n3"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is running"), "{err}");

    c.kill(2);
    until(&c, 0, "/api/nodes", "node 3 seen down", |v| running(v) == set(&["warren@n1", "warren@n2"])).await;
    let out = c.ctl(0, &["forget_cluster_node", "warren@n3"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removing node warren@n3 from the cluster"));

    // Gone from the listings and from the queue's members; the two others go on.
    let two = set(&["warren@n1", "warren@n2"]);
    until(&c, 1, "/api/nodes", "two nodes listed", |v| v.as_array().unwrap().len() == 2 && running(v) == two).await;
    until(&c, 1, "/api/queues/%2F/q", "node 3 gone from the queue", |v| names(v, "members") == two).await;
    let out = c.ctl(1, &["cluster_status"]).await;
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(!status.contains("warren@n3"), "{status}");
    publish(&c, 1, "q", 50..80).await;
    assert_eq!(passive(&c, 0, "q").await, Ok(80));
    // Forgetting it again: it is unknown now.
    let out = c.ctl(0, &["forget_cluster_node", "warren@n3"]).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no cluster node"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Started again with its old data, node 3 hears it was forgotten and refuses to start
    // (it would only wait for a majority that no longer counts it).
    c.start(2);
    let status = c.exit_status(2, Duration::from_secs(20)).expect("node 3 refuses to start");
    assert!(!status.success());
    let log = c.log(2);
    assert!(log.contains("was removed from the cluster with forget_cluster_node"), "{log}");
    assert_eq!(passive(&c, 1, "q").await, Ok(80), "the others go on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_a_minute_late_joins_the_cluster() {
    let mut c = Cluster::new(3);
    let began = tokio::time::Instant::now();
    c.start(0);
    c.start(1);
    c.await_up(0).await;
    c.await_up(1).await;
    let founders: Vec<u64> = (0..2).map(|i| logged_id(&c, i, &["founding the cluster"])).collect();
    let (_c0, ch0) = channel(&c, 0).await;
    declare(&ch0, "early", ExchangeKind::Topic).await.unwrap();
    declare_quorum(&c, 1, "before").await;
    publish(&c, 0, "before", 0..100).await;
    tokio::time::sleep_until(began + Duration::from_secs(60)).await;

    c.start(2);
    c.await_up(2).await;
    assert!(exists(&c, 2, "early").await, "the late node lacks what was made before it came");
    let all = set(&["warren@n1", "warren@n2", "warren@n3"]);
    until(&c, 2, "/api/nodes", "three running nodes", |v| running(v) == all).await;
    // A voter (id 4, in the place of the founder's id it never used): with node 1 down, it
    // and node 2 are a majority.
    assert_eq!(logged_id(&c, 2, &["joined the cluster"]), 4);
    let members: BTreeSet<u64> = [founders[0], founders[1], 4].into();
    until_logged(&c, &["the metadata group's members changed"], &members).await;
    c.kill(0);
    let (_c2, ch2) = channel(&c, 2).await;
    declare(&ch2, "late", ExchangeKind::Direct).await.unwrap();
    assert_eq!(passive(&c, 2, "before").await, Ok(100));
}
