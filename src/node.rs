//! One broker node: the metadata group, the queues it runs, the routing snapshot, shutdown.
//!
//! The node is the service façade the wire layer talks to. Metadata commands go through the
//! metadata group; its effects start and stop queue runners; after every change a new
//! [`Topology`] snapshot is published, which publishers read without locks.

use crate::alarm::{Alarms, MemoryAlarm};
use crate::amqp;
use crate::broker::password;
use crate::config::Config;
use crate::ids::{ChannelId, ConnectionId, ConsumerId, QueueKey};
use crate::meta::{MetaCommand, MetaEffect, MetaMachine, MetaReply, MetaState};
use crate::queue::machine::{Command, QueueConfig};
use crate::queue::runner::{AutoDelete, Request};
use crate::queue::{self, ClientSink, QueueHandle};
use crate::raft::Group;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What routing and lookups read: the metadata and the running queues, as of one moment.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub meta: MetaState,
    pub queues: HashMap<QueueKey, QueueHandle>,
}

struct MetaCore {
    group: Group<MetaMachine>,
    effects: Vec<MetaEffect>,
    queues: HashMap<QueueKey, QueueHandle>,
}

/// A running node.
pub struct Node {
    config: Config,
    meta: Mutex<MetaCore>,
    topology: ArcSwap<Topology>,
    next_connection: AtomicU64,
    next_consumer: AtomicU64,
    /// Direct reply-to pseudo-queues: name -> the requester's connection and channel.
    direct_reply: Mutex<HashMap<String, (ClientSink, ChannelId)>>,
    shutdown: watch::Sender<bool>,
    /// Raised resource alarms; publishing connections hold their reads while any is raised.
    alarms: watch::Sender<Alarms>,
    memory: MemoryAlarm,
    me: Weak<Node>,
}

/// How often resident memory is compared with the alarm threshold.
const MEMORY_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("bootstrap failed: {0}")]
    Bootstrap(String),
}

/// A started node and its listeners.
pub struct Running {
    pub node: Arc<Node>,
    pub amqp_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, closes every client connection with 320 CONNECTION_FORCED, and waits
    /// for the listeners to finish.
    pub async fn shutdown(self) {
        self.node.shutdown.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Node {
    /// Starts a node: bootstraps metadata from the config and opens the AMQP listener.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        config.validate()?;
        let listener = TcpListener::bind(config.amqp_addr)
            .await
            .map_err(|source| StartError::Listen { addr: config.amqp_addr, source })?;
        let amqp_addr =
            listener.local_addr().map_err(|source| StartError::Listen { addr: config.amqp_addr, source })?;
        let alarms = watch::channel(Alarms::default()).0;
        let memory = MemoryAlarm::new(config.memory_limit(), alarms.clone());
        let node = Arc::new_cyclic(|me| Node {
            config,
            meta: Mutex::new(MetaCore {
                group: Group::new(MetaMachine::default()),
                effects: Vec::new(),
                queues: HashMap::new(),
            }),
            topology: ArcSwap::from_pointee(Topology::default()),
            next_connection: AtomicU64::new(1),
            next_consumer: AtomicU64::new(1),
            direct_reply: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            alarms,
            memory,
            me: me.clone(),
        });
        node.bootstrap()?;
        node.memory.check();
        tracing::info!(limit = node.memory.limit(), "memory alarm threshold");
        let monitor = tokio::spawn(memory_monitor(Arc::downgrade(&node), node.shutdown_signal()));
        tracing::info!(%amqp_addr, "AMQP 0-9-1 listener started");
        let server = tokio::spawn(amqp::server::serve(node.clone(), listener));
        Ok(Running { node, amqp_addr, tasks: vec![server, monitor] })
    }

    fn bootstrap(&self) -> Result<(), StartError> {
        let c = &self.config;
        let mut cmds = vec![MetaCommand::AddVhost { name: "/".into() }];
        cmds.extend(c.vhosts.iter().map(|v| MetaCommand::AddVhost { name: v.name.clone() }));
        if c.default_user && !c.users.iter().any(|u| u.name == "guest") {
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
                (None, None) => {
                    return Err(StartError::Bootstrap(format!("user '{}' has no password", u.name)));
                }
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
        for cmd in cmds {
            if let MetaReply::Refused(e) = self.propose_meta(cmd) {
                return Err(StartError::Bootstrap(e.reply_text()));
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    pub fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }

    pub fn next_consumer_id(&self) -> ConsumerId {
        ConsumerId(self.next_consumer.fetch_add(1, Ordering::Relaxed))
    }

    /// Proposes a metadata command, carries out its effects and publishes the new snapshot.
    pub fn propose_meta(&self, cmd: MetaCommand) -> MetaReply {
        let mut core = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let core = &mut *core;
        let reply = core.group.propose(now_ms(), cmd, &mut core.effects);
        let changed = !core.effects.is_empty();
        for fx in core.effects.drain(..) {
            match fx {
                MetaEffect::QueueCreated(rec) => {
                    let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
                    let config = QueueConfig {
                        key: key.clone(),
                        auto_delete: rec.auto_delete,
                        single_active_consumer: rec.parsed.single_active_consumer,
                    };
                    core.queues.insert(key, queue::spawn(config, self.auto_deleter()));
                }
                MetaEffect::QueueDeleted(rec) => {
                    let key = QueueKey::new(rec.vhost.clone(), rec.name.clone());
                    if let Some(h) = core.queues.remove(&key) {
                        // Never block here: the runner may be waiting on a connection that is
                        // waiting on us.
                        tokio::spawn(async move {
                            let _ =
                                h.tx.send(Request::Cast { cmd: Command::Delete { if_unused: false, if_empty: false } })
                                    .await;
                        });
                    }
                }
            }
        }
        let _ = changed;
        self.topology
            .store(Arc::new(Topology { meta: core.group.state().state().clone(), queues: core.queues.clone() }));
        reply
    }

    fn auto_deleter(&self) -> AutoDelete {
        let me = self.me.clone();
        Arc::new(move |key: QueueKey| {
            let me = me.clone();
            tokio::spawn(async move {
                if let Some(node) = me.upgrade() {
                    tracing::debug!(queue = %key, "auto-delete: last consumer gone");
                    node.propose_meta(MetaCommand::DeleteQueue { vhost: key.vhost, name: key.name });
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

/// Compares resident memory with the threshold every second until shutdown.
async fn memory_monitor(node: Weak<Node>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MEMORY_CHECK);
    loop {
        tokio::select! {
            _ = amqp::server::stopped(&mut shutdown) => return,
            _ = tick.tick() => match node.upgrade() {
                Some(n) => n.memory.check(),
                None => return,
            },
        }
    }
}
