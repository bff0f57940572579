//! Giving disk space back: RocksDB frees the space of deleted keys only when it compacts the
//! files holding them, and a range delete (a log purge, a deleted queue) on a quiet database
//! may wait for that indefinitely. So large deletes are followed by a compaction of their range,
//! on one background thread (compactions are slow; writers never wait for them).

use rocksdb::DB;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::thread::JoinHandle;

/// Compactions that may wait; more requests are dropped (a later one covers their range).
const QUEUE: usize = 64;

struct Job {
    cf: &'static str,
    from: Vec<u8>,
    to: Vec<u8>,
}

/// A handle on the compaction thread; cheap to clone.
#[derive(Clone)]
pub struct Compactor {
    /// `None` wakes the thread to see `stop`.
    tx: mpsc::SyncSender<Option<Job>>,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Compactor {
    /// Starts the thread; it holds the database weakly (strongly only during a compaction).
    /// The storage stops it with [`Compactor::stop`] and joins the handle before the database
    /// goes: RocksDB must not be compacting while the process exits.
    pub fn start(db: Weak<DB>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel::<Option<Job>>(QUEUE);
        let (done, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (counter, stopped) = (done.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("warren-compact".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let Some(job) = job.filter(|_| !stopped.load(Ordering::Relaxed)) else { return };
                    let Some(db) = db.upgrade() else { return };
                    if let Some(cf) = db.cf_handle(job.cf) {
                        db.compact_range_cf(cf, Some(&job.from), Some(&job.to));
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .expect("spawning the compaction thread");
        (Self { tx, done, stop }, thread)
    }

    /// No compaction starts after this (one under way finishes).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes an idle thread; a busy one (queue full) sees the flag after its compaction.
        let _ = self.tx.try_send(None);
    }

    /// Asks for `[from, to)` of `cf` to be compacted; dropped if too many are waiting.
    pub fn request(&self, cf: &'static str, from: &[u8], to: &[u8]) {
        let _ = self.tx.try_send(Some(Job { cf, from: from.to_vec(), to: to.to_vec() }));
    }

    /// Compactions finished so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}
