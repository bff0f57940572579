//! Per-channel state: content being assembled, delivery tags, consumers, QoS, confirm and
//! transaction modes.

use crate::ids::{ChannelId, ConsumerId, MsgId};
use crate::queue::{Message, QueueHandle};
use amq_protocol::frame::AMQPContentHeader;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    Open,
    /// We sent `channel.close` and discard everything until `close-ok` (spec §2.3.5.2).
    Closing,
}

/// A `basic.publish` waiting for its content header and body frames.
#[derive(Debug)]
pub struct PendingContent {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub header: Option<(AMQPContentHeader, Bytes)>,
    pub body: Vec<Bytes>,
    pub received: u64,
}

/// A message handed to the client that it has to settle.
#[derive(Debug)]
pub struct Unacked {
    pub queue: QueueHandle,
    pub id: MsgId,
}

#[derive(Debug)]
pub struct ConsumerEntry {
    pub queue: QueueHandle,
    pub id: ConsumerId,
    pub no_ack: bool,
    /// Credit granted to the queue for this consumer and not yet used, when the channel has a
    /// channel-wide prefetch (`basic.qos global=true`); `None` otherwise.
    pub credit: Option<u32>,
    /// As declared, for the management API's consumer list.
    pub exclusive: bool,
    pub prefetch: u32,
    pub arguments: amq_protocol::types::FieldTable,
}

/// Publisher-confirm bookkeeping: sequence numbers still waiting on some of their queues.
#[derive(Debug, Default)]
pub struct ConfirmState {
    /// Last sequence number assigned (publishes count from 1).
    pub last_seq: u64,
    /// seq -> queues that still have to accept it.
    pub outstanding: BTreeMap<u64, u32>,
    /// Every seq up to this one has been confirmed (acked or nacked) to the client.
    pub acked_upto: u64,
    /// Seqs some queue refused (a full queue with `reject-publish`): nacked once all their
    /// queues answered.
    pub nacked: BTreeSet<u64>,
}

impl ConfirmState {
    /// The next confirm to send, if any: `(tag, multiple, ack)`. Acks cover every seq done up
    /// to the tag (with `multiple`); a refused seq gets its own `basic.nack`, in order.
    pub fn next_settle(&mut self) -> Option<(u64, bool, bool)> {
        let waiting = self.outstanding.keys().next().copied().unwrap_or(self.last_seq + 1);
        let nack = self.nacked.first().copied().filter(|&s| s < waiting);
        let upto = nack.unwrap_or(waiting) - 1;
        if upto > self.acked_upto {
            let multiple = upto - self.acked_upto > 1;
            self.acked_upto = upto;
            return Some((upto, multiple, true));
        }
        let s = nack?;
        self.nacked.remove(&s);
        self.acked_upto = s;
        Some((s, false, false))
    }
}

/// A settle the client asked for, buffered inside a transaction.
#[derive(Clone, Copy, Debug)]
pub enum TxSettle {
    Ack { tag: u64, multiple: bool },
    Reject { tag: u64, multiple: bool, requeue: bool },
}

/// A routed publish buffered inside a transaction.
#[derive(Debug)]
pub struct TxPublish {
    pub msg: Arc<Message>,
    pub mandatory: bool,
    /// Routing key plus CC and BCC keys.
    pub keys: Vec<String>,
}

#[derive(Debug, Default)]
pub struct TxState {
    pub publishes: Vec<TxPublish>,
    pub settles: Vec<TxSettle>,
}

#[derive(Debug)]
pub struct Channel {
    pub id: ChannelId,
    pub state: ChannelState,
    pub content: Option<PendingContent>,
    /// Last delivery tag used (tags count from 1).
    pub last_tag: u64,
    pub unacked: BTreeMap<u64, Unacked>,
    pub consumers: HashMap<String, ConsumerEntry>,
    /// `basic.qos global=false`: limit for consumers created afterwards.
    pub prefetch_consumer: u32,
    /// `basic.qos global=true`: limit for the channel.
    pub prefetch_channel: u32,
    /// Where the next channel-wide credit grant starts (round-robin over consumers).
    pub credit_cursor: usize,
    pub confirm: Option<ConfirmState>,
    pub tx: Option<TxState>,
    /// The queue last declared on this channel (an empty queue name means it).
    pub last_queue: Option<String>,
    /// Direct reply-to: (pseudo-queue name, consumer tag).
    pub direct_reply: Option<(String, String)>,
}

impl Channel {
    pub fn new(id: ChannelId) -> Self {
        Self {
            id,
            state: ChannelState::Open,
            content: None,
            last_tag: 0,
            unacked: BTreeMap::new(),
            consumers: HashMap::new(),
            prefetch_consumer: 0,
            prefetch_channel: 0,
            credit_cursor: 0,
            confirm: None,
            tx: None,
            last_queue: None,
            direct_reply: None,
        }
    }

    pub fn next_tag(&mut self) -> u64 {
        self.last_tag += 1;
        self.last_tag
    }

    /// Removes and returns the unacked entries a settle covers; `None` if the tag is unknown
    /// (406 PRECONDITION_FAILED - unknown delivery tag N). Tag 0 with `multiple` means all.
    pub fn take_unacked(&mut self, tag: u64, multiple: bool) -> Option<Vec<Unacked>> {
        if multiple {
            if tag != 0 && !self.unacked.contains_key(&tag) && self.unacked.range(..=tag).next().is_none() {
                return None;
            }
            let upto = if tag == 0 { u64::MAX } else { tag };
            let rest = self.unacked.split_off(&(upto.saturating_add(1)));
            let taken = std::mem::replace(&mut self.unacked, rest);
            Some(taken.into_values().collect())
        } else {
            self.unacked.remove(&tag).map(|u| vec![u])
        }
    }

    /// Splits what is left of the channel-wide prefetch among credit-mode consumers,
    /// round-robin, so that unacked messages plus outstanding credit never exceed the limit
    /// (RabbitMQ's `basic.qos global=true`). Returns (queue, consumer, added credit) grants.
    pub fn grant_credit(&mut self) -> Vec<(QueueHandle, ConsumerId, u32)> {
        if self.prefetch_channel == 0 {
            return Vec::new();
        }
        let outstanding: u32 = self.consumers.values().filter_map(|c| c.credit).sum();
        let mut budget = self.prefetch_channel.saturating_sub(self.unacked.len() as u32 + outstanding);
        let mut tags: Vec<&String> =
            self.consumers.iter().filter(|(_, c)| c.credit.is_some()).map(|(t, _)| t).collect();
        if budget == 0 || tags.is_empty() {
            return Vec::new();
        }
        tags.sort();
        let tags: Vec<String> = tags.into_iter().cloned().collect();
        let mut add = vec![0u32; tags.len()];
        let mut i = self.credit_cursor % tags.len();
        while budget > 0 {
            add[i] += 1;
            budget -= 1;
            i = (i + 1) % tags.len();
        }
        self.credit_cursor = i;
        let mut grants = Vec::new();
        for (tag, n) in tags.iter().zip(add) {
            if let Some(c) = self.consumers.get_mut(tag).filter(|_| n > 0) {
                c.credit = c.credit.map(|x| x + n);
                grants.push((c.queue.clone(), c.id, n));
            }
        }
        grants
    }

    /// Whether a settle would find its tag (used to validate inside transactions).
    pub fn knows_tag(&self, tag: u64, multiple: bool) -> bool {
        if multiple { tag == 0 || self.unacked.range(..=tag).next().is_some() } else { self.unacked.contains_key(&tag) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_ack_contiguous_prefixes() {
        let mut c = ConfirmState::default();
        c.last_seq = 3;
        c.outstanding.insert(2, 1);
        assert_eq!(c.next_settle(), Some((1, false, true)));
        c.outstanding.clear();
        assert_eq!(c.next_settle(), Some((3, true, true)));
        assert_eq!(c.next_settle(), None);
    }

    #[test]
    fn a_refused_publish_is_nacked_alone_and_in_order() {
        let mut c = ConfirmState { last_seq: 5, ..Default::default() };
        c.outstanding.insert(5, 1);
        // 3 was refused; 4 waits on no queue; 5 is still outstanding.
        c.nacked.insert(3);
        assert_eq!(c.next_settle(), Some((2, true, true)));
        assert_eq!(c.next_settle(), Some((3, false, false)));
        assert_eq!(c.next_settle(), Some((4, false, true)));
        assert_eq!(c.next_settle(), None);
        // Refused by one queue while another still has to answer: nothing yet.
        c.nacked.insert(5);
        assert_eq!(c.next_settle(), None);
        c.outstanding.clear();
        assert_eq!(c.next_settle(), Some((5, false, false)));
    }
}
