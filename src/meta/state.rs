//! The data of the metadata machine.

use crate::broker::argument::QueueArgs;
use crate::broker::exchange::{ExchangeKind, ExchangeType};
use crate::broker::permission::Permissions;
use crate::broker::policy::{self, Policy, Target};
use crate::broker::router::{BindingIndex, ExchangeLookup, RoutableExchange};
use crate::ids::ConnectionId;
use crate::stats::Counters;
use amq_protocol::types::FieldTable;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    /// RabbitMQ-format salted SHA-256 (`broker::password`).
    pub password_hash: String,
    pub tags: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub args: FieldTable,
    /// The alternate exchange in force: the argument's, else the policy's.
    pub alternate: Option<String>,
    /// The policy that applies, if any.
    pub policy: Option<String>,
    pub bindings: BindingIndex,
    /// A delayed exchange's store of held messages: its storage group (allocated by the
    /// metadata machine, never reused). `None` for an ordinary exchange.
    pub delay_group: Option<u64>,
    /// The nodes holding a durable delayed exchange's store in a cluster (a Raft group over
    /// their members); empty: the store lives on every node alone (a single node, or a
    /// transient exchange, whose held messages a restart loses anyway).
    pub delay_members: Vec<u64>,
    /// The store's members at declaration (they start its group; a member that replaced a
    /// removed one joins it, added by the store's leader), as a quorum queue's founders.
    pub delay_founders: Vec<u64>,
    /// Message counters (`publish_in`, `publish_out`): observations, not state. Never encoded
    /// nor read by the machine; a changed copy of the record shares them, a new exchange
    /// starts from zero.
    pub stats: Arc<Counters>,
}

impl Exchange {
    /// A new exchange without bindings; its alternate exchange comes from its arguments.
    pub fn new(
        name: String,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args: FieldTable,
    ) -> Self {
        let alternate =
            crate::broker::argument::get(&args, "alternate-exchange").and_then(crate::broker::argument::as_str);
        Self {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            args,
            alternate,
            policy: None,
            bindings: BindingIndex::default(),
            delay_group: None,
            delay_members: Vec::new(),
            delay_founders: Vec::new(),
            stats: Arc::default(),
        }
    }

    /// The type as declared.
    pub fn exchange_type(&self) -> ExchangeType {
        ExchangeType { kind: self.kind, delayed: self.delay_group.is_some() }
    }
}

impl RoutableExchange for Exchange {
    fn kind(&self) -> ExchangeKind {
        self.kind
    }
    fn bindings(&self) -> &BindingIndex {
        &self.bindings
    }
    fn alternate(&self) -> Option<&str> {
        self.alternate.as_deref()
    }
}

#[derive(Clone, Debug)]
pub struct QueueRecord {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    /// The owning connection of an exclusive queue.
    pub exclusive_owner: Option<ConnectionId>,
    pub auto_delete: bool,
    pub args: FieldTable,
    pub parsed: QueueArgs,
    /// The policy that applies, if any, and the settings in force with it.
    pub policy: Option<Arc<Policy>>,
    pub effective: QueueArgs,
    /// The storage group holding this queue's log (allocated by the metadata machine, never
    /// reused).
    pub group: u64,
    /// The node that runs the queue: the declaring connection's (1 for a single node). For a
    /// replicated queue, the member preferred as its first leader.
    pub home: u64,
    /// The nodes holding a replica of a replicated (quorum) queue in a cluster, the preferred
    /// first leader first; empty for a queue that lives on `home` alone. Changes when a node
    /// is forgotten or replaced (`meta/machine/nodes.rs`).
    pub members: Vec<u64>,
    /// The members the queue's group was created with (its initial voters): only they may
    /// create it; a member added later waits until the leader adds it.
    pub founders: Vec<u64>,
}

impl QueueRecord {
    /// Whether the queue is a Raft group over several nodes' members.
    pub fn replicated(&self) -> bool {
        !self.members.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Vhost {
    pub name: String,
    pub exchanges: BTreeMap<String, Arc<Exchange>>,
    pub queues: BTreeMap<String, Arc<QueueRecord>>,
    /// Per user.
    pub permissions: BTreeMap<String, Arc<Permissions>>,
    pub description: String,
    pub tags: Vec<String>,
    /// Firehose tracing: copies of publishes and deliveries go to `amq.rabbitmq.trace`.
    pub tracing: bool,
    pub policies: BTreeMap<String, Arc<Policy>>,
}

impl Vhost {
    /// Re-evaluates which policy applies to each queue and exchange (after a policy changed,
    /// or on load); returns the queues whose settings in force changed.
    pub fn refresh_policies(&mut self) -> Vec<Arc<QueueRecord>> {
        let mut changed = Vec::new();
        for q in self.queues.values_mut() {
            let p = policy::select(self.policies.values(), &q.name, Target::Queue(q.parsed.queue_type));
            let effective = policy::effective_queue_args(&q.args, &q.parsed, p.map(|p| &**p));
            if q.policy.as_ref().map(Arc::as_ptr) != p.map(Arc::as_ptr) || q.effective != effective {
                let rec = Arc::make_mut(q);
                rec.policy = p.cloned();
                rec.effective = effective;
                changed.push(q.clone());
            }
        }
        for x in self.exchanges.values_mut() {
            let p = policy::select(self.policies.values(), &x.name, Target::Exchange);
            let alternate = policy::effective_alternate(&x.args, p.map(|p| &**p));
            let name = p.map(|p| p.name.clone());
            if x.policy != name || x.alternate != alternate {
                let x = Arc::make_mut(x);
                x.policy = name;
                x.alternate = alternate;
            }
        }
        changed
    }
}

impl ExchangeLookup for Vhost {
    type Exchange = Exchange;
    fn exchange(&self, name: &str) -> Option<&Exchange> {
        self.exchanges.get(name).map(|x| &**x)
    }
    fn has_queue(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }
}

/// A node of the cluster: its id (never reused), its name and the cluster address its peers
/// dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: u64,
    /// Empty until the node itself said it (an initial member that never started).
    pub name: String,
    pub addr: String,
}

/// All metadata. Cloning is cheap: it copies maps of `Arc`s.
#[derive(Clone, Debug, Default)]
pub struct MetaState {
    pub vhosts: BTreeMap<String, Arc<Vhost>>,
    pub users: BTreeMap<String, Arc<User>>,
    /// The next queue storage group id (group 0 is the metadata group itself).
    pub next_group: u64,
    /// The cluster's nodes by id (empty on a single node).
    pub nodes: BTreeMap<u64, Arc<ClusterNode>>,
    /// Nodes removed from the cluster (forgotten, or replaced by a node that joined with
    /// their name or address): their ids are never members again.
    pub forgotten: BTreeSet<u64>,
    /// The next node id a joining node gets.
    pub next_node: u64,
}
