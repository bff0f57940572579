//! `exchange.*` and `queue.*` methods: declare, delete, bind, unbind, purge.
//!
//! Permission mapping as RabbitMQ's `rabbit_channel`: declare and delete need configure on the
//! resource; queue.bind needs write on the queue and read on the exchange; exchange.bind write
//! on the destination and read on the source; purge needs read.

use super::connection::Connection;
use super::error::{AmqpError, Result};
use crate::broker::argument::{self, QueueType};
use crate::broker::exchange::{Destination, ExchangeType};
use crate::broker::name::{self, DIRECT_REPLY_TO, SERVER_NAMED_PREFIX};
use crate::broker::permission::Access;
use crate::ids::QueueKey;
use crate::meta::{MetaCommand, MetaReply};
use crate::queue::QueueHandle;
use crate::queue::machine::{Command, Reply};
use amq_protocol::protocol::{AMQPClass, exchange, queue};
use amq_protocol::types::AMQPValue;
use amq_protocol::types::FieldTable;
use base64::Engine;

impl Connection {
    /// Checks a permission of the connection's user on a resource in its vhost.
    pub fn check_access(&self, access: Access, kind: &str, resource: &str) -> Result<()> {
        let topo = self.node.topology();
        let allowed = topo
            .meta
            .vhosts
            .get(&self.vhost)
            .and_then(|v| v.permissions.get(&self.user))
            .is_some_and(|p| p.allows(access, resource));
        if allowed {
            Ok(())
        } else {
            let perm = match access {
                Access::Configure => "configure",
                Access::Write => "write",
                Access::Read => "read",
            };
            Err(AmqpError::access_refused(format!(
                "{perm} access to {kind} '{resource}' in vhost '{}' refused for user '{}'",
                self.vhost, self.user
            )))
        }
    }

    async fn meta(&self, cmd: MetaCommand) -> Result<MetaReply> {
        match self.node.propose_meta(cmd).await {
            MetaReply::Refused(e) => Err(e.into()),
            r => Ok(r),
        }
    }

    /// Resolves a queue name: empty means the last queue declared on the channel.
    pub fn resolve_queue(&mut self, ch: u16, name: &str) -> Result<String> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        self.chan(ch)?.last_queue.clone().ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    /// The running queue of that name, checking exclusive ownership (405 otherwise).
    pub fn queue_handle(&self, name: &str) -> Result<QueueHandle> {
        let topo = self.node.topology();
        let key = QueueKey::new(self.vhost.clone(), name);
        let rec = topo.meta.vhosts.get(&self.vhost).and_then(|v| v.queues.get(name));
        let (Some(rec), Some(h)) = (rec, topo.queues.get(&key)) else {
            return Err(crate::broker::Error::no_queue(&self.vhost, name).into());
        };
        if rec.exclusive_owner.is_some_and(|o| o != self.id) {
            return Err(AmqpError::new(
                crate::broker::ReplyCode::ResourceLocked,
                format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                    self.vhost
                ),
            ));
        }
        Ok(h.clone())
    }

    pub(super) async fn handle_exchange(&mut self, ch: u16, m: exchange::AMQPMethod) -> Result<()> {
        use exchange::AMQPMethod as M;
        match m {
            M::Declare(d) => {
                let name = d.exchange.as_str().to_owned();
                if name.is_empty() {
                    return Err(AmqpError::access_refused("operation not permitted on the default exchange"));
                }
                let exists = {
                    let topo = self.node.topology();
                    topo.meta.vhosts.get(&self.vhost).is_some_and(|v| v.exchanges.contains_key(&name))
                };
                if d.passive {
                    if !exists {
                        return Err(crate::broker::Error::no_exchange(&self.vhost, &name).into());
                    }
                } else {
                    let kind = ExchangeType::parse(d.kind.as_str(), &d.arguments)?;
                    self.check_access(Access::Configure, "exchange", &name)?;
                    // As rabbit_channel: the reserved prefix only matters when creating, so an
                    // equivalent redeclare of amq.direct is fine.
                    if !exists {
                        name::check_not_reserved("exchange", &name)?;
                        let what = format!("exchange '{name}' in vhost '{}'", self.vhost);
                        argument::check_exchange_args(&d.arguments, &what)?;
                    }
                    self.meta(MetaCommand::DeclareExchange {
                        vhost: self.vhost.clone(),
                        name,
                        kind,
                        durable: d.durable,
                        auto_delete: d.auto_delete,
                        internal: d.internal,
                        args: d.arguments,
                        members: Vec::new(),
                    })
                    .await?;
                }
                if !d.nowait {
                    self.out.method(ch, AMQPClass::Exchange(M::DeclareOk(exchange::DeclareOk {})));
                }
                Ok(())
            }
            M::Delete(d) => {
                let name = d.exchange.as_str().to_owned();
                if name.is_empty() {
                    return Err(AmqpError::access_refused("operation not permitted on the default exchange"));
                }
                if name.starts_with(name::RESERVED_PREFIX) {
                    let vhost = &self.vhost;
                    return Err(AmqpError::access_refused(format!(
                        "deletion of system exchange '{name}' in vhost '{vhost}' not allowed"
                    )));
                }
                self.check_access(Access::Configure, "exchange", &name)?;
                self.meta(MetaCommand::DeleteExchange { vhost: self.vhost.clone(), name, if_unused: d.if_unused })
                    .await?;
                if !d.nowait {
                    self.out.method(ch, AMQPClass::Exchange(M::DeleteOk(exchange::DeleteOk {})));
                }
                Ok(())
            }
            M::Bind(b) => {
                let (src, dst) = (b.source.as_str().to_owned(), b.destination.as_str().to_owned());
                self.check_access(Access::Write, "exchange", name::permission_name(&dst))?;
                self.check_access(Access::Read, "exchange", name::permission_name(&src))?;
                self.meta(MetaCommand::Bind {
                    vhost: self.vhost.clone(),
                    source: src,
                    destination: Destination::Exchange(dst),
                    key: b.routing_key.to_string(),
                    args: b.arguments,
                })
                .await?;
                if !b.nowait {
                    self.out.method(ch, AMQPClass::Exchange(M::BindOk(exchange::BindOk {})));
                }
                Ok(())
            }
            M::Unbind(b) => {
                let (src, dst) = (b.source.as_str().to_owned(), b.destination.as_str().to_owned());
                self.check_access(Access::Write, "exchange", name::permission_name(&dst))?;
                self.check_access(Access::Read, "exchange", name::permission_name(&src))?;
                self.meta(MetaCommand::Unbind {
                    vhost: self.vhost.clone(),
                    source: src,
                    destination: Destination::Exchange(dst),
                    key: b.routing_key.to_string(),
                    args: b.arguments,
                })
                .await?;
                if !b.nowait {
                    self.out.method(ch, AMQPClass::Exchange(M::UnbindOk(exchange::UnbindOk {})));
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unexpected exchange method")),
        }
    }

    pub(super) async fn handle_queue(&mut self, ch: u16, m: queue::AMQPMethod) -> Result<()> {
        use queue::AMQPMethod as M;
        match m {
            M::Declare(d) => self.declare_queue(ch, d).await,
            M::Bind(b) => {
                let q = self.resolve_queue(ch, b.queue.as_str())?;
                // An empty queue name and an empty key both mean the last declared queue.
                let key = if b.queue.as_str().is_empty() && b.routing_key.as_str().is_empty() {
                    q.clone()
                } else {
                    b.routing_key.to_string()
                };
                self.bind_queue(&q, b.exchange.as_str(), key, b.arguments, true).await?;
                if !b.nowait {
                    self.out.method(ch, AMQPClass::Queue(M::BindOk(queue::BindOk {})));
                }
                Ok(())
            }
            M::Unbind(b) => {
                let q = self.resolve_queue(ch, b.queue.as_str())?;
                self.bind_queue(&q, b.exchange.as_str(), b.routing_key.to_string(), b.arguments, false).await?;
                self.out.method(ch, AMQPClass::Queue(M::UnbindOk(queue::UnbindOk {})));
                Ok(())
            }
            M::Purge(p) => {
                let q = self.resolve_queue(ch, p.queue.as_str())?;
                self.check_access(Access::Read, "queue", &q)?;
                let h = self.queue_handle(&q)?;
                let n = match self.call(&h, Command::Purge).await? {
                    Reply::Purged(n) => n,
                    Reply::Refused(e) => return Err(e.into()),
                    _ => return Err(crate::broker::Error::no_queue(&self.vhost, &q).into()),
                };
                if !p.nowait {
                    self.out.method(ch, AMQPClass::Queue(M::PurgeOk(queue::PurgeOk { message_count: n })));
                }
                Ok(())
            }
            M::Delete(d) => {
                let q = self.resolve_queue(ch, d.queue.as_str())?;
                self.check_access(Access::Configure, "queue", &q)?;
                let count = match self.queue_handle(&q) {
                    // Deleting a missing queue is not an error (RabbitMQ 3.x+).
                    Err(e) if e.code == crate::broker::ReplyCode::NotFound => 0,
                    Err(e) => return Err(e),
                    Ok(h) => {
                        match self.call(&h, Command::Delete { if_unused: d.if_unused, if_empty: d.if_empty }).await? {
                            Reply::Deleted(n) => {
                                self.meta(MetaCommand::DeleteQueue { vhost: self.vhost.clone(), name: q.clone() })
                                    .await?;
                                n
                            }
                            Reply::Refused(e) => return Err(e.into()),
                            _ => 0,
                        }
                    }
                };
                if !d.nowait {
                    self.out.method(ch, AMQPClass::Queue(M::DeleteOk(queue::DeleteOk { message_count: count })));
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unexpected queue method")),
        }
    }

    async fn bind_queue(&mut self, q: &str, exchange: &str, key: String, args: FieldTable, bind: bool) -> Result<()> {
        self.check_access(Access::Write, "queue", q)?;
        self.check_access(Access::Read, "exchange", name::permission_name(exchange))?;
        // An exclusive queue of another connection cannot be bound (405).
        if let Err(e) = self.queue_handle(q) {
            if e.code == crate::broker::ReplyCode::ResourceLocked {
                return Err(e);
            }
        }
        let destination = Destination::Queue(q.to_owned());
        let vhost = self.vhost.clone();
        let source = exchange.to_owned();
        let cmd = if bind {
            MetaCommand::Bind { vhost, source, destination, key, args }
        } else {
            MetaCommand::Unbind { vhost, source, destination, key, args }
        };
        self.meta(cmd).await.map(|_| ())
    }

    async fn declare_queue(&mut self, ch: u16, d: queue::Declare) -> Result<()> {
        let mut name = d.queue.as_str().to_owned();
        // Direct reply-to pseudo-queues: every declare of them is passive (RabbitMQ 4.x
        // rabbit_volatile_queue): the bare name and live addresses exist, others do not.
        if name == DIRECT_REPLY_TO || (name.starts_with(DIRECT_REPLY_TO) && self.node.direct_reply_exists(&name)) {
            self.declare_ok(ch, &name, (0, 1), d.nowait);
            return Ok(());
        }
        if name.starts_with(DIRECT_REPLY_TO) {
            return Err(crate::broker::Error::no_queue(&self.vhost, &name).into());
        }
        let (messages, consumers) = if d.passive {
            let name = self.resolve_queue(ch, &name)?;
            let h = self.queue_handle(&name)?;
            let counts = self.counts(&h).await?;
            self.chan(ch)?.last_queue = Some(name.clone());
            self.declare_ok(ch, &name, counts, d.nowait);
            return Ok(());
        } else {
            let mut args = d.arguments;
            // A plain durable declare gets the configured default queue type (RabbitMQ's
            // default queue type); exclusive, auto-delete and server-named queues stay classic.
            if self.node.config().default_queue_type == QueueType::Quorum
                && argument::get(&args, "x-queue-type").is_none()
                && d.durable
                && !d.exclusive
                && !d.auto_delete
                && !name.is_empty()
            {
                args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            }
            if name.is_empty() {
                if argument::get(&args, "x-queue-type").and_then(argument::as_str).as_deref() == Some("quorum") {
                    return Err(AmqpError::precondition(
                        "Cannot declare a server-named queue for type rabbit_quorum_queue",
                    ));
                }
                name = server_name();
            } else {
                name::check_not_reserved("queue", &name)?;
            }
            self.check_access(Access::Configure, "queue", &name)?;
            let reply = self
                .meta(MetaCommand::DeclareQueue {
                    vhost: self.vhost.clone(),
                    name: name.clone(),
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    args,
                    connection: self.id,
                    members: Vec::new(),
                })
                .await?;
            match reply {
                MetaReply::QueueDeclared { created: true } => (0, 0),
                _ => {
                    let h = self.queue_handle(&name)?;
                    self.counts(&h).await?
                }
            }
        };
        self.chan(ch)?.last_queue = Some(name.clone());
        self.declare_ok(ch, &name, (messages, consumers), d.nowait);
        Ok(())
    }

    async fn counts(&mut self, h: &QueueHandle) -> Result<(u32, u32)> {
        // A declare uses the queue: its `x-expires` starts over.
        let expires = {
            let topo = self.node.topology();
            let rec = topo.meta.vhosts.get(&h.key.vhost).and_then(|v| v.queues.get(&h.key.name));
            rec.is_some_and(|r| r.parsed.expires.is_some())
        };
        if expires {
            super::queue_io::cast(h, Command::Touch);
        }
        match self.call(h, Command::Stats).await? {
            Reply::Stats { messages, consumers, .. } => Ok((messages, consumers)),
            // A remote queue whose home node is down (`queue/remote/`).
            Reply::Refused(e) => Err(e.into()),
            _ => Ok((0, 0)),
        }
    }

    fn declare_ok(&mut self, ch: u16, name: &str, (message_count, consumer_count): (u32, u32), nowait: bool) {
        if !nowait {
            self.out.method(
                ch,
                AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: name.into(),
                    message_count,
                    consumer_count,
                })),
            );
        }
    }
}

/// A server-generated queue name: `amq.gen-` and 22 url-safe base64 characters, as RabbitMQ.
fn server_name() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{SERVER_NAMED_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
