//! The inter-node gRPC service (tonic + prost; schema in `proto/cluster.proto`): the edge
//! where protobuf types live. It carries Raft RPCs between the nodes' groups
//! ([`crate::raft::transport`]: bytes addressed by node, group and kind) and will carry
//! Warren's own node-to-node calls. Every call is authenticated with the cluster name and
//! secret ([`auth`]), RabbitMQ's Erlang-cookie role.

pub mod auth;
mod calls;
pub mod client;
mod pb;
pub mod service;

pub use auth::Credentials;
pub use client::GrpcTransport;
pub use service::{Identity, serve};
