//! Joining a running cluster: a node with an empty data directory asks a member
//! ([`RpcKind::Join`] to the [`NODE_JOIN`] pseudo-group); the member has the metadata leader
//! give it a new id (never reused) and answers where every member is. The joiner then opens
//! its members of the groups without creating them, and the metadata leader adds it as a
//! learner, then as a voter once it caught up (`raft/durable/members.rs`).

use super::peers::{decode, encode};
use super::transport::{Handler, NODE_JOIN, NodeId, RpcKind, Transport, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who asks to join.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub name: String,
    /// The cluster address its peers are to dial.
    pub addr: String,
}

/// A joiner's id, and every member's id and cluster address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinAnswer {
    pub id: NodeId,
    pub nodes: Vec<(NodeId, String)>,
}

/// How a member admits a joiner (through the metadata); a refusal's text.
pub type Admit = Arc<dyn Fn(JoinRequest) -> BoxFuture<'static, Result<JoinAnswer, String>> + Send + Sync>;

/// Takes join requests for this node.
pub(crate) struct Joins(pub Admit);

impl Handler for Joins {
    fn handle(&self, kind: RpcKind, body: Bytes) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        if kind != RpcKind::Join {
            return Box::pin(async { Err(TransportError::Malformed("only Join is asked here".into())) });
        }
        let admit = self.0.clone();
        Box::pin(async move {
            let req: JoinRequest = decode(&body)?;
            encode(&admit(req).await)
        })
    }
}

/// Asks node `target` to admit this node; its refusal's text as `Malformed`'s.
pub async fn ask_join(
    transport: &dyn Transport,
    target: NodeId,
    req: &JoinRequest,
) -> Result<JoinAnswer, TransportError> {
    let answer = transport.call(target, NODE_JOIN, RpcKind::Join, encode(req)?).await?;
    let answer: Result<JoinAnswer, String> = decode(&answer)?;
    answer.map_err(TransportError::Malformed)
}
