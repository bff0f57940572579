//! Commands of the metadata machine. Once released, a variant is never changed, only added.

use crate::broker::Error;
use crate::broker::exchange::{Destination, ExchangeType};
use crate::ids::ConnectionId;
use amq_protocol::types::FieldTable;
use std::sync::Arc;

use super::state::{ClusterNode, QueueRecord};

#[derive(Clone, Debug)]
pub enum MetaCommand {
    AddVhost {
        name: String,
    },
    PutUser {
        name: String,
        password_hash: String,
        tags: Vec<String>,
    },
    SetPermissions {
        vhost: String,
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    DeclareExchange {
        vhost: String,
        name: String,
        kind: ExchangeType,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args: FieldTable,
        /// The nodes to hold a durable delayed exchange's store, as the proposing node placed
        /// them (`node/placement.rs`); empty on a single node, and ignored for any other
        /// exchange or an existing one.
        members: Vec<u64>,
    },
    DeleteExchange {
        vhost: String,
        name: String,
        if_unused: bool,
    },
    DeclareQueue {
        vhost: String,
        name: String,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        args: FieldTable,
        /// The connection declaring it (owner if exclusive; checked against an existing owner).
        connection: ConnectionId,
        /// The nodes to hold a quorum queue's replicas, the preferred first leader first, as
        /// the proposing node placed them (`node/placement.rs`); empty on a single node, and
        /// ignored for any other queue type or an existing queue.
        members: Vec<u64>,
    },
    DeleteQueue {
        vhost: String,
        name: String,
    },
    Bind {
        vhost: String,
        source: String,
        destination: Destination,
        key: String,
        args: FieldTable,
    },
    Unbind {
        vhost: String,
        source: String,
        destination: Destination,
        key: String,
        args: FieldTable,
    },
    /// A connection closed: its exclusive queues go.
    ConnectionClosed {
        connection: ConnectionId,
    },
    /// A node (re)started: no connection it had before exists, so the exclusive queues of its
    /// connections go, and so do the non-durable queues it ran (RabbitMQ loses transient
    /// queues on restart).
    NodeStarted {
        node: u64,
    },
    /// A user goes, with their permissions in every vhost.
    DeleteUser {
        name: String,
    },
    /// A vhost goes, with its queues, exchanges, bindings and permissions.
    DeleteVhost {
        name: String,
    },
    ClearPermissions {
        vhost: String,
        user: String,
    },
    /// Changes a vhost's metadata; `None` leaves a field as it is.
    UpdateVhost {
        name: String,
        description: Option<String>,
        tags: Option<Vec<String>>,
        tracing: Option<bool>,
    },
    /// Adds or replaces a policy (validated by `broker::policy::Policy::new`).
    SetPolicy {
        vhost: String,
        name: String,
        pattern: String,
        apply_to: String,
        priority: i64,
        definition: FieldTable,
    },
    ClearPolicy {
        vhost: String,
        name: String,
    },
    /// The initial members of a new cluster, from the peer list (ids by sorted address), so
    /// that a node joining later with one's address replaces it; ids already known or
    /// forgotten are left as they are.
    SeedNodes {
        nodes: Vec<ClusterNode>,
    },
    /// A member says who it is (at every start): its name and address.
    RegisterNode {
        node: ClusterNode,
    },
    /// A node with an empty data directory joins: it gets the next id, and a node known by
    /// the same name or address is replaced by it (forgotten; its replicas become the new
    /// node's). Answered with [`MetaReply::NodeJoined`].
    JoinNode {
        name: String,
        addr: String,
    },
    /// `forget_cluster_node`: the node leaves the cluster for good. Its replicas go (a quorum
    /// queue left without members goes too), and so do the classic queues it was home to.
    ForgetNode {
        id: u64,
    },
    /// `rabbitmq-queues add_member`: node `node` holds a replica of the quorum queue too (its
    /// leader adds it to the group once it caught up, `raft/durable/members.rs`).
    AddQueueMember {
        vhost: String,
        name: String,
        node: u64,
    },
    /// `rabbitmq-queues delete_member`: node `node` no longer holds a replica (never the
    /// last one).
    DeleteQueueMember {
        vhost: String,
        name: String,
        node: u64,
    },
}

#[derive(Clone, Debug)]
pub enum MetaReply {
    Ok,
    /// `created` is false when an equivalent queue already existed.
    QueueDeclared {
        created: bool,
    },
    Refused(Error),
    /// A joining node's id.
    NodeJoined {
        id: u64,
    },
}

#[derive(Clone, Debug)]
pub enum MetaEffect {
    QueueCreated(Arc<QueueRecord>),
    /// A queue went; `record` says which storage group held it.
    QueueDeleted(Arc<QueueRecord>),
    /// A queue's settings in force changed (a policy applies, changed or went).
    QueueConfigured(Arc<QueueRecord>),
}
