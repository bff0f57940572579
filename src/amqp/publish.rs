//! Publishing: content assembly, validation, routing, mandatory returns, publisher confirms,
//! transactions and direct reply-to.
//!
//! RabbitMQ behaviour copied: `basic.return` (312 NO_ROUTE) is sent before the confirm of an
//! unroutable mandatory message; unroutable messages are confirmed at once; confirms may cover
//! several sequence numbers with `multiple`; `user-id` must equal the login (406);
//! `immediate` is refused (540); CC/BCC add routing keys and BCC is removed before delivery
//! ([D:confirms], [D:sender-selected], [D:validated-user-id], [D:direct-reply-to]).

use super::channel::{ConfirmState, PendingContent, TxPublish, TxSettle, TxState};
use super::connection::Connection;
use super::error::{AmqpError, Result};
use super::frame::{self, FRAME_HEADER, RawFrame};
use crate::broker::name::{self, DIRECT_REPLY_TO};
use crate::broker::permission::Access;
use crate::ids::ChannelId;
use crate::queue::machine::Outcome;
use crate::queue::message::encode_header;
use crate::queue::runner::{ConfirmTo, Request};
use crate::queue::{Body, Message, QueueHandle};
use crate::stats::Stat;
use amq_protocol::protocol::{AMQPClass, basic, confirm, tx};
use amq_protocol::types::{AMQPValue, FieldTable};
use std::sync::Arc;

impl Connection {
    pub(super) fn start_publish(&mut self, ch: u16, p: basic::Publish) -> Result<()> {
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        self.has_published = true;
        self.chan(ch)?.content = Some(PendingContent {
            exchange: p.exchange.to_string(),
            routing_key: p.routing_key.to_string(),
            mandatory: p.mandatory,
            header: None,
            body: Vec::new(),
            received: 0,
        });
        Ok(())
    }

    /// A content header or body frame on an open channel.
    pub(super) async fn handle_content(&mut self, ch: u16, f: RawFrame) -> Result<()> {
        let max = self.node.config().max_message_size;
        let c = self.chan(ch)?;
        let Some(pending) = c.content.as_mut() else {
            return Err(AmqpError::unexpected_frame("expected method frame, got non method frame instead"));
        };
        if f.kind == FRAME_HEADER {
            if pending.header.is_some() {
                return Err(AmqpError::unexpected_frame("expected content body, got non content body frame instead"));
            }
            if f.payload.len() >= 2 && u16::from_be_bytes([f.payload[0], f.payload[1]]) != 60 {
                let class = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                return Err(AmqpError::unexpected_frame(format!(
                    "expected content header for class 60, got one for class {class} instead"
                ))
                .at(60, 40));
            }
            let h = frame::decode_header(&f.payload)?;
            if h.body_size > max {
                c.content = None;
                return Err(AmqpError::precondition(format!(
                    "message size {} is larger than configured max size {max}",
                    h.body_size
                )));
            }
            let done = h.body_size == 0;
            pending.header = Some((h, f.payload));
            if !done {
                return Ok(());
            }
        } else {
            let Some((h, _)) = &pending.header else {
                return Err(AmqpError::unexpected_frame(
                    "expected content header for class 60, got non content header frame instead",
                ));
            };
            pending.received += f.payload.len() as u64;
            if pending.received > h.body_size {
                return Err(AmqpError::frame("content body frame exceeds remaining content size"));
            }
            pending.body.push(f.payload);
            if pending.received < h.body_size {
                return Ok(());
            }
        }
        let Some(pending) = c.content.take() else {
            return Ok(());
        };
        self.publish(ch, pending).await
    }

    /// A complete message: validate, then route now or buffer in the transaction.
    async fn publish(&mut self, ch: u16, p: PendingContent) -> Result<()> {
        let Some((header, raw)) = p.header else {
            return Ok(());
        };
        // The body frames are kept as they came: never joined, never copied.
        let body = Body::from_parts(p.body);
        self.check_access(Access::Write, "exchange", name::permission_name(&p.exchange))?;
        if let Some(uid) = header.properties.user_id() {
            if uid.as_str() != self.user {
                return Err(AmqpError::precondition(format!(
                    "user_id property set to '{}' but authenticated user was '{}'",
                    uid.as_str(),
                    self.user
                )));
            }
        }
        {
            let topo = self.node.topology();
            let Some(v) = topo.meta.vhosts.get(&self.vhost) else {
                return Err(AmqpError::not_allowed("vhost gone"));
            };
            match v.exchanges.get(&p.exchange) {
                None => {
                    return Err(crate::broker::Error::no_exchange(&self.vhost, &p.exchange).into());
                }
                Some(x) if x.internal => {
                    return Err(AmqpError::access_refused(format!(
                        "cannot publish to internal exchange '{}' in vhost '{}'",
                        p.exchange, self.vhost
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(e) = header.properties.expiration() {
            check_expiration(e.as_str())?;
        }
        let mut props = header.properties;
        let mut rewrite = false;
        if props.reply_to().as_ref().is_some_and(|r| r.as_str() == DIRECT_REPLY_TO) {
            let Some((name, _)) = self.chan(ch)?.direct_reply.clone() else {
                return Err(AmqpError::precondition("fast reply consumer does not exist"));
            };
            props = props.with_reply_to(name.as_str().into());
            rewrite = true;
        }
        let mut keys = vec![p.routing_key.clone()];
        if let Some(h) = props.headers() {
            for k in ["CC", "BCC"] {
                if let Some(AMQPValue::FieldArray(a)) = h.inner().get(k) {
                    keys.extend(a.as_slice().iter().filter_map(crate::broker::argument::as_str));
                }
            }
            if h.inner().contains_key("BCC") {
                let mut h = h.clone();
                let mut m = h.inner().clone();
                m.remove("BCC");
                h = FieldTable::from(m);
                props = props.with_headers(h);
                rewrite = true;
            }
        }
        let header_bytes = if rewrite { encode_header(header.body_size, &props) } else { raw };
        let msg = Arc::new(Message {
            exchange: p.exchange,
            routing_key: p.routing_key,
            properties: props,
            header: header_bytes,
            body,
        });
        let c = self.chan(ch)?;
        if let Some(tx) = c.tx.as_mut() {
            tx.publishes.push(TxPublish { msg, mandatory: p.mandatory, keys });
            return Ok(());
        }
        let seq = c.confirm.as_mut().map(|cs| {
            cs.last_seq += 1;
            cs.last_seq
        });
        self.route_and_send(ch, msg, p.mandatory, seq, &keys).await
    }

    /// Routes a message and hands it to its queues; returns it if unroutable and mandatory.
    async fn route_and_send(
        &mut self,
        ch: u16,
        msg: Arc<Message>,
        mandatory: bool,
        seq: Option<u64>,
        keys: &[String],
    ) -> Result<()> {
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        // Direct reply-to responses bypass queues.
        if msg.exchange.is_empty() && msg.routing_key.starts_with(DIRECT_REPLY_TO) {
            let delivered = self.node.deliver_direct_reply(&msg.routing_key, msg.clone()).await;
            if !delivered && mandatory {
                self.basic_return(ch, &msg);
            }
            if let Some(seq) = seq {
                self.confirmed_now(ch, seq);
            }
            return Ok(());
        }
        let topo = self.node.topology();
        let routed = topo.route(&self.vhost, &msg.exchange, &key_refs, msg.properties.headers().as_ref());
        let handles = routed.queues;
        if let Some(x) = routed.exchange {
            self.tally.add(x, Stat::PublishIn, 1);
            if !handles.is_empty() {
                self.tally.add(x, Stat::PublishOut, 1);
            }
        }
        if routed.tracing {
            self.trace_publish(ch, &msg, &handles);
        }
        drop(topo);
        self.count(None, Stat::Publish, 1);
        if handles.is_empty() {
            if mandatory {
                self.count(None, Stat::ReturnUnroutable, 1);
                self.basic_return(ch, &msg);
            } else {
                self.count(None, Stat::DropUnroutable, 1);
            }
            if let Some(seq) = seq {
                self.confirmed_now(ch, seq);
            }
            return Ok(());
        }
        if let Some(seq) = seq {
            if let Some(cs) = self.chan(ch)?.confirm.as_mut() {
                cs.outstanding.insert(seq, handles.len() as u32);
            }
        }
        for h in &handles {
            self.tally.add(&h.stats, Stat::Publish, 1);
            let confirm = seq.map(|seq| ConfirmTo { sink: self.sink.clone(), channel: ChannelId(ch), seq });
            // A queue deleted meanwhile simply does not take the message.
            if self.send_to(h, Request::Publish { msg: msg.clone(), confirm }).await.is_err() {
                if let Some(seq) = seq {
                    self.confirmed(ch, &[seq], true);
                }
            }
            if h.flow.is_closed() {
                self.held_by_queue(h);
            }
        }
        Ok(())
    }

    /// The queue holds its publishers: this connection stops reading once the frames it has
    /// read are handled, until the queue lets it go (`queue::flow`). A connection consuming
    /// from that queue itself is not held: its own acks would wait behind the gate.
    fn held_by_queue(&mut self, h: &QueueHandle) {
        if self.held_by.iter().any(|g| Arc::ptr_eq(g, &h.flow)) {
            return;
        }
        if self.channels.values().any(|c| c.consumers.values().any(|e| e.queue.same_queue(h))) {
            return;
        }
        self.held_by.push(h.flow.clone());
    }

    fn basic_return(&mut self, ch: u16, msg: &Message) {
        self.out.method(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: msg.exchange.as_str().into(),
                routing_key: msg.routing_key.as_str().into(),
            })),
        );
        let frame_max = self.frame_max;
        self.out.content(ch, msg, frame_max);
    }

    fn confirmed_now(&mut self, ch: u16, seq: u64) {
        if let Some(cs) = self.channels.get_mut(&ch).and_then(|c| c.confirm.as_mut()) {
            cs.outstanding.remove(&seq);
        }
        self.send_confirms(ch);
    }

    /// One queue accepted these publishes.
    pub(super) fn confirmed(&mut self, ch: u16, seqs: &[u64], ok: bool) {
        let Some(cs) = self.channels.get_mut(&ch).and_then(|c| c.confirm.as_mut()) else {
            return;
        };
        for seq in seqs {
            if let Some(n) = cs.outstanding.get_mut(seq) {
                if !ok {
                    cs.nacked.insert(*seq);
                }
                *n -= 1;
                if *n == 0 {
                    cs.outstanding.remove(seq);
                }
            }
        }
        self.send_confirms(ch);
    }

    fn send_confirms(&mut self, ch: u16) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.state != super::channel::ChannelState::Open {
            return;
        }
        let before = c.confirm.as_ref().map_or(0, |cs| cs.acked_upto);
        while let Some((tag, multiple, ack)) = c.confirm.as_mut().and_then(ConfirmState::next_settle) {
            let m = if ack {
                basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple })
            } else {
                basic::AMQPMethod::Nack(basic::Nack { delivery_tag: tag, multiple, requeue: false })
            };
            self.out.method(ch, AMQPClass::Basic(m));
        }
        let after = c.confirm.as_ref().map_or(0, |cs| cs.acked_upto);
        self.count(None, Stat::Confirm, after - before);
    }

    pub(super) fn confirm_select(&mut self, ch: u16) -> Result<()> {
        let c = self.chan(ch)?;
        if c.tx.is_some() {
            return Err(AmqpError::precondition("cannot switch from tx to confirm mode"));
        }
        if c.confirm.is_none() {
            c.confirm = Some(ConfirmState::default());
        }
        self.out.method(ch, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})));
        Ok(())
    }

    pub(super) async fn handle_tx(&mut self, ch: u16, m: tx::AMQPMethod) -> Result<()> {
        match m {
            tx::AMQPMethod::Select(_) => {
                let c = self.chan(ch)?;
                if c.confirm.is_some() {
                    return Err(AmqpError::precondition("cannot switch from confirm to tx mode"));
                }
                if c.tx.is_none() {
                    c.tx = Some(TxState::default());
                }
                self.out.method(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
                let c = self.chan(ch)?;
                let Some(t) = c.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                let work = std::mem::take(t);
                for p in work.publishes {
                    self.route_and_send(ch, p.msg, p.mandatory, None, &p.keys).await?;
                }
                for s in work.settles {
                    match s {
                        TxSettle::Ack { tag, multiple } => self.apply_settle(ch, tag, multiple, Outcome::Ack)?,
                        TxSettle::Reject { tag, multiple, requeue } => self.apply_settle(
                            ch,
                            tag,
                            multiple,
                            if requeue { Outcome::Requeue } else { Outcome::Discard },
                        )?,
                    }
                }
                self.out.method(ch, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})));
                Ok(())
            }
            tx::AMQPMethod::Rollback(_) => {
                let c = self.chan(ch)?;
                let Some(t) = c.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                *t = TxState::default();
                self.out.method(ch, AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})));
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unexpected tx method")),
        }
    }
}

/// Validates the `expiration` property as RabbitMQ's `rabbit_basic:parse_expiration`: a
/// non-negative integer number of milliseconds, as a string.
fn check_expiration(e: &str) -> Result<()> {
    let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    let reason = if n == 0 {
        "no_integer".to_owned()
    } else if n < digits.len() {
        format!("{{leftover_string,\"{}\"}}", &digits[n..])
    } else if e.starts_with('-') {
        format!("{{value_negative,{e}}}")
    } else {
        return Ok(());
    };
    Err(AmqpError::precondition(format!("invalid expiration '{e}': {reason}")))
}

#[cfg(test)]
mod tests {
    use super::check_expiration;

    #[test]
    fn expiration_must_be_a_non_negative_integer() {
        assert!(check_expiration("60000").is_ok());
        assert!(check_expiration("0").is_ok());
        assert_eq!(
            check_expiration("soon").unwrap_err().text,
            "PRECONDITION_FAILED - invalid expiration 'soon': no_integer"
        );
        assert_eq!(
            check_expiration("-5").unwrap_err().text,
            "PRECONDITION_FAILED - invalid expiration '-5': {value_negative,-5}"
        );
        assert_eq!(
            check_expiration("10s").unwrap_err().text,
            "PRECONDITION_FAILED - invalid expiration '10s': {leftover_string,\"s\"}"
        );
    }
}
