//! A published message as it travels from a publisher's socket to a consumer's.

use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

/// An immutable message, shared (behind `Arc`) by every queue it was routed to.
///
/// The body is the `Bytes` cut from the publisher's read buffer and written to consumers'
/// sockets as is: it is never copied on the way through.
#[derive(Debug)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    /// The encoded content-header payload (class, weight, body size, properties), forwarded to
    /// consumers unchanged when the properties were not rewritten.
    pub header: Bytes,
    pub body: Bytes,
}

impl Message {
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}
