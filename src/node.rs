//! One broker node: storage, the metadata group, the queues it runs, the routing snapshot,
//! resource alarms, and ordered start-up and shutdown.
//!
//! Metadata commands go to one actor that proposes them in batches to the metadata group
//! (openraft + RocksDB, group 0), carries out their effects in log order (starting and
//! stopping queue runners) and publishes a new [`Topology`] snapshot before answering, so a
//! client's next method sees its change; publishers read the snapshot without locks. Durable
//! queues run on their own storage group; transient ones in memory.

use crate::alarm::{Alarms, ThresholdAlarm};
use crate::amqp;
use crate::broker::{Error, ReplyCode, argument::QueueType, password};
use crate::config::Config;
use crate::ids::{ChannelId, ConnectionId, ConsumerId, QueueKey};
use crate::meta::{MetaCommand, MetaEffect, MetaMachine, MetaReply, QueueRecord};
use crate::queue::machine::{Command, Limits, QueueConfig};
use crate::queue::runner::{AutoDelete, Backend, DeadLetterRouter, Hooks, Request};
use crate::queue::{self, ClientSink, Message, QueueHandle};
use crate::raft::{DurableGroup, GroupOptions};
use crate::stats::Counters;
use crate::storage::{GroupId, Storage};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub mod clients;
mod delays;
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
/// Metadata proposals waiting for the actor before proposers wait.
const META_INBOX: usize = 1024;

type MetaRequest = (MetaCommand, oneshot::Sender<MetaReply>);

/// A running node.
pub struct Node {
    config: Config,
    storage: Storage,
    meta: Arc<DurableGroup<MetaMachine>>,
    meta_tx: mpsc::Sender<MetaRequest>,
    /// Running queues; changed only by the metadata actor (and shutdown), never across an await.
    queues: Mutex<HashMap<QueueKey, QueueHandle>>,
    /// Running stores of delayed exchanges; changed only when the snapshot is published.
    delays: Mutex<delays::Running>,
    topology: ArcSwap<Topology>,
    next_connection: AtomicU64,
    next_consumer: AtomicU64,
    /// Direct reply-to pseudo-queues: name -> the requester's connection and channel.
    direct_reply: Mutex<HashMap<String, (ClientSink, ChannelId)>>,
    shutdown: watch::Sender<bool>,
    /// Raised resource alarms; publishing connections hold their reads while any is raised.
    alarms: watch::Sender<Alarms>,
    memory: ThresholdAlarm,
    disk: ThresholdAlarm,
    /// This node's name (`warren@<host>`), as RabbitMQ's `rabbit@<host>`.
    name: String,
    amqp_addr: SocketAddr,
    started: std::time::Instant,
    /// Client connections, for the management API.
    clients: Arc<clients::Clients>,
    /// Node-wide message counters.
    stats: Arc<Counters>,
    /// Named traces into files (`rabbitmq_tracing`).
    traces: traces::Traces,
    me: Weak<Node>,
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
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
}

/// A started node and its listeners.
pub struct Running {
    pub node: Arc<Node>,
    pub amqp_addr: SocketAddr,
    /// The management API's address.
    pub http_addr: SocketAddr,
    /// The Prometheus endpoint's address.
    pub prometheus_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, closes every client connection with 320 CONNECTION_FORCED, stops the
    /// queues and the metadata group, and closes storage (so the data directory's lock is free).
    pub async fn shutdown(self) {
        self.node.shutdown.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.node.stop().await;
    }
}

/// The machine's host name (for the node name), or `localhost`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Milliseconds since the epoch (the time field of commands; connection start times).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Node {
    /// Starts a node: opens storage and recovers metadata and queues, applies the config's
    /// users and vhosts, then opens the AMQP listener.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        config.validate()?;
        let listener = TcpListener::bind(config.amqp_addr)
            .await
            .map_err(|source| StartError::Listen { addr: config.amqp_addr, source })?;
        let amqp_addr =
            listener.local_addr().map_err(|source| StartError::Listen { addr: config.amqp_addr, source })?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartError::Listen { addr: config.http_addr, source })?;
        let http_addr = http.local_addr().map_err(|source| StartError::Listen { addr: config.http_addr, source })?;
        let prometheus = TcpListener::bind(config.prometheus_addr)
            .await
            .map_err(|source| StartError::Listen { addr: config.prometheus_addr, source })?;
        let prometheus_addr =
            prometheus.local_addr().map_err(|source| StartError::Listen { addr: config.prometheus_addr, source })?;
        let storage = Storage::open(&config.data_dir)?;
        let meta = DurableGroup::open(
            storage.group(META_GROUP),
            MetaMachine::default(),
            GroupOptions { snapshot_every: 1000, ..Default::default() },
        )
        .await
        .map_err(|e| StartError::Meta(e.to_string()))?;
        let meta = Arc::new(meta);
        let (meta_tx, meta_rx) = mpsc::channel(META_INBOX);
        let alarms = watch::channel(Alarms::default()).0;
        let memory = ThresholdAlarm::memory(config.memory_limit(), alarms.clone());
        let disk = ThresholdAlarm::disk(config.disk_free_limit, config.data_dir.clone(), alarms.clone());
        let node = Arc::new_cyclic(|me| Node {
            config,
            storage,
            meta,
            meta_tx,
            queues: Mutex::new(HashMap::new()),
            delays: Mutex::new(HashMap::new()),
            topology: ArcSwap::from_pointee(Topology::default()),
            next_connection: AtomicU64::new(1),
            next_consumer: AtomicU64::new(1),
            direct_reply: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            alarms,
            memory,
            disk,
            name: format!("warren@{}", hostname()),
            amqp_addr,
            started: std::time::Instant::now(),
            clients: Arc::default(),
            stats: Arc::default(),
            traces: traces::Traces::default(),
            me: me.clone(),
        });
        tokio::spawn(meta_actor(Arc::downgrade(&node), meta_rx));
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
        tracing::info!(%amqp_addr, "AMQP 0-9-1 listener started");
        let server = tokio::spawn(amqp::server::serve(node.clone(), listener));
        tracing::info!(%http_addr, "management listener started");
        let mgmt = tokio::spawn(crate::mgmt::serve(node.clone(), http, node.shutdown_signal()));
        tracing::info!(%prometheus_addr, "prometheus listener started");
        let metrics = tokio::spawn(crate::mgmt::prometheus::serve(node.clone(), prometheus, node.shutdown_signal()));
        Ok(Running {
            node,
            amqp_addr,
            http_addr,
            prometheus_addr,
            tasks: vec![server, monitor, sampler, mgmt, metrics],
        })
    }

    async fn bootstrap(&self) -> Result<(), StartError> {
        let c = &self.config;
        let fresh = self.meta.read(|m| m.state().users.is_empty() && m.state().vhosts.is_empty());
        let mut cmds = vec![MetaCommand::AddVhost { name: "/".into() }];
        cmds.extend(c.vhosts.iter().map(|v| MetaCommand::AddVhost { name: v.name.clone() }));
        // As RabbitMQ: guest is created with a new database, not again at every start.
        if fresh && c.default_user && !c.users.iter().any(|u| u.name == "guest") {
            cmds.push(MetaCommand::PutUser {
                name: "guest".into(),
                password_hash: password::hash("guest", rand::random()),
                tags: vec!["administrator".into()],
            });
            cmds.push(MetaCommand::SetPermissions {
                vhost: "/".into(),
                user: "guest".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            });
        }
        for u in &c.users {
            let password_hash = match (&u.password_hash, &u.password) {
                (Some(h), _) => h.clone(),
                (None, Some(p)) => password::hash(p, rand::random()),
                (None, None) => return Err(StartError::Bootstrap(format!("user '{}' has no password", u.name))),
            };
            cmds.push(MetaCommand::PutUser { name: u.name.clone(), password_hash, tags: u.tags.clone() });
        }
        for p in &c.permissions {
            cmds.push(MetaCommand::SetPermissions {
                vhost: p.vhost.clone(),
                user: p.user.clone(),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        // Connections of before are gone: their exclusive queues go, and transient queues.
        cmds.push(MetaCommand::NodeStarted);
        for cmd in cmds {
            if let MetaReply::Refused(e) = self.propose_meta(cmd).await {
                return Err(StartError::Bootstrap(e.reply_text()));
            }
        }
        // Every queue left is durable: run it, recovering its log.
        let records: Vec<Arc<QueueRecord>> =
            self.meta.read(|m| m.state().vhosts.values().flat_map(|v| v.queues.values().cloned()).collect());
        let n = records.len();
        self.remove_orphan_groups(&records);
        for rec in records {
            self.start_queue(&rec, true);
        }
        self.publish_topology();
        if !fresh {
            tracing::info!(queues = n, "recovered metadata and queues");
        }
        Ok(())
    }

    /// Removes the data of groups no queue owns any more (the node stopped between a queue's
    /// delete and the removal of its data), so their disk space comes back.
    fn remove_orphan_groups(&self, records: &[Arc<QueueRecord>]) {
        let delay_groups: Vec<u64> = self.meta.read(|m| {
            m.state().vhosts.values().flat_map(|v| v.exchanges.values().filter_map(|x| x.delay_group)).collect()
        });
        let owned: std::collections::HashSet<u64> =
            records.iter().filter(|r| r.durable).map(|r| r.group).chain(delay_groups).chain([META_GROUP.0]).collect();
        let stored = match self.storage.groups() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list stored groups; orphans stay");
                return;
            }
        };
        for id in stored.into_iter().filter(|g| !owned.contains(&g.0)) {
            match self.storage.group(id).destroy() {
                Ok(()) => tracing::info!(group = id.0, "removed the data of a deleted queue"),
                Err(e) => tracing::warn!(group = id.0, error = %e, "cannot remove an orphan group"),
            }
        }
    }

    /// Starts the runner of a queue (its durable group opens and recovers in the runner).
    fn start_queue(&self, rec: &QueueRecord, recovering: bool) {
        let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
        let a = &rec.effective;
        let mut config = QueueConfig {
            auto_delete: rec.auto_delete,
            single_active_consumer: a.single_active_consumer,
            max_priority: a.max_priority.filter(|&p| p > 0),
            dedup: a.deduplication.then(|| queue::machine::dedup::Window {
                size: a.cache_size.unwrap_or(queue::machine::dedup::DEFAULT_CACHE_SIZE),
                ttl: a.cache_ttl,
            }),
            ..QueueConfig::new(key.clone())
        };
        config.set_limits(self.limits(rec));
        let backend =
            if rec.durable { Backend::Durable(self.storage.group(GroupId(rec.group))) } else { Backend::Memory };
        // After a restart classic queues lose their transient messages; quorum queues keep all.
        let recover = recovering.then_some(rec.parsed.queue_type == QueueType::Classic);
        let handle = queue::spawn(config, backend, recover, self.queue_hooks());
        if recovering {
            // The recovered state has the settings of when it stopped; policies may differ now.
            self.configure_queue(&handle, rec);
        }
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).insert(key, handle);
    }

    /// The settings in force of a queue that policies may change (arguments with the
    /// policy applied; node defaults for what neither sets).
    fn limits(&self, rec: &QueueRecord) -> Limits {
        let a = &rec.effective;
        Limits {
            message_ttl: a.message_ttl,
            max_length: a.max_length,
            max_length_bytes: a.max_length_bytes,
            overflow: a.overflow,
            expires: a.expires,
            consumer_timeout: Some(a.consumer_timeout.unwrap_or(self.config.consumer_timeout)).filter(|&t| t > 0),
            // Quorum queues count deliveries, with RabbitMQ 4's default limit of 20; classic
            // queues ignore `x-delivery-limit`, as RabbitMQ's do.
            delivery_limit: (a.queue_type == QueueType::Quorum)
                .then(|| a.delivery_limit.map_or(DEFAULT_DELIVERY_LIMIT, |l| l.min(u64::from(u32::MAX)) as u32)),
            dead_letter: a.dead_letter_exchange.clone().map(|exchange| queue::dead_letter::Target {
                exchange,
                routing_key: a.dead_letter_routing_key.clone(),
            }),
        }
    }

    /// Hands a queue its settings in force, through its log (never blocking the caller).
    fn configure_queue(&self, h: &QueueHandle, rec: &QueueRecord) {
        let (h, cmd) = (h.clone(), Command::Configure(Box::new(self.limits(rec))));
        tokio::spawn(async move {
            let _ = h.tx.send(Request::Cast { cmd }).await;
        });
    }

    /// Carries out one metadata effect (in log order, from the metadata actor).
    fn apply_effect(&self, fx: MetaEffect) {
        match fx {
            MetaEffect::QueueCreated(rec) => {
                tracing::info!(vhost = %rec.vhost, queue = %rec.name, durable = rec.durable, policy = ?rec.policy.as_ref().map(|p| &p.name), "queue created");
                self.start_queue(&rec, false)
            }
            MetaEffect::QueueConfigured(rec) => {
                let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
                let running = self.queues.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
                if let Some(h) = running {
                    tracing::info!(queue = %key, policy = ?rec.policy.as_ref().map(|p| &p.name), "queue settings changed by policy");
                    self.configure_queue(&h, &rec);
                }
            }
            MetaEffect::QueueDeleted(rec) => {
                tracing::info!(vhost = %rec.vhost, queue = %rec.name, "queue deleted");
                let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
                let running = self.queues.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                match running {
                    // Never block here: the runner may be waiting on a connection that waits on us.
                    // The runner removes a durable queue's data once its last handle is gone.
                    Some(h) => {
                        tokio::spawn(async move {
                            let cmd = Command::Delete { if_unused: false, if_empty: false };
                            let _ = h.tx.send(Request::Cast { cmd }).await;
                        });
                    }
                    // Deleted before it ever ran (at start-up): remove its data now.
                    None if rec.durable => {
                        if let Err(e) = self.storage.group(GroupId(rec.group)).destroy() {
                            tracing::warn!(queue = %key, error = %e, "removing a deleted queue's data");
                        }
                    }
                    None => {}
                }
            }
        }
    }

    fn publish_topology(&self) {
        let meta = self.meta.read(|m| m.state().clone());
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let delays = self.reconcile_delays(&meta);
        self.topology.store(Arc::new(Topology { meta, queues, delays }));
    }

    /// Stops queues (their groups shut down as their last handles go), then the metadata
    /// group, then closes storage.
    async fn stop(&self) {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.delays.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.topology.store(Arc::new(Topology::default()));
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).clear();
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

    pub fn memory_limit(&self) -> u64 {
        self.memory.limit()
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk.limit()
    }

    /// The current routing snapshot.
    pub fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The raised resource alarms, as they change.
    pub fn alarms(&self) -> watch::Receiver<Alarms> {
        self.alarms.subscribe()
    }

    /// Sets the memory alarm threshold in bytes (as `rabbitmqctl set_vm_memory_high_watermark
    /// absolute`), re-checking at once.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory.set_limit(bytes);
    }

    /// Sets the free-disk threshold in bytes (as `rabbitmqctl set_disk_free_limit`).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk.set_limit(bytes);
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

    pub fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }

    pub fn next_consumer_id(&self) -> ConsumerId {
        ConsumerId(self.next_consumer.fetch_add(1, Ordering::Relaxed))
    }

    /// Proposes a metadata command; answers once it is durable, applied, its effects carried
    /// out and the new routing snapshot published.
    pub async fn propose_meta(&self, cmd: MetaCommand) -> MetaReply {
        let unavailable = || MetaReply::Refused(Error::new(ReplyCode::InternalError, "metadata store unavailable"));
        let (tx, rx) = oneshot::channel();
        if self.meta_tx.send((cmd, tx)).await.is_err() {
            return unavailable();
        }
        rx.await.unwrap_or_else(|_| unavailable())
    }

    /// What queue runners ask of the node.
    fn queue_hooks(&self) -> Hooks {
        Hooks { auto_delete: self.auto_deleter(), dead_letter: self.dead_letterer() }
    }

    /// Routes dead letters through their exchange to the queues bound to it (no confirms; a
    /// missing exchange routes nowhere, as RabbitMQ). A queue the message already died in with
    /// no rejection on the way is skipped (`dead_letter::is_cycle`).
    fn dead_letterer(&self) -> DeadLetterRouter {
        let me = self.me.clone();
        Arc::new(move |vhost: &str, msg: &Message, keys: &[String]| {
            let Some(node) = me.upgrade() else { return Vec::new() };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            node.topology().targets(vhost, &msg.exchange, &keys, msg.properties.headers().as_ref(), |q| {
                !queue::dead_letter::is_cycle(msg, q)
            })
        })
    }

    fn auto_deleter(&self) -> AutoDelete {
        let me = self.me.clone();
        Arc::new(move |key: QueueKey| {
            let me = me.clone();
            tokio::spawn(async move {
                if let Some(node) = me.upgrade() {
                    tracing::debug!(queue = %key, "auto-delete: last consumer gone");
                    node.propose_meta(MetaCommand::DeleteQueue { vhost: key.vhost, name: key.name }).await;
                }
            });
        })
    }

    /// Registers a direct reply-to pseudo-queue for a channel.
    pub fn register_direct_reply(&self, name: String, sink: ClientSink, channel: ChannelId) {
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).insert(name, (sink, channel));
    }

    pub fn unregister_direct_reply(&self, name: &str) {
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Looks up the requester behind a direct reply-to name.
    pub fn direct_reply_target(&self, name: &str) -> Option<(ClientSink, ChannelId)> {
        self.direct_reply.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

/// Proposes metadata commands in batches, carries out their effects in log order, publishes
/// the snapshot, then answers.
async fn meta_actor(node: Weak<Node>, mut rx: mpsc::Receiver<MetaRequest>) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        let Some(node) = node.upgrade() else { return };
        let (cmds, replies): (Vec<MetaCommand>, Vec<oneshot::Sender<MetaReply>>) = batch.drain(..).unzip();
        match node.meta.propose_many(now_ms(), cmds).await {
            Ok(results) => {
                let mut answers = Vec::with_capacity(results.len());
                for (reply, effects) in results {
                    for fx in effects {
                        node.apply_effect(fx);
                    }
                    answers.push(reply);
                }
                node.publish_topology();
                for (tx, reply) in replies.into_iter().zip(answers) {
                    let _ = tx.send(reply);
                }
            }
            Err(e) => tracing::error!(error = %e, "metadata proposal failed"),
        }
    }
}

/// Calls `f` on the node every `period` until shutdown.
async fn every(node: Weak<Node>, period: Duration, mut shutdown: watch::Receiver<bool>, f: fn(&Node)) {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = amqp::server::stopped(&mut shutdown) => return,
            _ = tick.tick() => match node.upgrade() {
                Some(n) => f(&n),
                None => return,
            },
        }
    }
}
