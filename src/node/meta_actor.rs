//! The metadata actor: proposes metadata commands in batches to the metadata group, carries
//! out their effects in log order and publishes the new routing snapshot before it answers,
//! so a client's next method sees its change.

use super::{Node, now_ms};
use crate::broker::{Error, ReplyCode};
use crate::meta::{MetaCommand, MetaReply};
use std::sync::Weak;
use tokio::sync::{mpsc, oneshot};

pub(super) type MetaRequest = (MetaCommand, oneshot::Sender<MetaReply>);

impl Node {
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
}

/// Proposes metadata commands in batches, carries out their effects in log order, publishes
/// the snapshot, then answers.
pub(super) async fn meta_actor(node: Weak<Node>, mut rx: mpsc::Receiver<MetaRequest>) {
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
