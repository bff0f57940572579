//! The queue state machine: `apply(meta, command) -> (reply, effects)` with no I/O.
//!
//! Semantics copied from RabbitMQ classic queues (`rabbit_amqqueue_process`) and its docs:
//! - FIFO delivery; a requeued message goes back to its original position and is marked
//!   redelivered ([D:confirms]).
//! - Consumers are served round-robin among those of the highest priority that still have
//!   credit (`x-priority`, [D:consumer-priority]); prefetch bounds unacked messages per consumer.
//! - Single active consumer: only the earliest registered consumer receives ([D:consumers]).
//! - An exclusive consumer refuses any other, and is refused if others exist (403).
//! - An auto-delete queue goes when its last consumer goes (if it ever had one).
//! - TTL ([D:ttl]): a message expires at the shorter of the queue's `x-message-ttl` and its own
//!   `expiration`, counted from its enqueue; expired messages are dropped when they reach the
//!   head (on any command, and on [`Command::Expire`], which the runner proposes when the
//!   head's time comes, so a queue nobody reads still frees them). TTL 0 means "delivered at
//!   once or never".
//! - Dead letters ([D:dlx]): with `x-dead-letter-exchange`, messages rejected without requeue,
//!   expired, or dropped/refused by a length limit leave as [`Effect::DeadLetter`]; the runner
//!   writes their history (`super::dead_letter`) and republishes them. Purged or deleted
//!   messages are not dead-lettered (as RabbitMQ).
//! - Length limits ([D:maxlength]): `x-max-length` / `x-max-length-bytes` count ready messages
//!   and their bodies; `drop-head` drops the oldest, `reject-publish(-dlx)` refuses the publish
//!   (the publisher gets `basic.nack`).
//!
//! Message bodies of durable queues live in the log, not here (as RabbitMQ's quorum queues
//! keep only an index per message in memory): a message's id is the log index of the entry
//! that enqueued it, and the machine keeps its body only while the ready messages' bodies fit
//! in [`BODY_BUDGET`]. Deliveries of the others carry no body; the runner reads it back from
//! the log. [`QueueMachine::first_live_index`] tells the log how far it may be purged.

use super::Message;
use super::dead_letter::Reason;
use crate::broker::Error;
use crate::broker::argument::Overflow;
use crate::ids::{ChannelId, ConnectionId, ConsumerId, MsgId, QueueKey};
use crate::raft::{ApplyMeta, Machine};
pub use command::{Command, ConsumerSpec, DETACHED_GRACE_MS, Effect, Got, Holder, Limits, Outcome, Reply};
pub use config::QueueConfig;
use ready::Ready;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Bytes of ready messages' bodies a durable queue keeps in memory (each counted with
/// [`MESSAGE_OVERHEAD`]); beyond it, bodies stay only in the log. Consumers that keep up are
/// served from memory; a backlog costs [`std::mem::size_of::<Entry>()`] bytes per message.
pub const BODY_BUDGET: u64 = 4 << 20;
/// What a message held in memory costs besides its body (properties, routing, buffers).
const MESSAGE_OVERHEAD: u64 = 512;

/// One message in the queue: 24 bytes when its body is not held.
#[derive(Clone, Debug)]
struct Entry {
    /// The log index of the entry that enqueued it.
    id: MsgId,
    /// The message, while held in memory.
    msg: Option<Arc<Message>>,
    /// Body length in bytes.
    size: u32,
    /// Times it came back to the queue (requeued, or its consumer went); > 0: redelivered.
    returns: u16,
    /// Published with delivery mode 2.
    persistent: bool,
    /// When it expires (ms since the epoch); `NEVER` if it does not.
    expires: u64,
    /// Its priority, capped at the queue's `x-max-priority` (0 without one).
    priority: u8,
}

/// An [`Entry::expires`] that never comes.
const NEVER: u64 = u64::MAX;

impl Entry {
    fn weight(&self) -> u64 {
        u64::from(self.size) + MESSAGE_OVERHEAD
    }
}

#[derive(Clone, Debug)]
struct Consumer {
    spec: ConsumerSpec,
    in_flight: u32,
    /// Remaining granted credit, in credit mode.
    credit: Option<u32>,
    /// Since when (ms) the consumer waits to be attached again after a leader change or a
    /// broken link (`failover.rs`); nothing is delivered to it meanwhile.
    detached_since: Option<u64>,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        let window = self.spec.no_ack || self.spec.prefetch == 0 || self.in_flight < self.spec.prefetch;
        window && self.credit.is_none_or(|c| c > 0) && self.detached_since.is_none()
    }
}

/// The state of one queue.
#[derive(Debug)]
pub struct QueueMachine {
    config: QueueConfig,
    /// Bodies kept in memory at most (weight, see [`Entry::weight`]); `None`: all of them (a
    /// queue with no log to read them back from).
    budget: Option<u64>,
    /// Weight of the bodies held now.
    held: u64,
    /// Body bytes of the ready messages (`ready` and `returned`).
    ready_bytes: u64,
    /// When the queue was last used (ms; consumers, gets, declares), for `x-expires`.
    last_used: u64,
    /// Ack deadlines of deliveries to consumers, in delivery order (`consumer_timeout`);
    /// entries whose message was settled meanwhile are skipped.
    ack_deadlines: VecDeque<(u64, MsgId)>,
    /// The time of the command being applied.
    now: u64,
    /// Deduplication keys seen (with `config.dedup`).
    seen: dedup::Seen,
    /// Ready messages, in delivery order (priorities, requeued ones in their place).
    ready: Ready,
    unacked: BTreeMap<MsgId, (Holder, Entry)>,
    /// In registration order.
    consumers: Vec<Consumer>,
    /// Round-robin cursor into `consumers`.
    cursor: usize,
    had_consumer: bool,
    deleted: bool,
}

impl QueueMachine {
    /// A queue that keeps every body in memory (no log behind it).
    pub fn new(config: QueueConfig) -> Self {
        Self::with_budget(config, None)
    }

    /// A queue whose bodies are in its log: at most `BODY_BUDGET` of them stay in memory.
    pub fn durable(config: QueueConfig) -> Self {
        Self::with_budget(config, Some(BODY_BUDGET))
    }

    fn with_budget(config: QueueConfig, budget: Option<u64>) -> Self {
        Self {
            ready: Ready::new(config.max_priority.unwrap_or(0)),
            config,
            budget,
            held: 0,
            ready_bytes: 0,
            last_used: 0,
            ack_deadlines: VecDeque::new(),
            now: 0,
            seen: dedup::Seen::default(),
            unacked: BTreeMap::new(),
            consumers: Vec::new(),
            cursor: 0,
            had_consumer: false,
            deleted: false,
        }
    }

    pub fn ready_count(&self) -> u32 {
        self.ready.len() as u32
    }

    /// Body bytes of ready messages.
    pub fn ready_bytes(&self) -> u64 {
        self.ready_bytes
    }

    pub fn unacked_count(&self) -> u32 {
        self.unacked.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.consumers.len() as u32
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The oldest log entry a message still needs (its body is there); `None` if none does.
    pub fn first_live_index(&self) -> Option<u64> {
        let unacked = self.unacked.keys().next().copied();
        [self.ready.first_id(), unacked].into_iter().flatten().min().map(|id| id.0)
    }

    /// Every message's id (its `Enqueue`'s log index), ready or unacked.
    pub fn live_indexes(&self) -> Vec<u64> {
        self.ready
            .fresh()
            .chain(self.ready.requeued())
            .map(|e| e.id.0)
            .chain(self.unacked.keys().map(|id| id.0))
            .collect()
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The queue's counts.
    pub fn stats(&self) -> Reply {
        Reply::Stats {
            messages: self.ready_count(),
            consumers: self.consumer_count(),
            unacked: self.unacked_count(),
            bytes: self.bytes(),
        }
    }

    /// Body bytes of ready and unacked messages.
    pub fn bytes(&self) -> u64 {
        self.ready_bytes + self.unacked.values().map(|(_, e)| u64::from(e.size)).sum::<u64>()
    }

    /// Weight of the bodies held in memory.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Lets go of an entry's body if the queue has a log to read it back from.
    fn release(&mut self, e: &mut Entry) {
        if self.budget.is_some() && e.msg.take().is_some() {
            self.held -= e.weight();
        }
    }

    /// Forgets an entry for good.
    fn forget(&mut self, mut e: Entry) {
        self.release(&mut e);
    }

    fn forget_all(&mut self) {
        self.ready.clear();
        self.unacked.clear();
        self.ack_deadlines.clear();
        self.held = 0;
        self.ready_bytes = 0;
    }

    /// The next ready message to deliver.
    fn head(&self) -> Option<&Entry> {
        self.ready.head()
    }

    /// Takes the next ready message.
    fn pop_ready(&mut self) -> Option<Entry> {
        let e = self.ready.pop();
        if let Some(e) = &e {
            self.ready_bytes -= u64::from(e.size);
        }
        e
    }

    fn settle(&mut self, ids: Vec<MsgId>, outcome: Outcome, effects: &mut Vec<Effect>) -> Reply {
        let mut n = 0;
        for id in ids {
            let Some((holder, entry)) = self.unacked.remove(&id) else {
                continue;
            };
            n += 1;
            if let Holder::Consumer(cid) = holder {
                if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.id == cid) {
                    c.in_flight = c.in_flight.saturating_sub(1);
                }
            }
            match outcome {
                Outcome::Requeue if !self.deleted => self.requeue(entry, effects),
                Outcome::Discard if !self.deleted => self.drop_entry(entry, Reason::Rejected, effects),
                _ => self.forget(entry),
            }
        }
        Reply::Settled(n)
    }

    fn get(&mut self, holder: Holder, no_ack: bool) -> Reply {
        let Some(mut entry) = self.pop_ready() else {
            return Reply::Got(None);
        };
        let got = Got {
            id: entry.id,
            msg: entry.msg.clone(),
            redelivered: entry.returns > 0,
            delivery_count: self.delivery_count(&entry),
            remaining: self.ready_count(),
        };
        self.release(&mut entry);
        if !no_ack {
            self.unacked.insert(entry.id, (holder, entry));
        }
        Reply::Got(Some(got))
    }

    fn recover(&mut self, drop_transient: bool, effects: &mut Vec<Effect>) -> Reply {
        self.consumers.clear();
        self.cursor = 0;
        let unacked = std::mem::take(&mut self.unacked);
        for (_, (_, entry)) in unacked {
            self.requeue(entry, effects);
        }
        if drop_transient {
            let (mut dropped, mut bytes) = (0, 0);
            let mut keep = |e: &Entry| {
                if !e.persistent {
                    bytes += u64::from(e.size);
                    if e.msg.is_some() {
                        dropped += e.weight();
                    }
                }
                e.persistent
            };
            self.ready.retain(&mut keep);
            self.ready_bytes -= bytes;
            if self.budget.is_some() {
                self.held -= dropped;
            }
        }
        Reply::Stats { messages: self.ready_count(), consumers: 0, unacked: self.unacked_count(), bytes: self.bytes() }
    }

    fn delete(&mut self, if_unused: bool, if_empty: bool, effects: &mut Vec<Effect>) -> Reply {
        let what = format!("queue '{}' in vhost '{}'", self.config.key.name, self.config.key.vhost);
        if if_unused && !self.consumers.is_empty() {
            return Reply::Refused(Error::precondition(format!("{what} in use")));
        }
        if if_empty && self.ready_count() > 0 {
            return Reply::Refused(Error::precondition(format!("{what} not empty")));
        }
        let count = self.ready_count();
        for c in self.consumers.drain(..) {
            effects.push(Effect::ConsumerCancelled { consumer: c.spec.id });
        }
        self.forget_all();
        self.deleted = true;
        Reply::Deleted(count)
    }
}

impl Machine for QueueMachine {
    type Command = Command;
    type Reply = Reply;
    type Effect = Effect;

    fn apply(&mut self, meta: ApplyMeta, cmd: Command, effects: &mut Vec<Effect>) -> Reply {
        if self.deleted {
            return match cmd {
                Command::Enqueue { .. } | Command::EnqueueAgain { .. } => Reply::Dropped,
                Command::Settle { .. } => Reply::Settled(0),
                Command::Cancel { .. } => Reply::Cancelled(false),
                Command::Delete { .. } => Reply::Deleted(0),
                Command::Stats => Reply::Stats { messages: 0, consumers: 0, unacked: 0, bytes: 0 },
                _ => Reply::Refused(Error::no_queue(&self.config.key.vhost, &self.config.key.name)),
            };
        }
        self.now = meta.now_ms;
        self.expire(meta.now_ms, effects);
        let reply = match cmd {
            Command::Enqueue { msg } => self.enqueue(MsgId(meta.index.0), meta.now_ms, msg, 0, effects),
            Command::EnqueueAgain { msg } => self.enqueue(MsgId(meta.index.0), meta.now_ms, msg, 1, effects),
            Command::Consume(spec) => {
                self.last_used = meta.now_ms;
                self.consume(spec)
            }
            Command::Cancel { consumer } => {
                // Unused from now on, if that was the last consumer.
                self.last_used = meta.now_ms;
                self.cancel(consumer, effects)
            }
            Command::Credit { consumer, add } => {
                if let Some(c) = self.consumers.iter_mut().find(|c| c.spec.id == consumer) {
                    c.credit = c.credit.map(|n| n.saturating_add(add));
                }
                Reply::Settled(0)
            }
            Command::Settle { ids, outcome } => self.settle(ids, outcome, effects),
            Command::Get { holder, no_ack } => {
                self.last_used = meta.now_ms;
                self.get(holder, no_ack)
            }
            Command::Purge => {
                let n = self.ready_count();
                while let Some(e) = self.pop_ready() {
                    self.forget(e);
                }
                Reply::Purged(n)
            }
            Command::Expire => {
                self.cancel_detached(effects);
                if self.queue_expiry().is_some_and(|t| t <= meta.now_ms) {
                    effects.push(Effect::AutoDelete);
                }
                self.check_ack_deadlines(effects);
                Reply::Settled(0)
            }
            Command::Touch => {
                self.last_used = meta.now_ms;
                Reply::Settled(0)
            }
            Command::Delete { if_unused, if_empty } => return self.delete(if_unused, if_empty, effects),
            Command::Stats => self.stats(),
            Command::Recover { drop_transient } => self.recover(drop_transient, effects),
            Command::Configure(limits) => {
                self.config.set_limits(*limits);
                if self.config.overflow == Overflow::DropHead {
                    self.drop_over_limit(effects);
                }
                Reply::Settled(0)
            }
            Command::Failover => self.failover(effects),
            Command::Attach { consumers } => self.attach(&consumers),
            Command::Detach { consumers } => self.detach(&consumers, effects),
        };
        self.dispatch(effects);
        // What could not be delivered at once and has no time left (TTL 0) goes now.
        self.expire(meta.now_ms, effects);
        self.prune_deadlines();
        reply
    }
}

pub(crate) mod codec;
mod command;
mod config;
mod consumers;
pub mod dedup;
mod failover;
mod lifecycle;
mod ready;
#[cfg(test)]
mod tests;
