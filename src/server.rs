//! A node with its listeners: binds the AMQP, management and Prometheus ports, opens the
//! [`Node`], serves them, and shuts everything down in order (stop accepting, close clients
//! with 320, stop management, then the node's queues, groups and storage).
//!
//! This wiring sits above `amqp/` and `mgmt/`, which use the node through its handle; the
//! node itself knows neither. With `--peers` it also serves the inter-node service
//! ([`crate::cluster`]) on `--cluster-addr` before the node opens (its peers need it to elect
//! a leader), and stops it last.
//!
//! How a member finds its place in its cluster (founds it, comes back, or joins it) is
//! [`formation`]'s.

use crate::amqp;
use crate::cluster::{Credentials, GrpcTransport, Identity};
use crate::config::Config;
use crate::meta::ClusterNode;
use crate::mgmt;
use crate::node::{ClusterStart, Node, StartError};
use crate::raft::Replication;
use crate::raft::transport::{Router, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod formation;

/// The inter-node service's task and how to stop it.
type Served = (watch::Sender<bool>, JoinHandle<()>);

/// A started node and its listeners.
pub struct Running {
    pub node: Arc<Node>,
    pub amqp_addr: SocketAddr,
    /// The management API's address.
    pub http_addr: SocketAddr,
    /// The Prometheus endpoint's address.
    pub prometheus_addr: SocketAddr,
    listeners: Vec<JoinHandle<()>>,
    /// The inter-node service, stopped after the node.
    cluster: Option<Served>,
}

impl Running {
    /// Stops accepting, closes every client connection with 320 CONNECTION_FORCED, stops the
    /// queues and the metadata group, and closes storage (so the data directory's lock is free).
    pub async fn shutdown(self) {
        // Leaderships first, while this node still serves: the other members take over at
        // once instead of after the failure detector finds this node gone.
        self.node.hand_over_leaderships().await;
        self.node.begin_shutdown();
        for t in self.listeners {
            let _ = t.await;
        }
        self.node.stop().await;
        if let Some((stop, mut served)) = self.cluster {
            stop.send_replace(true);
            // Other nodes' streams (remote queues) never end by themselves: a graceful stop
            // waits for them only briefly, then cuts them (their nodes see the link break).
            if tokio::time::timeout(std::time::Duration::from_secs(1), &mut served).await.is_err() {
                served.abort();
                let _ = served.await;
            }
        }
    }
}

/// Serves the inter-node service, finds this node's place in its cluster
/// ([`formation::place`]) and returns how this node's groups reach the others.
async fn join_cluster(config: &Config) -> Result<(ClusterStart, Served, Arc<AtomicBool>, bool), StartError> {
    let c = &config.cluster;
    let secret = c.secret()?.ok_or_else(|| StartError::Cluster("a cluster needs a shared secret".into()))?;
    let creds = Credentials::new(&c.name, &secret);
    let (listener, cluster_addr) = bind(c.listen_addr).await?;
    // The listener answers hellos from the start (with id 0 while this node finds its
    // place): peers that start at the same time need its answer to find theirs.
    let router = Router::new(0);
    let member = Arc::new(AtomicBool::new(false));
    let (stop, mut stopped) = watch::channel(false);
    let said = Arc::<crate::node::peers::Said>::default();
    let identity = Identity { name: config.node_name(), member: member.clone(), said: said.clone() };
    let served = tokio::spawn({
        let (router, creds) = (router.clone(), creds.clone());
        async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::cluster::serve(listener, router, identity, creds, shutdown).await {
                tracing::error!(error = %e, "the cluster listener failed");
            }
        }
    });
    tracing::info!(%cluster_addr, advertised = %c.advertised(), cluster = %c.name, "cluster listener started");
    let place = match formation::place(config, &creds).await {
        Ok(p) => p,
        Err(e) => {
            stop.send_replace(true);
            let _ = served.await;
            return Err(e);
        }
    };
    member.store(place.stored, Ordering::Release);
    router.set_me(place.me);
    let transport = GrpcTransport::new(place.me, creds, formation::source(config));
    for (id, addr) in &place.peers {
        transport.set_peer(*id, addr);
    }
    let seed = if place.founder {
        place
            .founders
            .iter()
            .map(|(id, addr)| ClusterNode { id: *id, name: String::new(), addr: addr.clone() })
            .collect()
    } else {
        Vec::new()
    };
    let rep = Replication {
        me: place.me,
        transport: Arc::new(transport),
        router,
        initial: place.founder.then(|| place.founders.iter().map(|(id, _)| *id).collect()),
    };
    let start = ClusterStart { rep, seed, peers: place.peers.iter().map(|(id, _)| *id).collect(), said };
    Ok((start, (stop, served), member, place.stored))
}

/// Binds a listener, reporting the address that failed.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let l = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let local = l.local_addr().map_err(|source| StartError::Listen { addr, source })?;
    Ok((l, local))
}

/// Starts a node: binds its ports (so a taken port fails before any data is touched), opens
/// storage and recovers metadata and queues, then serves AMQP, management and Prometheus.
pub async fn start(config: Config) -> Result<Running, StartError> {
    config.validate()?;
    let (amqp, amqp_addr) = bind(config.amqp_addr).await?;
    let (http, http_addr) = bind(config.http_addr).await?;
    // Until the node serves, its management port answers 503 with the reason (it may wait
    // minutes for a majority of its cluster).
    let (http, starting) =
        mgmt::starting::answer(http).map_err(|source| StartError::Listen { addr: config.http_addr, source })?;
    let (prometheus, prometheus_addr) = bind(config.prometheus_addr).await?;
    let (start, cluster, member) = if config.cluster.peers.is_empty() {
        (None, None, None)
    } else {
        let (start, served, member, stored) = join_cluster(&config).await?;
        (Some(start), Some(served), Some((member, stored)))
    };
    let data_dir = config.data_dir.clone();
    let node = Node::open(config, amqp_addr, start).await?;
    if let Some((member, stored)) = member {
        // A founder's id is stored once its cluster formed (`server/formation.rs`).
        if !stored {
            crate::storage::write_node_id(&data_dir, node.id())?;
        }
        member.store(true, Ordering::Release);
    }
    tracing::info!(%amqp_addr, "AMQP 0-9-1 listener started");
    let server = tokio::spawn(amqp::server::serve(node.clone(), amqp));
    if let Some(s) = starting {
        s.stop().await;
    }
    tracing::info!(%http_addr, "management listener started");
    let api = tokio::spawn(mgmt::serve(node.clone(), http, node.shutdown_signal()));
    tracing::info!(%prometheus_addr, "prometheus listener started");
    let metrics = tokio::spawn(mgmt::prometheus::serve(node.clone(), prometheus, node.shutdown_signal()));
    Ok(Running { node, amqp_addr, http_addr, prometheus_addr, listeners: vec![server, api, metrics], cluster })
}
