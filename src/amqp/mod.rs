//! The AMQP 0-9-1 wire: frames, handshake, connections, channels, consumers, confirms, tx.
//!
//! Method and property (de)serialisation come from the `amq-protocol` crate; frame boundaries,
//! body slicing (zero-copy) and the hot deliver path are ours. Behaviour follows the 0-9-1
//! spec with RabbitMQ's extensions and error model (`rabbit_reader.erl`, `rabbit_channel.erl`).

pub mod channel;
mod closing;
mod connection;
mod consume;
mod declare;
pub mod error;
mod events;
pub mod frame;
mod handshake;
mod inspect;
pub mod out;
mod publish;
mod queue_io;
pub mod server;
pub mod trace;

pub use error::AmqpError;
