//! Metadata: vhosts, users, permissions, exchanges, queue records and bindings.
//!
//! [`machine::MetaMachine`] is the deterministic state machine replicated by the metadata
//! group; [`state`] holds its data, cheap to snapshot (maps of `Arc`s, copy-on-write) so
//! routing reads a consistent, lock-free view.

pub mod command;
pub mod machine;
pub mod state;

pub use command::{MetaCommand, MetaEffect, MetaReply};
pub use machine::MetaMachine;
pub use state::{ClusterNode, Exchange, MetaState, QueueRecord, User, Vhost};
