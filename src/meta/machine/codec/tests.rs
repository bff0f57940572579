//! The metadata wire format: round trips, malformed input, and replica equivalence (a state
//! restored from a snapshot answers, routes and cascades exactly like the original).

use super::*;
use crate::broker::router::route;
use crate::raft::LogIndex;
use amq_protocol::types::{AMQPValue, LongString};

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn script() -> Vec<MetaCommand> {
    let v = || "/".to_string();
    let q = |n: &str, excl: bool| MetaCommand::DeclareQueue {
        vhost: v(),
        name: n.into(),
        durable: !excl,
        exclusive: excl,
        auto_delete: false,
        args: table(&[("x-max-length", AMQPValue::LongInt(10)), ("x-custom", s("kept"))]),
        connection: ConnectionId(7),
        members: Vec::new(),
    };
    let x = |n: &str, kind: ExchangeKind, ad: bool, args: FieldTable| MetaCommand::DeclareExchange {
        vhost: v(),
        name: n.into(),
        kind: kind.into(),
        durable: true,
        auto_delete: ad,
        internal: false,
        args,
        members: Vec::new(),
    };
    let bind = |src: &str, d: Destination, key: &str, args: FieldTable| MetaCommand::Bind {
        vhost: v(),
        source: src.into(),
        destination: d,
        key: key.into(),
        args,
    };
    vec![
        MetaCommand::AddVhost { name: v() },
        MetaCommand::AddVhost { name: "other".into() },
        MetaCommand::DeclareQueue {
            vhost: v(),
            name: "replicated".into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            args: table(&[("x-queue-type", s("quorum"))]),
            connection: ConnectionId(2 << 40),
            members: vec![3, 1, 2],
        },
        MetaCommand::PutUser {
            name: "alice".into(),
            password_hash: "hash".into(),
            tags: vec!["administrator".into(), "monitoring".into()],
        },
        MetaCommand::SetPermissions {
            vhost: v(),
            user: "alice".into(),
            configure: "^a".into(),
            write: ".*".into(),
            read: "".into(),
        },
        x("ae", ExchangeKind::Fanout, false, FieldTable::default()),
        x("main", ExchangeKind::Direct, false, table(&[("alternate-exchange", s("ae"))])),
        x("logs", ExchangeKind::Topic, true, FieldTable::default()),
        x("hdr", ExchangeKind::Headers, false, FieldTable::default()),
        MetaCommand::DeclareExchange {
            vhost: v(),
            name: "later".into(),
            kind: ExchangeType { kind: ExchangeKind::Topic, delayed: true },
            durable: true,
            auto_delete: false,
            internal: false,
            args: table(&[("x-delayed-type", s("topic"))]),
            members: vec![2, 1, 3],
        },
        q("orders", false),
        q("mine", true),
        q("unrouted", false),
        bind("main", Destination::Queue("orders".into()), "new", FieldTable::default()),
        bind("ae", Destination::Queue("unrouted".into()), "", FieldTable::default()),
        bind("logs", Destination::Queue("orders".into()), "app.#", FieldTable::default()),
        bind("main", Destination::Exchange("logs".into()), "app.x", FieldTable::default()),
        bind("hdr", Destination::Queue("mine".into()), "", table(&[("x-match", s("any")), ("kind", s("report"))])),
        bind("later", Destination::Queue("orders".into()), "app.*", FieldTable::default()),
        MetaCommand::UpdateVhost {
            name: v(),
            description: Some("main".into()),
            tags: Some(vec!["prod".into()]),
            tracing: Some(true),
        },
        MetaCommand::SetPolicy {
            vhost: v(),
            name: "limits".into(),
            pattern: "^or".into(),
            apply_to: "queues".into(),
            priority: -3,
            definition: table(&[("max-length", AMQPValue::LongInt(4)), ("dead-letter-exchange", s("ae"))]),
        },
        MetaCommand::SetPolicy {
            vhost: v(),
            name: "ae".into(),
            pattern: "^logs$".into(),
            apply_to: "exchanges".into(),
            priority: 1,
            definition: table(&[("alternate-exchange", s("ae"))]),
        },
        MetaCommand::SeedNodes {
            nodes: (1..=3)
                .map(|id| ClusterNode { id, name: String::new(), addr: format!("10.0.0.{id}:25672") })
                .collect(),
        },
        MetaCommand::RegisterNode {
            node: ClusterNode { id: 1, name: "warren@a".into(), addr: "10.0.0.1:25672".into() },
        },
        MetaCommand::JoinNode { name: "warren@c".into(), addr: "10.0.0.3:25672".into() },
    ]
}

fn apply(m: &mut MetaMachine, cmd: MetaCommand) -> String {
    let mut fx = Vec::new();
    let r = m.apply(ApplyMeta { index: LogIndex(0), now_ms: 0 }, cmd, &mut fx);
    let fx: Vec<String> = fx
        .iter()
        .map(|e| match e {
            MetaEffect::QueueCreated(rec) => format!("created {}", rec.name),
            MetaEffect::QueueDeleted(k) => format!("deleted {}", k.name),
            MetaEffect::QueueConfigured(k) => format!("configured {}", k.name),
        })
        .collect();
    format!("{r:?} {fx:?}")
}

#[test]
fn every_command_round_trips() {
    let mut all = script();
    all.push(MetaCommand::DeleteExchange { vhost: "/".into(), name: "x".into(), if_unused: true });
    all.push(MetaCommand::DeleteQueue { vhost: "/".into(), name: "q".into() });
    all.push(MetaCommand::Unbind {
        vhost: "/".into(),
        source: "a".into(),
        destination: Destination::Exchange("b".into()),
        key: "k".into(),
        args: table(&[("n", AMQPValue::LongInt(1))]),
    });
    all.push(MetaCommand::ConnectionClosed { connection: ConnectionId(u64::MAX) });
    all.push(MetaCommand::NodeStarted { node: 1 });
    all.push(MetaCommand::NodeStarted { node: 3 });
    all.push(MetaCommand::DeleteUser { name: "alice".into() });
    all.push(MetaCommand::DeleteVhost { name: "other".into() });
    all.push(MetaCommand::ClearPermissions { vhost: "/".into(), user: "alice".into() });
    all.push(MetaCommand::UpdateVhost { name: "v".into(), description: None, tags: None, tracing: Some(false) });
    all.push(MetaCommand::ClearPolicy { vhost: "/".into(), name: "limits".into() });
    all.push(MetaCommand::ForgetNode { id: 2 });
    all.push(MetaCommand::AddQueueMember { vhost: "/".into(), name: "q".into(), node: 4 });
    all.push(MetaCommand::DeleteQueueMember { vhost: "/".into(), name: "q".into(), node: 2 });
    for cmd in all {
        let bytes = Bytes::from(encode_command(&cmd));
        let back = decode_command(&bytes).unwrap();
        assert_eq!(encode_command(&back), bytes.to_vec(), "{cmd:?}");
        for n in 0..bytes.len() {
            assert!(decode_command(&bytes.slice(..n)).is_err(), "{cmd:?} cut at {n}");
        }
    }
}

#[test]
fn restored_state_behaves_like_the_original() {
    let mut m = MetaMachine::default();
    for c in script() {
        apply(&mut m, c);
    }
    let snap = Bytes::from(encode_state(m.state()));
    let mut copy = decode_state(&snap).unwrap();
    assert_eq!(encode_state(copy.state()), snap.to_vec(), "re-encodes identically");
    // Routing is the same (direct, alternate exchange, e2e into a topic, headers).
    for (x, key, hdrs) in [
        ("main", "new", None),
        ("main", "nope", None),
        ("main", "app.x", None),
        ("hdr", "", Some(table(&[("kind", s("report"))]))),
        ("later", "app.x", None),
    ] {
        let a = route(&*m.state().vhosts["/"], x, &[key], hdrs.as_ref());
        let b = route(&*copy.state().vhosts["/"], x, &[key], hdrs.as_ref());
        assert_eq!(a, b, "{x} {key}");
        assert!(!a.is_empty(), "{x} {key} routes somewhere");
    }
    // Vhost metadata and policies came back, and apply as before.
    let (a, b) = (&m.state().vhosts["/"], &copy.state().vhosts["/"]);
    assert_eq!((&b.description, &b.tags, b.tracing), (&"main".to_string(), &vec!["prod".to_string()], true));
    assert_eq!(b.queues["orders"].effective.max_length, Some(4));
    // Node 3 was replaced by node 4 (joined with its address): its replica is node 4's.
    assert_eq!((b.queues["replicated"].home, &b.queues["replicated"].members), (4, &vec![4, 1, 2]));
    assert_eq!(&b.queues["replicated"].founders, &vec![3, 1, 2]);
    assert_eq!(copy.state().nodes.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(copy.state().nodes[&1].name, "warren@a");
    assert_eq!((copy.state().next_node, copy.state().forgotten.iter().copied().collect::<Vec<_>>()), (5, vec![3]));
    assert!(!b.queues["orders"].replicated());
    assert_eq!(b.queues["orders"].policy.as_ref().map(|p| p.name.as_str()), Some("limits"));
    assert_eq!(a.queues["orders"].effective, b.queues["orders"].effective);
    assert_eq!(b.exchanges["logs"].alternate.as_deref(), Some("ae"));
    assert!(b.queues["unrouted"].policy.is_none());
    // Permissions were recompiled from their sources.
    let p = &copy.state().vhosts["/"].permissions["alice"];
    assert!(
        p.allows(crate::broker::permission::Access::Configure, "abc")
            && !p.allows(crate::broker::permission::Access::Read, "abc")
    );
    // Later commands give the same answers on both replicas, including cascades and refusals.
    let later = vec![
        MetaCommand::DeclareQueue {
            vhost: "/".into(),
            name: "mine".into(),
            durable: false,
            exclusive: true,
            auto_delete: false,
            args: FieldTable::default(),
            connection: ConnectionId(8),
            members: Vec::new(),
        },
        MetaCommand::DeclareExchange {
            vhost: "/".into(),
            name: "main".into(),
            kind: ExchangeKind::Fanout.into(),
            durable: true,
            auto_delete: false,
            internal: false,
            args: FieldTable::default(),
            members: Vec::new(),
        },
        MetaCommand::DeleteQueue { vhost: "/".into(), name: "orders".into() },
        MetaCommand::ConnectionClosed { connection: ConnectionId(7) },
        MetaCommand::ForgetNode { id: 2 },
        MetaCommand::ForgetNode { id: 2 },
        MetaCommand::JoinNode { name: "warren@a".into(), addr: "10.0.0.9:25672".into() },
        MetaCommand::RegisterNode { node: ClusterNode { id: 3, name: "warren@c".into(), addr: "x".into() } },
        MetaCommand::DeleteExchange { vhost: "/".into(), name: "ae".into(), if_unused: true },
        MetaCommand::DeclareExchange {
            vhost: "/".into(),
            name: "later".into(),
            kind: ExchangeType { kind: ExchangeKind::Direct, delayed: true },
            durable: true,
            auto_delete: false,
            internal: false,
            args: table(&[("x-delayed-type", s("direct"))]),
            members: Vec::new(),
        },
    ];
    for c in later {
        let bytes = Bytes::from(encode_command(&c));
        assert_eq!(apply(&mut m, c), apply(&mut copy, decode_command(&bytes).unwrap()));
    }
    assert_eq!(encode_state(m.state()), encode_state(copy.state()));
    let later = &copy.state().vhosts["/"].exchanges["later"];
    assert!(later.delay_group.is_some() && later.kind == ExchangeKind::Topic, "a delayed exchange keeps its store");
    // Its store's members followed the joins and removals (3 replaced by 4, 2 forgotten, 1
    // replaced by 5); its founders stay.
    assert_eq!((&later.delay_members[..], &later.delay_founders[..]), (&[5, 4][..], &[2, 1, 3][..]));
    assert!(
        !m.state().vhosts["/"].exchanges.contains_key("logs"),
        "the auto-delete exchange went with its last binding"
    );
}

#[test]
fn malformed_state_is_an_error() {
    let mut m = MetaMachine::default();
    for c in script() {
        apply(&mut m, c);
    }
    let snap = Bytes::from(encode_state(m.state()));
    for n in [0, 1, 5, snap.len() / 2, snap.len() - 1] {
        assert!(decode_state(&snap.slice(..n)).is_err(), "cut at {n}");
    }
}
