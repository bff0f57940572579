//! Storage tests on a real RocksDB in a temporary directory.

use super::*;
use std::sync::mpsc;
use std::time::Duration;

fn noop() -> sync::Waiter {
    Box::new(|_| {})
}

fn entries(n: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    n.map(|i| (i, format!("entry-{i}").into_bytes())).collect()
}

#[test]
fn append_read_truncate_purge_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let (a, b) = (s.group(s.allocate_group().unwrap()), s.group(s.allocate_group().unwrap()));
    assert_ne!(a.id(), b.id());
    a.append(entries(1..6), noop()).unwrap();
    b.append(entries(1..3), noop()).unwrap();
    // Readable as soon as append returns.
    assert_eq!(a.entries(2..4).unwrap(), entries(2..4));
    assert_eq!(a.last().unwrap(), Some((5, b"entry-5".to_vec())));
    assert_eq!(b.last().unwrap().map(|e| e.0), Some(2));
    a.truncate_from(4).unwrap();
    assert_eq!(a.last().unwrap().map(|e| e.0), Some(3));
    a.purge_upto(2).unwrap();
    assert_eq!(a.entries(0..100).unwrap(), entries(3..4));
    assert_eq!(b.entries(0..100).unwrap(), entries(1..3), "other groups untouched");
    a.save_state(StateTag::Vote, b"term=3").unwrap();
    assert_eq!(a.read_state(StateTag::Vote).unwrap().as_deref(), Some(&b"term=3"[..]));
    assert_eq!(b.read_state(StateTag::Vote).unwrap(), None);
    a.destroy().unwrap();
    assert!(a.entries(0..100).unwrap().is_empty() && a.read_state(StateTag::Vote).unwrap().is_none());
    assert_eq!(b.entries(0..100).unwrap().len(), 2);
}

#[test]
fn durability_callbacks_fire_and_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let g = s.group(s.allocate_group().unwrap());
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 1..=200u64 {
                    let tx = tx.clone();
                    g.append(vec![(i, vec![t as u8; 100])], Box::new(move |r| tx.send(r.is_ok()).unwrap())).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for _ in 0..1600 {
        assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "append made durable");
    }
    let st = s.sync_stats();
    assert_eq!(st.waiters, 1600);
    assert!(st.syncs < st.waiters, "fsyncs are shared: {st:?}");
}

#[test]
fn data_survives_reopen_and_group_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (id, next) = {
        let s = Storage::open(dir.path()).unwrap();
        let id = s.allocate_group().unwrap();
        let (tx, rx) = mpsc::channel();
        s.group(id).append(entries(1..4), Box::new(move |r| tx.send(r.is_ok()).unwrap())).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        (id, s.allocate_group().unwrap())
    };
    let s = Storage::open(dir.path()).unwrap();
    assert_eq!(s.group(id).entries(0..10).unwrap(), entries(1..4));
    assert!(s.allocate_group().unwrap() > next);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Storage::open(dir.path()).unwrap();
    let err = Storage::open(dir.path()).err().expect("second open refused");
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use by another process"));
}

#[test]
fn another_format_version_is_refused_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path()).unwrap();
        let db = s.db().unwrap();
        let node = db.cf_handle(CF_NODE).unwrap();
        db.put_cf(node, FORMAT_KEY, 99u64.to_be_bytes()).unwrap();
    }
    let err = Storage::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StorageError::IncompatibleFormat { found: 99, supported: FORMAT_VERSION, .. }), "{err}");
}

#[test]
fn a_directory_with_other_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("important.txt"), "not ours").unwrap();
    let err = Storage::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StorageError::Foreign { .. }), "{err}");
    assert!(dir.path().join("important.txt").exists(), "nothing touched");
}

#[test]
fn a_corrupt_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Storage::open(dir.path()).unwrap());
    std::fs::write(dir.path().join("rocksdb").join("CURRENT"), "garbage\n").unwrap();
    let err = Storage::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("refusing to start over it"));
    // A database directory whose CURRENT is missing is refused too, never re-created empty.
    std::fs::remove_file(dir.path().join("rocksdb").join("CURRENT")).unwrap();
    let err = Storage::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

/// Space freed by a large purge is given back: the purged range is compacted in the
/// background, so the files holding the old entries go.
#[test]
fn large_purges_give_disk_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let g = s.group(s.allocate_group().unwrap());
    let n = 2 * log::COMPACT_AFTER;
    // Incompressible bodies, so the files' size is the data's.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = || {
        (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>()
    };
    for chunk in (1..=n).collect::<Vec<_>>().chunks(4096) {
        g.append(chunk.iter().map(|&i| (i, noise())), noop()).unwrap();
    }
    let db = s.db().unwrap();
    db.flush_cf(db.cf_handle(CF_LOG).unwrap()).unwrap();
    let live =
        |db: &rocksdb::DB| db.property_int_value_cf(db.cf_handle(CF_LOG).unwrap(), "rocksdb.live-sst-files-size");
    let before = live(&db).unwrap().unwrap();
    assert!(before > n * 1000, "{before} bytes of files");
    g.purge_upto(n).unwrap();
    for _ in 0..500 {
        if s.compactions() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.compactions(), 1);
    let after = live(&db).unwrap().unwrap();
    assert!(after < before / 100, "files after the purge: {after} bytes (before: {before})");
}
