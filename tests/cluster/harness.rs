//! Real `warren` processes forming a cluster on loopback: each node has its own data
//! directory, log file and ports; nodes are started, killed with SIGKILL and restarted for
//! real. Every process is killed and reaped when the cluster is dropped, so a failing test
//! leaves nothing behind.

use super::netproxy::{Net, free_on, node_ip};
use lapin::{Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The secret every node of a test cluster shares.
pub const SECRET: &str = "test-cluster-secret";

/// A port free now, below Linux's ephemeral range (32768 and up): a port the kernel hands out
/// for port 0 can be taken by any outgoing connection (another test's client) before the
/// node binds it, and a node's cluster port cannot be picked again once its peers know it.
/// A port free now and never handed out before in this process: tests run side by side
/// in one process, and a port one test found free must not be found free by another before
/// its node binds it (a cluster port cannot be moved once the peers are told it).
fn free_addr() -> SocketAddr {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        let mut given = GIVEN.lock().unwrap();
        if given.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            given.push(port);
            return l.local_addr().unwrap();
        }
    }
}

pub struct Spec {
    pub name: String,
    pub amqp: SocketAddr,
    pub http: SocketAddr,
    pub prometheus: SocketAddr,
    pub cluster: SocketAddr,
    /// What its peers dial: its cluster listener, or the proxy in front of it.
    pub advertise: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
}

pub struct Cluster {
    _dir: tempfile::TempDir,
    pub nodes: Vec<Spec>,
    procs: Vec<Option<Child>>,
    /// The proxies between the nodes, when links can be cut (`partitionable`).
    pub net: Option<Net>,
}

impl Cluster {
    /// `n` nodes' settings (nothing started yet).
    pub fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=n)
            .map(|i| {
                let cluster = free_addr();
                Spec {
                    name: format!("warren@n{i}"),
                    amqp: free_addr(),
                    http: free_addr(),
                    prometheus: free_addr(),
                    cluster,
                    advertise: cluster,
                    data: dir.path().join(format!("n{i}")),
                    log: dir.path().join(format!("n{i}.log")),
                }
            })
            .collect();
        Self { _dir: dir, nodes, procs: (0..n).map(|_| None).collect(), net: None }
    }

    /// `n` nodes whose links can be cut (`netproxy.rs`): node `i` listens on 127.0.0.(11+i)
    /// behind a proxy its peers dial. Call inside the test's runtime (the proxies run on it).
    pub fn partitionable(n: usize) -> Self {
        let mut c = Self::new(n);
        let net = Net::new();
        for (i, node) in c.nodes.iter_mut().enumerate() {
            node.cluster = free_on(node_ip(i));
            node.advertise = net.serve(i, node_ip(i), node.cluster);
        }
        c.net = Some(net);
        c
    }

    fn peers(&self) -> String {
        self.nodes.iter().map(|n| n.advertise.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Starts node `i` (0-based); returns once it has bound its ports. A client port taken
    /// meanwhile by another test (free ports are found by binding and letting go) makes it
    /// start again on new ones.
    pub fn start(&mut self, i: usize) {
        for _ in 0..5 {
            let before = self.log(i).len();
            let mut child = self.spawn(i);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let this_start = |c: &Self| c.log(i).get(before..).unwrap_or_default().to_owned();
            loop {
                let exited = matches!(child.try_wait(), Ok(Some(_)));
                let log = this_start(self);
                if exited && log.contains("Address already in use") {
                    let n = &mut self.nodes[i];
                    (n.amqp, n.http, n.prometheus) = (free_addr(), free_addr(), free_addr());
                    break;
                }
                if exited || log.contains("cluster listener started") || std::time::Instant::now() > deadline {
                    self.procs[i] = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("{} could not bind its ports\n{}", self.nodes[i].name, self.log(i));
    }

    fn spawn(&self, i: usize) -> Child {
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&n.log).unwrap();
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["server", "--node-name", &n.name, "--data-dir", n.data.to_str().unwrap()])
            .args(["--amqp-addr", &n.amqp.to_string(), "--http-addr", &n.http.to_string()])
            .args(["--prometheus-addr", &n.prometheus.to_string(), "--cluster-addr", &n.cluster.to_string()])
            .args(["--peers", &self.peers(), "--advertise-addr", &n.advertise.to_string()])
            .env("WARREN_CLUSTER_SECRET", SECRET)
            .env_remove("WARREN_PEERS")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start warren")
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process stays, frozen (its sockets stay open).
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.procs[i] {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    /// SIGTERM (a graceful stop), then waits up to `within` for the process to exit; panics
    /// (with its log) if it does not.
    pub fn terminate(&mut self, i: usize, within: Duration) {
        let Some(mut c) = self.procs[i].take() else { return };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("{} did not stop within {within:?} of SIGTERM\n{}", self.nodes[i].name, self.log(i));
    }

    /// Waits up to `within` for node `i` to exit by itself: its exit status, `None` if it still
    /// runs.
    pub fn exit_status(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        let c = self.procs[i].as_mut()?;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                self.procs[i] = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `i` serves AMQP (it has joined the cluster and bootstrapped).
    pub async fn await_up(&self, i: usize) {
        let n = &self.nodes[i];
        if let Err(e) = warren::ctl::await_startup(n.amqp, Duration::from_secs(60)).await {
            panic!("{} did not come up: {e}\n{}", n.name, self.log(i));
        }
    }

    pub async fn connect(&self, i: usize) -> Connection {
        self.connect_as(i, "guest", "guest").await
    }

    pub async fn connect_as(&self, i: usize, user: &str, pass: &str) -> Connection {
        self.await_up(i).await;
        let uri = format!("amqp://{user}:{pass}@{}/%2f", self.nodes[i].amqp);
        Connection::connect(&uri, ConnectionProperties::default()).await.expect("connect")
    }

    /// Runs `warren ctl` against node `i`'s management API.
    pub async fn ctl(&self, i: usize, args: &[&str]) -> Output {
        let mut all = vec!["ctl".to_owned(), "--http-addr".into(), self.nodes[i].http.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_warren")).args(&all).output().unwrap())
            .await
            .unwrap()
    }

    /// GETs a management API path on node `i` as guest: the status and the body.
    pub async fn http_get(&self, i: usize, path: &str) -> (u16, String) {
        Self::get(format!("http://{}{path}", self.nodes[i].http)).await
    }

    /// Waits (up to `within`, looking every 100 ms) until node `i`'s answer to `path` as guest
    /// satisfies `ok`; panics with `what` and the last answer.
    pub async fn until_http(&self, i: usize, path: &str, what: &str, within: Duration, ok: impl Fn(u16, &str) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.http_get(i, path).await;
            if ok(status, &body) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "node {} never showed {what}: {status} {body}", i + 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Node `i`'s Prometheus metrics (`/metrics` on its Prometheus port).
    pub async fn metrics(&self, i: usize) -> String {
        let (status, body) = Self::get(format!("http://{}/metrics", self.nodes[i].prometheus)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn get(url: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let auth = format!("Basic {}", base64_guest());
            match agent.get(&url).header("Authorization", &auth).call() {
                Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        })
        .await
        .unwrap()
    }

    /// Node `i`'s log so far (for failure messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

/// `guest:guest` in base64.
fn base64_guest() -> &'static str {
    "Z3Vlc3Q6Z3Vlc3Q="
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.resume(i);
            self.kill(i);
        }
        // A failing test shows what the nodes said (the directory goes with the cluster).
        if std::thread::panicking() || std::env::var_os("WARREN_TEST_LOGS").is_some() {
            for (i, n) in self.nodes.iter().enumerate() {
                eprintln!("===== {} log =====\n{}", n.name, self.log(i));
            }
        }
    }
}
