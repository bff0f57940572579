//! The generated protobuf types and service stubs of `proto/cluster.proto`.
#![allow(clippy::all, missing_docs, unreachable_pub)]

tonic::include_proto!("warren.cluster.v1");
