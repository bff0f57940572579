//! Questions one node's management API asks the other nodes: RabbitMQ's `/api/connections`,
//! `/api/channels` and `/api/consumers` list every node's, and `DELETE /api/connections/{name}`
//! closes a connection wherever it is. The questions and answers are opaque bytes here (the
//! management API encodes them, `mgmt/connections.rs`); this module carries them
//! ([`RpcKind::Peek`] to the [`NODE_PEEK`] pseudo-group) and bounds the wait.

use super::Node;
use crate::raft::transport::{Handler, NODE_PEEK, RpcKind, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// How long a peer may take to answer; one that does not is left out of the answer.
const PATIENCE: Duration = Duration::from_secs(3);

/// Answers another node's question (the management API's side).
pub type Answer = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Bytes> + Send + Sync>;

struct Peeks(Answer);

impl Handler for Peeks {
    fn handle(&self, kind: RpcKind, body: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        if kind != RpcKind::Peek {
            return Box::pin(async { Err(TransportError::Malformed("only Peek is asked here".into())) });
        }
        let answer = (self.0)(body);
        Box::pin(async move { Ok(answer.await) })
    }
}

impl Node {
    /// Lets the other nodes ask this one through `answer` (a single node: nothing to do).
    pub fn answer_peeks(&self, answer: Answer) {
        if let Some(rep) = &self.replication {
            rep.router.register(NODE_PEEK, Arc::new(Peeks(answer)));
        }
    }

    /// Asks every other running node `question`; the answers of those that gave one in time.
    pub async fn peek_peers(&self, question: Bytes) -> Vec<Bytes> {
        let (Some(rep), Some(peers)) = (&self.replication, &self.peers) else { return Vec::new() };
        let running: Vec<_> = peers.list().into_iter().filter(|p| p.running && p.id != self.id).map(|p| p.id).collect();
        let asks = running.into_iter().map(|id| {
            let call = rep.transport.call(id, NODE_PEEK, RpcKind::Peek, question.clone());
            async move {
                match tokio::time::timeout(PATIENCE, call).await {
                    Ok(Ok(answer)) => Some(answer),
                    Ok(Err(e)) => {
                        tracing::debug!(node = id, error = %e, "a node did not answer the management API");
                        None
                    }
                    Err(_) => None,
                }
            }
        });
        futures::future::join_all(asks).await.into_iter().flatten().collect()
    }
}
