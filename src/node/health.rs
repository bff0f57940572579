//! What the cluster's health checks ask of a node: whether it is part of a majority with a
//! live metadata leader (`ready-to-serve-clients`, HAProxy's and Kubernetes' check), which
//! quorum queues would lose their majority if it stopped (`node-is-quorum-critical`), and
//! which have no live leader (`quorum-queues-without-elected-leaders`).

use super::Node;
use crate::ids::QueueKey;
use crate::meta::QueueRecord;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a node that reaches a majority stays ready without a live metadata leader: longer
/// than the majority takes to elect a new one once it lost its leader (a death or a cut), so
/// that a routine election does not take every node out of its load balancer at once (and
/// HAProxy's `shutdown-sessions` with them every client of the cluster). A node cut off from
/// the majority fails the first condition at once, grace or not.
const LEADER_GRACE: Duration = Duration::from_secs(5);

impl Node {
    /// Whether this node may serve clients as part of its cluster: it sees a majority of the
    /// cluster's nodes (itself included) and knows a live metadata leader, or knew one less
    /// than [`LEADER_GRACE`] ago (an election under way). A single node always does. The
    /// reason otherwise (`ready-to-serve-clients`, HAProxy's check).
    pub fn in_majority(&self) -> Result<(), String> {
        let Some(peers) = &self.peers else { return Ok(()) };
        let members = peers.members();
        let down = peers.down().borrow().clone();
        let up = members.iter().filter(|n| !down.contains(n)).count();
        if up * 2 <= members.len() {
            return Err(format!("this node reaches {up} of the cluster's {} nodes: not a majority", members.len()));
        }
        let now = self.started.elapsed().as_millis() as u64 + 1;
        match self.meta.leader() {
            Some(l) if l == self.id || !down.contains(&l) => {
                self.leader_seen.store(now, Ordering::Relaxed);
                Ok(())
            }
            _ => {
                let seen = self.leader_seen.load(Ordering::Relaxed);
                if seen != 0 && now - seen < LEADER_GRACE.as_millis() as u64 {
                    return Ok(());
                }
                Err("no metadata leader is known".into())
            }
        }
    }

    /// The replicated queues this node holds a member of that would lose their majority if
    /// it stopped (`node-is-quorum-critical`, RabbitMQ's `rabbitmqctl
    /// check_if_node_is_quorum_critical`).
    pub fn quorum_critical(&self) -> Vec<QueueKey> {
        self.replicated_records(|rec| {
            let online = rec.members.iter().filter(|&&n| self.node_running(n)).count();
            rec.members.contains(&self.id) && online.saturating_sub(1) < rec.members.len() / 2 + 1
        })
    }

    /// The replicated queues with no live leader known here
    /// (`quorum-queues-without-elected-leaders`).
    pub fn leaderless_queues(&self) -> Vec<QueueKey> {
        self.replicated_records(|rec| {
            let leader = self.queue_node(rec);
            let known = self
                .leaders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&QueueKey::new(rec.vhost.clone(), rec.name.clone()))
                .is_some_and(|l| l.load(Ordering::Relaxed) != 0);
            !known || !self.node_running(leader)
        })
    }

    fn replicated_records(&self, keep: impl Fn(&QueueRecord) -> bool) -> Vec<QueueKey> {
        self.replicated_queues()
            .into_iter()
            .filter(|q| keep(q))
            .map(|q| QueueKey::new(q.vhost.clone(), q.name.clone()))
            .collect()
    }

    /// Every replicated queue's record.
    pub(super) fn replicated_queues(&self) -> Vec<std::sync::Arc<QueueRecord>> {
        self.meta.read(|m| {
            m.state().vhosts.values().flat_map(|v| v.queues.values()).filter(|q| q.replicated()).cloned().collect()
        })
    }
}
