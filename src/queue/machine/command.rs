//! What a queue machine is told and what it answers: commands (the log's entries), replies
//! and effects (what the leader's runner carries out after applying).
//!
//! Commands are a versioned wire format (`codec`): a variant, once released, never changes.

use super::super::Message;
use super::super::dead_letter::{Reason, Target};
use crate::broker::Error;
use crate::broker::argument::Overflow;
use crate::ids::{ChannelId, ConnectionId, ConsumerId, MsgId};
use std::sync::Arc;

/// Who holds an unacked message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Consumer(ConsumerId),
    /// Fetched with `basic.get` (ack mode) on this connection's channel.
    Get(ConnectionId, ChannelId),
}

/// How the holder settles a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// basic.ack: forget it.
    Ack,
    /// nack/reject with requeue, or the channel closed: back to its place, redelivered.
    Requeue,
    /// nack/reject without requeue: dropped, or dead-lettered (`rejected`) if the queue has a
    /// dead-letter exchange.
    Discard,
}

/// A consumer as the machine knows it (its socket lives with the runner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub id: ConsumerId,
    pub tag: Arc<str>,
    pub connection: ConnectionId,
    pub channel: ChannelId,
    /// Maximum unacked messages (0 = unlimited), from `basic.qos global=false`.
    pub prefetch: u32,
    /// Credit mode: the consumer receives only as many messages as it was granted with
    /// [`Command::Credit`] (starting from this value). Used for channel-wide prefetch
    /// (`basic.qos global=true`), where the channel shares one budget among its consumers.
    pub credit: Option<u32>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
}

#[derive(Clone, Debug)]
pub enum Command {
    Enqueue {
        msg: Arc<Message>,
    },
    /// A message that may have reached the queue once already: a delayed exchange's store
    /// releasing again what its previous leader may have released just before it died (or
    /// crashed). Enqueued as `Enqueue`, but delivered marked redelivered (AMQP's flag for
    /// "this may have been delivered before"), so a consumer can tell a possible copy.
    EnqueueAgain {
        msg: Arc<Message>,
    },
    Consume(ConsumerSpec),
    Cancel {
        consumer: ConsumerId,
    },
    /// Grants a credit-mode consumer `add` more deliveries.
    Credit {
        consumer: ConsumerId,
        add: u32,
    },
    Settle {
        ids: Vec<MsgId>,
        outcome: Outcome,
    },
    Get {
        holder: Holder,
        no_ack: bool,
    },
    Purge,
    Delete {
        if_unused: bool,
        if_empty: bool,
    },
    /// Time passed (the command's time): drop the expired messages at the head, and delete the
    /// queue if it has been unused for its `x-expires`.
    Expire,
    /// The queue was used (declared again; opened after a restart): its `x-expires` starts over.
    Touch,
    /// Read-only: counts for `queue.declare-ok` and listings.
    Stats,
    /// The node restarted: no consumer of before is connected any more. Cancels them all and
    /// requeues their unacked messages (redelivered). With `drop_transient`, messages that
    /// were not published persistent are dropped, as RabbitMQ's classic queues lose them.
    Recover {
        drop_transient: bool,
    },
    /// The settings a policy controls changed (policies apply while a queue runs): takes them
    /// and, under drop-head, drops what is now over the length limits.
    /// Boxed: commands travel by value through every queue inbox, so the enum stays small.
    Configure(Box<Limits>),
    /// A new leader of a replicated queue took over (`failover.rs`): no consumer's connection
    /// is known to it yet, and deliveries the old leader decided may never have left it. Every
    /// unacked message goes back (redelivered) and every consumer waits, detached, to be
    /// attached again through its node; one not attached within [`DETACHED_GRACE_MS`] is
    /// cancelled (RabbitMQ requeues a failed leader's deliveries the same way).
    Failover,
    /// These consumers' connections reach the leader again (their node re-attached them after
    /// a leader change): deliveries to them resume. Answered with the ones the queue no
    /// longer knows ([`Reply::Attached`]).
    Attach {
        consumers: Vec<ConsumerId>,
    },
    /// The link to these consumers' node broke: their unacked messages go back (redelivered)
    /// and they wait, detached, for their node to attach them again.
    Detach {
        consumers: Vec<ConsumerId>,
    },
}

/// How long a detached consumer (`Command::Failover`, `Command::Detach`) is kept for its node
/// to attach it again before it is cancelled (ms).
pub const DETACHED_GRACE_MS: u64 = 30_000;

/// The settings of a queue that policies may change while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub message_ttl: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter: Option<Target>,
    pub expires: Option<u64>,
    pub delivery_limit: Option<u32>,
    pub consumer_timeout: Option<u64>,
}

#[derive(Clone, Debug)]
pub enum Reply {
    Enqueued(MsgId),
    /// A duplicate within the deduplication window: confirmed, not enqueued.
    Duplicate,
    /// Refused by the length limit (`x-overflow` `reject-publish`): the publisher gets a nack.
    Rejected,
    /// The queue is deleted; the message was dropped.
    Dropped,
    Consumed,
    Cancelled(bool),
    Settled(usize),
    Got(Option<Got>),
    Purged(u32),
    Deleted(u32),
    /// Consumers of an `Attach` the queue does not know (cancelled meanwhile).
    Attached(Vec<ConsumerId>),
    /// Not applied: this member of a replicated queue does not lead it (the leader it knows,
    /// if any). The request may go to the leader instead.
    NotLeader(Option<u64>),
    Stats {
        messages: u32,
        consumers: u32,
        unacked: u32,
        /// Body bytes of ready and unacked messages (RabbitMQ's `message_bytes`).
        bytes: u64,
    },
    Refused(Error),
}

#[derive(Clone, Debug)]
pub struct Got {
    pub id: MsgId,
    /// `None` when the body is only in the log entry `id` (the runner reads it back).
    pub msg: Option<Arc<Message>>,
    pub redelivered: bool,
    /// The `x-delivery-count` header to add (queues that count deliveries, on redelivery).
    pub delivery_count: Option<u16>,
    /// Ready messages left after this one.
    pub remaining: u32,
}

#[derive(Clone, Debug)]
pub enum Effect {
    Deliver {
        consumer: ConsumerId,
        id: MsgId,
        /// `None` when the body is only in the log entry `id` (the runner reads it back).
        msg: Option<Arc<Message>>,
        redelivered: bool,
        /// The `x-delivery-count` header to add (queues that count deliveries, on redelivery).
        delivery_count: Option<u16>,
    },
    /// Tell this consumer's client that the queue cancelled it.
    ConsumerCancelled { consumer: ConsumerId },
    /// A delivery to this consumer stayed unacked past the consumer timeout: close its channel
    /// (its unacked messages come back, redelivered).
    AckTimeout { consumer: ConsumerId, timeout_ms: u64 },
    /// Delete the queue: the last consumer of an auto-delete queue went, or it was unused for
    /// its `x-expires`.
    AutoDelete,
    /// Republish this message to the queue's dead-letter exchange.
    DeadLetter {
        id: MsgId,
        /// `None` when the body is only in the log entry `id`.
        msg: Option<Arc<Message>>,
        reason: Reason,
    },
}
