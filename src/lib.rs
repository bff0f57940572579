//! Warren: a clustered, replicated AMQP 0-9-1 message broker.
//!
//! # Layout
//! Layers point one way (see `docs/architecture.md`):
//! - [`amqp`]: the wire: frames, handshake, channels, consumers, confirms, transactions.
//! - [`mgmt`]: the management HTTP API and web UI (RabbitMQ-compatible, port 15672).
//! - [`node`]: wires one node together: the metadata group, the running queues, routing.
//! - [`broker`]: pure domain (names, exchanges, bindings, routing, arguments, permissions).
//! - [`meta`] and [`queue`]: the deterministic state machines and their runners.
//! - [`raft`]: the replication seam, the only way a command reaches a machine.
//! - [`storage`]: the node's RocksDB (the only module that imports rocksdb), group commit.
//! - [`alarm`]: resource alarms that block publishers (memory; disk with durability).
//! - [`config`]: settings of a node.
//! - [`stats`]: message counters and rates (`message_stats`, Prometheus).
//! - [`ctl`]: the administration commands behind `warren ctl`.

pub mod alarm;
pub mod amqp;
pub mod broker;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod ctl;
pub mod ids;
pub mod meta;
pub mod mgmt;
pub mod node;
pub mod queue;
pub mod raft;
pub mod server;
pub mod stats;
pub mod storage;
