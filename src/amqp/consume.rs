//! Consuming: `basic.qos`, `consume`, `cancel`, `get`, `ack`, `nack`, `reject`, `recover`.
//!
//! As RabbitMQ: prefetch applies per new consumer (`global=false`) or per channel
//! (`global=true`); `prefetch_size` is refused (540); an unknown delivery tag is 406; reusing a
//! consumer tag on a channel is 530; `recover` supports only `requeue=true` (540 otherwise);
//! direct reply-to consumers must be no-ack ([D:consumer-prefetch], [D:confirms]).

use super::channel::{ConsumerEntry, TxSettle, Unacked};
use super::connection::Connection;
use super::error::{AmqpError, Result};
use crate::broker::name::{CONSUMER_TAG_PREFIX, DIRECT_REPLY_TO};
use crate::broker::permission::Access;
use crate::ids::ChannelId;
use crate::queue::machine::{Command, ConsumerSpec, Holder, Outcome, Reply};
use crate::queue::runner::Request;
use crate::stats::Stat;
use amq_protocol::protocol::{AMQPClass, basic};
use base64::Engine;
use tokio::sync::oneshot;

fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Connection {
    pub(super) async fn handle_basic(&mut self, ch: u16, m: basic::AMQPMethod) -> Result<()> {
        use basic::AMQPMethod as M;
        match m {
            M::Qos(q) => {
                let c = self.chan(ch)?;
                if q.global {
                    c.prefetch_channel = q.prefetch_count as u32;
                } else {
                    c.prefetch_consumer = q.prefetch_count as u32;
                }
                self.out.method(ch, AMQPClass::Basic(M::QosOk(basic::QosOk {})));
                Ok(())
            }
            M::Consume(c) => self.consume(ch, c).await,
            M::Cancel(c) => {
                let tag = c.consumer_tag.to_string();
                let chan = self.chan(ch)?;
                if chan.direct_reply.as_ref().is_some_and(|(_, t)| *t == tag) {
                    if let Some((name, _)) = chan.direct_reply.take() {
                        self.node.unregister_direct_reply(&name);
                    }
                } else if let Some(entry) = chan.consumers.remove(&tag) {
                    // Wait for the queue, so no delivery for this tag follows cancel-ok.
                    let _ = self.call(&entry.queue, Command::Cancel { consumer: entry.id }).await;
                    // Its unused channel-wide credit goes to the channel's other consumers.
                    self.grant_credit(ch);
                }
                if !c.nowait {
                    self.out.method(
                        ch,
                        AMQPClass::Basic(M::CancelOk(basic::CancelOk { consumer_tag: tag.as_str().into() })),
                    );
                }
                Ok(())
            }
            M::Get(g) => self.get(ch, g).await,
            M::Ack(a) => self.settle_from_client(ch, TxSettle::Ack { tag: a.delivery_tag, multiple: a.multiple }),
            M::Reject(r) => self
                .settle_from_client(ch, TxSettle::Reject { tag: r.delivery_tag, multiple: false, requeue: r.requeue }),
            M::Nack(n) => self.settle_from_client(
                ch,
                TxSettle::Reject { tag: n.delivery_tag, multiple: n.multiple, requeue: n.requeue },
            ),
            M::Recover(r) => {
                self.recover(ch, r.requeue)?;
                self.out.method(ch, AMQPClass::Basic(M::RecoverOk(basic::RecoverOk {})));
                Ok(())
            }
            M::RecoverAsync(r) => self.recover(ch, r.requeue),
            _ => Err(AmqpError::command_invalid("unexpected basic method")),
        }
    }

    async fn consume(&mut self, ch: u16, c: basic::Consume) -> Result<()> {
        let mut tag = c.consumer_tag.to_string();
        if tag.is_empty() {
            tag = format!("{CONSUMER_TAG_PREFIX}{}", random_token());
        }
        let node = self.node.clone();
        let chan = self.chan(ch)?;
        if chan.consumers.contains_key(&tag) || chan.direct_reply.as_ref().is_some_and(|(_, t)| *t == tag) {
            return Err(AmqpError::not_allowed(format!("attempt to reuse consumer tag '{tag}'")));
        }
        if c.queue.as_str() == DIRECT_REPLY_TO {
            if !c.no_ack {
                return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
            }
            if chan.direct_reply.is_some() {
                return Err(AmqpError::precondition("reply consumer already set"));
            }
            let name = node.direct_reply_name(&random_token());
            chan.direct_reply = Some((name.clone(), tag.clone()));
            self.node.register_direct_reply(name, self.sink.clone(), ChannelId(ch));
        } else {
            let q = self.resolve_queue(ch, c.queue.as_str())?;
            self.check_access(Access::Read, "queue", &q)?;
            let handle = self.queue_handle(&q)?;
            let id = self.node.next_consumer_id();
            let connection = self.id;
            let sink = self.sink.clone();
            let chan = self.chan(ch)?;
            let prefetch = chan.prefetch_consumer;
            // A channel-wide limit makes the consumer credit-based; no-ack consumers are never
            // limited by prefetch.
            let credit = (chan.prefetch_channel > 0 && !c.no_ack).then_some(0);
            let priority =
                c.arguments.inner().get("x-priority").and_then(crate::broker::argument::as_i64).unwrap_or(0) as i32;
            if let Some(v) = c.arguments.inner().get("x-priority") {
                if crate::broker::argument::as_i64(v).is_none() {
                    return Err(AmqpError::precondition(format!(
                        "invalid arg 'x-priority' of type '{}'",
                        crate::broker::argument::type_name(v)
                    )));
                }
            }
            let spec = ConsumerSpec {
                id,
                tag: tag.as_str().into(),
                connection,
                channel: ChannelId(ch),
                prefetch,
                credit,
                no_ack: c.no_ack,
                exclusive: c.exclusive,
                priority,
            };
            // Register locally first: deliveries may arrive before the reply.
            let entry = ConsumerEntry {
                queue: handle.clone(),
                id,
                no_ack: c.no_ack,
                credit,
                exclusive: c.exclusive,
                prefetch,
                arguments: c.arguments.clone(),
            };
            chan.consumers.insert(tag.clone(), entry);
            let (tx, rx) = oneshot::channel();
            self.send_to(&handle, Request::Consume { spec, sink, reply: tx }).await?;
            match self.await_reply(&handle, rx).await? {
                Reply::Consumed => self.grant_credit(ch),
                Reply::Refused(e) => {
                    self.chan(ch)?.consumers.remove(&tag);
                    return Err(e.into());
                }
                _ => {}
            }
        }
        if !c.nowait {
            self.out.method(
                ch,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk { consumer_tag: tag.as_str().into() })),
            );
        }
        Ok(())
    }

    /// Sends channel-wide prefetch credit to queues (after the settles buffered before it).
    pub(super) fn grant_credit(&mut self, ch: u16) {
        let Some(c) = self.channels.get_mut(&ch) else { return };
        for (queue, consumer, add) in c.grant_credit() {
            super::queue_io::cast(&queue, Command::Credit { consumer, add });
        }
    }

    async fn get(&mut self, ch: u16, g: basic::Get) -> Result<()> {
        let q = self.resolve_queue(ch, g.queue.as_str())?;
        self.check_access(Access::Read, "queue", &q)?;
        let handle = self.queue_handle(&q)?;
        let holder = Holder::Get(self.id, ChannelId(ch));
        match self.call(&handle, Command::Get { holder, no_ack: g.no_ack }).await? {
            Reply::Got(Some(got)) => {
                // The runner reads bodies kept only in the log back before it replies.
                let Some(msg) = got.msg else {
                    return Err(crate::broker::Error::new(
                        crate::broker::ReplyCode::InternalError,
                        "message body unavailable",
                    )
                    .into());
                };
                self.count(Some(&handle), if g.no_ack { Stat::GetNoAck } else { Stat::Get }, 1);
                if got.redelivered {
                    self.count(Some(&handle), Stat::Redeliver, 1);
                }
                let c = self.chan(ch)?;
                let tag = c.next_tag();
                if !g.no_ack {
                    c.unacked.insert(tag, Unacked { queue: handle.clone(), id: got.id });
                }
                self.out.method(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                        delivery_tag: tag,
                        redelivered: got.redelivered,
                        exchange: msg.exchange.as_str().into(),
                        routing_key: msg.routing_key.as_str().into(),
                        message_count: got.remaining,
                    })),
                );
                let frame_max = self.frame_max;
                self.out.content(ch, &msg, frame_max);
                if self.tracing() {
                    self.trace_deliver(ch, &handle.key.name, &msg, got.redelivered);
                }
            }
            Reply::Got(None) => {
                self.count(Some(&handle), Stat::GetEmpty, 1);
                self.out.method(ch, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})));
            }
            Reply::Refused(e) => return Err(e.into()),
            _ => {}
        }
        Ok(())
    }

    fn settle_from_client(&mut self, ch: u16, s: TxSettle) -> Result<()> {
        let c = self.chan(ch)?;
        let (tag, multiple) = match s {
            TxSettle::Ack { tag, multiple } | TxSettle::Reject { tag, multiple, .. } => (tag, multiple),
        };
        if c.tx.is_some() {
            let known = !c.unacked.is_empty() && c.knows_tag(tag, multiple);
            return match c.tx.as_mut() {
                Some(tx) if known => {
                    tx.settles.push(s);
                    Ok(())
                }
                _ => Err(AmqpError::precondition(format!("unknown delivery tag {tag}"))),
            };
        }
        let outcome = match s {
            TxSettle::Ack { .. } => Outcome::Ack,
            TxSettle::Reject { requeue: true, .. } => Outcome::Requeue,
            TxSettle::Reject { requeue: false, .. } => Outcome::Discard,
        };
        self.apply_settle(ch, tag, multiple, outcome)
    }

    /// Settles delivery tags with their queues (sent after the current batch).
    pub(super) fn apply_settle(&mut self, ch: u16, tag: u64, multiple: bool, outcome: Outcome) -> Result<()> {
        let c = self.chan(ch)?;
        let Some(taken) = c.take_unacked(tag, multiple) else {
            return Err(AmqpError::precondition(format!("unknown delivery tag {tag}")));
        };
        for u in taken {
            if outcome == Outcome::Ack {
                self.count(Some(&u.queue), Stat::Ack, 1);
            }
            self.settle(&u.queue, outcome, u.id);
        }
        self.grant_credit(ch);
        Ok(())
    }

    fn recover(&mut self, ch: u16, requeue: bool) -> Result<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let c = self.chan(ch)?;
        let all = std::mem::take(&mut c.unacked);
        for (_, u) in all {
            self.settle(&u.queue, Outcome::Requeue, u.id);
        }
        self.grant_credit(ch);
        Ok(())
    }
}
