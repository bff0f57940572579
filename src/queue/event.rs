//! What a queue runner sends to a client connection.

use super::Message;
use super::runner::QueueHandle;
use crate::ids::{ChannelId, MsgId};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One message handed to a consumer.
#[derive(Debug)]
pub struct Delivery {
    pub consumer_tag: Arc<str>,
    pub id: MsgId,
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// The consumer settles nothing (no-ack): the queue already forgot the message.
    pub no_ack: bool,
}

/// Events a connection receives from queues and from the node.
#[derive(Debug)]
pub enum ClientEvent {
    /// Messages for consumers on one channel, from one queue, in dispatch order.
    Deliveries { channel: ChannelId, queue: QueueHandle, items: Vec<Delivery> },
    /// Publishes on `channel` with these sequence numbers reached one more of their queues.
    Confirms { channel: ChannelId, seqs: Vec<u64>, ok: bool },
    /// Publishes a replicated queue's member did not take (it does not lead; nothing was
    /// done): a client is nacked; a publish that came from another node's front goes back to
    /// it, for the leader.
    NotTaken { channel: ChannelId, seqs: Vec<u64> },
    /// The queue cancelled this consumer (queue deleted): send `basic.cancel` if the client
    /// supports it (RabbitMQ's consumer cancel notification).
    ConsumerCancelled { channel: ChannelId, consumer_tag: Arc<str> },
    /// A delivery on `channel` stayed unacked past the consumer timeout: close the channel with
    /// 406 (RabbitMQ's delivery acknowledgement timeout).
    AckTimeout { channel: ChannelId, timeout_ms: u64 },
    /// A direct reply-to message for the pseudo-consumer on `channel`.
    DirectReply { channel: ChannelId, msg: Arc<Message> },
}

/// The connection's inbox.
pub type ClientSink = mpsc::Sender<ClientEvent>;
