//! Proposals through an openraft group on RocksDB (one node): sequential latency (one fsync
//! plus task hops each) and concurrent throughput (proposals sharing fsyncs).
//! `cargo bench --bench raft -- [sequential] [concurrent] [in-flight]`
use std::sync::Arc;
use std::time::Instant;
use warren::raft::{ApplyMeta, DecodeError, DurableGroup, DurableMachine, GroupOptions, Machine};
use warren::storage::Storage;

#[derive(Default)]
struct Count(u64);

impl Machine for Count {
    type Command = Vec<u8>;
    type Reply = u64;
    type Effect = ();
    fn apply(&mut self, _: ApplyMeta, _: Vec<u8>, _: &mut Vec<()>) -> u64 {
        self.0 += 1;
        self.0
    }
}

impl DurableMachine for Count {
    fn encode_command(cmd: &Vec<u8>) -> Vec<u8> {
        cmd.clone()
    }
    fn decode_command(b: &bytes::Bytes) -> Result<Vec<u8>, DecodeError> {
        Ok(b.to_vec())
    }
    fn encode_state(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn decode_state(b: &bytes::Bytes) -> Result<Self, DecodeError> {
        Ok(Count(u64::from_be_bytes(b[..].try_into().map_err(|_| DecodeError("state".into()))?)))
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (seq, conc, inflight) =
        (*args.first().unwrap_or(&2000), *args.get(1).unwrap_or(&50_000), *args.get(2).unwrap_or(&256));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let dir = std::env::temp_dir().join(format!("warren-raft-bench-{}", std::process::id()));
        let storage = Storage::open(&dir).expect("storage");
        let g = Arc::new(DurableGroup::open(storage.group(storage.allocate_group().expect("id")), Count::default(), GroupOptions::default()).await.expect("open"));
        let body = vec![7u8; 1024];
        let t = Instant::now();
        for _ in 0..seq {
            g.propose(0, body.clone()).await.expect("propose");
        }
        let per = t.elapsed().as_secs_f64() / seq as f64;
        println!("sequential: {seq} proposals of 1 KB, {:.3} ms each, {:.0}/s", per * 1000.0, 1.0 / per);
        let before = storage.sync_stats();
        let t = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(inflight));
        let mut tasks = Vec::with_capacity(conc);
        for _ in 0..conc {
            let permit = sem.clone().acquire_owned().await.expect("permit");
            let (g, body) = (g.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let r = g.propose(0, body).await;
                drop(permit);
                r.map(|_| ())
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("propose");
        }
        let secs = t.elapsed().as_secs_f64();
        let after = storage.sync_stats();
        let syncs = after.syncs - before.syncs;
        println!(
            "concurrent: {conc} proposals of 1 KB, {inflight} in flight: {:.0} proposals/s, {syncs} fsyncs ({:.1} proposals per fsync)",
            conc as f64 / secs,
            conc as f64 / syncs.max(1) as f64
        );
        drop(g);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
