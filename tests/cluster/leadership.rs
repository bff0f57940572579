//! Moving quorum queue leaders as an operator does (`rabbitmq-queues transfer_leadership`,
//! `rebalance`, `quorum_status`) and as a node stopping gracefully does (it hands its
//! leaderships over before it goes), each under confirmed load and checked with the
//! total-queue checker: nothing confirmed lost, nothing repeated without `redelivered`.

use super::chaos::{QUEUE, Workload, leader, leader_of};
use super::harness::Cluster;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `quorum_status` of the chaos queue through node `via`, as JSON rows.
async fn quorum_status(c: &Cluster, via: usize, queue: &str) -> Vec<Value> {
    let out = c.ctl(via, &["--formatter", "json", "quorum_status", queue]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Waits (up to 10 s) until the management API shows `queue` led by node `want`.
async fn await_leader(c: &Cluster, alive: &[bool], queue: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = leader_of(c, alive, queue).await;
        if now == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{queue} is led by {now:?}, not node {}", want + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_leadership_moves_the_leader_under_load_and_loses_nothing() {
    let mut c = Cluster::new(3);
    c.start_all();
    let mut w = Workload::start(&c).await;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let lead = leader(&c, &w.alive()).await.expect("a leader is shown");
        let target = (lead + 1 + round % 2) % 3;
        let via = (lead + 2) % 3;
        let name = c.nodes[target].name.clone();
        eprintln!(
            "round {}: leader node {}, moving to node {} through node {}",
            round + 1,
            lead + 1,
            target + 1,
            via + 1
        );
        w.faults.push(Instant::now());
        let out = c.ctl(via, &["transfer_leadership", QUEUE, &name]).await;
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), c.log(lead));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Leader is now {name}")));
        await_leader(&c, &w.alive(), QUEUE, target).await;
        // Every member agrees: one leader, on the target, every member a voter in one term.
        let rows = quorum_status(&c, round % 3, QUEUE).await;
        assert_eq!(rows.len(), 3, "{rows:?}");
        let leaders: Vec<&Value> = rows.iter().filter(|r| r["raft_state"] == "leader").collect();
        assert_eq!(leaders.len(), 1, "{rows:?}");
        assert_eq!(leaders[0]["node_name"], name.as_str(), "{rows:?}");
        assert!(rows.iter().all(|r| r["membership"] == "voter"), "{rows:?}");
    }
    // Asking for the leader it has already, or a node without a replica, is answered plainly.
    let lead = leader(&c, &w.alive()).await.expect("a leader is shown");
    let out = c.ctl(0, &["transfer_leadership", QUEUE, &c.nodes[lead].name.clone()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = c.ctl(0, &["transfer_leadership", QUEUE, "nosuchnode"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster node 'nosuchnode'"), "{out:?}");
    w.finish(&c).await;
}

/// SIGTERM on the node that leads: before it stops, another member leads already (without the
/// handover the others would still wait for the failure detector to find it gone). A rolling
/// restart of all three nodes this way loses nothing confirmed.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_stopping_gracefully_hands_its_leaderships_over_first() {
    let mut c = Cluster::new(3);
    c.start_all();
    let mut w = Workload::start(&c).await;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let lead = leader(&c, &w.alive()).await.expect("a leader is shown");
        eprintln!("round {}: SIGTERM node {} (the leader)", round + 1, lead + 1);
        w.set_alive(lead, false);
        w.faults.push(Instant::now());
        c.terminate(lead, Duration::from_secs(40));
        let log = c.log(lead);
        assert!(log.contains("leaderships handed over before stopping"), "{log}");
        // At once after the exit: a live member leads.
        let via = (lead + 1) % 3;
        let rows = quorum_status(&c, via, QUEUE).await;
        let leading: Vec<&Value> = rows.iter().filter(|r| r["raft_state"] == "leader").collect();
        assert_eq!(leading.len(), 1, "no member leads right after the leader stopped: {rows:?}");
        assert_ne!(leading[0]["node_name"], c.nodes[lead].name.as_str(), "{rows:?}");
        c.start(lead);
        c.await_up(lead).await;
        w.set_alive(lead, true);
    }
    w.finish(&c).await;
}

/// Six quorum queues declared through node 1 all start led there; `rebalance` spreads them
/// two to a node.
#[tokio::test(flavor = "multi_thread")]
async fn rebalance_spreads_leaders_evenly() {
    let mut c = Cluster::new(3);
    c.start_all();
    for i in 0..3 {
        c.await_up(i).await;
    }
    let (_conn, ch) = super::channel(&c, 0).await;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    let names: Vec<String> = (0..6).map(|i| format!("rb-{i}")).collect();
    for n in &names {
        ch.queue_declare(n.as_str().into(), durable, args.clone()).await.unwrap();
    }
    let all = [true, true, true];
    for n in &names {
        let deadline = Instant::now() + Duration::from_secs(10);
        while leader_of(&c, &all, n).await.is_none() {
            assert!(Instant::now() < deadline, "{n} has no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let out = c.ctl(1, &["--formatter", "json", "rebalance", "quorum"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut per_node = [0usize; 3];
        for n in &names {
            if let Some(l) = leader_of(&c, &all, n).await {
                per_node[l] += 1;
            }
        }
        if per_node == [2, 2, 2] {
            break;
        }
        assert!(Instant::now() < deadline, "leaders after rebalance: {per_node:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Prometheus: each node runs a member of the six queues and of the metadata; the seven
    // groups have one leader each, two queues' on every node.
    let mut leaders = 0;
    for i in 0..3 {
        let m = c.metrics(i).await;
        let value = |name: &str| {
            let line = m.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
            line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
        };
        assert_eq!(value("warren_raft_members"), 7, "{m}");
        assert!(value("warren_raft_leaders") >= 2, "{m}");
        assert!(value("rabbitmq_raft_term_total") >= 7, "{m}");
        assert!(value("rabbitmq_raft_log_commit_index") > 0, "{m}");
        leaders += value("warren_raft_leaders");
    }
    assert_eq!(leaders, 7);
}

/// `drain` (maintenance mode): the node hands its leaderships over, closes its clients,
/// takes no new ones and fails its readiness check; its members stand only as a last resort
/// and hand over again, so when the new leader is killed the third node ends up leading (at
/// once, or through the drained member when its log was the only complete one). `revive`
/// ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_drained_node_leads_nothing_and_serves_no_clients_until_revived() {
    let mut c = Cluster::new(3);
    c.start_all();
    let mut w = Workload::start(&c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let drained = leader(&c, &w.alive()).await.expect("a leader is shown");
    eprintln!("draining node {} (the leader)", drained + 1);
    w.faults.push(Instant::now());
    let out = c.ctl(drained, &["drain"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = c.http_get(drained, "/api/health/checks/ready-to-serve-clients").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("maintenance mode"), "{body}");
    let uri = format!("amqp://guest:guest@{}/%2f", c.nodes[drained].amqp);
    let refused = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await;
    assert!(refused.is_err(), "a drained node took a client");
    let mut alive = w.alive();
    let now = leader(&c, &alive).await.expect("a leader is shown");
    assert_ne!(now, drained, "the drained node still leads");
    // The leader dies: of the two left, only the one not drained may lead.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    eprintln!("killing node {} (the new leader)", now + 1);
    w.set_alive(now, false);
    c.kill(now);
    w.faults.push(Instant::now());
    alive[now] = false;
    let third = 3 - now - drained;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = quorum_status(&c, third, QUEUE).await;
        let leading: Vec<&Value> = rows.iter().filter(|r| r["raft_state"] == "leader").collect();
        if leading.len() == 1 && leading[0]["node_name"] == c.nodes[third].name.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "the node not drained never led: {rows:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.start(now);
    c.await_up(now).await;
    w.set_alive(now, true);
    let out = c.ctl(drained, &["revive"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = c.http_get(drained, "/api/health/checks/ready-to-serve-clients").await;
    assert_eq!(status, 200, "{body}");
    let out = c.ctl(third, &["transfer_leadership", QUEUE, &c.nodes[drained].name.clone()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    w.finish(&c).await;
}

/// The pre-stop checks: with a member's node down, stopping another member's would leave the
/// queue without a majority: `check_if_node_is_quorum_critical` fails naming it and
/// `await_online_quorum_plus_one` waits, until the node is back.
#[tokio::test(flavor = "multi_thread")]
async fn quorum_critical_checks_say_when_a_node_may_stop() {
    let mut c = Cluster::new(3);
    c.start_all();
    for i in 0..3 {
        c.await_up(i).await;
    }
    let (conn, ch) = super::channel(&c, 0).await;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("critical".into(), durable, args).await.unwrap();
    drop((conn, ch));
    let out = c.ctl(0, &["check_if_node_is_quorum_critical"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.kill(1);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = c.ctl(0, &["check_if_node_is_quorum_critical"]).await;
        if !out.status.success() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("would lose their quorum"), "{out:?}");
            break;
        }
        assert!(Instant::now() < deadline, "node 1 never became quorum critical");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = c.ctl(0, &["--timeout", "2", "await_online_quorum_plus_one"]).await;
    assert!(!out.status.success(), "it did not wait while node 2 was down");
    c.start(1);
    c.await_up(1).await;
    let out = c.ctl(0, &["--timeout", "30", "await_online_quorum_plus_one"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
