//! The deterministic state of a delayed exchange's store: held messages in due order.
//!
//! A message's due time is the proposer's clock (`ApplyMeta::now_ms`) plus its `x-delay`, so
//! every replica computes the same one. A held message's id is the log index of its `Hold`;
//! a durable store keeps only (due, id, size) in memory and its runner reads the body back from the
//! log when it is due, as durable queues do.

use crate::broker::delayed;
use crate::ids::MsgId;
use crate::queue::Message;
use crate::raft::{ApplyMeta, Machine};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum DelayCommand {
    /// Hold a message until `now + x-delay`.
    Hold { msg: Arc<Message> },
    /// These messages reached their queues: forget them.
    Release { ids: Vec<MsgId> },
    /// The exchange was deleted: its held messages go with it.
    Delete,
}

/// One message due now: its id and, if the machine keeps it, its body.
pub type Due = (MsgId, Option<Arc<Message>>);

/// A held message: its body if the machine keeps it, and its body's size.
#[derive(Clone, Debug)]
struct Held {
    msg: Option<Arc<Message>>,
    size: u32,
}

#[derive(Debug, Default)]
pub struct DelayMachine {
    /// Held messages in release order.
    held: BTreeMap<(u64, MsgId), Held>,
    /// Each held message's due time, by id.
    due_of: BTreeMap<MsgId, u64>,
    /// A durable store keeps bodies in the log only.
    bodies_in_log: bool,
    deleted: bool,
}

impl DelayMachine {
    /// A store that keeps bodies in memory (a transient exchange).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A store whose bodies stay in its log (a durable exchange).
    pub fn durable() -> Self {
        Self { bodies_in_log: true, ..Self::default() }
    }

    pub(super) fn restore(entries: impl IntoIterator<Item = (u64, MsgId, u32)>, deleted: bool) -> Self {
        let mut m = Self { bodies_in_log: true, deleted, ..Self::default() };
        for (due, id, size) in entries {
            m.held.insert((due, id), Held { msg: None, size });
            m.due_of.insert(id, due);
        }
        m
    }

    /// (due, id, body size) of every held message, in due order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, MsgId, u32)> + '_ {
        self.held.iter().map(|(&(due, id), h)| (due, id, h.size))
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// When the next message is due (ms since the epoch).
    pub fn next_due(&self) -> Option<u64> {
        self.held.keys().next().map(|(due, _)| *due)
    }

    /// The messages due at `now`, earliest first (equal times in publish order): up to
    /// `limit` of them and, past the first, up to `max_bytes` of bodies.
    pub fn due(&self, now: u64, limit: usize, max_bytes: u64) -> Vec<Due> {
        let mut bytes = 0u64;
        self.held
            .iter()
            .take_while(|((due, _), _)| *due <= now)
            .take(limit)
            .take_while(|(_, h)| {
                let first = bytes == 0;
                bytes += u64::from(h.size).max(1);
                first || bytes <= max_bytes
            })
            .map(|((_, id), h)| (*id, h.msg.clone()))
            .collect()
    }

    /// When held message `id` falls due, if it is held.
    pub fn due_time(&self, id: MsgId) -> Option<u64> {
        self.due_of.get(&id).copied()
    }

    /// The oldest log entry a held message still needs.
    pub fn first_live_index(&self) -> Option<u64> {
        self.due_of.keys().next().map(|id| id.0)
    }
}

impl Machine for DelayMachine {
    type Command = DelayCommand;
    type Reply = ();
    type Effect = ();

    fn apply(&mut self, meta: ApplyMeta, cmd: DelayCommand, _effects: &mut Vec<()>) {
        match cmd {
            DelayCommand::Hold { msg } => {
                if self.deleted {
                    return;
                }
                let id = MsgId(meta.index.0);
                let due = meta.now_ms.saturating_add(delayed::delay_of(msg.properties.headers().as_ref()).unwrap_or(0));
                let size = u32::try_from(msg.body_len()).unwrap_or(u32::MAX);
                self.held.insert((due, id), Held { msg: (!self.bodies_in_log).then_some(msg), size });
                self.due_of.insert(id, due);
            }
            DelayCommand::Release { ids } => {
                for id in ids {
                    if let Some(due) = self.due_of.remove(&id) {
                        self.held.remove(&(due, id));
                    }
                }
            }
            DelayCommand::Delete => {
                self.deleted = true;
                self.held.clear();
                self.due_of.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Body;
    use crate::raft::LogIndex;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::{AMQPValue, FieldTable};

    fn msg(delay: i64) -> Arc<Message> {
        let mut h = FieldTable::default();
        h.insert("x-delay".into(), AMQPValue::LongLongInt(delay));
        Arc::new(Message {
            exchange: "later".into(),
            routing_key: "k".into(),
            properties: BasicProperties::default().with_headers(h),
            header: Default::default(),
            body: Body::default(),
        })
    }

    fn apply(m: &mut DelayMachine, index: u64, now_ms: u64, cmd: DelayCommand) {
        m.apply(ApplyMeta { index: LogIndex(index), now_ms }, cmd, &mut Vec::new());
    }

    fn ids(due: Vec<Due>) -> Vec<u64> {
        due.into_iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn releases_in_due_order_not_publish_order() {
        let mut m = DelayMachine::in_memory();
        apply(&mut m, 1, 1000, DelayCommand::Hold { msg: msg(5000) }); // due 6000
        apply(&mut m, 2, 1000, DelayCommand::Hold { msg: msg(1000) }); // due 2000
        apply(&mut m, 3, 1500, DelayCommand::Hold { msg: msg(500) }); // due 2000, later in the log
        assert_eq!(m.next_due(), Some(2000));
        assert!(m.due(1999, 10, 1 << 20).is_empty());
        assert_eq!(ids(m.due(2000, 10, 1 << 20)), vec![2, 3]);
        assert_eq!(ids(m.due(10_000, 1, 1 << 20)), vec![2]);
        assert_eq!(ids(m.due(10_000, 10, 1)), vec![2], "the byte budget, but always one");
        assert!(m.due(2000, 10, 1 << 20).iter().all(|(_, body)| body.is_some()), "memory stores keep bodies");
        apply(&mut m, 4, 2001, DelayCommand::Release { ids: vec![MsgId(2), MsgId(3), MsgId(99)] });
        assert_eq!(m.next_due(), Some(6000));
        assert_eq!(m.first_live_index(), Some(1));
        apply(&mut m, 5, 6001, DelayCommand::Release { ids: vec![MsgId(1)] });
        assert!(m.is_empty() && m.first_live_index().is_none() && m.next_due().is_none());
    }

    #[test]
    fn durable_stores_keep_no_bodies_and_deletion_drops_all() {
        let mut m = DelayMachine::durable();
        apply(&mut m, 7, 0, DelayCommand::Hold { msg: msg(10) });
        assert_eq!(m.due(10, 10, 1 << 20).len(), 1);
        assert!(m.due(10, 10, 1 << 20)[0].1.is_none());
        let copy = DelayMachine::restore(m.entries().collect::<Vec<_>>(), false);
        assert_eq!(copy.due(10, 10, 1 << 20).into_iter().map(|(id, _)| id).collect::<Vec<_>>(), vec![MsgId(7)]);
        apply(&mut m, 8, 0, DelayCommand::Delete);
        apply(&mut m, 9, 0, DelayCommand::Hold { msg: msg(10) });
        assert!(m.is_deleted() && m.is_empty());
    }
}
