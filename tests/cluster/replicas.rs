//! Quorum queue replicas changed by an operator under confirmed load (`rabbitmq-queues
//! add_member`, `delete_member`, `grow`, `shrink`), checked with the total-queue checker:
//! a new member catches up and votes, a removed leader hands over before it goes, and
//! nothing confirmed is lost or repeated without `redelivered`.

use super::chaos::{QUEUE, Workload};
use super::harness::Cluster;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The node the workload's consumer starts on (`Workload::start`).
const CONSUMER_NODE: usize = 2;

/// `quorum_status` rows of the chaos queue through node `via`.
async fn status(c: &Cluster, via: usize) -> Vec<Value> {
    let out = c.ctl(via, &["--formatter", "json", "quorum_status", QUEUE]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Waits (up to 30 s) until the queue's members are exactly `want` (node indexes), every one
/// a voter that applied as far as the leader committed, one of them leading.
async fn await_members(c: &Cluster, via: usize, want: &[usize]) -> Vec<Value> {
    let mut names: Vec<&str> = want.iter().map(|&i| c.nodes[i].name.as_str()).collect();
    names.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = status(c, via).await;
        let mut have: Vec<&str> = rows.iter().filter_map(|r| r["node_name"].as_str()).collect();
        have.sort();
        let leaders = rows.iter().filter(|r| r["raft_state"] == "leader").count();
        let voters = rows.iter().all(|r| r["membership"] == "voter");
        let lead_commit = rows.iter().find(|r| r["raft_state"] == "leader").and_then(|r| r["commit_index"].as_u64());
        let behind = rows.iter().any(|r| r["last_applied"].as_u64().unwrap_or(0) + 10_000 < lead_commit.unwrap_or(0));
        if have == names && leaders == 1 && voters && !behind {
            return rows;
        }
        assert!(Instant::now() < deadline, "members never became {names:?}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn index_of(c: &Cluster, name: &str) -> usize {
    c.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
}

async fn ctl_ok(c: &Cluster, via: usize, args: &[&str]) -> String {
    let out = c.ctl(via, args).await;
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn ctl_err(c: &Cluster, via: usize, args: &[&str]) -> String {
    let out = c.ctl(via, args).await;
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn members_added_and_removed_under_load_lose_nothing() {
    let mut c = Cluster::new(4);
    c.start_all();
    for i in 0..4 {
        c.await_up(i).await;
    }
    let mut w = Workload::start(&c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Three replicas on four nodes: the fourth joins the group and catches up, then votes.
    let rows = status(&c, 0).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let mut members: Vec<usize> = rows.iter().map(|r| index_of(&c, r["node_name"].as_str().unwrap())).collect();
    let outside = (0..4).find(|i| !members.contains(i)).unwrap();
    eprintln!("adding node {} to the queue's members {members:?}", outside + 1);
    w.faults.push(Instant::now());
    ctl_ok(&c, 0, &["add_member", QUEUE, &c.nodes[outside].name.clone()]).await;
    members.push(outside);
    let rows = await_members(&c, 1, &members).await;
    // The leader removed: it hands over, then its replica goes.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let leader = rows.iter().find(|r| r["raft_state"] == "leader").unwrap()["node_name"].as_str().unwrap().to_owned();
    let li = index_of(&c, &leader);
    eprintln!("deleting the leader, node {}", li + 1);
    w.faults.push(Instant::now());
    ctl_ok(&c, (li + 1) % 4, &["delete_member", QUEUE, &leader]).await;
    members.retain(|&m| m != li);
    await_members(&c, (li + 2) % 4, &members).await;
    // shrink takes away the replica of the node the consumer is on, while it leads (its
    // front must find the new leader for the consumer); grow puts one back on the removed
    // leader's node.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let gone = CONSUMER_NODE;
    if !members.contains(&gone) {
        ctl_ok(&c, 0, &["add_member", QUEUE, &c.nodes[gone].name.clone()]).await;
        members.push(gone);
        await_members(&c, 0, &members).await;
    }
    ctl_ok(&c, 0, &["transfer_leadership", QUEUE, &c.nodes[gone].name.clone()]).await;
    eprintln!("shrinking node {} (it leads), growing node {}", gone + 1, li + 1);
    w.faults.push(Instant::now());
    let out = ctl_ok(&c, li, &["shrink", &c.nodes[gone].name.clone()]).await;
    assert!(out.contains(QUEUE) && out.contains("ok"), "{out}");
    members.retain(|&m| m != gone);
    await_members(&c, li, &members).await;
    w.faults.push(Instant::now());
    let out = ctl_ok(&c, gone, &["grow", &c.nodes[li].name.clone(), "all"]).await;
    assert!(out.contains(QUEUE), "{out}");
    members.push(li);
    await_members(&c, gone, &members).await;
    // Refusals say why and change nothing.
    let e = ctl_err(&c, 0, &["add_member", QUEUE, &c.nodes[li].name.clone()]).await;
    assert!(e.contains("is already a member"), "{e}");
    let e = ctl_err(&c, 0, &["add_member", QUEUE, "nosuchnode"]).await;
    assert!(e.contains("no cluster node 'nosuchnode'"), "{e}");
    let e = ctl_err(&c, 0, &["delete_member", QUEUE, &c.nodes[gone].name.clone()]).await;
    assert!(e.contains("is not a member"), "{e}");
    w.finish(&c).await;
}
