//! One group's log entries and Raft state, stored as opaque bytes (the raft layer encodes).

use super::compact::Compactor;
use super::keys::{self, GroupId};
use super::sync::{Syncer, Waiter};
use super::{CF_LOG, CF_SM, CF_STATE, StorageError};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The kinds of per-group state kept beside the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateTag {
    Vote = 1,
    Committed = 2,
    Purged = 3,
    /// The group's latest state-machine snapshot (meta and machine state).
    Snapshot = 4,
}

/// Purged entries after which their range is compacted (its disk space given back).
pub(super) const COMPACT_AFTER: u64 = 65_536;
/// A snapshot this large, replaced by one less than half its size, is compacted away.
const LARGE_SNAPSHOT: u64 = 1 << 20;

/// A handle on one group's log; cheap to clone.
#[derive(Clone)]
pub struct GroupLog {
    db: Weak<DB>,
    id: GroupId,
    syncer: Syncer,
    compactor: Compactor,
    /// The purge point when the log was last compacted (shared by clones).
    compacted: Arc<AtomicU64>,
    /// Size of the snapshot saved last through this handle (shared by clones).
    snapshot_len: Arc<AtomicU64>,
}

impl GroupLog {
    pub(super) fn new(db: Weak<DB>, id: GroupId, syncer: Syncer, compactor: Compactor) -> Self {
        let (compacted, snapshot_len) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        Self { db, id, syncer, compactor, compacted, snapshot_len }
    }

    pub fn id(&self) -> GroupId {
        self.id
    }

    /// The database, while the storage is open.
    fn db(&self) -> Result<Arc<DB>, StorageError> {
        self.db.upgrade().ok_or(StorageError::Closed)
    }

    /// Writes entries; they are readable when this returns, and `on_durable` runs once they
    /// are on disk (shared fsync, see [`Syncer`]).
    pub fn append(
        &self,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
        on_durable: Waiter,
    ) -> Result<(), StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, keys::log_key(self.id, index), bytes);
        }
        db.write(batch).map_err(StorageError::io)?;
        self.syncer.after_sync(on_durable);
        Ok(())
    }

    /// Entries with indexes in `range`, in order.
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_LOG)?;
        let start = keys::log_key(self.id, range.start);
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(StorageError::io)?;
            match keys::index_of(self.id, &k) {
                Some(i) if i < range.end => out.push((i, v.into_vec())),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The entries at `indexes`, in that order (`None` where there is none): one batched read.
    pub fn entries_at(&self, indexes: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_LOG)?;
        let keys: Vec<[u8; 16]> = indexes.iter().map(|&i| keys::log_key(self.id, i)).collect();
        db.batched_multi_get_cf(cf, &keys, false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(StorageError::io))
            .collect()
    }

    /// The entries at `indexes` from the log, or else from those kept beside it
    /// ([`GroupLog::keep`]), in that order.
    pub fn entries_or_kept_at(&self, indexes: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let mut found = self.entries_at(indexes)?;
        let missing: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let db = self.db()?;
        let cf = cf(&db, CF_SM)?;
        let keys: Vec<[u8; 16]> = missing.iter().map(|&i| keys::log_key(self.id, indexes[i])).collect();
        for (i, r) in missing.into_iter().zip(db.batched_multi_get_cf(cf, &keys, false)) {
            found[i] = r.map_err(StorageError::io)?.map(|s| s.to_vec());
        }
        Ok(found)
    }

    /// Keeps entries beside the log (durable on return): a follower that catches up from a
    /// snapshot starts its log after it, yet still needs the entries of the messages the
    /// snapshot holds (their bodies), which come with the snapshot.
    pub fn keep(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_SM)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, keys::log_key(self.id, *index), bytes);
        }
        db.write_opt(batch, &synced()).map_err(StorageError::io)
    }

    /// Forgets the kept entries below `index` (no message needs them any more).
    pub fn drop_kept_below(&self, index: u64) -> Result<(), StorageError> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&db, CF_SM)?, keys::log_key(self.id, 0), keys::log_key(self.id, index));
        db.write(batch).map_err(StorageError::io)
    }

    /// The last entry, if any.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_LOG)?;
        let end = keys::log_key(self.id, u64::MAX);
        let mut it = db.iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse));
        match it.next() {
            Some(item) => {
                let (k, v) = item.map_err(StorageError::io)?;
                Ok(keys::index_of(self.id, &k).map(|i| (i, v.into_vec())))
            }
            None => Ok(None),
        }
    }

    /// Deletes entries from `index` on (conflicting entries replaced by a new leader); durable
    /// on return.
    pub fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        self.delete_range(keys::log_key(self.id, index), keys::log_key(GroupId(self.id.0 + 1), 0))
    }

    /// Deletes entries up to and including `index` (after a snapshot); durable on return. Once
    /// [`COMPACT_AFTER`] entries were purged, their range is compacted in the background.
    pub fn purge_upto(&self, index: u64) -> Result<(), StorageError> {
        let (from, to) = (keys::log_key(self.id, 0), keys::log_key(self.id, index.saturating_add(1)));
        self.delete_range(from, to)?;
        if index >= self.compacted.load(Ordering::Relaxed) + COMPACT_AFTER {
            self.compacted.store(index, Ordering::Relaxed);
            self.compactor.request(CF_LOG, &from, &to);
        }
        Ok(())
    }

    fn delete_range(&self, from: [u8; 16], to: [u8; 16]) -> Result<(), StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, from, to);
        db.write_opt(batch, &synced()).map_err(StorageError::io)
    }

    /// Stores a piece of Raft state durably (a vote must be on disk before it is sent). A
    /// snapshot that replaces a large one has its key compacted in the background, so the old
    /// one's space comes back.
    pub fn save_state(&self, tag: StateTag, bytes: &[u8]) -> Result<(), StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_STATE)?;
        let key = keys::state_key(self.id, tag as u8);
        db.put_cf_opt(cf, key, bytes, &synced()).map_err(StorageError::io)?;
        if tag == StateTag::Snapshot {
            let before = self.snapshot_len.swap(bytes.len() as u64, Ordering::Relaxed);
            if before >= LARGE_SNAPSHOT && (bytes.len() as u64) < before / 2 {
                self.compactor.request(CF_STATE, &key, &keys::state_key(self.id, tag as u8 + 1));
            }
        }
        Ok(())
    }

    pub fn read_state(&self, tag: StateTag) -> Result<Option<Vec<u8>>, StorageError> {
        let db = self.db()?;
        let cf = cf(&db, CF_STATE)?;
        db.get_cf(cf, keys::state_key(self.id, tag as u8)).map_err(StorageError::io)
    }

    /// Removes everything the group stored (its queue was deleted); the id is never reused.
    pub fn destroy(&self) -> Result<(), StorageError> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        let (from, to) = (self.id.0.to_be_bytes(), (self.id.0 + 1).to_be_bytes());
        for name in [CF_LOG, CF_STATE, CF_SM] {
            batch.delete_range_cf(cf(&db, name)?, from, to);
        }
        db.write_opt(batch, &synced()).map_err(StorageError::io)?;
        self.compactor.request(CF_LOG, &from, &to);
        Ok(())
    }
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily, StorageError> {
    db.cf_handle(name).ok_or(StorageError::MissingColumnFamily(name))
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}
