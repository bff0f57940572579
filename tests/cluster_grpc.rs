//! Raft groups across nodes over the real gRPC transport on loopback: three members of the
//! metadata machine agree, a stopped leader is replaced, and a node with another secret or
//! cluster name is refused.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warren::cluster::{Credentials, GrpcTransport, Identity, serve};
use warren::meta::{MetaCommand, MetaMachine, MetaReply};
use warren::raft::transport::{Router, RpcKind, Transport, TransportError};
use warren::raft::{DurableGroup, GroupOptions, Replication};
use warren::storage::{GroupId, Storage};

const GROUP: GroupId = GroupId(0);

struct TestNode {
    _dir: tempfile::TempDir,
    storage: Storage,
    group: DurableGroup<MetaMachine>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

fn opts() -> GroupOptions {
    GroupOptions { heartbeat_ms: 50, election_ms: (300, 600), ..Default::default() }
}

/// Binds the nodes' cluster listeners first, so every node knows every address.
async fn listeners(n: u64) -> (Vec<TcpListener>, Vec<String>) {
    let mut ls = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap().to_string());
        ls.push(l);
    }
    (ls, addrs)
}

async fn three() -> (Vec<TestNode>, Vec<String>) {
    let creds = Credentials::new("test", "secret");
    let (listeners, addrs) = listeners(3).await;
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let me = i as u64 + 1;
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let router = Router::new(me);
        let transport = GrpcTransport::new(me, creds.clone(), None);
        for (j, a) in addrs.iter().enumerate() {
            transport.set_peer(j as u64 + 1, a);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let identity = Identity { name: format!("warren@n{me}"), member: Default::default(), said: Default::default() };
        let server = tokio::spawn({
            let (router, creds) = (router.clone(), creds.clone());
            async move {
                serve(listener, router, identity, creds, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        let rep = Replication { me, transport: std::sync::Arc::new(transport), router, initial: Some(voters.clone()) };
        let group = DurableGroup::open_member(storage.group(GROUP), MetaMachine::default(), opts(), rep).await.unwrap();
        nodes.push(TestNode { _dir: dir, storage, group, stop, server });
    }
    (nodes, addrs)
}

async fn agreed_leader(nodes: &[Option<TestNode>]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<Option<u64>> = nodes.iter().flatten().map(|n| n.group.leader()).collect();
        let live: Vec<u64> = nodes.iter().enumerate().filter(|(_, n)| n.is_some()).map(|(i, _)| i as u64 + 1).collect();
        if let Some(Some(l)) = seen.first() {
            if seen.iter().all(|s| *s == Some(*l)) && live.contains(l) {
                return *l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn add_vhost(nodes: &[Option<TestNode>], leader: u64, name: &str) {
    let g = &nodes[leader as usize - 1].as_ref().unwrap().group;
    g.propose(0, MetaCommand::AddVhost { name: name.into() }).await.unwrap();
}

async fn all_have(nodes: &[Option<TestNode>], vhosts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok =
            nodes.iter().flatten().all(|n| n.group.read(|m| vhosts.iter().all(|v| m.state().vhosts.contains_key(*v))));
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "not every member has {vhosts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(n: TestNode) {
    n.group.shutdown().await.unwrap();
    let _ = n.stop.send(());
    let _ = n.server.await;
    n.storage.close(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_replicate_over_grpc_and_survive_the_leader() {
    let (nodes, _) = three().await;
    let mut nodes: Vec<Option<TestNode>> = nodes.into_iter().map(Some).collect();
    let leader = agreed_leader(&nodes).await;
    add_vhost(&nodes, leader, "v1").await;
    all_have(&nodes, &["v1"]).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    // A follower's proposal goes to the leader over gRPC; its reply comes back encoded, and
    // the follower has applied it when the call returns.
    let f = &nodes[follower as usize - 1].as_ref().unwrap().group;
    let (reply, _) = f.propose(0, MetaCommand::AddVhost { name: "x".into() }).await.unwrap();
    assert!(matches!(reply, MetaReply::Ok), "{reply:?}");
    assert!(f.read(|m| m.state().vhosts.contains_key("x")), "read-your-writes on the follower");
    let (refused, _) = f.propose(0, MetaCommand::DeleteVhost { name: "nope".into() }).await.unwrap();
    match refused {
        MetaReply::Refused(e) => assert_eq!(e.reply_text(), "NOT_FOUND - no vhost 'nope'"),
        other => panic!("{other:?}"),
    }
    // The leader's node stops (its server too): the other two elect a new one and go on.
    stop(nodes[leader as usize - 1].take().unwrap()).await;
    let new = agreed_leader(&nodes).await;
    assert_ne!(new, leader);
    add_vhost(&nodes, new, "v2").await;
    all_have(&nodes, &["v1", "v2"]).await;
    for n in nodes.into_iter().flatten() {
        stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_secret_or_cluster_name_is_refused() {
    let (nodes, addrs) = three().await;
    for wrong in [Credentials::new("test", "guess"), Credentials::new("other", "secret")] {
        let t = GrpcTransport::new(9, wrong, None);
        t.set_peer(1, &addrs[0]);
        match t.call(1, GROUP, RpcKind::Vote, bytes::Bytes::new()).await {
            Err(TransportError::Unreachable { reason, .. }) => assert!(reason.starts_with("refused"), "{reason}"),
            other => panic!("a stranger got through: {other:?}"),
        }
    }
    // The right credentials reach the group (the empty body does not decode, but it arrived).
    let t = GrpcTransport::new(9, Credentials::new("test", "secret"), None);
    t.set_peer(1, &addrs[0]);
    assert!(matches!(t.call(1, GROUP, RpcKind::Vote, bytes::Bytes::new()).await, Err(TransportError::Malformed(_))));
    for n in nodes {
        stop(n).await;
    }
}

/// A peer that refused connections (it was down) is reached as soon as it listens again:
/// none of the failed calls leaves the link to it broken for good (a link whose stream failed
/// at once, before the transport had put it in place, once stayed in place, dead, and every
/// later Raft call to that peer failed with "tcp connect error").
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_refused_connections_is_reached_once_it_listens() {
    let creds = Credentials::new("test", "secret");
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let t = GrpcTransport::new(9, creds.clone(), None);
    t.set_peer(1, &addr.to_string());
    for round in 0..200 {
        let r = t.call(1, GROUP, RpcKind::Vote, bytes::Bytes::new()).await;
        assert!(matches!(r, Err(TransportError::NotConnected { .. })), "round {round}: {r:?}");
    }
    // The peer is up: it has no group 0, and says so (the call arrived).
    let listener = TcpListener::bind(addr).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let identity = Identity { name: "warren@n1".into(), member: Default::default(), said: Default::default() };
    let server = tokio::spawn(serve(listener, Router::new(1), identity, creds, async {
        let _ = stopped.await;
    }));
    // Right after a refusal, calls fail at once without dialing (for a quarter of a second):
    // the peer is reached within a moment, and from then on every time.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match t.call(1, GROUP, RpcKind::Vote, bytes::Bytes::new()).await {
            Err(TransportError::NoGroup { .. }) => break,
            Err(TransportError::NotConnected { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            r => panic!("the peer listens but is not reached: {r:?}"),
        }
    }
    for round in 0..20 {
        let r = t.call(1, GROUP, RpcKind::Vote, bytes::Bytes::new()).await;
        assert!(matches!(r, Err(TransportError::NoGroup { .. })), "round {round}: {r:?}");
    }
    let _ = stop.send(());
    let _ = server.await;
}
