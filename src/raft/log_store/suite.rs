//! openraft's storage conformance suite against the RocksDB log store.
//!
//! The builder pre-fills the neighbouring groups (id − 1 and id + 1) with entries and a vote,
//! so a key-range mistake (reading, truncating or purging into another group) fails the suite,
//! and runs once more next to the largest group id.

use super::LogStore;
use crate::raft::durable::SmAdapter;
use crate::raft::types::Warren;
use crate::raft::{ApplyMeta, DecodeError, DurableMachine, Machine};
use crate::storage::{GroupId, StateTag, Storage};
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use std::io;

type C = Warren;

/// The suite's machine: commands are empty and do nothing (the suite never applies a normal
/// entry); it runs inside the real adapter, so the suite exercises `SmAdapter` too.
#[derive(Default)]
struct Null;

impl Machine for Null {
    type Command = ();
    type Reply = ();
    type Effect = ();
    fn apply(&mut self, _: ApplyMeta, _: (), _: &mut Vec<()>) {}
}

impl DurableMachine for Null {
    fn encode_command(_: &()) -> Vec<u8> {
        Vec::new()
    }
    fn decode_command(_: &bytes::Bytes) -> Result<(), DecodeError> {
        Ok(())
    }
    fn encode_state(&self) -> Vec<u8> {
        Vec::new()
    }
    fn decode_state(_: &bytes::Bytes) -> Result<Self, DecodeError> {
        Ok(Null)
    }
}

type TestSm = SmAdapter<Null>;

/// Opens a fresh storage and hands out group `id`, with its neighbours holding data.
struct Builder {
    id: u64,
}

fn fail(e: impl std::fmt::Display) -> StorageError<C> {
    StorageError::read(C::err_from_error(&io::Error::other(e.to_string())))
}

impl StoreBuilder<C, LogStore, TestSm, (Storage, tempfile::TempDir)> for Builder {
    async fn build(&self) -> Result<((Storage, tempfile::TempDir), LogStore, TestSm), StorageError<C>> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let storage = Storage::open(dir.path()).map_err(fail)?;
        for neighbour in [self.id - 1, self.id + 1] {
            let g = storage.group(GroupId(neighbour));
            let junk: Vec<(u64, Vec<u8>)> = (0..20).map(|i| (i, b"not an entry of this group".to_vec())).collect();
            g.append(junk, Box::new(|_| {})).map_err(fail)?;
            g.save_state(StateTag::Vote, b"not a vote").map_err(fail)?;
            g.save_state(StateTag::Purged, b"not a log id").map_err(fail)?;
        }
        let log = storage.group(GroupId(self.id));
        // The guard keeps the storage open for the test's lifetime; tuple fields drop in
        // order, so the database closes before its directory is removed (a directory removed
        // under an open RocksDB can abort its background threads).
        Ok(((storage, dir), LogStore::new(log.clone()), SmAdapter::new(Null, log)))
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
