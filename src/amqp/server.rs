//! The AMQP listener: accepts sockets and runs one connection task per client.

use super::connection;
use crate::node::{Node, stopped};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Accepts clients until the node shuts down, then waits for every connection to close.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let mut shutdown = node.shutdown_signal();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) if node.in_maintenance() => {
                    // A drained node takes no clients (RabbitMQ suspends its listeners).
                    tracing::debug!(%peer, "connection refused: the node is in maintenance mode");
                    drop(sock);
                }
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    conns.spawn(connection::run(node.clone(), sock, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Connections see the same signal and close with 320; give them a bounded time.
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while conns.join_next().await.is_some() {} }).await;
}
