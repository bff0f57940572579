//! The metadata actor: proposes metadata commands in batches to the metadata group, carries
//! out their effects in log order and publishes the new routing snapshot before it answers,
//! so a client's next method sees its change.

use super::{Node, now_ms};
use crate::broker::{Error, ReplyCode};
use crate::meta::{MetaCommand, MetaReply};
use crate::raft::AppliedWatch;
use std::sync::Weak;
use tokio::sync::{mpsc, oneshot};

pub(super) type MetaRequest = (MetaCommand, oneshot::Sender<MetaReply>);

impl Node {
    /// Proposes a metadata command; answers once it is durable, applied, its effects carried
    /// out and the new routing snapshot published.
    pub async fn propose_meta(&self, mut cmd: MetaCommand) -> MetaReply {
        self.place(&mut cmd);
        let unavailable = || MetaReply::Refused(Error::new(ReplyCode::InternalError, "metadata store unavailable"));
        let (tx, rx) = oneshot::channel();
        if self.meta_tx.send((cmd, tx)).await.is_err() {
            return unavailable();
        }
        rx.await.unwrap_or_else(|_| unavailable())
    }
}

/// Proposes metadata commands in batches, then brings the running queues and the routing
/// snapshot in line with the metadata before answering; and does the same whenever entries
/// proposed elsewhere (another node of the cluster) are applied. Effects are not used: each
/// node acts on its own applied state ([`Node::reconcile_queues`]).
pub(super) async fn meta_actor(node: Weak<Node>, mut rx: mpsc::Receiver<MetaRequest>, mut applied: AppliedWatch) {
    let mut batch = Vec::with_capacity(64);
    let mut seen = 0;
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    return;
                }
                let Some(node) = node.upgrade() else { return };
                let (cmds, replies): (Vec<MetaCommand>, Vec<oneshot::Sender<MetaReply>>) = batch.drain(..).unzip();
                let answers: Vec<MetaReply> = match node.meta.propose_many(now_ms(), cmds).await {
                    Ok(results) => results.into_iter().map(|(reply, _effects)| reply).collect(),
                    Err(e) => {
                        tracing::error!(error = %e, "metadata proposal failed");
                        let text = format!("metadata store unavailable: {e}");
                        replies.iter().map(|_| MetaReply::Refused(Error::new(ReplyCode::InternalError, text.clone()))).collect()
                    }
                };
                seen = seen.max(node.meta.applied_index());
                node.reconcile_queues();
                node.publish_topology();
                for (tx, reply) in replies.into_iter().zip(answers) {
                    let _ = tx.send(reply);
                }
            }
            index = applied.changed() => {
                let Some(index) = index else { return };
                let Some(node) = node.upgrade() else { return };
                if index > seen {
                    seen = index;
                    node.reconcile_queues();
                    node.publish_topology();
                }
            }
        }
    }
}
