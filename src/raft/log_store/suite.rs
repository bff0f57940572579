//! openraft's storage conformance suite against the RocksDB log store.
//!
//! The builder pre-fills the neighbouring groups (id − 1 and id + 1) with entries and a vote,
//! so a key-range mistake (reading, truncating or purging into another group) fails the suite,
//! and runs once more next to the largest group id.

use super::LogStore;
use crate::raft::types::{Out, Warren};
use crate::storage::{GroupId, StateTag, Storage};
use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError};
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex};

type C = Warren;

/// A state machine that only tracks what the suite checks (applied id, membership, snapshots).
#[derive(Clone, Default)]
struct TestSm(Arc<Mutex<SmInner>>);

#[derive(Default)]
struct SmInner {
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    snapshot: Option<(SnapshotMetaOf<C>, Vec<u8>)>,
}

impl TestSm {
    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftSnapshotBuilder<C> for TestSm {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Cursor<Vec<u8>>>, io::Error> {
        let mut s = self.lock();
        let meta = SnapshotMetaOf::<C> { last_log_id: s.applied.clone(), last_membership: s.membership.clone() };
        s.snapshot = Some((meta.clone(), Vec::new()));
        Ok(SnapshotOf::<C, Cursor<Vec<u8>>> { meta, snapshot: Cursor::new(Vec::new()) })
    }
}

impl RaftStateMachine<C> for TestSm {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let s = self.lock();
        Ok((s.applied.clone(), s.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut s = self.lock();
                s.applied = Some(entry.log_id.clone());
                if let EntryPayload::Membership(m) = &entry.payload {
                    s.membership = StoredMembershipOf::<C>::new(Some(entry.log_id.clone()), m.clone());
                }
            }
            if let Some(r) = responder {
                r.send(Out::default());
            }
        }
        Ok(())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let mut s = self.lock();
        s.applied = meta.last_log_id.clone();
        s.membership = meta.last_membership.clone();
        s.snapshot = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        let s = self.lock();
        Ok(s.snapshot.as_ref().map(|(meta, data)| SnapshotOf::<C, Cursor<Vec<u8>>> {
            meta: meta.clone(),
            snapshot: Cursor::new(data.clone()),
        }))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }
}

/// Opens a fresh storage and hands out group `id`, with its neighbours holding data.
struct Builder {
    id: u64,
}

fn fail(e: impl std::fmt::Display) -> StorageError<C> {
    StorageError::read(C::err_from_error(&io::Error::other(e.to_string())))
}

impl StoreBuilder<C, LogStore, TestSm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, TestSm), StorageError<C>> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let storage = Storage::open(dir.path()).map_err(fail)?;
        for neighbour in [self.id - 1, self.id + 1] {
            let g = storage.group(GroupId(neighbour));
            let junk: Vec<(u64, Vec<u8>)> = (0..20).map(|i| (i, b"not an entry of this group".to_vec())).collect();
            g.append(junk, Box::new(|_| {})).map_err(fail)?;
            g.save_state(StateTag::Vote, b"not a vote").map_err(fail)?;
            g.save_state(StateTag::Purged, b"not a log id").map_err(fail)?;
        }
        Ok((dir, LogStore::new(storage.group(GroupId(self.id))), TestSm::default()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openraft_storage_suite() {
    Suite::test_all(Builder { id: 7 }).await.expect("openraft storage suite");
}

#[tokio::test(flavor = "multi_thread")]
async fn openraft_storage_suite_at_the_largest_group_id() {
    Suite::test_all(Builder { id: u64::MAX - 1 }).await.expect("openraft storage suite");
}
