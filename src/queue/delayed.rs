//! The store behind a delayed-message exchange (`x-delayed-message`, see
//! [`crate::broker::delayed`]): messages held until their time, then routed.
//!
//! Like a queue, a store is a deterministic machine ([`machine::DelayMachine`]) behind a
//! replication group: in memory for a transient exchange, openraft + RocksDB for a durable one,
//! so held messages survive a restart (and, with the cluster, a node's death). Its runner
//! ([`runner`]) holds publishes (`Hold`, confirmed once stored), sleeps until the earliest
//! due time, routes what is due through the exchange's bindings as they are then, waits until
//! every target queue has confirmed the message, and only then proposes `Release`: a crash in
//! between delivers a message twice rather than never.

pub mod codec;
pub mod machine;
pub mod runner;

pub use machine::{DelayCommand, DelayMachine};
pub use runner::spawn;
