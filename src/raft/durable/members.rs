//! Membership changes of a group of several members: its leader brings the group's members in
//! line with the ones the metadata wants (a node joined, one was forgotten or replaced).
//!
//! A new member is added as a learner and becomes a voter only once it has caught up
//! (openraft's blocking `add_learner`), so it never counts toward a majority with a log it
//! does not have; voters leave and arrive through a joint configuration (Raft §6, openraft's
//! `change_membership`), so a majority of the old voters and of the new ones agree on every
//! entry meanwhile.

use super::{DurableGroup, DurableMachine, GroupError, raft_err, write_err};
use crate::raft::transport::NodeId;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers};
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a new member may take to catch up before the change is given up (and tried again
/// by the caller later).
const CATCH_UP: Duration = Duration::from_secs(120);

/// Between attempts to change a group's members (a new member down or far behind).
const CONVERGE_RETRY: Duration = Duration::from_secs(5);

/// A group's membership as one member knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but do not vote (yet).
    pub learners: BTreeSet<NodeId>,
    /// A change is half-way (a joint configuration).
    pub joint: bool,
}

impl<M: DurableMachine> DurableGroup<M> {
    /// The group's latest membership (committed or not) as this member knows it.
    pub fn membership(&self) -> Membership {
        let m = self.raft.metrics().borrow_watched().membership_config.clone();
        let m = m.membership();
        Membership {
            voters: m.voter_ids().collect(),
            learners: m.learner_ids().collect(),
            joint: m.get_joint_config().len() > 1,
        }
    }

    /// Whether the group's voters are `wanted`, with no learner and no change half-way.
    fn has_members(&self, wanted: &[NodeId]) -> bool {
        let now = self.membership();
        !now.joint && now.learners.is_empty() && now.voters == wanted.iter().copied().collect()
    }

    /// On the leader: makes `wanted` the group's members: voters up to `max_voters` (those that
    /// vote already first, then in `wanted`'s order), learners beyond. Answers whether the
    /// group had that membership already. A member that does not catch up within
    /// [`CATCH_UP`] (down, or still far behind) fails the change; nothing is lost by trying
    /// again later.
    pub async fn converge(&self, wanted: &[NodeId], max_voters: usize) -> Result<bool, GroupError> {
        self.lead_now().await?;
        let now = self.membership();
        let wanted_all: BTreeSet<NodeId> = wanted.iter().copied().collect();
        let mut voters: Vec<NodeId> = wanted.iter().filter(|n| now.voters.contains(n)).copied().collect();
        for &n in wanted {
            if !voters.contains(&n) {
                voters.push(n);
            }
        }
        voters.truncate(max_voters.max(1));
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        let known: BTreeSet<NodeId> = now.voters.union(&now.learners).copied().collect();
        if !now.joint && voters == now.voters && known == wanted_all {
            return Ok(true);
        }
        tracing::info!(group = self.log.id().0, from = ?now, to_voters = ?voters, to_learners = ?wanted_all.difference(&voters).collect::<Vec<_>>(), "changing the group's members");
        // New members, and learners about to vote, catch up first.
        for &n in wanted_all.iter().filter(|n| !known.contains(n) || (voters.contains(n) && !now.voters.contains(n))) {
            self.lead_now().await?;
            let add = self.raft.add_learner(n, BasicNode::default(), true);
            match tokio::time::timeout(CATCH_UP, add).await {
                Ok(r) => {
                    r.map_err(|e| self.membership_err(e))?;
                    tracing::info!(group = self.log.id().0, node = n, "a new member caught up");
                }
                Err(_) => return Err(GroupError::Raft(format!("node {n} did not catch up within {CATCH_UP:?}"))),
            }
        }
        if now.joint || voters != now.voters {
            self.lead_now().await?;
            self.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false)
                .await
                .map_err(|e| self.membership_err(e))?;
        }
        let strays: BTreeSet<NodeId> = self.membership().learners.difference(&wanted_all).copied().collect();
        if !strays.is_empty() {
            self.lead_now().await?;
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(strays), false)
                .await
                .map_err(|e| self.membership_err(e))?;
        }
        Ok(false)
    }

    /// Makes sure this member leads with a valid lease before a membership change (openraft
    /// refuses a change from a leader whose lease lapsed, as an idle supervised group's does:
    /// it renews it first, `propose.rs`). [`GroupError::NotLeader`] only when another member
    /// leads or none does; a lease that could not be renewed yet is a failure to try again.
    async fn lead_now(&self) -> Result<(), GroupError> {
        if self.leader() != Some(self.me) {
            return Err(GroupError::NotLeader(self.leader()));
        }
        if !self.confirm_leadership().await {
            return Err(self.lapsed());
        }
        Ok(())
    }

    /// A refused membership change: openraft's "not the leader, leader unknown" from a member
    /// that still leads means its lease lapsed meanwhile (try again), not that it was deposed.
    fn membership_err(
        &self,
        e: openraft::errors::RaftError<super::C, openraft::errors::ClientWriteError<super::C>>,
    ) -> GroupError {
        match write_err(e) {
            GroupError::NotLeader(None) if self.leader() == Some(self.me) => self.lapsed(),
            other => other,
        }
    }

    fn lapsed(&self) -> GroupError {
        GroupError::Raft("the leader's lease could not be renewed yet".into())
    }

    /// Whether this member has any history (it created the group, or a leader reached it).
    pub async fn is_initialized(&self) -> Result<bool, GroupError> {
        self.raft.is_initialized().await.map_err(raft_err)
    }
}

/// On a group's leader: unless the task in `task` is still at it or the group has `members`
/// already, starts one that brings the group's membership in line with `members` (as the
/// metadata says them: a node was forgotten or replaced), trying again every
/// [`CONVERGE_RETRY`], until the group has them and they did not change meanwhile, this
/// member no longer leads, or the group is gone. `what` names the group in the log.
pub fn keep_converging<M: DurableMachine>(
    task: &mut Option<JoinHandle<()>>,
    group: &Arc<DurableGroup<M>>,
    members: &watch::Receiver<Vec<NodeId>>,
    what: impl FnOnce() -> String,
) {
    if task.as_ref().is_some_and(|t| !t.is_finished()) || group.has_members(&members.borrow()) {
        return;
    }
    *task = Some(converging(Arc::downgrade(group), members.clone(), what()));
}

fn converging<M: DurableMachine>(
    group: Weak<DurableGroup<M>>,
    mut members: watch::Receiver<Vec<NodeId>>,
    what: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(g) = group.upgrade() else { return };
            let wanted = members.borrow_and_update().clone();
            match g.converge(&wanted, usize::MAX).await {
                Ok(_) => {
                    tracing::info!(group = %what, members = ?wanted, "the group has its members");
                    if !members.has_changed().unwrap_or(false) {
                        return;
                    }
                }
                Err(GroupError::NotLeader(l)) => {
                    tracing::info!(group = %what, leader = ?l, "no longer leads: leaves the group's members to its leader");
                    return;
                }
                Err(e) => {
                    tracing::warn!(group = %what, error = %e, "cannot change the group's members yet");
                    drop(g);
                    tokio::time::sleep(CONVERGE_RETRY).await;
                }
            }
        }
    })
}
