//! The message lifecycle rules of the queue machine (see the module doc of `super`): enqueue
//! with TTL, deduplication and length limits; expiry at the head; dead-lettering; delivery
//! limits on requeue; consumer ack deadlines; queue expiry (`x-expires`).

use super::{Effect, Entry, Holder, Message, MsgId, NEVER, QueueMachine, Reply, dedup};
use crate::broker::argument::Overflow;
use crate::queue::dead_letter::Reason;
use std::sync::Arc;

impl QueueMachine {
    /// Puts a message back in its original place among the ready ones, marked redelivered;
    /// past the queue's delivery limit it is dead-lettered instead ([D:quorum-queues]
    /// `x-delivery-limit`).
    pub(super) fn requeue(&mut self, mut e: Entry, effects: &mut Vec<Effect>) {
        e.returns = e.returns.saturating_add(1);
        if self.config.delivery_limit.is_some_and(|limit| u32::from(e.returns) > limit) {
            return self.drop_entry(e, Reason::DeliveryLimit, effects);
        }
        self.ready_bytes += u64::from(e.size);
        self.ready.put_back(e);
    }

    /// The `x-delivery-count` a delivery of `e` carries, if the queue counts deliveries.
    pub(super) fn delivery_count(&self, e: &Entry) -> Option<u16> {
        (self.config.delivery_limit.is_some() && e.returns > 0).then_some(e.returns)
    }

    /// When the head expires or the queue does (`x-expires`), whichever comes first: the runner
    /// proposes [`Command::Expire`] then.
    pub fn next_expiry(&self) -> Option<u64> {
        let head = self.head().map(|e| e.expires).filter(|&t| t != NEVER);
        let ack = self.ack_deadlines.front().map(|(t, _)| *t);
        head.into_iter().chain(self.queue_expiry()).chain(ack).chain(self.detached_expiry()).min()
    }

    /// Drops deadlines of deliveries no longer unacked from the front.
    pub(super) fn prune_deadlines(&mut self) {
        while self.ack_deadlines.front().is_some_and(|(_, id)| !self.unacked.contains_key(id)) {
            self.ack_deadlines.pop_front();
        }
    }

    /// Consumers holding a delivery past its ack deadline ([D:consumers] delivery
    /// acknowledgement timeout); each once.
    pub(super) fn check_ack_deadlines(&mut self, effects: &mut Vec<Effect>) {
        let Some(timeout_ms) = self.config.consumer_timeout else { return };
        let mut late = Vec::new();
        while let Some(&(t, id)) = self.ack_deadlines.front() {
            if t > self.now {
                break;
            }
            self.ack_deadlines.pop_front();
            if let Some((Holder::Consumer(c), _)) = self.unacked.get(&id) {
                if !late.contains(c) {
                    late.push(*c);
                }
            }
        }
        effects.extend(late.into_iter().map(|consumer| Effect::AckTimeout { consumer, timeout_ms }));
    }

    /// When the queue expires, if it has `x-expires` and no consumer.
    pub(super) fn queue_expiry(&self) -> Option<u64> {
        let ttl = self.config.expires.filter(|_| self.consumers.is_empty())?;
        Some(self.last_used.saturating_add(ttl))
    }

    /// Drops the expired messages at the head.
    pub(super) fn expire(&mut self, now: u64, effects: &mut Vec<Effect>) {
        while self.head().is_some_and(|e| e.expires <= now) {
            if let Some(e) = self.pop_ready() {
                self.drop_entry(e, Reason::Expired, effects);
            }
        }
    }

    /// Forgets a message that leaves for `reason`, dead-lettering it if the queue has a
    /// dead-letter exchange.
    pub(super) fn drop_entry(&mut self, e: Entry, reason: Reason, effects: &mut Vec<Effect>) {
        if self.config.dead_letter.is_some() {
            effects.push(Effect::DeadLetter { id: e.id, msg: e.msg.clone(), reason });
        }
        self.forget(e);
    }

    /// Whether the ready messages are past the length limits.
    pub(super) fn over_limit(&self, extra_count: u64, extra_bytes: u64) -> bool {
        let c = &self.config;
        c.max_length.is_some_and(|m| u64::from(self.ready_count()) + extra_count > m)
            || c.max_length_bytes.is_some_and(|m| self.ready_bytes + extra_bytes > m)
    }

    /// Enqueues `msg` as entry `id`; `returns` 1 marks one that may have been delivered
    /// before (`Command::EnqueueAgain`).
    pub(super) fn enqueue(
        &mut self,
        id: MsgId,
        now: u64,
        msg: Arc<Message>,
        returns: u16,
        effects: &mut Vec<Effect>,
    ) -> Reply {
        if let (Some(window), Some(key)) = (&self.config.dedup, dedup::key_of(&msg)) {
            if !self.seen.first_sighting(window, key, now) {
                return Reply::Duplicate;
            }
        }
        let size = msg.body_len() as u32;
        // reject-publish: refused while the queue is full (RabbitMQ's `is_over_limit` before
        // the enqueue: at the message limit, or at or past the byte limit).
        let full = self.over_limit(1, 0) || self.config.max_length_bytes.is_some_and(|m| self.ready_bytes >= m);
        if self.config.overflow != Overflow::DropHead && full {
            if self.config.overflow == Overflow::RejectPublishDlx && self.config.dead_letter.is_some() {
                effects.push(Effect::DeadLetter { id, msg: Some(msg), reason: Reason::Maxlen });
            }
            return Reply::Rejected;
        }
        let persistent = msg.properties.delivery_mode() == &Some(2);
        // The shorter of the queue's TTL and the message's own wins ([D:ttl]).
        let own = msg.properties.expiration().as_ref().and_then(|s| s.as_str().parse::<u64>().ok());
        let ttl = match (self.config.message_ttl, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let expires = ttl.map_or(NEVER, |t| now.saturating_add(t).min(NEVER - 1));
        let priority = msg.properties.priority().unwrap_or(0).min(self.ready.max_priority());
        let mut e = Entry { id, size, msg: None, returns, persistent, expires, priority };
        match self.budget {
            Some(b) if self.held + e.weight() > b => {}
            Some(_) => {
                self.held += e.weight();
                e.msg = Some(msg);
            }
            None => e.msg = Some(msg),
        }
        self.ready.push(e);
        self.ready_bytes += u64::from(size);
        self.drop_over_limit(effects);
        Reply::Enqueued(id)
    }

    /// drop-head: the oldest ready messages make room ([D:maxlength]).
    pub(super) fn drop_over_limit(&mut self, effects: &mut Vec<Effect>) {
        while self.over_limit(0, 0) {
            match self.pop_ready() {
                Some(old) => self.drop_entry(old, Reason::Maxlen, effects),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
