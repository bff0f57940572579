//! What a member of a group tells as it changes: who leads (and in which term), and how far
//! it has applied the log.

use super::C;
use crate::raft::transport::NodeId;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

/// Who leads a group, as one member sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// The term of this member's vote: a new leader's term is higher than every earlier one's.
    pub term: u64,
    /// This member leads (its election won; it may propose).
    pub leading: bool,
}

/// Tells when a member's view of its group's leadership changes.
pub struct LeadershipWatch {
    pub(super) rx: openraft::alias::WatchReceiverOf<C, openraft::metrics::RaftServerMetrics<C>>,
}

impl LeadershipWatch {
    pub fn current(&self) -> Leadership {
        let m = self.rx.borrow_watched();
        Leadership {
            leader: m.current_leader,
            term: openraft::vote::RaftLeaderId::term(m.vote.leader_id()),
            leading: m.state == ServerState::Leader,
        }
    }

    /// Waits for the next change; `None` once the group stopped.
    pub async fn changed(&mut self) -> Option<Leadership> {
        let before = self.current();
        loop {
            self.rx.changed().await.ok()?;
            let now = self.current();
            if now != before {
                return Some(now);
            }
        }
    }
}

/// Tells when a group's applied index moves (entries proposed anywhere).
pub struct AppliedWatch {
    pub(super) rx: openraft::alias::WatchReceiverOf<C, openraft::metrics::RaftDataMetrics<C>>,
}

impl AppliedWatch {
    /// Waits until more entries were applied; the applied index then, or `None` once the
    /// group stopped.
    pub async fn changed(&mut self) -> Option<u64> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_watched().last_applied.as_ref().map_or(0, |l| l.index))
    }
}
