//! The metadata actor: proposes metadata commands in batches to the metadata group, carries
//! out their effects in log order and publishes the new routing snapshot before it answers,
//! so a client's next method sees its change.

use super::{Node, now_ms};
use crate::broker::{Error, ReplyCode};
use crate::meta::{MetaCommand, MetaReply};
use crate::raft::AppliedWatch;
use std::sync::Weak;
use tokio::sync::{mpsc, oneshot};

/// Commands proposed together (in one batch, one after the other in the log), and where
/// their replies go.
pub(super) type MetaRequest = (Vec<MetaCommand>, oneshot::Sender<Vec<MetaReply>>);

/// How long a change waits for the live nodes to act on it before it is answered anyway (a
/// node that is slow to apply is not worth a client's error).
const PEERS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl Node {
    /// Waits (up to [`PEERS_PATIENCE`]) until every peer found up acts on metadata up to
    /// `index`.
    pub(super) async fn await_peers(&self, index: u64) {
        let (Some(peers), Some(rep)) = (&self.peers, &self.replication) else { return };
        let down = peers.down().borrow().clone();
        let asks = peers.members().into_iter().filter(|&n| n != self.id && !down.contains(&n)).map(|n| {
            let transport = rep.transport.clone();
            let down = peers.down();
            async move {
                let mut pause = std::time::Duration::from_millis(1);
                loop {
                    match crate::raft::ask_applied(transport.as_ref(), n).await {
                        Ok(seen) if seen >= index => return,
                        // A node found down is not waited for. One that cannot answer yet
                        // (still starting: its metadata not open) is asked again, or a
                        // client's next method through it might not see the change.
                        Err(_) if down.borrow().contains(&n) => return,
                        Err(_) | Ok(_) => {}
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
            }
        });
        let _ = tokio::time::timeout(PEERS_PATIENCE, futures::future::join_all(asks)).await;
    }

    /// Proposes a metadata command; answers once it is durable, applied, its effects carried
    /// out and the new routing snapshot published (and, in a cluster, every live node acts on
    /// it).
    pub async fn propose_meta(&self, cmd: MetaCommand) -> MetaReply {
        let unavailable = || MetaReply::Refused(Error::new(ReplyCode::InternalError, "metadata store unavailable"));
        self.propose_meta_all(vec![cmd]).await.pop().unwrap_or_else(unavailable)
    }

    /// Proposes commands together: in one batch, nothing else between them in the log (what
    /// another node reads in between sees all of them or none).
    pub async fn propose_meta_all(&self, mut cmds: Vec<MetaCommand>) -> Vec<MetaReply> {
        for cmd in &mut cmds {
            self.place(cmd);
        }
        let n = cmds.len();
        let unavailable = || MetaReply::Refused(Error::new(ReplyCode::InternalError, "metadata store unavailable"));
        let (tx, rx) = oneshot::channel();
        if self.meta_tx.send((cmds, tx)).await.is_err() {
            return (0..n).map(|_| unavailable()).collect();
        }
        rx.await.unwrap_or_else(|_| (0..n).map(|_| unavailable()).collect())
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
                let (requests, replies): (Vec<Vec<MetaCommand>>, Vec<oneshot::Sender<Vec<MetaReply>>>) =
                    batch.drain(..).unzip();
                let counts: Vec<usize> = requests.iter().map(Vec::len).collect();
                let cmds: Vec<MetaCommand> = requests.into_iter().flatten().collect();
                let replies_n = cmds.len();
                let answers: Vec<MetaReply> = match node.meta.propose_many(now_ms(), cmds).await {
                    Ok(results) => results.into_iter().map(|(reply, _effects)| reply).collect(),
                    Err(e) => {
                        tracing::error!(error = %e, "metadata proposal failed");
                        let text = format!("metadata store unavailable: {e}");
                        (0..replies_n).map(|_| MetaReply::Refused(Error::new(ReplyCode::InternalError, text.clone()))).collect()
                    }
                };
                seen = seen.max(node.meta.applied_index());
                node.reconcile_nodes();
                node.reconcile_queues();
                node.publish_topology();
                node.meta_seen.store(seen, std::sync::atomic::Ordering::Release);
                // Answered once every live node acts on it too: what the client does next,
                // through whichever node, sees the change (as RabbitMQ's metadata store).
                node.await_peers(seen).await;
                let mut answers = answers.into_iter();
                for (tx, n) in replies.into_iter().zip(counts) {
                    let _ = tx.send(answers.by_ref().take(n).collect());
                }
            }
            index = applied.changed() => {
                let Some(index) = index else { return };
                let Some(node) = node.upgrade() else { return };
                if index > seen {
                    seen = index;
                    node.reconcile_nodes();
                    node.reconcile_queues();
                    node.publish_topology();
                    node.meta_seen.store(seen, std::sync::atomic::Ordering::Release);
                }
            }
        }
    }
}
