//! The cluster's members as the metadata's node registry says (`meta/machine/nodes.rs`), and
//! what follows from it on this node: where the transport dials each member, whom the
//! liveness checks ask, and, on the metadata leader, the metadata group's own membership
//! (joined nodes become learners, then voters once caught up, at most [`MAX_VOTERS`]; forgotten
//! ones leave). Also the two ways in: a joining node admitted through this node
//! (`raft/join.rs`), and `forget_cluster_node`.

use super::Node;
use crate::broker::Error;
use crate::meta::{MetaCommand, MetaReply};
use crate::raft::GroupError;
use crate::raft::join::{Admit, JoinAnswer, JoinRequest};
use crate::raft::transport::NodeId;
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The metadata group's voters at most (as RabbitMQ's Khepri: more voters make every change
/// slower and add no safety a cluster of this size needs); other members are learners.
const MAX_VOTERS: usize = 5;
/// Between attempts to change the metadata group's members (a joiner down or far behind).
const RETRY: Duration = Duration::from_secs(5);

impl Node {
    /// Brings the transport, the liveness checks and (on the metadata leader) the metadata
    /// group's membership in line with the node registry. Called after every metadata change.
    pub(super) fn reconcile_nodes(&self) {
        let (Some(peers), Some(rep)) = (&self.peers, &self.replication) else { return };
        let (nodes, forgotten) = self.meta.read(|m| (m.state().nodes.clone(), m.state().forgotten.clone()));
        for n in nodes.values().filter(|n| n.id != self.id && !n.addr.is_empty()) {
            rep.transport.set_peer(n.id, &n.addr);
        }
        peers.set_members(nodes.values().map(|n| (n.id, n.name.clone())), &forgotten);
        if let Some(said) = &self.said {
            *said.forgotten.lock().unwrap_or_else(|p| p.into_inner()) = forgotten.clone();
        }
        if self.meta.leader() == Some(self.id) && !nodes.is_empty() {
            self.converge_meta();
        }
    }

    /// On the metadata leader: starts the task that changes the metadata group's members,
    /// unless it runs already.
    fn converge_meta(&self) {
        let mut task = self.converging.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        *task = Some(tokio::spawn(converge_meta(self.me.clone())));
    }

    /// Admits joining nodes through this node: the metadata leader gives each a new id.
    pub(super) fn admitter(&self) -> Admit {
        let me = self.me.clone();
        Arc::new(move |req: JoinRequest| {
            let me = me.clone();
            Box::pin(async move {
                let node = me.upgrade().ok_or_else(|| "node stopping".to_string())?;
                tracing::info!(name = %req.name, addr = %req.addr, "a node asks to join");
                match node.propose_meta(MetaCommand::JoinNode { name: req.name, addr: req.addr }).await {
                    MetaReply::NodeJoined { id } => {
                        let nodes =
                            node.meta.read(|m| m.state().nodes.values().map(|n| (n.id, n.addr.clone())).collect());
                        Ok(JoinAnswer { id, nodes })
                    }
                    MetaReply::Refused(e) => Err(e.reply_text()),
                    other => Err(format!("unexpected answer {other:?}")),
                }
            })
        })
    }

    /// `forget_cluster_node`: removes a member that is down for good (by name, or by id).
    /// A running node is refused, as RabbitMQ refuses to forget a node that runs.
    pub async fn forget_node(&self, name: &str) -> Result<(), Error> {
        let id = self.node_id_named(name)?;
        if id == self.id {
            return Err(Error::precondition(format!("node '{name}' is this node; ask another member to forget it")));
        }
        let running = self.peers.as_ref().is_some_and(|p| p.list().iter().any(|p| p.id == id && p.running));
        if running {
            return Err(Error::precondition(format!("node '{name}' is running; stop it before forgetting it")));
        }
        match self.propose_meta(MetaCommand::ForgetNode { id }).await {
            MetaReply::Refused(e) => Err(e),
            _ => {
                tracing::warn!(node = id, %name, "cluster node forgotten");
                Ok(())
            }
        }
    }
}

/// Changes the metadata group's members until they match the registry: current voters stay
/// voters unless forgotten, joined nodes catch up as learners and vote while there are fewer
/// than [`MAX_VOTERS`]. Only forgotten nodes ever leave (a registry that does not list a
/// voter yet, before the initial members are seeded, removes nobody).
async fn converge_meta(node: Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        if !n.is_serving() {
            return;
        }
        let now = n.meta.membership();
        let (registered, forgotten) = n
            .meta
            .read(|m| (m.state().nodes.keys().copied().collect::<BTreeSet<NodeId>>(), m.state().forgotten.clone()));
        let mut wanted: Vec<NodeId> = now.voters.iter().filter(|v| !forgotten.contains(v)).copied().collect();
        let rest = now.learners.iter().chain(&registered).filter(|v| !forgotten.contains(v) && !wanted.contains(v));
        let rest: BTreeSet<NodeId> = rest.copied().collect();
        wanted.extend(rest);
        let meta = n.meta.clone();
        drop(n);
        match meta.converge(&wanted, MAX_VOTERS).await {
            Ok(true) => return,
            Ok(false) => tracing::info!(members = ?wanted, "the metadata group's members changed"),
            // Another member leads (or none): the next leader carries on. A lease that could
            // not be renewed yet is a failure like any other, tried again.
            Err(GroupError::NotLeader(_)) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot change the metadata group's members yet");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
