//! One broker node: storage, the metadata group, the queues it runs, the routing snapshot,
//! resource alarms, and ordered start-up and shutdown.
//!
//! Metadata commands go to one actor that proposes them in batches to the metadata group
//! (openraft + RocksDB, group 0), carries out their effects in log order (starting and
//! stopping queue runners) and publishes a new [`Topology`] snapshot before answering, so a
//! client's next method sees its change; publishers read the snapshot without locks. Durable
//! queues run on their own storage group; transient ones in memory.

use crate::alarm::{Alarms, ThresholdAlarm};
use crate::config::Config;
use crate::ids::{self, ChannelId, ConnectionId, ConsumerId, QueueKey};
use crate::meta::MetaMachine;
use crate::meta::QueueRecord;
use crate::queue::{ClientSink, QueueHandle};
use crate::raft::{DurableGroup, GroupOptions, Replication};
use crate::stats::Counters;
use crate::storage::{GroupId, Storage};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

mod alarms;
mod bootstrap;
pub mod clients;
mod delays;
mod health;
pub mod leadership;
pub mod maintenance;
mod members;
mod meta_actor;
pub mod peek;
pub mod peers;
mod placement;
mod queues;
pub mod replicas;
mod replies;
mod topology;
pub mod traces;

pub use topology::{Routed, Topology};

/// The metadata group's storage group id.
const META_GROUP: GroupId = GroupId(0);
/// A quorum queue's `x-delivery-limit` when none is declared (RabbitMQ 4).
const DEFAULT_DELIVERY_LIMIT: u32 = 20;
/// How often resident memory and free disk are compared with the alarm thresholds.
const MEMORY_CHECK: Duration = Duration::from_secs(1);
/// How often message rates are sampled (RabbitMQ's `collect_statistics_interval`).
const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a stopping node waits for its queue runners to finish their inboxes.
const RUNNERS_PATIENCE: Duration = Duration::from_secs(10);
/// Metadata proposals waiting for the actor before proposers wait.
const META_INBOX: usize = 1024;

use meta_actor::{MetaRequest, meta_actor};

/// A running node.
pub struct Node {
    config: Config,
    storage: Storage,
    meta: Arc<DurableGroup<MetaMachine>>,
    meta_tx: mpsc::Sender<MetaRequest>,
    /// Running queues; changed only by the metadata actor (and shutdown), never across an await.
    queues: Mutex<HashMap<QueueKey, QueueHandle>>,
    /// The record each running queue was started (or last configured) from.
    running_records: Mutex<HashMap<QueueKey, Arc<QueueRecord>>>,
    /// Set once start-up has recovered this node's queues: the reconciler waits for it (or it
    /// would start them a second time, without their recovery, on the same storage group).
    recovered: std::sync::atomic::AtomicBool,
    /// Set once the routing snapshot has every recovered queue: what routes before (a
    /// delayed exchange's store releasing what fell due while the node was down) waits.
    routes_ready: std::sync::atomic::AtomicBool,
    /// Held while reconciling, so the metadata actor and start-up never reconcile at once.
    reconciling: Mutex<()>,
    /// This node's id in its cluster (1 for a single node).
    id: u64,
    /// Links to the home nodes of the queues this node serves but does not run, and to the
    /// leaders of replicated queues (a cluster).
    remote: Option<Arc<crate::queue::remote::Remote>>,
    /// How this node's members of replicated queues reach the others (a cluster).
    replication: Option<Replication>,
    /// The runners of this node's members of replicated queues (`queues` holds their fronts).
    replicas: Mutex<HashMap<QueueKey, QueueHandle>>,
    /// The leader each replicated queue's front sends to (0: none known), for listings.
    leaders: Mutex<HashMap<QueueKey, Arc<AtomicU64>>>,
    /// Each replicated queue's members as the metadata says, and this node's member while it
    /// holds one, for its front and member (they change when a node is forgotten or
    /// replaced, and with `add_member` / `delete_member`).
    member_lists: Mutex<HashMap<QueueKey, queues::FrontFeeds>>,
    /// The metadata index this node has applied and acts on (its routing snapshot and queues
    /// follow it): what peers ask before they answer a change (`RpcKind::Applied`).
    meta_seen: Arc<AtomicU64>,
    /// The other members, as this node sees them (a cluster).
    peers: Option<Arc<peers::Peers>>,
    /// The initial members of the cluster this node founded, for the metadata's registry.
    seed: Vec<crate::meta::ClusterNode>,
    /// The metadata leader's task bringing the metadata group's members in line with the
    /// registry (`node/members.rs`).
    converging: Mutex<Option<JoinHandle<()>>>,
    /// Running stores of delayed exchanges; changed only when the snapshot is published.
    delays: Mutex<delays::Running>,
    topology: ArcSwap<Topology>,
    next_connection: AtomicU64,
    next_consumer: AtomicU64,
    /// Direct reply-to pseudo-queues: name -> the requester's connection and channel.
    direct_reply: Mutex<HashMap<String, (ClientSink, ChannelId)>>,
    shutdown: watch::Sender<bool>,
    /// Maintenance mode (`node/maintenance.rs`).
    maintenance: watch::Sender<bool>,
    /// This node's raised resource alarms.
    alarms: watch::Sender<Alarms>,
    /// The alarms raised anywhere in the cluster (`alarm::spread`); publishing connections
    /// hold their reads while any is raised.
    cluster_alarms: watch::Sender<Alarms>,
    /// What this node's answers to hellos say (a cluster member's).
    said: Option<Arc<peers::Said>>,
    memory: ThresholdAlarm,
    disk: ThresholdAlarm,
    /// This node's name (`warren@<host>`), as RabbitMQ's `rabbit@<host>`.
    name: String,
    amqp_addr: SocketAddr,
    started: std::time::Instant,
    /// When (ms after `started`, plus one) a health check last saw a live metadata leader.
    leader_seen: AtomicU64,
    /// Background tasks (alarm checks, rate sampling), awaited at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Every queue runner; at shutdown storage closes only after they are done (a runner
    /// still has the settles and publishes in its inbox to apply).
    runners: tokio_util::task::TaskTracker,
    /// Client connections, for the management API.
    clients: Arc<clients::Clients>,
    /// Node-wide message counters.
    stats: Arc<Counters>,
    /// Named traces into files (`rabbitmq_tracing`).
    traces: traces::Traces,
    me: Weak<Node>,
}

/// What a member of a cluster starts with (`server.rs` found its place).
pub struct ClusterStart {
    pub rep: Replication,
    /// The initial members, for the metadata's node registry (a founder's; empty for a node
    /// that joined).
    pub seed: Vec<crate::meta::ClusterNode>,
    /// The other members known now.
    pub peers: Vec<crate::raft::transport::NodeId>,
    /// What this node's answers to hellos say (the node keeps it current).
    pub said: Arc<peers::Said>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot open the metadata store: {0}")]
    Meta(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Cluster(String),
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
}

/// Milliseconds since the epoch (the time field of commands; connection start times).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

impl Node {
    /// Opens a node: opens storage, recovers metadata and queues, applies the config's users
    /// and vhosts, and starts the alarm checks. `amqp_addr` is the address its AMQP listener
    /// (started above the node, in [`crate::server`]) accepts clients on. With `cluster`, the
    /// metadata group is this node's member of the cluster's (its peers are reached through
    /// the transport given; [`crate::server`] serves the other direction).
    pub async fn open(
        config: Config,
        amqp_addr: SocketAddr,
        cluster: Option<ClusterStart>,
    ) -> Result<Arc<Node>, StartError> {
        config.validate()?;
        let storage = Storage::open(&config.data_dir)?;
        let id = cluster.as_ref().map_or(1, |c| c.rep.me);
        let router = cluster.as_ref().map(|c| c.rep.router.clone());
        let peers = cluster.as_ref().map(|c| {
            let me = crate::raft::transport::Hello { name: config.node_name(), id, member: true, ..Default::default() };
            peers::Peers::new(c.rep.transport.clone(), me, c.peers.iter().copied())
        });
        let (cluster, seed, said) = match cluster {
            Some(c) => (Some(c.rep), c.seed, Some(c.said)),
            None => (None, Vec::new(), None),
        };
        let remote = cluster.as_ref().zip(peers.clone()).map(|(c, p)| {
            let down = p.down();
            let name_of: crate::queue::remote::origin::NameOf = Arc::new(move |id| p.name(id));
            crate::queue::remote::Remote::new(c.transport.clone(), name_of, id, down)
        });
        let replication = cluster.clone();
        let opts = GroupOptions { snapshot_every: 1000, ..Default::default() };
        let log = storage.group(META_GROUP);
        let meta = match cluster {
            None => DurableGroup::open(log, MetaMachine::default(), opts).await,
            Some(rep) => {
                let timed = GroupOptions::self_timed();
                let opts = GroupOptions {
                    heartbeat_ms: timed.heartbeat_ms,
                    election_ms: timed.election_ms,
                    spread_commits: true,
                    ..opts
                };
                DurableGroup::open_member(log, MetaMachine::default(), opts, rep).await
            }
        }
        .map_err(|e| StartError::Meta(e.to_string()))?;
        let meta = Arc::new(meta);
        let (meta_tx, meta_rx) = mpsc::channel(META_INBOX);
        let alarms = watch::channel(Alarms::default()).0;
        let memory = ThresholdAlarm::memory(config.memory_limit(), alarms.clone());
        let disk = ThresholdAlarm::disk(config.disk_free_limit, config.data_dir.clone(), alarms.clone());
        let name = config.node_name();
        let node = Arc::new_cyclic(|me| Node {
            config,
            storage,
            meta,
            meta_tx,
            queues: Mutex::new(HashMap::new()),
            running_records: Mutex::default(),
            recovered: Default::default(),
            routes_ready: Default::default(),
            reconciling: Mutex::new(()),
            id,
            remote,
            replication,
            replicas: Mutex::default(),
            leaders: Mutex::default(),
            member_lists: Mutex::default(),
            meta_seen: Arc::default(),
            peers,
            seed,
            converging: Mutex::default(),
            delays: Mutex::new(HashMap::new()),
            topology: ArcSwap::from_pointee(Topology::default()),
            next_connection: AtomicU64::new(ids::first_of_this_start(id, now_micros())),
            next_consumer: AtomicU64::new(ids::first_of_this_start(id, now_micros())),
            direct_reply: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            maintenance: watch::channel(false).0,
            runners: tokio_util::task::TaskTracker::new(),
            alarms,
            cluster_alarms: watch::channel(Alarms::default()).0,
            said,
            memory,
            disk,
            name,
            amqp_addr,
            started: std::time::Instant::now(),
            leader_seen: AtomicU64::new(0),
            tasks: Mutex::default(),
            clients: Arc::default(),
            stats: Arc::default(),
            traces: traces::Traces::default(),
            me: me.clone(),
        });
        if let Some(router) = router {
            let down = node.peers.as_ref().map(|p| p.down());
            router.set_acceptor(crate::queue::remote::acceptor(node.home_queues(), down));
            let seen = Arc::new(crate::raft::Seen(node.meta_seen.clone()));
            router.register(crate::raft::transport::METADATA_SEEN, seen);
            router.register(crate::raft::transport::NODE_JOIN, Arc::new(crate::raft::Joins(node.admitter())));
            node.answer_replies();
        }
        tokio::spawn(meta_actor(Arc::downgrade(&node), meta_rx, node.meta.applied_watch()));
        node.bootstrap().await?;
        node.memory.check();
        node.disk.check();
        tracing::info!(memory = node.memory.limit(), disk_free = node.disk.limit(), "alarm thresholds");
        // Resident memory and free disk against their thresholds; message rates.
        let monitor = tokio::spawn(every(Arc::downgrade(&node), MEMORY_CHECK, node.shutdown_signal(), |n| {
            n.memory.check();
            n.disk.check();
        }));
        let sampler =
            tokio::spawn(every(Arc::downgrade(&node), STATS_INTERVAL, node.shutdown_signal(), Node::sample_stats));
        let spread = tokio::spawn(crate::alarm::spread(
            node.alarms.subscribe(),
            node.peers.as_ref().map(|p| p.alarms()),
            node.said.clone(),
            node.cluster_alarms.clone(),
            node.shutdown_signal(),
        ));
        node.tasks.lock().unwrap_or_else(|p| p.into_inner()).extend([monitor, sampler, spread]);
        if let Some(p) = &node.peers {
            let watcher = tokio::spawn(p.clone().watch(node.shutdown_signal()));
            node.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(watcher);
        }
        Ok(node)
    }

    /// Asks everyone (listeners, connections, background tasks) to stop.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// After [`Node::begin_shutdown`] and once the listeners are done: stops the background
    /// tasks, the queues (their groups shut down as their last handles go), then the metadata
    /// group, then closes storage (so the data directory's lock is free).
    pub async fn stop(&self) {
        self.begin_shutdown();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        {
            // Under the reconciling lock: a reconcile under way finishes first, later ones see
            // the shutdown and start nothing again.
            let _reconciling = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
            self.queues.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.replicas.lock().unwrap_or_else(|p| p.into_inner()).clear();
            self.running_records.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        self.delays.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.topology.store(Arc::new(Topology::default()));
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // With their handles gone, runners apply what their inboxes still hold (acks a client
        // sent before closing its connection, say) and stop their groups.
        self.runners.close();
        if tokio::time::timeout(RUNNERS_PATIENCE, self.runners.wait()).await.is_err() {
            tracing::warn!(running = self.runners.len(), "queues still running at shutdown; stopping without them");
        }
        if let Err(e) = self.meta.shutdown().await {
            tracing::warn!(error = %e, "stopping the metadata group");
        }
        match self.storage.clone().close(Duration::from_secs(15)).await {
            Ok(()) => tracing::info!("storage closed"),
            Err(e) => tracing::warn!(error = %e, "storage not closed cleanly"),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's name, as RabbitMQ's `rabbit@<host>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node's id in its cluster (1 for a single node).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The connection id that stands for no connection on this node (what the management
    /// API declares and gets with).
    pub fn no_connection(&self) -> ConnectionId {
        ConnectionId::none_on(self.id)
    }

    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp_addr
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Serving clients: started and not shutting down.
    pub fn is_serving(&self) -> bool {
        !*self.shutdown.borrow()
    }

    /// The current routing snapshot.
    pub fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The client connections.
    pub fn clients(&self) -> &Arc<clients::Clients> {
        &self.clients
    }

    /// Named traces.
    pub fn traces(&self) -> &traces::Traces {
        &self.traces
    }

    /// Where trace files go.
    pub fn trace_dir(&self) -> std::path::PathBuf {
        self.config.data_dir.join("traces")
    }

    /// Node-wide message counters.
    pub fn stats(&self) -> &Arc<Counters> {
        &self.stats
    }

    /// Samples every counter (rates).
    fn sample_stats(&self) {
        let now = std::time::Instant::now();
        self.stats.sample(now);
        let topo = self.topology();
        for q in topo.queues.values() {
            q.stats.sample(now);
        }
        for x in topo.meta.vhosts.values().flat_map(|v| v.exchanges.values()) {
            x.stats.sample(now);
        }
    }

    /// The name of cluster node `id` (as it last said; `node N` if it never answered).
    pub fn name_of(&self, id: u64) -> String {
        if id == self.id {
            return self.name.clone();
        }
        self.peers.as_ref().map_or_else(|| format!("node {id}"), |p| p.name(id))
    }

    /// Where a queue runs: its leader as this node's front last found it (a replicated
    /// queue), else its home.
    pub fn queue_node(&self, rec: &QueueRecord) -> u64 {
        if !rec.replicated() {
            return rec.home;
        }
        let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
        let shown = self.leaders.lock().unwrap_or_else(|p| p.into_inner()).get(&key).map(|l| l.load(Ordering::Relaxed));
        shown.filter(|&l| l != 0).unwrap_or(rec.home)
    }

    /// Whether cluster node `id` answers (this node always does).
    pub fn node_running(&self, id: u64) -> bool {
        id == self.id || self.peers.as_ref().is_some_and(|p| !p.down().borrow().contains(&id))
    }

    /// The other members of this node's cluster (none for a single node).
    pub fn cluster_peers(&self) -> Vec<peers::PeerState> {
        self.peers.as_ref().map(|p| p.list()).unwrap_or_default()
    }

    pub fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }

    pub fn next_consumer_id(&self) -> ConsumerId {
        ConsumerId(self.next_consumer.fetch_add(1, Ordering::Relaxed))
    }
}

/// Calls `f` on the node every `period` until shutdown.
async fn every(node: Weak<Node>, period: Duration, mut shutdown: watch::Receiver<bool>, f: fn(&Node)) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tick.tick() => match node.upgrade() {
                Some(n) => f(&n),
                None => return,
            },
        }
    }
}

/// Resolves once the node asks everyone to stop.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
