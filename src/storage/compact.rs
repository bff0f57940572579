//! Giving disk space back: RocksDB frees the space of deleted keys only when it compacts the
//! files holding them, and a range delete (a log purge, a deleted queue) on a quiet database
//! may wait for that indefinitely. So large deletes are followed by a compaction of their range,
//! on one background thread (compactions are slow; writers never wait for them).

use rocksdb::DB;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};

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
    tx: mpsc::SyncSender<Job>,
    done: Arc<AtomicU64>,
}

impl Compactor {
    /// Starts the thread. It holds the database weakly and stops with the last handle.
    pub fn start(db: Weak<DB>) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        std::thread::Builder::new()
            .name("warren-compact".into())
            .spawn(move || {
                for job in rx {
                    let Some(db) = db.upgrade() else { return };
                    if let Some(cf) = db.cf_handle(job.cf) {
                        db.compact_range_cf(cf, Some(&job.from), Some(&job.to));
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .expect("spawning the compaction thread");
        Self { tx, done }
    }

    /// Asks for `[from, to)` of `cf` to be compacted; dropped if too many are waiting.
    pub fn request(&self, cf: &'static str, from: &[u8], to: &[u8]) {
        let _ = self.tx.try_send(Job { cf, from: from.to_vec(), to: to.to_vec() });
    }

    /// Compactions finished so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}
