//! Group commit: one thread syncs the WAL for every writer that asked since the last sync.
//!
//! A writer applies its batch (readable at once), then calls [`Syncer::after_sync`] with a
//! callback. The thread takes every waiting callback, makes the WAL durable with one fsync,
//! and runs them. While one fsync is in flight new requests pile up and share the next one,
//! so durable appends per second grow with load instead of being capped by fsyncs per second.

use super::StorageError;
use rocksdb::DB;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Called once the writes made before the request are durable (or the sync failed).
pub type Waiter = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Requests that may wait for the syncer before writers block (back-pressure).
const QUEUE: usize = 65_536;

/// Counters for benchmarks: how many fsyncs, and how many waiters they served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub syncs: u64,
    pub waiters: u64,
}

#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    waiters: AtomicU64,
}

#[derive(Clone)]
pub struct Syncer {
    tx: mpsc::SyncSender<Waiter>,
    counters: Arc<Counters>,
}

impl Syncer {
    /// Starts the sync thread. It holds the database weakly, so closing the storage (dropping
    /// every handle) really closes the database and releases its lock.
    pub(super) fn start(db: std::sync::Weak<DB>) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Waiter>(QUEUE);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("warren-wal-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = match db.upgrade() {
                        Some(db) => db.flush_wal(true).map_err(StorageError::io),
                        None => Err(StorageError::Closed),
                    };
                    c.syncs.fetch_add(1, Ordering::Relaxed);
                    c.waiters.fetch_add(waiting.len() as u64, Ordering::Relaxed);
                    for w in waiting {
                        w(result.as_ref().map(|_| ()).map_err(|e| StorageError::Io(e.to_string())));
                    }
                }
            })
            .expect("spawning the WAL sync thread");
        Self { tx, counters }
    }

    /// Runs `done` once everything written before this call is durable.
    pub fn after_sync(&self, done: Waiter) {
        if let Err(mpsc::SendError(done)) = self.tx.send(done) {
            done(Err(StorageError::Closed));
        }
    }

    pub fn stats(&self) -> SyncStats {
        SyncStats {
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            waiters: self.counters.waiters.load(Ordering::Relaxed),
        }
    }
}
