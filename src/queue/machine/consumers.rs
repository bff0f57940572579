//! A queue's consumers: who gets the next message (priority, round-robin, single active
//! consumer, credit), delivering while someone has credit, and consumers coming and going
//! (exclusive consumers, auto-delete on the last one's cancel). RabbitMQ's rules are in the
//! parent module's documentation.

use super::{Consumer, ConsumerSpec, Effect, Holder, QueueMachine, Reply};
use crate::broker::Error;
use crate::ids::ConsumerId;

impl QueueMachine {
    /// Picks the consumer for the next message: highest priority with credit, round-robin
    /// among equals starting at the cursor. With single active consumer, only the first.
    fn pick_consumer(&self) -> Option<usize> {
        if self.config.single_active_consumer {
            // The earliest registered consumer that is attached is the active one.
            let active = self.consumers.iter().position(|c| c.detached_since.is_none())?;
            return self.consumers[active].has_credit().then_some(active);
        }
        let n = self.consumers.len();
        let best = self.consumers.iter().filter(|c| c.has_credit()).map(|c| c.spec.priority).max()?;
        (0..n).map(|i| (self.cursor + i) % n).find(|&i| {
            let c = &self.consumers[i];
            c.spec.priority == best && c.has_credit()
        })
    }

    /// Delivers ready messages while some consumer has credit.
    pub(super) fn dispatch(&mut self, effects: &mut Vec<Effect>) {
        loop {
            // A message behind the one just delivered (or requeued past its time) may have
            // expired: it is dropped, never delivered. One expiring right now may still go
            // (TTL 0: delivered at once or never; the end of `apply` drops it otherwise).
            self.expire(self.now.saturating_sub(1), effects);
            if self.ready_count() == 0 {
                return;
            }
            let Some(i) = self.pick_consumer() else {
                return;
            };
            let Some(entry) = self.pop_ready() else {
                return;
            };
            self.cursor = (i + 1) % self.consumers.len();
            let delivery_count = self.delivery_count(&entry);
            let c = &mut self.consumers[i];
            let mut entry = entry;
            effects.push(Effect::Deliver {
                consumer: c.spec.id,
                id: entry.id,
                msg: entry.msg.clone(),
                redelivered: entry.returns > 0,
                delivery_count,
            });
            if let Some(credit) = c.credit.as_mut() {
                *credit -= 1;
            }
            let holder = (!c.spec.no_ack).then(|| {
                c.in_flight += 1;
                Holder::Consumer(c.spec.id)
            });
            // The consumer has the body now; a requeue reads it back from the log.
            self.release(&mut entry);
            if let Some(holder) = holder {
                if let Some(t) = self.config.consumer_timeout {
                    self.ack_deadlines.push_back((self.now.saturating_add(t), entry.id));
                }
                self.unacked.insert(entry.id, (holder, entry));
            }
        }
    }

    pub(super) fn consume(&mut self, spec: ConsumerSpec) -> Reply {
        // The same consume again (sent once more after a leader change, not knowing whether
        // the old leader took it): it stands, attached.
        if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.id == spec.id) {
            c.detached_since = None;
            return Reply::Consumed;
        }
        let in_use = || {
            Error::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.config.key.name, self.config.key.vhost
            ))
        };
        if self.consumers.iter().any(|c| c.spec.exclusive) || (spec.exclusive && !self.consumers.is_empty()) {
            return Reply::Refused(in_use());
        }
        self.had_consumer = true;
        let credit = spec.credit;
        self.consumers.push(Consumer { spec, in_flight: 0, credit, detached_since: None });
        Reply::Consumed
    }

    pub(super) fn cancel(&mut self, id: ConsumerId, effects: &mut Vec<Effect>) -> Reply {
        let Some(pos) = self.consumers.iter().position(|c| c.spec.id == id) else {
            return Reply::Cancelled(false);
        };
        self.consumers.remove(pos);
        if self.cursor > pos {
            self.cursor -= 1;
        }
        if self.cursor >= self.consumers.len() {
            self.cursor = 0;
        }
        if self.consumers.is_empty() && self.config.auto_delete && self.had_consumer {
            effects.push(Effect::AutoDelete);
        }
        Reply::Cancelled(true)
    }
}
