//! A queue's declared settings as its machine sees them, and the part policies may change.

use super::command::Limits;
use super::dedup;
use crate::broker::argument::Overflow;
use crate::ids::QueueKey;
use crate::queue::dead_letter::Target;

/// Declared properties the machine needs.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub key: QueueKey,
    pub auto_delete: bool,
    pub single_active_consumer: bool,
    /// `x-message-ttl` (ms).
    pub message_ttl: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter: Option<Target>,
    /// `x-max-priority`: a priority queue with levels 0 to this.
    pub max_priority: Option<u8>,
    /// `x-expires` (ms): the queue is deleted once unused this long.
    pub expires: Option<u64>,
    /// `x-delivery-limit` (quorum queues; 20 unless declared, as RabbitMQ 4): a message that
    /// came back more often is dead-lettered (`delivery_limit`). Queues with a limit also add
    /// the `x-delivery-count` header to redeliveries.
    pub delivery_limit: Option<u32>,
    /// How long (ms) a consumer's delivery may stay unacked (`consumer_timeout`,
    /// `x-consumer-timeout`): past it, the consumer's channel is closed.
    pub consumer_timeout: Option<u64>,
    /// Deduplication (`x-message-deduplication`) and its window.
    pub dedup: Option<dedup::Window>,
}

impl QueueConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            message_ttl: self.message_ttl,
            max_length: self.max_length,
            max_length_bytes: self.max_length_bytes,
            overflow: self.overflow,
            dead_letter: self.dead_letter.clone(),
            expires: self.expires,
            delivery_limit: self.delivery_limit,
            consumer_timeout: self.consumer_timeout,
        }
    }

    pub fn set_limits(&mut self, l: Limits) {
        self.message_ttl = l.message_ttl;
        self.max_length = l.max_length;
        self.max_length_bytes = l.max_length_bytes;
        self.overflow = l.overflow;
        self.dead_letter = l.dead_letter;
        self.expires = l.expires;
        self.delivery_limit = l.delivery_limit;
        self.consumer_timeout = l.consumer_timeout;
    }

    /// A queue with no options.
    pub fn new(key: QueueKey) -> Self {
        Self {
            key,
            auto_delete: false,
            single_active_consumer: false,
            message_ttl: None,
            max_length: None,
            max_length_bytes: None,
            overflow: Overflow::DropHead,
            dead_letter: None,
            max_priority: None,
            expires: None,
            delivery_limit: None,
            consumer_timeout: None,
            dedup: None,
        }
    }
}
