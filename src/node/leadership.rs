//! Where quorum queues' leaders are, as operators see and move them: `quorum_status`,
//! `transfer_leadership`, `rebalance` (RabbitMQ's `rabbitmq-queues` commands of those names),
//! and the handover of every leadership a node holds when it stops gracefully (RabbitMQ
//! transfers a stopping node's quorum queue leaderships first, so a rolling restart does not
//! wait for the failure detector). The handover itself is the raft layer's
//! (`raft/durable/handover.rs`); this module finds the members and names the nodes.

use super::Node;
use crate::broker::{Error, ReplyCode};
use crate::meta::QueueRecord;
use crate::raft::durable::{HandoverError, MemberStatus, ask_hand_over, ask_status};
use crate::storage::GroupId;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How many handovers a stopping node or a rebalance runs at once.
const AT_ONCE: usize = 16;
/// How long a stopping node spends handing its leaderships over before it stops anyway.
const HANDOVER_PATIENCE: Duration = Duration::from_secs(10);

/// One member of a quorum queue as `quorum_status` shows it.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub node: String,
    /// The member's own view; `None` when its node did not answer.
    pub status: Option<MemberStatus>,
}

/// Where leaders are after a rebalance: per node, how many it leads.
pub type LeaderCounts = BTreeMap<String, usize>;

impl Node {
    /// A cluster node's id by its name (or id).
    pub(super) fn node_id_named(&self, name: &str) -> Result<u64, Error> {
        self.meta
            .read(|m| m.state().nodes.values().find(|n| n.name == name || n.id.to_string() == name).map(|n| n.id))
            .ok_or_else(|| Error::not_found(format!("no cluster node '{name}'")))
    }

    /// A replicated queue's record; a missing queue is `NOT_FOUND`, one that is not
    /// replicated a precondition failure (as RabbitMQ: "not a quorum queue").
    fn replicated_record(&self, vhost: &str, name: &str) -> Result<Arc<QueueRecord>, Error> {
        let rec = self
            .meta
            .read(|m| m.state().vhosts.get(vhost).and_then(|v| v.queues.get(name)).cloned())
            .ok_or_else(|| Error::no_queue(vhost, name))?;
        if !rec.replicated() {
            return Err(Error::precondition(format!(
                "queue '{name}' in vhost '{vhost}' is not a replicated (quorum) queue"
            )));
        }
        Ok(rec)
    }

    /// Each member of a quorum queue as it sees itself (`rabbitmq-queues quorum_status`).
    pub async fn quorum_status(&self, vhost: &str, name: &str) -> Result<Vec<MemberRow>, Error> {
        let rec = self.replicated_record(vhost, name)?;
        let rep = self.replication.as_ref().ok_or_else(|| Error::precondition("not a cluster"))?;
        let group = GroupId(rec.group);
        let asks = rec.members.iter().map(|&n| async move {
            let status = ask_status(rep.transport.as_ref(), &rep.router, n, group).await.ok();
            MemberRow { node: self.name_of(n), status }
        });
        Ok(futures::future::join_all(asks).await)
    }

    /// Moves a quorum queue's leadership to the member on node `to`, or to the most
    /// up-to-date other member; answers the new leader's node name.
    pub async fn transfer_leadership(&self, vhost: &str, name: &str, to: Option<&str>) -> Result<String, Error> {
        let rec = self.replicated_record(vhost, name)?;
        let to = match to {
            Some(t) => {
                let id = self.node_id_named(t)?;
                if !rec.members.contains(&id) {
                    return Err(Error::precondition(format!("node '{t}' holds no replica of queue '{name}'")));
                }
                Some(id)
            }
            None => None,
        };
        let new = self.hand_over(GroupId(rec.group), &rec.members, to).await?;
        tracing::info!(vhost, queue = name, to = %self.name_of(new), "quorum queue leadership transferred");
        Ok(self.name_of(new))
    }

    /// Asks the leader of `group` (found among `members`) to hand over to `to`; the new leader.
    async fn hand_over(&self, group: GroupId, members: &[u64], to: Option<u64>) -> Result<u64, Error> {
        let rep = self.replication.as_ref().ok_or_else(|| Error::precondition("not a cluster"))?;
        let mut leader =
            crate::raft::find_leader(rep.transport.as_ref(), group, members, u64::MAX, &|n| !self.node_running(n))
                .await;
        for _ in 0..3 {
            let Some(l) = leader else { break };
            if Some(l) == to {
                return Ok(l);
            }
            match ask_hand_over(rep.transport.as_ref(), &rep.router, l, group, to).await {
                Ok(Ok(new)) => return Ok(new),
                // Leadership moved meanwhile: ask the one named.
                Ok(Err(HandoverError::NotLeader(named))) => leader = named,
                Ok(Err(HandoverError::Refused(why))) => return Err(Error::precondition(why)),
                Err(e) => return Err(Error::new(ReplyCode::InternalError, format!("cannot reach the leader: {e}"))),
            }
        }
        Err(Error::resource_locked("the queue has no leader at the moment; try again"))
    }

    /// Spreads quorum queue leaders evenly over the running nodes (`rabbitmq-queues rebalance
    /// quorum`): queues are moved from nodes leading more than their share to the member
    /// node leading fewest. Answers how many each node leads afterwards.
    pub async fn rebalance(&self) -> Result<LeaderCounts, Error> {
        let queues = self.replicated_queues();
        let mut led: BTreeMap<u64, usize> = BTreeMap::new();
        let nodes: Vec<u64> = self.meta.read(|m| m.state().nodes.keys().copied().collect());
        for n in nodes.into_iter().filter(|&n| self.node_running(n)) {
            led.insert(n, 0);
        }
        let mut at: Vec<(Arc<QueueRecord>, u64)> = Vec::new();
        for q in queues {
            let l = self.queue_node(&q);
            *led.entry(l).or_default() += 1;
            at.push((q, l));
        }
        let total: usize = led.values().sum();
        let share = total.div_ceil(led.len().max(1));
        let mut moves = Vec::new();
        for (q, l) in at {
            if led.get(&l).copied().unwrap_or(0) <= share {
                continue;
            }
            let best = q.members.iter().filter(|m| **m != l && led.contains_key(m)).min_by_key(|m| led[m]).copied();
            if let Some(b) = best.filter(|b| led[b] + 1 < led[&l]) {
                *led.entry(l).or_default() -= 1;
                *led.entry(b).or_default() += 1;
                moves.push((q, l, b));
            }
        }
        tracing::info!(moves = moves.len(), "rebalancing quorum queue leaders");
        let outcomes: Vec<(u64, u64, Result<u64, Error>)> = futures::stream::iter(moves)
            .map(|(q, from, to)| async move {
                let r = self.hand_over(GroupId(q.group), &q.members, Some(to)).await;
                if let Err(e) = &r {
                    tracing::warn!(vhost = %q.vhost, queue = %q.name, error = %e, "leadership not moved");
                }
                (from, to, r)
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        // The plan, less what did not go as planned.
        for (from, to, r) in outcomes {
            let now = r.unwrap_or(from);
            if now != to {
                *led.entry(to).or_default() -= 1;
                *led.entry(now).or_default() += 1;
            }
        }
        Ok(led.into_iter().map(|(n, c)| (self.name_of(n), c)).collect())
    }

    /// How many replicated queues this node's fronts see led here (the nodes table's
    /// "Quorum leaders").
    pub fn quorum_leaders_here(&self) -> usize {
        self.replicated_queues().iter().filter(|q| self.queue_node(q) == self.id).count()
    }

    /// Every Raft group member this node runs (quorum queues, delayed stores, the metadata),
    /// as each sees itself: for Prometheus' `rabbitmq_raft_*` families.
    pub async fn local_raft_members(&self) -> Vec<MemberStatus> {
        let Some(rep) = &self.replication else { return Vec::new() };
        futures::stream::iter(rep.router.groups())
            .map(|g| ask_status(rep.transport.as_ref(), &rep.router, self.id, g))
            .buffer_unordered(64)
            .filter_map(|r| async move { r.ok() })
            .collect()
            .await
    }

    /// On a graceful stop: hands every leadership this node's members hold (quorum queues,
    /// delayed exchanges' stores, the metadata) to caught-up members, before clients are
    /// closed, so the others serve at once. Answers how many moved.
    pub async fn hand_over_leaderships(&self) -> usize {
        let Some(rep) = &self.replication else { return 0 };
        let groups = rep.router.groups();
        let count = std::sync::atomic::AtomicUsize::new(0);
        let all = futures::stream::iter(groups).for_each_concurrent(AT_ONCE, |g| {
            let count = &count;
            async move {
                if let Ok(Ok(new)) = ask_hand_over(rep.transport.as_ref(), &rep.router, self.id, g, None).await {
                    if new != self.id {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
        if tokio::time::timeout(HANDOVER_PATIENCE, all).await.is_err() {
            tracing::warn!("leaderships not all handed over in time; stopping anyway");
        }
        let moved = count.into_inner();
        if moved > 0 {
            tracing::info!(moved, "leaderships handed over before stopping");
        }
        moved
    }
}
