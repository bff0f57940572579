//! Metadata machine tests: declare, equivalence, bindings, cascades.

use super::*;
use crate::broker::router::route;
use crate::raft::LogIndex;

fn apply(m: &mut MetaMachine, cmd: MetaCommand) -> (MetaReply, Vec<MetaEffect>) {
    let mut fx = Vec::new();
    let r = m.apply(ApplyMeta { index: LogIndex(0), now_ms: 0 }, cmd, &mut fx);
    (r, fx)
}

fn setup() -> MetaMachine {
    let mut m = MetaMachine::default();
    apply(&mut m, MetaCommand::AddVhost { name: "/".into() });
    m
}

fn queue(name: &str, exclusive: bool, conn: u64) -> MetaCommand {
    MetaCommand::DeclareQueue {
        vhost: "/".into(),
        name: name.into(),
        durable: false,
        exclusive,
        auto_delete: false,
        args: FieldTable::default(),
        connection: ConnectionId(conn),
        members: Vec::new(),
    }
}

fn exchange(name: &str, kind: ExchangeKind, auto_delete: bool) -> MetaCommand {
    MetaCommand::DeclareExchange {
        vhost: "/".into(),
        name: name.into(),
        kind: kind.into(),
        durable: false,
        auto_delete,
        internal: false,
        args: FieldTable::default(),
        members: Vec::new(),
    }
}

fn bind(src: &str, dest: Destination, key: &str) -> MetaCommand {
    MetaCommand::Bind {
        vhost: "/".into(),
        source: src.into(),
        destination: dest,
        key: key.into(),
        args: FieldTable::default(),
    }
}

fn refused(r: MetaReply) -> String {
    match r {
        MetaReply::Refused(e) => e.reply_text(),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn vhost_starts_with_default_exchanges() {
    let m = setup();
    let v = &m.state().vhosts["/"];
    for (name, _, _) in DEFAULT_EXCHANGES {
        assert!(v.exchanges.contains_key(*name), "{name}");
    }
    assert!(v.exchanges["amq.rabbitmq.trace"].internal);
}

#[test]
fn exchange_redeclare_equivalence() {
    let mut m = setup();
    assert!(matches!(apply(&mut m, exchange("e", ExchangeKind::Direct, false)).0, MetaReply::Ok));
    assert!(matches!(apply(&mut m, exchange("e", ExchangeKind::Direct, false)).0, MetaReply::Ok));
    assert_eq!(
        refused(apply(&mut m, exchange("e", ExchangeKind::Fanout, false)).0),
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'e' in vhost '/': received 'fanout' but current is 'direct'"
    );
}

#[test]
fn queue_exclusivity_and_equivalence() {
    let mut m = setup();
    let (r, fx) = apply(&mut m, queue("q", true, 1));
    assert!(matches!(r, MetaReply::QueueDeclared { created: true }));
    assert_eq!(fx.len(), 1);
    assert!(matches!(apply(&mut m, queue("q", true, 1)).0, MetaReply::QueueDeclared { created: false }));
    assert!(
        refused(apply(&mut m, queue("q", true, 2)).0)
            .starts_with("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'q' in vhost '/'")
    );
    let (_, fx) = apply(&mut m, MetaCommand::ConnectionClosed { connection: ConnectionId(1) });
    assert!(matches!(fx.as_slice(), [MetaEffect::QueueDeleted(k)] if k.name == "q"));
    apply(&mut m, queue("d", false, 1));
    let mut durable = queue("d", false, 1);
    if let MetaCommand::DeclareQueue { durable: d, .. } = &mut durable {
        *d = true;
    }
    assert_eq!(
        refused(apply(&mut m, durable).0),
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'd' in vhost '/': received 'true' but current is 'false'"
    );
}

#[test]
fn bindings_route_and_go_with_their_queue() {
    let mut m = setup();
    apply(&mut m, exchange("logs", ExchangeKind::Topic, false));
    apply(&mut m, queue("q", false, 1));
    assert!(matches!(apply(&mut m, bind("logs", Destination::Queue("q".into()), "app.*")).0, MetaReply::Ok));
    assert_eq!(
        refused(apply(&mut m, bind("logs", Destination::Queue("nope".into()), "k")).0),
        "NOT_FOUND - no queue 'nope' in vhost '/'"
    );
    assert_eq!(
        refused(apply(&mut m, bind("", Destination::Queue("q".into()), "k")).0),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    let v = m.state().vhosts["/"].clone();
    assert_eq!(route(&*v, "logs", &["app.start"], None).len(), 1);
    apply(&mut m, MetaCommand::DeleteQueue { vhost: "/".into(), name: "q".into() });
    assert!(m.state().vhosts["/"].exchanges["logs"].bindings.is_empty());
}

fn unbind(src: &str, dest: Destination, key: &str) -> MetaCommand {
    MetaCommand::Unbind {
        vhost: "/".into(),
        source: src.into(),
        destination: dest,
        key: key.into(),
        args: FieldTable::default(),
    }
}

#[test]
fn unbinding_what_is_gone_is_done_as_rabbitmq() {
    let mut m = setup();
    apply(&mut m, exchange("e", ExchangeKind::Direct, false));
    apply(&mut m, queue("q", false, 1));
    let q = || Destination::Queue("q".into());
    let ok = |r: MetaReply| assert!(matches!(r, MetaReply::Ok), "{r:?}");
    // No such binding, queue, exchange, source or destination: all answered as done.
    ok(apply(&mut m, unbind("e", q(), "never-bound")).0);
    ok(apply(&mut m, unbind("e", Destination::Queue("gone".into()), "k")).0);
    ok(apply(&mut m, unbind("gone", q(), "k")).0);
    ok(apply(&mut m, unbind("gone", Destination::Queue("gone".into()), "k")).0);
    ok(apply(&mut m, unbind("e", Destination::Exchange("gone".into()), "k")).0);
    ok(apply(&mut m, unbind("gone", Destination::Exchange("e".into()), "k")).0);
    // The default exchange stays off limits.
    assert_eq!(
        refused(apply(&mut m, unbind("", Destination::Queue("gone".into()), "k")).0),
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    // A real binding still goes, and an auto-delete exchange with it; unbinding again is done.
    apply(&mut m, exchange("ad", ExchangeKind::Direct, true));
    ok(apply(&mut m, bind("ad", q(), "k")).0);
    ok(apply(&mut m, unbind("ad", q(), "k")).0);
    assert!(!m.state().vhosts["/"].exchanges.contains_key("ad"));
    ok(apply(&mut m, unbind("ad", q(), "k")).0);
}

#[test]
fn auto_delete_exchange_goes_with_last_binding() {
    let mut m = setup();
    apply(&mut m, exchange("tmp", ExchangeKind::Fanout, true));
    apply(&mut m, queue("q", false, 1));
    apply(&mut m, bind("tmp", Destination::Queue("q".into()), ""));
    apply(&mut m, MetaCommand::DeleteQueue { vhost: "/".into(), name: "q".into() });
    assert!(!m.state().vhosts["/"].exchanges.contains_key("tmp"));
}

#[test]
fn delete_exchange_if_unused() {
    let mut m = setup();
    apply(&mut m, exchange("e", ExchangeKind::Direct, false));
    apply(&mut m, queue("q", false, 1));
    apply(&mut m, bind("e", Destination::Queue("q".into()), "k"));
    let r = apply(&mut m, MetaCommand::DeleteExchange { vhost: "/".into(), name: "e".into(), if_unused: true }).0;
    assert_eq!(refused(r), "PRECONDITION_FAILED - exchange 'e' in vhost '/' in use");
    assert!(matches!(
        apply(&mut m, MetaCommand::DeleteExchange { vhost: "/".into(), name: "e".into(), if_unused: false }).0,
        MetaReply::Ok
    ));
}

#[test]
fn queues_get_distinct_groups_and_node_start_removes_transient_ones() {
    let mut m = setup();
    let mut durable = queue("d", false, 1);
    if let MetaCommand::DeclareQueue { durable: d, .. } = &mut durable {
        *d = true;
    }
    apply(&mut m, durable);
    apply(&mut m, queue("t", false, 1));
    apply(&mut m, queue("x", true, 1));
    let groups: Vec<u64> = m.state().vhosts["/"].queues.values().map(|q| q.group).collect();
    let mut unique = groups.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "distinct groups {groups:?}");
    assert!(groups.iter().all(|g| *g >= 1), "group 0 is the metadata group");
    let (_, fx) = apply(&mut m, MetaCommand::NodeStarted { node: 1 });
    let gone: Vec<&str> = fx
        .iter()
        .map(|e| match e {
            MetaEffect::QueueDeleted(r) => r.name.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(gone, vec!["t", "x"]);
    assert!(m.state().vhosts["/"].queues.contains_key("d"));
    // A later queue never reuses a group.
    apply(&mut m, queue("t2", false, 2));
    let g = m.state().vhosts["/"].queues["t2"].group;
    assert!(!groups.contains(&g));
}

#[test]
fn a_node_start_removes_only_that_nodes_transient_and_exclusive_queues() {
    let mut m = setup();
    let on_node_2 = crate::ids::node_base(2) | 5;
    apply(&mut m, queue("t1", false, 1));
    apply(&mut m, queue("x1", true, 1));
    apply(&mut m, queue("t2", false, on_node_2));
    apply(&mut m, queue("x2", true, on_node_2));
    let q = &m.state().vhosts["/"].queues;
    assert_eq!((q["t1"].home, q["t2"].home), (1, 2), "a queue's home is its declaring connection's node");
    apply(&mut m, MetaCommand::NodeStarted { node: 2 });
    let left: Vec<&str> = m.state().vhosts["/"].queues.keys().map(String::as_str).collect();
    assert_eq!(left, vec!["t1", "x1"]);
}

fn quorum(name: &str, members: Vec<u64>) -> MetaCommand {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), amq_protocol::types::AMQPValue::LongString("quorum".into()));
    MetaCommand::DeclareQueue {
        vhost: "/".into(),
        name: name.into(),
        durable: true,
        exclusive: false,
        auto_delete: false,
        args,
        connection: ConnectionId(crate::ids::node_base(1)),
        members,
    }
}

/// A durable delayed exchange whose store's members are `members`.
fn delayed(name: &str, members: Vec<u64>) -> MetaCommand {
    let mut args = FieldTable::default();
    args.insert("x-delayed-type".into(), amq_protocol::types::AMQPValue::LongString("direct".into()));
    MetaCommand::DeclareExchange {
        vhost: "/".into(),
        name: name.into(),
        kind: crate::broker::exchange::ExchangeType {
            kind: crate::broker::exchange::ExchangeKind::Direct,
            delayed: true,
        },
        durable: true,
        auto_delete: false,
        internal: false,
        args,
        members,
    }
}

fn node(id: u64, name: &str) -> ClusterNode {
    ClusterNode { id, name: name.into(), addr: format!("10.0.0.{id}:25672") }
}

#[test]
fn a_forgotten_node_takes_its_replicas_and_its_classic_queues_along() {
    let mut m = setup();
    apply(&mut m, MetaCommand::SeedNodes { nodes: vec![node(1, ""), node(2, ""), node(3, "")] });
    apply(&mut m, quorum("three", vec![3, 1, 2]));
    apply(&mut m, quorum("alone", vec![3]));
    apply(&mut m, delayed("later", vec![3, 1, 2]));
    // A durable classic queue on node 3, and an exclusive one of a node-3 connection.
    let mut on3 = queue("classic", false, crate::ids::node_base(3));
    if let MetaCommand::DeclareQueue { durable, .. } = &mut on3 {
        *durable = true;
    }
    apply(&mut m, on3);
    apply(&mut m, queue("mine", true, crate::ids::node_base(3) | 5));
    apply(&mut m, queue("kept", false, crate::ids::node_base(1)));
    let (r, fx) = apply(&mut m, MetaCommand::ForgetNode { id: 3 });
    assert!(matches!(r, MetaReply::Ok), "{r:?}");
    let mut gone: Vec<String> = fx
        .iter()
        .filter_map(|e| if let MetaEffect::QueueDeleted(q) = e { Some(q.name.clone()) } else { None })
        .collect();
    gone.sort();
    assert_eq!(gone, vec!["alone", "classic", "mine"]);
    let q = &m.state().vhosts["/"].queues["three"];
    assert_eq!((&q.members, &q.founders, q.home), (&vec![1, 2], &vec![3, 1, 2], 1));
    assert!(m.state().vhosts["/"].queues.contains_key("kept"));
    let x = &m.state().vhosts["/"].exchanges["later"];
    assert_eq!((&x.delay_members, &x.delay_founders), (&vec![1, 2], &vec![3, 1, 2]), "the store goes on without it");
    // Forgotten for good: not again, and it may not register again under its old id.
    assert!(refused(apply(&mut m, MetaCommand::ForgetNode { id: 3 }).0).starts_with("NOT_FOUND"));
    let again = apply(&mut m, MetaCommand::RegisterNode { node: node(3, "warren@c") }).0;
    assert!(refused(again).contains("was removed from the cluster"));
}

#[test]
fn a_joining_node_gets_a_new_id_and_takes_the_place_of_the_node_it_replaces() {
    let mut m = setup();
    apply(&mut m, MetaCommand::SeedNodes { nodes: vec![node(1, ""), node(2, ""), node(3, "")] });
    apply(&mut m, MetaCommand::RegisterNode { node: node(2, "warren@b") });
    apply(&mut m, quorum("q", vec![2, 3, 1]));
    apply(&mut m, delayed("later", vec![2, 3, 1]));
    // Same name, another address: node 2 is replaced.
    let (r, _) = apply(&mut m, MetaCommand::JoinNode { name: "warren@b".into(), addr: "10.9.9.9:25672".into() });
    assert!(matches!(r, MetaReply::NodeJoined { id: 4 }), "{r:?}");
    assert_eq!(m.state().vhosts["/"].queues["q"].members, vec![4, 3, 1]);
    let x = &m.state().vhosts["/"].exchanges["later"];
    assert_eq!((&x.delay_members, &x.delay_founders), (&vec![4, 3, 1], &vec![2, 3, 1]), "and in the delayed store");
    // A brand-new node replaces nobody.
    let (r, _) = apply(&mut m, MetaCommand::JoinNode { name: "warren@e".into(), addr: "10.0.0.5:25672".into() });
    assert!(matches!(r, MetaReply::NodeJoined { id: 5 }), "{r:?}");
    let ids: Vec<u64> = m.state().nodes.keys().copied().collect();
    assert_eq!(ids, vec![1, 3, 4, 5]);
    // Seeding again (another initial member's start) brings back no forgotten node.
    apply(&mut m, MetaCommand::SeedNodes { nodes: vec![node(1, ""), node(2, ""), node(3, "")] });
    assert!(!m.state().nodes.contains_key(&2));
}

#[test]
fn operators_add_and_delete_quorum_queue_members_but_never_the_last() {
    let mut m = setup();
    apply(&mut m, MetaCommand::SeedNodes { nodes: vec![node(1, ""), node(2, ""), node(3, ""), node(4, "")] });
    apply(&mut m, quorum("q", vec![1, 2, 3]));
    apply(&mut m, queue("classic", false, crate::ids::node_base(1)));
    let add = |n: u64| MetaCommand::AddQueueMember { vhost: "/".into(), name: "q".into(), node: n };
    let del = |n: u64| MetaCommand::DeleteQueueMember { vhost: "/".into(), name: "q".into(), node: n };
    assert!(matches!(apply(&mut m, add(4)).0, MetaReply::Ok));
    assert!(refused(apply(&mut m, add(4)).0).contains("node 4 is already a member of queue 'q'"));
    assert!(refused(apply(&mut m, add(9)).0).starts_with("NOT_FOUND - no cluster node 9"));
    // The preferred leader goes: the next member is preferred.
    assert!(matches!(apply(&mut m, del(1)).0, MetaReply::Ok));
    let q = &m.state().vhosts["/"].queues["q"];
    assert_eq!((&q.members, &q.founders, q.home), (&vec![2, 3, 4], &vec![1, 2, 3], 2));
    assert!(refused(apply(&mut m, del(1)).0).contains("node 1 is not a member of queue 'q'"));
    for n in [2, 3] {
        assert!(matches!(apply(&mut m, del(n)).0, MetaReply::Ok));
    }
    assert!(refused(apply(&mut m, del(4)).0).contains("node 4 is the last member of queue 'q'"));
    let classic = MetaCommand::AddQueueMember { vhost: "/".into(), name: "classic".into(), node: 2 };
    assert!(refused(apply(&mut m, classic).0).contains("is not a replicated (quorum) queue"));
    let missing = MetaCommand::AddQueueMember { vhost: "/".into(), name: "nope".into(), node: 2 };
    assert!(refused(apply(&mut m, missing).0).starts_with("NOT_FOUND - no queue 'nope'"));
}
