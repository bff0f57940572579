//! Node-local storage: the only module that imports rocksdb.
//!
//! One RocksDB per node (`<data_dir>/rocksdb`) holds every replication group's data, with keys
//! prefixed by the group id ([`GroupId`], never reused):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `log` | group ‖ index (both u64 big-endian) | one log entry (opaque bytes) |
//! | `state` | group ‖ tag | vote, committed, purged marker (opaque bytes) |
//! | `sm` | group ‖ app key | state-machine data (snapshots, message bodies) |
//! | `node` | name | format version, group id allocator |
//!
//! Writes are applied at once (readable on return) without syncing; durability comes from
//! [`sync::Syncer`], one thread that syncs the WAL for everyone who asked since the last sync
//! (group commit: many groups, many appends, one fsync). That is the shape openraft's log
//! storage needs: entries readable when `append` returns, durable when the callback fires.

mod compact;
mod dir;
mod error;
mod identity;
mod keys;
mod log;
mod sync;

pub use error::StorageError;
pub use identity::{has_database, read_node_id, write_node_id};
pub use keys::GroupId;
pub use log::{GroupLog, StateTag};
pub use sync::{SyncStats, Syncer};

use rocksdb::{ColumnFamilyDescriptor, DB, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
const CF_SM: &str = "sm";
const CF_NODE: &str = "node";
const COLUMN_FAMILIES: [&str; 4] = [CF_LOG, CF_STATE, CF_SM, CF_NODE];

/// The on-disk format this build reads and writes. Bumped on any incompatible change; a data
/// directory with another value is refused at start-up, never rewritten.
pub const FORMAT_VERSION: u64 = 1;
const FORMAT_KEY: &[u8] = b"format_version";
const NEXT_GROUP_KEY: &[u8] = b"next_group_id";

/// The node's storage: a shared handle.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    /// The open database; `None` once closed. Group logs hold it weakly, so closing the
    /// storage really closes the database (and releases its lock).
    db: std::sync::Mutex<Option<Arc<DB>>>,
    syncer: Syncer,
    compactor: compact::Compactor,
    compactor_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

impl Inner {
    /// Stops the compaction thread and waits for it (a compaction under way finishes).
    fn stop_compactor(&self) {
        self.compactor.stop();
        let thread = self.compactor_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_compactor();
    }
}

impl Storage {
    /// Opens (or creates) the storage under `data_dir`. Refuses, with a message naming the
    /// problem, a directory that is locked by another process, unreadable, corrupt, from an
    /// incompatible format, or non-empty without Warren data: it never starts empty over data.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        let path = dir::prepare(data_dir)?;
        let fresh = !path.join("CURRENT").exists();
        let mut opts = Options::default();
        opts.create_if_missing(fresh);
        opts.create_missing_column_families(true);
        opts.set_manual_wal_flush(false);
        // A WAL file can go only once every column family with data in it has flushed; the
        // quiet families (Raft state, node) would otherwise pin old WALs forever. Past this
        // size RocksDB flushes whatever holds the oldest WAL.
        opts.set_max_total_wal_size(256 * 1024 * 1024);
        let cfs = COLUMN_FAMILIES.iter().map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs).map_err(|e| StorageError::from_open(&path, e))?;
        let db = Arc::new(db);
        let node = db.cf_handle(CF_NODE).ok_or(StorageError::MissingColumnFamily(CF_NODE))?;
        match db.get_cf(node, FORMAT_KEY).map_err(StorageError::io)? {
            Some(v) => {
                let found = keys::decode_u64(&v).ok_or_else(|| StorageError::Corrupt {
                    path: path.clone(),
                    detail: "unreadable format version".into(),
                })?;
                if found != FORMAT_VERSION {
                    return Err(StorageError::IncompatibleFormat { path, found, supported: FORMAT_VERSION });
                }
            }
            None if fresh => {
                let mut w = rocksdb::WriteOptions::default();
                w.set_sync(true);
                db.put_cf_opt(node, FORMAT_KEY, FORMAT_VERSION.to_be_bytes(), &w).map_err(StorageError::io)?;
            }
            None => {
                return Err(StorageError::Corrupt {
                    path,
                    detail: "no format version: not written by Warren, or damaged".into(),
                });
            }
        }
        let syncer = Syncer::start(Arc::downgrade(&db));
        let (compactor, thread) = compact::Compactor::start(Arc::downgrade(&db));
        let compactor_thread = std::sync::Mutex::new(Some(thread));
        let inner = Inner { db: std::sync::Mutex::new(Some(db)), syncer, compactor, compactor_thread, path };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Allocates a fresh group id, durably: ids are never handed out twice, even across crashes.
    /// For tools and tests that own a whole storage: the broker does not use it (its metadata
    /// machine allocates queue group ids, and group 0 is the metadata group), and the two must
    /// not be mixed on one storage.
    pub fn allocate_group(&self) -> Result<GroupId, StorageError> {
        let db = self.db()?;
        let node = db.cf_handle(CF_NODE).ok_or(StorageError::MissingColumnFamily(CF_NODE))?;
        let next = match db.get_cf(node, NEXT_GROUP_KEY).map_err(StorageError::io)? {
            Some(v) => keys::decode_u64(&v).ok_or_else(|| self.corrupt("unreadable group id allocator"))?,
            None => 1,
        };
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        db.put_cf_opt(node, NEXT_GROUP_KEY, (next + 1).to_be_bytes(), &w).map_err(StorageError::io)?;
        Ok(GroupId(next))
    }

    /// The log and Raft state of one group (a weak handle: it fails with `Closed` once the
    /// storage is closed).
    pub fn group(&self, id: GroupId) -> GroupLog {
        let weak = self.lock_db().as_ref().map(Arc::downgrade).unwrap_or_default();
        GroupLog::new(weak, id, self.inner.syncer.clone(), self.inner.compactor.clone())
    }

    fn lock_db(&self) -> std::sync::MutexGuard<'_, Option<Arc<DB>>> {
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db(&self) -> Result<Arc<DB>, StorageError> {
        self.lock_db().clone().ok_or(StorageError::Closed)
    }

    /// Closes the database once operations in flight are done (at most `timeout`); group
    /// logs fail with `Closed` afterwards. Shutdown calls it last, so the lock is free for
    /// the next start.
    pub async fn close(&self, timeout: std::time::Duration) -> Result<(), StorageError> {
        // No new compaction; one under way holds the database until it ends (waited for below).
        self.inner.compactor.stop();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut db = self.lock_db();
                match db.as_ref() {
                    None => return Ok(()),
                    Some(d) if Arc::strong_count(d) == 1 => {
                        db.take();
                        return Ok(());
                    }
                    Some(_) => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StorageError::Io(format!(
                    "{}: still in use after {timeout:?}; not closed",
                    self.inner.path.display()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub fn sync_stats(&self) -> SyncStats {
        self.inner.syncer.stats()
    }

    /// Every group that has anything stored (log entries or Raft state), in id order.
    pub fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        let db = self.db()?;
        let mut found = std::collections::BTreeSet::new();
        for name in [CF_LOG, CF_STATE] {
            let cf = db.cf_handle(name).ok_or(StorageError::MissingColumnFamily(name))?;
            let mut next = 0u64;
            loop {
                // Seek to the first key of group `next` or later; jump past that group.
                let from = next.to_be_bytes();
                let mode = rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward);
                let Some(item) = db.iterator_cf(cf, mode).next() else { break };
                let (key, _) = item.map_err(StorageError::io)?;
                let Some(id) = key.get(..8).and_then(keys::decode_u64) else { break };
                found.insert(id);
                match id.checked_add(1) {
                    Some(n) => next = n,
                    None => break,
                }
            }
        }
        Ok(found.into_iter().map(GroupId).collect())
    }

    /// Background compactions finished (after large purges and deletes).
    pub fn compactions(&self) -> u64 {
        self.inner.compactor.done()
    }

    fn corrupt(&self, detail: &str) -> StorageError {
        StorageError::Corrupt { path: self.inner.path.clone(), detail: detail.into() }
    }
}

#[cfg(test)]
mod tests;
