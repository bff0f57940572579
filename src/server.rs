//! A node with its listeners: binds the AMQP, management and Prometheus ports, opens the
//! [`Node`], serves them, and shuts everything down in order (stop accepting, close clients
//! with 320, stop management, then the node's queues, groups and storage).
//!
//! This wiring sits above `amqp/` and `mgmt/`, which use the node through its handle; the
//! node itself knows neither.

use crate::amqp;
use crate::config::Config;
use crate::mgmt;
use crate::node::{Node, StartError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
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
    }
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
    if !config.cluster.peers.is_empty() {
        return Err(StartError::Cluster(
            "--peers: this build runs a single node; clustering (issue 12) is not in it yet".into(),
        ));
    }
    let (amqp, amqp_addr) = bind(config.amqp_addr).await?;
    let (http, http_addr) = bind(config.http_addr).await?;
    let (prometheus, prometheus_addr) = bind(config.prometheus_addr).await?;
    let node = Node::open(config, amqp_addr).await?;
    tracing::info!(%amqp_addr, "AMQP 0-9-1 listener started");
    let server = tokio::spawn(amqp::server::serve(node.clone(), amqp));
    tracing::info!(%http_addr, "management listener started");
    let api = tokio::spawn(mgmt::serve(node.clone(), http, node.shutdown_signal()));
    tracing::info!(%prometheus_addr, "prometheus listener started");
    let metrics = tokio::spawn(mgmt::prometheus::serve(node.clone(), prometheus, node.shutdown_signal()));
    Ok(Running { node, amqp_addr, http_addr, prometheus_addr, listeners: vec![server, api, metrics] })
}
