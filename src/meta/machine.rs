//! The metadata state machine.
//!
//! Equivalence rules and texts follow RabbitMQ: `rabbit_exchange:assert_equivalence`,
//! `rabbit_amqqueue:assert_equivalence` and `check_exclusive_access` (an exclusive-flag
//! mismatch or another owner is 405 RESOURCE_LOCKED), binding to or from the default
//! exchange is 403, an auto-delete exchange goes with its last binding as source.

use super::command::{MetaCommand, MetaEffect, MetaReply};
use super::state::{ClusterNode, Exchange, MetaState, QueueRecord, User, Vhost};
use crate::broker::argument::{self, EXCHANGE_EQUIVALENCE_KEYS, QUEUE_EQUIVALENCE_KEYS, QueueType};
use crate::broker::delayed;
use crate::broker::exchange::{Destination, ExchangeKind, ExchangeType};
use crate::broker::permission::Permissions;
use crate::broker::policy;
use crate::broker::router::Binding;
use crate::broker::{Error, ReplyCode};
use crate::ids::ConnectionId;
use crate::raft::{ApplyMeta, Machine};
use amq_protocol::types::FieldTable;
use std::sync::Arc;

/// The exchanges every vhost starts with (`rabbit_vhost:declare_default_exchanges`).
pub const DEFAULT_EXCHANGES: &[(&str, ExchangeKind, bool)] = &[
    ("", ExchangeKind::Direct, false),
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

#[derive(Debug, Default)]
pub struct MetaMachine {
    state: MetaState,
}

/// A queue declaration's properties (`MetaCommand::DeclareQueue` less the vhost and name).
struct Declare {
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    args: FieldTable,
    connection: ConnectionId,
    members: Vec<u64>,
}

fn queue_what(vhost: &str, name: &str) -> String {
    format!("queue '{name}' in vhost '{vhost}'")
}

fn exchange_what(vhost: &str, name: &str) -> String {
    format!("exchange '{name}' in vhost '{vhost}'")
}

fn inequivalent(key: &str, what: &str, received: impl std::fmt::Display, current: impl std::fmt::Display) -> Error {
    Error::precondition(format!(
        "inequivalent arg '{key}' for {what}: received '{received}' but current is '{current}'"
    ))
}

impl MetaMachine {
    pub fn state(&self) -> &MetaState {
        &self.state
    }

    /// Allocates a storage group (for a queue or a delayed exchange's store); never reused.
    fn next_group(&mut self) -> u64 {
        let group = self.state.next_group.max(1);
        self.state.next_group = group + 1;
        group
    }

    fn vhost_mut(&mut self, name: &str) -> Result<&mut Vhost, Error> {
        self.state.vhosts.get_mut(name).map(Arc::make_mut).ok_or_else(|| Error::not_found(format!("no vhost '{name}'")))
    }

    fn add_vhost(&mut self, name: String) {
        if self.state.vhosts.contains_key(&name) {
            return;
        }
        let mut v = Vhost { name: name.clone(), ..Default::default() };
        for (x, kind, internal) in DEFAULT_EXCHANGES {
            v.exchanges.insert(
                (*x).to_owned(),
                Arc::new(Exchange::new((*x).to_owned(), *kind, true, false, *internal, FieldTable::default())),
            );
        }
        self.state.vhosts.insert(name, Arc::new(v));
    }

    #[allow(clippy::too_many_arguments)]
    fn declare_exchange(
        &mut self,
        vhost: &str,
        name: String,
        kind: ExchangeType,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args: FieldTable,
        members: Vec<u64>,
    ) -> Result<(), Error> {
        let v = self.vhost_mut(vhost)?;
        if let Some(x) = v.exchanges.get(&name) {
            let what = exchange_what(vhost, &name);
            let current = x.exchange_type();
            if current.delayed != kind.delayed || (!kind.delayed && current.kind != kind.kind) {
                return Err(inequivalent("type", &what, kind, current));
            }
            if current.kind != kind.kind {
                return Err(inequivalent(delayed::TYPE_ARG, &what, kind.kind, current.kind));
            }
            if x.durable != durable {
                return Err(inequivalent("durable", &what, durable, x.durable));
            }
            if x.auto_delete != auto_delete {
                return Err(inequivalent("auto_delete", &what, auto_delete, x.auto_delete));
            }
            if x.internal != internal {
                return Err(inequivalent("internal", &what, internal, x.internal));
            }
            return argument::assert_equivalent(&x.args, &args, EXCHANGE_EQUIVALENCE_KEYS, &what);
        }
        let mut x = Exchange::new(name.clone(), kind.kind, durable, auto_delete, internal, args);
        if kind.delayed {
            x.delay_group = Some(self.next_group());
            if durable {
                x.delay_founders = members.clone();
                x.delay_members = members;
            }
        }
        let v = self.vhost_mut(vhost)?;
        if let Some(p) = policy::select(v.policies.values(), &name, policy::Target::Exchange) {
            x.policy = Some(p.name.clone());
            x.alternate = policy::effective_alternate(&x.args, Some(p));
        }
        v.exchanges.insert(name, Arc::new(x));
        Ok(())
    }

    fn delete_exchange(&mut self, vhost: &str, name: &str, if_unused: bool) -> Result<(), Error> {
        let v = self.vhost_mut(vhost)?;
        let Some(x) = v.exchanges.get(name) else {
            return Ok(());
        };
        if if_unused && !x.bindings.is_empty() {
            return Err(Error::precondition(format!("{} in use", exchange_what(vhost, name))));
        }
        v.exchanges.remove(name);
        remove_destination(v, &Destination::Exchange(name.to_owned()));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn declare_queue(
        &mut self,
        vhost: &str,
        name: String,
        d: Declare,
        effects: &mut Vec<MetaEffect>,
    ) -> Result<bool, Error> {
        let Declare { durable, exclusive, auto_delete, args, connection, members } = d;
        let what = queue_what(vhost, &name);
        let v = self.vhost_mut(vhost)?;
        if let Some(q) = v.queues.get(&name) {
            let owner_ok = match q.exclusive_owner {
                Some(owner) => exclusive && owner == connection,
                None => !exclusive,
            };
            if !owner_ok {
                return Err(Error::resource_locked(format!(
                    "cannot obtain exclusive access to locked {what}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
                )));
            }
            if q.durable != durable {
                return Err(inequivalent("durable", &what, durable, q.durable));
            }
            if q.auto_delete != auto_delete {
                return Err(inequivalent("auto_delete", &what, auto_delete, q.auto_delete));
            }
            argument::assert_equivalent(&q.args, &args, QUEUE_EQUIVALENCE_KEYS, &what)?;
            return Ok(false);
        }
        let parsed = argument::parse_queue_args(&args, &what)?;
        if parsed.queue_type == QueueType::Quorum {
            // rabbit_quorum_queue:declare, in RabbitMQ's order.
            let invalid = |property: &str| Error::precondition(format!("invalid property '{property}' for {what}"));
            if auto_delete {
                return Err(invalid("auto-delete"));
            }
            if exclusive {
                return Err(invalid("exclusive-owner"));
            }
            if !durable {
                return Err(invalid("non-durable"));
            }
        }
        let parsed_is_quorum = parsed.queue_type == QueueType::Quorum;
        let group = self.next_group();
        let v = self.vhost_mut(vhost)?;
        let policy = policy::select(v.policies.values(), &name, policy::Target::Queue(parsed.queue_type)).cloned();
        let effective = policy::effective_queue_args(&args, &parsed, policy.as_deref());
        let record = Arc::new(QueueRecord {
            vhost: vhost.to_owned(),
            name: name.clone(),
            durable,
            exclusive_owner: exclusive.then_some(connection),
            auto_delete,
            args,
            parsed,
            policy,
            effective,
            group,
            // A quorum queue placed on several nodes is replicated; its first member is the
            // one preferred to lead first.
            home: members.first().copied().filter(|_| parsed_is_quorum).unwrap_or(connection.node()),
            founders: if parsed_is_quorum { members.clone() } else { Vec::new() },
            members: if parsed_is_quorum { members } else { Vec::new() },
        });
        v.queues.insert(name, record.clone());
        effects.push(MetaEffect::QueueCreated(record));
        Ok(true)
    }

    fn delete_queue(&mut self, vhost: &str, name: &str, effects: &mut Vec<MetaEffect>) -> Result<(), Error> {
        let v = self.vhost_mut(vhost)?;
        if let Some(rec) = v.queues.remove(name) {
            remove_destination(v, &Destination::Queue(name.to_owned()));
            effects.push(MetaEffect::QueueDeleted(rec));
        }
        Ok(())
    }

    fn check_binding(v: &Vhost, vhost: &str, source: &str, destination: &Destination) -> Result<(), Error> {
        if source.is_empty() || matches!(destination, Destination::Exchange(d) if d.is_empty()) {
            return Err(Error::access_refused(format!("operation not permitted on the default exchange")));
        }
        match destination {
            Destination::Queue(q) if !v.queues.contains_key(q) => {
                return Err(Error::no_queue(vhost, q));
            }
            Destination::Exchange(x) if !v.exchanges.contains_key(x) => {
                return Err(Error::no_exchange(vhost, x));
            }
            _ => {}
        }
        if !v.exchanges.contains_key(source) {
            return Err(Error::no_exchange(vhost, source));
        }
        Ok(())
    }

    fn bind(
        &mut self,
        vhost: &str,
        source: &str,
        destination: Destination,
        key: String,
        args: FieldTable,
    ) -> Result<(), Error> {
        let v = self.vhost_mut(vhost)?;
        Self::check_binding(v, vhost, source, &destination)?;
        let x = v.exchanges.get_mut(source).map(Arc::make_mut).ok_or_else(|| Error::no_exchange(vhost, source))?;
        let kind = x.kind;
        x.bindings.add(kind, Binding { destination, key, args })?;
        Ok(())
    }

    fn unbind(
        &mut self,
        vhost: &str,
        source: &str,
        destination: Destination,
        key: String,
        args: FieldTable,
    ) -> Result<(), Error> {
        let v = self.vhost_mut(vhost)?;
        // Unbinding is idempotent (RabbitMQ's `rabbit_binding:remove/3` only reports absent
        // resources, never missing ones): a missing source, destination or binding is done.
        match Self::check_binding(v, vhost, source, &destination) {
            Err(e) if e.code == ReplyCode::NotFound => return Ok(()),
            r => r?,
        }
        let Some(x) = v.exchanges.get_mut(source).map(Arc::make_mut) else { return Ok(()) };
        let kind = x.kind;
        x.bindings.remove(kind, &Binding { destination, key, args });
        let gone = x.auto_delete && x.bindings.is_empty();
        if gone {
            v.exchanges.remove(source);
            remove_destination(v, &Destination::Exchange(source.to_owned()));
        }
        Ok(())
    }

    /// Deletes every queue `doomed` picks.
    fn delete_queues_where(&mut self, doomed: impl Fn(&QueueRecord) -> bool, effects: &mut Vec<MetaEffect>) {
        let names: Vec<(String, String)> = self
            .state
            .vhosts
            .values()
            .flat_map(|v| v.queues.values().filter(|q| doomed(q)).map(|q| (q.vhost.clone(), q.name.clone())))
            .collect();
        for (vhost, name) in names {
            let _ = self.delete_queue(&vhost, &name, effects);
        }
    }
}

/// Removes every binding to `dest` in the vhost, then any auto-delete exchange left without
/// bindings as source (which may cascade).
fn remove_destination(v: &mut Vhost, dest: &Destination) {
    let mut pending = vec![dest.clone()];
    while let Some(dest) = pending.pop() {
        let names: Vec<String> = v
            .exchanges
            .iter()
            .filter(|(_, x)| x.bindings.iter().any(|b| b.destination == dest))
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            let Some(x) = v.exchanges.get_mut(&n).map(Arc::make_mut) else {
                continue;
            };
            let kind = x.kind;
            x.bindings.remove_destination(kind, &dest);
            if x.auto_delete && x.bindings.is_empty() {
                v.exchanges.remove(&n);
                pending.push(Destination::Exchange(n));
            }
        }
    }
}

impl Machine for MetaMachine {
    type Command = MetaCommand;
    type Reply = MetaReply;
    type Effect = MetaEffect;

    fn apply(&mut self, _meta: ApplyMeta, cmd: MetaCommand, effects: &mut Vec<MetaEffect>) -> MetaReply {
        let r = match cmd {
            MetaCommand::AddVhost { name } => {
                self.add_vhost(name);
                Ok(())
            }
            MetaCommand::PutUser { name, password_hash, tags } => {
                self.state.users.insert(name.clone(), Arc::new(User { name, password_hash, tags }));
                Ok(())
            }
            MetaCommand::SetPermissions { vhost, user, configure, write, read } => {
                match Permissions::compile(&configure, &write, &read) {
                    Err(e) => Err(Error::precondition(format!("invalid permission regex: {e}"))),
                    Ok(p) => self.vhost_mut(&vhost).map(|v| {
                        v.permissions.insert(user, Arc::new(p));
                    }),
                }
            }
            MetaCommand::DeclareExchange { vhost, name, kind, durable, auto_delete, internal, args, members } => {
                self.declare_exchange(&vhost, name, kind, durable, auto_delete, internal, args, members)
            }
            MetaCommand::DeleteExchange { vhost, name, if_unused } => self.delete_exchange(&vhost, &name, if_unused),
            MetaCommand::DeclareQueue { vhost, name, durable, exclusive, auto_delete, args, connection, members } => {
                let declare = Declare { durable, exclusive, auto_delete, args, connection, members };
                return match self.declare_queue(&vhost, name, declare, effects) {
                    Ok(created) => MetaReply::QueueDeclared { created },
                    Err(e) => MetaReply::Refused(e),
                };
            }
            MetaCommand::DeleteQueue { vhost, name } => self.delete_queue(&vhost, &name, effects),
            MetaCommand::Bind { vhost, source, destination, key, args } => {
                self.bind(&vhost, &source, destination, key, args)
            }
            MetaCommand::Unbind { vhost, source, destination, key, args } => {
                self.unbind(&vhost, &source, destination, key, args)
            }
            MetaCommand::ConnectionClosed { connection } => {
                self.delete_queues_where(|q| q.exclusive_owner == Some(connection), effects);
                Ok(())
            }
            MetaCommand::NodeStarted { node } => {
                let gone = |q: &QueueRecord| {
                    (q.home == node && !q.durable) || q.exclusive_owner.is_some_and(|c| c.node() == node)
                };
                self.delete_queues_where(gone, effects);
                Ok(())
            }
            MetaCommand::DeleteUser { name } => {
                if self.state.users.remove(&name).is_none() {
                    return MetaReply::Refused(Error::not_found(format!("no user '{name}'")));
                }
                for v in self.state.vhosts.values_mut() {
                    if v.permissions.contains_key(&name) {
                        Arc::make_mut(v).permissions.remove(&name);
                    }
                }
                Ok(())
            }
            MetaCommand::DeleteVhost { name } => {
                if !self.state.vhosts.contains_key(&name) {
                    return MetaReply::Refused(Error::not_found(format!("no vhost '{name}'")));
                }
                self.delete_queues_where(|q| q.vhost == name, effects);
                self.state.vhosts.remove(&name);
                Ok(())
            }
            MetaCommand::ClearPermissions { vhost, user } => self.vhost_mut(&vhost).map(|v| {
                v.permissions.remove(&user);
            }),
            MetaCommand::UpdateVhost { name, description, tags, tracing } => self.vhost_mut(&name).map(|v| {
                if let Some(d) = description {
                    v.description = d;
                }
                if let Some(t) = tags {
                    v.tags = t;
                }
                if let Some(t) = tracing {
                    v.tracing = t;
                }
            }),
            MetaCommand::SetPolicy { vhost, name, pattern, apply_to, priority, definition } => {
                self.set_policy(&vhost, name, pattern, &apply_to, priority, definition, effects)
            }
            MetaCommand::ClearPolicy { vhost, name } => self.clear_policy(&vhost, &name, effects),
            MetaCommand::SeedNodes { nodes } => {
                self.seed_nodes(nodes);
                Ok(())
            }
            MetaCommand::RegisterNode { node } => self.register_node(node),
            MetaCommand::JoinNode { name, addr } => {
                return MetaReply::NodeJoined { id: self.join_node(name, addr, effects) };
            }
            MetaCommand::ForgetNode { id } => self.forget_node(id, effects),
            MetaCommand::AddQueueMember { vhost, name, node } => self.add_queue_member(&vhost, &name, node),
            MetaCommand::DeleteQueueMember { vhost, name, node } => self.delete_queue_member(&vhost, &name, node),
        };
        match r {
            Ok(()) => MetaReply::Ok,
            Err(e) => MetaReply::Refused(e),
        }
    }
}

mod codec;
mod nodes;
mod policies;
#[cfg(test)]
mod tests;
