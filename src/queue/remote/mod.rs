//! Remote queues: any node serves any queue. A queue runs on its home node; every other node
//! holds a proxy behind an ordinary [`crate::queue::QueueHandle`], so connections, routing and
//! the management API use a remote queue exactly as a local one (RabbitMQ's channels talk to
//! queue processes on other nodes the same way, over Erlang distribution).
//!
//! - [`origin`]: the proxies and one link per home node (a stream over the cluster transport).
//! - [`home`]: the sessions serving those streams, feeding this node's runners.
//! - [`front`]: a replicated queue's handle on each node, sending requests to its leader
//!   wherever that is, and attaching its consumers to each new leader.
//! - [`frame`]: what travels, in the queue machine's own encoding.

mod frame;
pub mod front;
pub mod home;
mod link;
pub mod origin;

pub use front::{FrontInboxes, Member};
pub use home::{Resolve, acceptor};
pub use origin::Remote;

#[cfg(test)]
mod tests;
