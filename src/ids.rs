//! Newtype identifiers shared by every layer.
//!
//! Ids that cross a state machine (connection, consumer, message) are plain integers assigned
//! outside `apply` (by the node or the connection), so every replica sees the same values.

use std::fmt;

/// A client connection. Assigned by the node when the socket is accepted: the node's id less
/// one in the top 24 bits, a counter below ([`NODE_SHIFT`]), so ids are unique cluster-wide
/// without coordination. Each start of a node counts from its own [`first_of_this_start`],
/// so ids stay unique across restarts too (a replicated queue remembers a consumer of a node
/// that died until that consumer's grace ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Where the node part of a connection or consumer id starts.
pub const NODE_SHIFT: u32 = 40;

/// The first id a node hands out in a space tagged with its node id (1-based).
pub fn node_base(node: u64) -> u64 {
    node.saturating_sub(1) << NODE_SHIFT
}

/// Where this start of a node begins counting ids in its space: the clock in microseconds,
/// modulo half the space (a later start begins past every id an earlier one handed out,
/// unless that one made more than one id per microsecond; the other half is headroom).
pub fn first_of_this_start(node: u64, now_micros: u64) -> u64 {
    node_base(node) + 1 + now_micros % (1 << (NODE_SHIFT - 1))
}

impl ConnectionId {
    /// The id of no connection on `node` (operations of the management API there).
    pub fn none_on(node: u64) -> Self {
        Self(node_base(node))
    }

    /// The node the connection is (or was) on.
    pub fn node(self) -> u64 {
        (self.0 >> NODE_SHIFT) + 1
    }
}

/// An AMQP channel number within one connection (1..=channel_max).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u16);

/// A consumer registered on a queue; unique cluster-wide (tagged with its node as
/// [`ConnectionId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerId(pub u64);

/// A message's position in its queue; strictly increasing per queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(pub u64);

/// A per-channel delivery tag, starting at 1 (AMQP 0-9-1 §1.8.3.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryTag(pub u64);

/// A queue, named within its vhost.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    pub vhost: String,
    pub name: String,
}

impl QueueKey {
    pub fn new(vhost: impl Into<String>, name: impl Into<String>) -> Self {
        Self { vhost: vhost.into(), name: name.into() }
    }
}

impl fmt::Display for QueueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue '{}' in vhost '{}'", self.name, self.vhost)
    }
}
