//! The durable group on a real RocksDB: replies and effects, restart recovery from the log and
//! from snapshots, shared fsyncs.

use super::*;
use crate::raft::ApplyMeta;
use crate::storage::{GroupId, Storage};

/// Keeps every number it was given; replies with their running total.
#[derive(Debug, Default, PartialEq)]
struct Tally(Vec<u64>);

impl Machine for Tally {
    type Command = u64;
    type Reply = u64;
    type Effect = (u64, u64);

    fn apply(&mut self, meta: ApplyMeta, cmd: u64, effects: &mut Vec<(u64, u64)>) -> u64 {
        self.0.push(cmd);
        effects.push((meta.index.0, meta.now_ms));
        self.0.iter().sum()
    }
}

impl DurableMachine for Tally {
    fn encode_command(cmd: &u64) -> Vec<u8> {
        cmd.to_be_bytes().to_vec()
    }
    fn decode_command(b: &bytes::Bytes) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(b[..].try_into().map_err(|_| DecodeError(format!("{} bytes", b.len())))?))
    }
    fn encode_reply(total: &u64) -> Option<Vec<u8>> {
        Some(Self::encode_command(total))
    }
    fn decode_reply(b: &bytes::Bytes) -> Result<u64, DecodeError> {
        Self::decode_command(b)
    }
    fn encode_state(&self) -> Vec<u8> {
        self.0.iter().flat_map(|n| n.to_be_bytes()).collect()
    }
    fn state_weight(&self) -> u64 {
        self.0.len() as u64
    }
    fn decode_state(b: &bytes::Bytes) -> Result<Self, DecodeError> {
        b.chunks(8)
            .map(|c| c.try_into().map(u64::from_be_bytes).map_err(|_| DecodeError("state".into())))
            .collect::<Result<_, _>>()
            .map(Tally)
    }
}

fn opts(snapshot_every: u64) -> GroupOptions {
    GroupOptions { snapshot_every, purge_batch: 1, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn proposals_reply_with_effects_after_applying() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let g = DurableGroup::open(s.group(s.allocate_group().unwrap()), Tally::default(), opts(10_000)).await.unwrap();
    let (total, fx) = g.propose(111, 5).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(fx.len(), 1);
    assert_eq!(fx[0].1, 111, "time is the proposer's stamp");
    let first_index = fx[0].0;
    let (total, fx) = g.propose(112, 7).await.unwrap();
    assert_eq!((total, fx[0].0), (12, first_index + 1));
    assert_eq!(g.read(|m| m.0.clone()), vec![5, 7]);
    // A single member takes no ticks, so openraft's tick task was never run (`runtime.rs`
    // recognizes it by name: this fails if an upgrade renames it).
    assert!(crate::raft::runtime::skipped() >= 1, "the tick loop was not recognized");
    g.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn state_is_recovered_after_restart_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let s = Storage::open(dir.path()).unwrap();
        id = s.allocate_group().unwrap();
        let g = DurableGroup::open(s.group(id), Tally::default(), opts(10_000)).await.unwrap();
        for n in 1..=20 {
            g.propose(0, n).await.unwrap();
        }
        g.shutdown().await.unwrap();
        s.close(Duration::from_secs(10)).await.unwrap();
    }
    let s = Storage::open(dir.path()).unwrap();
    let g = DurableGroup::open(s.group(id), Tally::default(), opts(10_000)).await.unwrap();
    assert_eq!(g.read(|m| m.0.clone()), (1..=20).collect::<Vec<_>>());
    let (total, _) = g.propose(0, 100).await.unwrap();
    assert_eq!(total, 210 + 100);
    g.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_purge_the_log_and_restore_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let id = GroupId(42);
    {
        let s = Storage::open(dir.path()).unwrap();
        let g = DurableGroup::open(s.group(id), Tally::default(), opts(10_000)).await.unwrap();
        for n in 1..=50 {
            g.propose(0, n).await.unwrap();
        }
        g.snapshot().await.unwrap();
        // The snapshot is taken in the background; wait (bounded) until it purged the log.
        let log = s.group(id);
        let mut purged = false;
        for _ in 0..200 {
            if log.entries(0..u64::MAX).unwrap().len() < 10 {
                purged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(purged, "log purged behind the snapshot");
        g.propose(0, 1000).await.unwrap();
        g.shutdown().await.unwrap();
        drop(log);
        s.close(Duration::from_secs(10)).await.unwrap();
    }
    let s = Storage::open(dir.path()).unwrap();
    let g = DurableGroup::open(s.group(id), Tally::default(), opts(10_000)).await.unwrap();
    let mut want: Vec<u64> = (1..=50).collect();
    want.push(1000);
    assert_eq!(g.read(|m| m.0.clone()), want, "snapshot plus the log after it");
    g.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_apply_in_order_with_one_reply_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let g = DurableGroup::open(s.group(s.allocate_group().unwrap()), Tally::default(), opts(10_000)).await.unwrap();
    let replies = g.propose_many(5, vec![1, 2, 3, 4]).await.unwrap();
    let totals: Vec<u64> = replies.iter().map(|(t, _)| *t).collect();
    assert_eq!(totals, vec![1, 3, 6, 10]);
    let indexes: Vec<u64> = replies.iter().map(|(_, fx)| fx[0].0).collect();
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "consecutive log entries: {indexes:?}");
    assert!(g.propose_many(5, vec![]).await.unwrap().is_empty());
    g.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_proposals_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let g = Arc::new(
        DurableGroup::open(s.group(s.allocate_group().unwrap()), Tally::default(), opts(10_000)).await.unwrap(),
    );
    let before = s.sync_stats();
    let tasks: Vec<_> = (0..200u64)
        .map(|n| {
            let g = g.clone();
            tokio::spawn(async move { g.propose(0, n).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let after = s.sync_stats();
    assert_eq!(g.read(|m| m.0.len()), 200);
    assert!(after.syncs - before.syncs < 200, "200 proposals took {} fsyncs", after.syncs - before.syncs);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_wait_until_the_log_outweighs_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    // The policy asks for a snapshot every entry; the state's weight (its length) defers them,
    // so 400 proposals take a handful of snapshots (doubling), not hundreds.
    let g = DurableGroup::open(s.group(s.allocate_group().unwrap()), Tally::default(), opts(1)).await.unwrap();
    for n in 0..400 {
        g.propose(0, n).await.unwrap();
    }
    let built = g.snapshots_built();
    assert!((1..=16).contains(&built), "{built} snapshots for 400 entries");
    g.shutdown().await.unwrap();
}

mod members;
