//! The network of a single-member group: there is nobody to talk to.
//!
//! openraft never opens a client for a group whose only voter is this node, but `Raft::new`
//! needs a network type. Every call reports the peer unreachable; the gRPC network replaces
//! this when the cluster exists.

use super::types::Warren;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, OptionalSend};
use std::future::Future;
use std::io::{self, Cursor};

type C = Warren;

fn unreachable() -> Unreachable<C> {
    Unreachable::new(&io::Error::new(io::ErrorKind::NotConnected, "single-node group: no peers"))
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

impl RaftNetworkFactory<C> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> Self::Network {
        NoPeers
    }
}

impl RaftNetworkV2<C> for NoPeers {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        _req: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(&mut self, _req: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<C>,
        _snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}
