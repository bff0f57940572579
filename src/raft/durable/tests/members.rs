//! Groups of three members in one process, over [`Loopback`] links that can be cut: agreement,
//! a new leader when the leader is cut off, and a member that fell behind a purged log catching
//! up from a snapshot.

use super::*;
use crate::raft::transport::{Loopback, Router};
use std::collections::BTreeSet;
use std::time::Instant;

const GROUP: GroupId = GroupId(7);

struct Member3 {
    _dir: tempfile::TempDir,
    storage: Storage,
    group: DurableGroup<Tally>,
}

fn fast(snapshot_every: u64) -> GroupOptions {
    GroupOptions { snapshot_every, purge_batch: 1, heartbeat_ms: 50, election_ms: (300, 600), ..Default::default() }
}

async fn three(net: &Loopback, snapshot_every: u64) -> Vec<Member3> {
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    let mut out = Vec::new();
    for me in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let router = Router::new(me);
        let transport = net.join(router.clone());
        let rep = Replication { me, transport, router, initial: Some(voters.clone()) };
        let group =
            DurableGroup::open_member(storage.group(GROUP), Tally::default(), fast(snapshot_every), rep).await.unwrap();
        out.push(Member3 { _dir: dir, storage, group });
    }
    out
}

/// Waits (bounded) until every member in `ids` names the same leader, also in `ids`.
async fn agreed_leader(members: &[Member3], ids: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen: Vec<Option<u64>> = ids.iter().map(|&i| members[i as usize - 1].group.leader()).collect();
        if let Some(Some(l)) = seen.first() {
            if seen.iter().all(|s| *s == Some(*l)) && ids.contains(l) {
                return *l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader among {ids:?}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn converged(members: &[Member3], ids: &[u64], want: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let states: Vec<Vec<u64>> = ids.iter().map(|&i| members[i as usize - 1].group.read(|m| m.0.clone())).collect();
        if states.iter().all(|s| s == want) {
            return;
        }
        assert!(Instant::now() < deadline, "members {ids:?} did not converge on {want:?}: {states:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(members: Vec<Member3>) {
    for m in members {
        m.group.shutdown().await.unwrap();
        m.storage.close(Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_members_agree_and_a_followers_proposals_go_to_the_leader() {
    let net = Loopback::default();
    let members = three(&net, 10_000).await;
    let leader = agreed_leader(&members, &[1, 2, 3]).await;
    for n in 1..=10 {
        let (total, _) = members[leader as usize - 1].group.propose(n, n).await.unwrap();
        assert_eq!(total, (1..=n).sum::<u64>());
    }
    converged(&members, &[1, 2, 3], &(1..=10).collect::<Vec<_>>()).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    // Forwarded to the leader; the reply comes back, and the follower has applied it by then.
    let f = &members[follower as usize - 1].group;
    let (total, effects) = f.propose(0, 99).await.unwrap();
    assert_eq!(total, 55 + 99);
    assert!(effects.is_empty(), "effects stay where the entry was proposed");
    assert_eq!(f.read(|m| m.0.last().copied()), Some(99), "read-your-writes on the follower");
    let batch = f.propose_many(0, vec![1, 2]).await.unwrap();
    assert_eq!(batch.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![155, 157]);
    converged(&members, &[1, 2, 3], &(1..=10).chain([99, 1, 2]).collect::<Vec<_>>()).await;
    stop(members).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_leader_is_replaced_and_catches_up_from_a_snapshot() {
    let net = Loopback::default();
    // Snapshots every 5 entries and an eager purge: a member away for 20 entries has to be
    // sent a snapshot.
    let members = three(&net, 5).await;
    let old = agreed_leader(&members, &[1, 2, 3]).await;
    for n in 1..=10 {
        members[old as usize - 1].group.propose(0, n).await.unwrap();
    }
    converged(&members, &[1, 2, 3], &(1..=10).collect::<Vec<_>>()).await;
    net.isolate(old, true);
    let rest: Vec<u64> = (1..=3).filter(|&i| i != old).collect();
    let new = agreed_leader(&members, &rest).await;
    assert_ne!(new, old);
    for n in 11..=30 {
        members[new as usize - 1].group.propose(0, n).await.unwrap();
    }
    converged(&members, &rest, &(1..=30).collect::<Vec<_>>()).await;
    assert!(members[new as usize - 1].group.snapshots_built() > 0);
    net.isolate(old, false);
    converged(&members, &[1, 2, 3], &(1..=30).collect::<Vec<_>>()).await;
    assert_eq!(agreed_leader(&members, &[1, 2, 3]).await, new, "the healed member follows");
    stop(members).await;
}
