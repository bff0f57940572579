//! A node with its listeners: binds the AMQP, management and Prometheus ports, opens the
//! [`Node`], serves them, and shuts everything down in order (stop accepting, close clients
//! with 320, stop management, then the node's queues, groups and storage).
//!
//! This wiring sits above `amqp/` and `mgmt/`, which use the node through its handle; the
//! node itself knows neither. With `--peers` it also serves the inter-node service
//! ([`crate::cluster`]) on `--cluster-addr` before the node opens (its peers need it to elect
//! a leader), and stops it last.
//!
//! Node ids of a new cluster: the peer list sorted, each member's id its place in it plus one
//! (`docs/cluster-design.md`); every member creates the metadata group with that same full
//! membership, which Raft resolves as one election, never two clusters.

use crate::amqp;
use crate::cluster::{Credentials, GrpcTransport, Identity};
use crate::config::Config;
use crate::mgmt;
use crate::node::{Node, StartError};
use crate::raft::Replication;
use crate::raft::transport::{NodeId, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    cluster: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    /// Stops accepting, closes every client connection with 320 CONNECTION_FORCED, stops the
    /// queues and the metadata group, and closes storage (so the data directory's lock is free).
    pub async fn shutdown(self) {
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

/// This node's place in a new cluster: its id and every member's (id, cluster address).
pub fn member_ids(peers: &[String], advertised: &str) -> Result<(NodeId, Vec<(NodeId, String)>), StartError> {
    let mut sorted = peers.to_vec();
    sorted.sort();
    let members: Vec<(NodeId, String)> = sorted.into_iter().enumerate().map(|(i, a)| (i as NodeId + 1, a)).collect();
    let me = members.iter().find(|(_, a)| a == advertised).map(|(id, _)| *id).ok_or_else(|| {
        StartError::Cluster(format!(
            "this node's cluster address {advertised} is not among --peers ({}): give --advertise-addr as this node's entry there",
            peers.join(",")
        ))
    })?;
    Ok((me, members))
}

/// Serves the inter-node service and returns how this node's groups reach the others.
async fn join_cluster(
    config: &Config,
) -> Result<(Replication, (watch::Sender<bool>, JoinHandle<()>), SocketAddr), StartError> {
    let c = &config.cluster;
    let advertised = c.advertised();
    let (me, members) = member_ids(&c.peers, &advertised)?;
    let secret = c.secret()?.ok_or_else(|| StartError::Cluster("a cluster needs a shared secret".into()))?;
    let creds = Credentials::new(&c.name, &secret);
    let (listener, cluster_addr) = bind(c.listen_addr).await?;
    let router = Router::new(me);
    let source = Some(c.listen_addr.ip()).filter(|ip| !ip.is_unspecified());
    let transport = GrpcTransport::new(me, creds.clone(), source);
    for (id, addr) in &members {
        if *id != me {
            transport.set_peer(*id, addr.clone());
        }
    }
    let (stop, mut stopped) = watch::channel(false);
    let identity = Identity { name: config.node_name(), id: me };
    let served = tokio::spawn({
        let router = router.clone();
        async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::cluster::serve(listener, router, identity, creds, shutdown).await {
                tracing::error!(error = %e, "the cluster listener failed");
            }
        }
    });
    tracing::info!(%cluster_addr, node_id = me, advertised = %advertised, members = members.len(), cluster = %c.name, "cluster listener started");
    let rep = Replication {
        me,
        transport: Arc::new(transport),
        router,
        initial: Some(members.iter().map(|(id, _)| *id).collect()),
    };
    Ok((rep, (stop, served), cluster_addr))
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
    let (prometheus, prometheus_addr) = bind(config.prometheus_addr).await?;
    let (replication, cluster) = if config.cluster.peers.is_empty() {
        (None, None)
    } else {
        let (rep, served, _) = join_cluster(&config).await?;
        (Some(rep), Some(served))
    };
    let node = Node::open(config, amqp_addr, replication).await?;
    tracing::info!(%amqp_addr, "AMQP 0-9-1 listener started");
    let server = tokio::spawn(amqp::server::serve(node.clone(), amqp));
    tracing::info!(%http_addr, "management listener started");
    let api = tokio::spawn(mgmt::serve(node.clone(), http, node.shutdown_signal()));
    tracing::info!(%prometheus_addr, "prometheus listener started");
    let metrics = tokio::spawn(mgmt::prometheus::serve(node.clone(), prometheus, node.shutdown_signal()));
    Ok(Running { node, amqp_addr, http_addr, prometheus_addr, listeners: vec![server, api, metrics], cluster })
}
