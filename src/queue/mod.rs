//! Queues: one deterministic state machine per queue, and the runner task that feeds it.
//!
//! The machine ([`machine::QueueMachine`]) is pure: ready messages, unacked messages,
//! consumers with their credit, and the dispatch rule. The runner ([`runner`]) owns the machine
//! inside a [`crate::raft::Group`], proposes every command through it, and carries out the
//! effects (deliveries to connections, publisher confirms, cancel notifications).

pub mod dead_letter;
pub mod delayed;
pub mod event;
pub mod flow;
pub mod handle;
pub mod machine;
pub mod message;
pub mod remote;
pub mod runner;

pub use event::{ClientEvent, ClientSink, Delivery};
pub use machine::{Command, ConsumerSpec, Effect, Holder, Outcome, QueueMachine, Reply};
pub use message::{Body, Message};
pub use runner::{QueueHandle, spawn};
