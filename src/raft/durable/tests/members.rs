//! Groups of three members in one process, over [`Loopback`] links that can be cut: agreement,
//! a new leader when the leader is cut off, and a member that fell behind a purged log catching
//! up from a snapshot.

use super::*;
use crate::raft::transport::{Loopback, Router};
use std::collections::BTreeSet;
use std::time::Instant;

const GROUP: GroupId = GroupId(7);

struct Member3<M: DurableMachine = Tally> {
    _dir: tempfile::TempDir,
    storage: Storage,
    group: DurableGroup<M>,
}

fn fast(snapshot_every: u64) -> GroupOptions {
    GroupOptions { snapshot_every, purge_batch: 1, heartbeat_ms: 50, election_ms: (300, 600), ..Default::default() }
}

async fn three<M: DurableMachine + Default>(net: &Loopback, snapshot_every: u64) -> Vec<Member3<M>> {
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    let mut out = Vec::new();
    for me in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let router = Router::new(me);
        let transport = net.join(router.clone());
        let rep = Replication { me, transport, router, initial: Some(voters.clone()) };
        let group =
            DurableGroup::open_member(storage.group(GROUP), M::default(), fast(snapshot_every), rep).await.unwrap();
        out.push(Member3 { _dir: dir, storage, group });
    }
    out
}

/// Waits (bounded) until every member in `ids` names the same leader, also in `ids`.
async fn agreed_leader<M: DurableMachine>(members: &[Member3<M>], ids: &[u64]) -> u64 {
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

async fn stop<M: DurableMachine>(members: Vec<Member3<M>>) {
    for m in members {
        m.group.shutdown().await.unwrap();
        m.storage.close(Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_members_agree_and_a_followers_proposals_go_to_the_leader() {
    let net = Loopback::default();
    let members: Vec<Member3> = three(&net, 10_000).await;
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
    let members: Vec<Member3> = three(&net, 5).await;
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

/// Keeps some entries alive (as a queue keeps its messages' entries): `Keep` lives until a
/// `Drop` names its index.
#[derive(Debug, Default, Clone, PartialEq)]
struct Keeper(std::collections::BTreeMap<u64, u64>);

#[derive(Debug, Clone, PartialEq)]
enum KeepCmd {
    Keep(u64),
    Drop(u64),
}

impl Machine for Keeper {
    type Command = KeepCmd;
    type Reply = u64;
    type Effect = ();

    fn apply(&mut self, meta: ApplyMeta, cmd: KeepCmd, _effects: &mut Vec<()>) -> u64 {
        match cmd {
            KeepCmd::Keep(tag) => self.0.insert(meta.index.0, tag),
            KeepCmd::Drop(i) => self.0.remove(&i),
        };
        meta.index.0
    }
}

impl DurableMachine for Keeper {
    fn encode_command(cmd: &KeepCmd) -> Vec<u8> {
        let (t, v) = match cmd {
            KeepCmd::Keep(v) => (0u8, v),
            KeepCmd::Drop(v) => (1, v),
        };
        std::iter::once(t).chain(v.to_be_bytes()).collect()
    }
    fn decode_command(b: &bytes::Bytes) -> Result<KeepCmd, DecodeError> {
        let v = u64::from_be_bytes(b.get(1..9).and_then(|s| s.try_into().ok()).ok_or(DecodeError("short".into()))?);
        Ok(if b[0] == 0 { KeepCmd::Keep(v) } else { KeepCmd::Drop(v) })
    }
    fn encode_state(&self) -> Vec<u8> {
        self.0.iter().flat_map(|(i, t)| i.to_be_bytes().into_iter().chain(t.to_be_bytes())).collect()
    }
    fn decode_state(b: &bytes::Bytes) -> Result<Self, DecodeError> {
        let u = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap_or_default());
        Ok(Keeper(b.chunks(16).map(|c| (u(&c[..8]), u(&c[8..]))).collect()))
    }
    fn first_live_index(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }
    fn live_indexes(&self) -> Vec<u64> {
        self.0.keys().copied().collect()
    }
}

/// A member that fell behind a log purged up to entries that are still alive catches up from
/// a snapshot, and the live entries come with it: it can read every one of them (a queue's
/// message bodies), though its own log starts after the snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_brings_the_entries_its_state_still_reads() {
    let net = Loopback::default();
    let members: Vec<Member3<Keeper>> = three(&net, 5).await;
    let leader = agreed_leader(&members, &[1, 2, 3]).await;
    let lead = &members[leader as usize - 1].group;
    let kept: Vec<u64> = lead
        .propose_local(0, (0..10).map(KeepCmd::Keep).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    net.isolate(follower, true);
    // The first ten go; twenty more stay. Snapshots every five entries purge the log up to
    // the oldest live entry, past what the cut-off member has.
    lead.propose_local(0, kept.iter().map(|&i| KeepCmd::Drop(i)).collect()).await.unwrap();
    for t in 10..30 {
        lead.propose_local(0, vec![KeepCmd::Keep(t)]).await.unwrap();
    }
    let want = lead.read(|m| m.clone());
    assert_eq!(want.0.len(), 20);
    let first_live = *want.0.keys().next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while lead.purged_index() + 1 < first_live {
        assert!(Instant::now() < deadline, "the leader never purged past the cut-off member");
        lead.snapshot().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let f = &members[follower as usize - 1].group;
    assert!(f.applied_index() < first_live - 1, "the cut-off member has less than the purge");
    net.isolate(follower, false);
    let deadline = Instant::now() + Duration::from_secs(15);
    while f.read(|m| m.clone()) != want {
        assert!(Instant::now() < deadline, "the member did not catch up");
        // Something to replicate, so the leader notices the member is back.
        lead.propose_local(0, vec![KeepCmd::Drop(0)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let indexes: Vec<u64> = want.0.keys().copied().collect();
    let read = f.read_commands(&indexes).unwrap();
    let tags: Vec<Option<KeepCmd>> = read;
    assert_eq!(tags, (10..30).map(|t| Some(KeepCmd::Keep(t))).collect::<Vec<_>>(), "every live entry is readable");
    stop(members).await;
}
