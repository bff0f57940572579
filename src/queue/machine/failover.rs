//! Leader changes of a replicated queue, as the machine sees them.
//!
//! Every member applies the same commands, so a new leader knows every consumer and every
//! unacked message; what it does not know is which of the old leader's deliveries reached
//! their clients, nor where the consumers' connections are. So it takes over with
//! [`Command::Failover`]: every unacked message goes back in its place, marked redelivered
//! (RabbitMQ's quorum queues requeue a failed leader's deliveries the same way), and every
//! consumer waits, detached, until its node attaches it again ([`Command::Attach`]) — the
//! client keeps its subscription and sees no `basic.cancel`. A consumer whose node never comes
//! back is cancelled after [`DETACHED_GRACE_MS`]. [`Command::Detach`] does the same for the
//! consumers of one node whose link to the leader broke.
//!
//! [`Command::Failover`]: super::Command::Failover
//! [`Command::Attach`]: super::Command::Attach
//! [`Command::Detach`]: super::Command::Detach

use super::{DETACHED_GRACE_MS, Effect, Holder, QueueMachine, Reply};
use crate::ids::{ConsumerId, MsgId};

impl QueueMachine {
    /// A new leader took over: all unacked messages back, all consumers detached.
    pub(super) fn failover(&mut self, effects: &mut Vec<Effect>) -> Reply {
        let now = self.now;
        for c in &mut self.consumers {
            c.in_flight = 0;
            c.detached_since.get_or_insert(now);
        }
        let unacked = std::mem::take(&mut self.unacked);
        let n = unacked.len();
        for (_, (_, e)) in unacked {
            self.requeue(e, effects);
        }
        self.ack_deadlines.clear();
        Reply::Settled(n)
    }

    /// Consumers reachable again: deliveries to them resume. Replies with those unknown.
    pub(super) fn attach(&mut self, ids: &[ConsumerId]) -> Reply {
        let mut missing = Vec::new();
        for id in ids {
            match self.consumers.iter_mut().find(|c| c.spec.id == *id) {
                Some(c) => c.detached_since = None,
                None => missing.push(*id),
            }
        }
        Reply::Attached(missing)
    }

    /// Consumers whose node is out of reach: what they hold goes back, and they wait.
    pub(super) fn detach(&mut self, ids: &[ConsumerId], effects: &mut Vec<Effect>) -> Reply {
        let now = self.now;
        for c in self.consumers.iter_mut().filter(|c| ids.contains(&c.spec.id)) {
            c.in_flight = 0;
            c.detached_since.get_or_insert(now);
        }
        let held: Vec<MsgId> = self
            .unacked
            .iter()
            .filter(|(_, (h, _))| matches!(h, Holder::Consumer(c) if ids.contains(c)))
            .map(|(id, _)| *id)
            .collect();
        let n = held.len();
        for id in held {
            if let Some((_, e)) = self.unacked.remove(&id) {
                self.requeue(e, effects);
            }
        }
        Reply::Settled(n)
    }

    /// When the longest-detached consumer's grace ends.
    pub(super) fn detached_expiry(&self) -> Option<u64> {
        self.consumers.iter().filter_map(|c| c.detached_since).min().map(|t| t.saturating_add(DETACHED_GRACE_MS))
    }

    /// Cancels the consumers detached for longer than the grace.
    pub(super) fn cancel_detached(&mut self, effects: &mut Vec<Effect>) {
        let now = self.now;
        let late: Vec<ConsumerId> = self
            .consumers
            .iter()
            .filter(|c| c.detached_since.is_some_and(|t| t.saturating_add(DETACHED_GRACE_MS) <= now))
            .map(|c| c.spec.id)
            .collect();
        for id in late {
            effects.push(Effect::ConsumerCancelled { consumer: id });
            self.cancel(id, effects);
        }
    }
}

#[cfg(test)]
mod tests;
