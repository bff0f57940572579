//! Durable appends through the group-commit syncer: many groups appending concurrently, each
//! append acknowledged only when its fsync completes. Prints appends/s, fsyncs/s and how many
//! appends shared each fsync. `cargo bench --bench storage -- [groups] [appends-per-group] [bytes]`
use std::sync::mpsc;
use std::time::{Duration, Instant};
use warren::storage::Storage;

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter(|a| a != "--bench").filter_map(|a| a.parse().ok()).collect();
    let groups = *args.first().unwrap_or(&64);
    let per_group = *args.get(1).unwrap_or(&500);
    let size = *args.get(2).unwrap_or(&1024) as usize;
    let dir = std::env::temp_dir().join(format!("warren-storage-bench-{}", std::process::id()));
    let storage = Storage::open(&dir).expect("open storage");
    // Each group keeps one append in flight, as a Raft leader waiting for its fsync would
    // (the worst case for an fsync-per-append design).
    let start = Instant::now();
    let threads: Vec<_> = (0..groups)
        .map(|_| {
            let g = storage.group(storage.allocate_group().expect("group"));
            std::thread::spawn(move || {
                let body = vec![7u8; size];
                for i in 1..=per_group {
                    let (tx, rx) = mpsc::channel();
                    g.append(vec![(i, body.clone())], Box::new(move |r| tx.send(r.is_ok()).unwrap_or(())))
                        .expect("append");
                    assert!(rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false), "durable");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let st = storage.sync_stats();
    let total = groups * per_group;
    println!(
        "groups={groups} appends={total} size={size}B | {:.0} durable appends/s, {:.0} fsyncs/s, {:.1} appends per fsync, {:.2} ms per fsync",
        total as f64 / secs,
        st.syncs as f64 / secs,
        st.waiters as f64 / st.syncs.max(1) as f64,
        secs * 1000.0 / st.syncs.max(1) as f64
    );
    drop(storage);
    let _ = std::fs::remove_dir_all(&dir);
}
