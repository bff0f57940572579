//! The replication seam: the only way a command reaches a state machine.
//!
//! A [`Group`] owns one deterministic [`Machine`] and a log. Every mutation is proposed as a
//! command, appended to the log at the next index and then applied with an [`ApplyMeta`] that
//! carries the index and the proposer's clock. Today the log is in memory and single-member, so a
//! proposal commits at once; the durability issue puts openraft + RocksDB behind this same API
//! (only this module will import openraft), and callers do not change.

pub mod durable;
mod forward;
pub use forward::Outsider;
mod group;
pub mod join;
pub mod log_store;
mod net;
mod peers;
mod runtime;
pub(crate) use join::Joins;
pub(crate) use peers::Seen;
pub use peers::{ask_applied, ask_leader, find_leader};
pub mod transport;
pub mod types;

pub use durable::{
    AppliedWatch, DecodeError, DurableGroup, DurableMachine, GroupError, GroupOptions, Leadership, LeadershipWatch,
    Membership, Pending, Replication, keep_converging,
};
pub use group::{ApplyMeta, Group, LogIndex, Machine};
