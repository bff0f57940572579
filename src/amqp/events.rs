//! What a connection does with events from queues (deliveries, confirms, cancellations,
//! direct replies) and how it gives back what it holds when a channel or the connection
//! closes.

use super::channel::{Channel, ChannelState, Unacked};
use super::connection::Connection;
use super::error::AmqpError;
use super::queue_io::cast;
use crate::meta::MetaCommand;
use crate::queue::ClientEvent;
use crate::queue::machine::{Command, Outcome};
use crate::stats::Stat;
use amq_protocol::protocol::{AMQPClass, basic};

impl Connection {
    pub(super) fn handle_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Deliveries { channel, queue, items } => {
                let frame_max = self.frame_max;
                let open = self.channels.get(&channel.0).is_some_and(|c| c.state == ChannelState::Open);
                if !open {
                    tracing::debug!(
                        connection = self.id.0,
                        channel = channel.0,
                        n = items.len(),
                        "deliveries to a closed channel given back"
                    );
                    for d in items.iter().filter(|d| !d.no_ack) {
                        self.settle(&queue, Outcome::Requeue, d.id);
                    }
                    return;
                }
                let tracing = self.tracing();
                for d in items {
                    let Some(c) = self.channels.get_mut(&channel.0) else {
                        return;
                    };
                    match c.consumers.get_mut(&*d.consumer_tag) {
                        // Cancelled meanwhile: give it back.
                        None if !d.no_ack => {
                            tracing::debug!(connection = self.id.0, tag = %d.consumer_tag, "delivery to an unknown consumer given back");
                            self.settle(&queue, Outcome::Requeue, d.id);
                            continue;
                        }
                        // A granted credit became an unacked message.
                        Some(entry) => entry.credit = entry.credit.map(|n| n.saturating_sub(1)),
                        None => {}
                    }
                    let tag = c.next_tag();
                    if !d.no_ack {
                        c.unacked.insert(tag, Unacked { queue: queue.clone(), id: d.id });
                    }
                    self.count(Some(&queue), if d.no_ack { Stat::DeliverNoAck } else { Stat::Deliver }, 1);
                    if d.redelivered {
                        self.count(Some(&queue), Stat::Redeliver, 1);
                    }
                    self.out.deliver(
                        channel.0,
                        &d.consumer_tag,
                        tag,
                        d.redelivered,
                        &d.msg.exchange,
                        &d.msg.routing_key,
                    );
                    self.out.content(channel.0, &d.msg, frame_max);
                    if tracing {
                        self.trace_deliver(channel.0, &queue.key.name, &d.msg, d.redelivered);
                    }
                }
            }
            ClientEvent::Confirms { channel, seqs, ok } => self.confirmed(channel.0, &seqs, ok),
            ClientEvent::NotTaken { channel, seqs } => self.confirmed(channel.0, &seqs, false),
            ClientEvent::AckTimeout { channel, timeout_ms } => {
                if self.channels.get(&channel.0).is_some_and(|c| c.state == ChannelState::Open) {
                    tracing::warn!(connection = self.id.0, channel = channel.0, timeout_ms, "consumer ack timed out");
                    let text = format!(
                        "delivery acknowledgement on channel {} timed out. Timeout value used: {timeout_ms} ms. \
                         This timeout value can be configured, see consumers doc guide to learn more",
                        channel.0
                    );
                    self.channel_error(channel.0, AmqpError::precondition(text));
                }
            }
            ClientEvent::ConsumerCancelled { channel, consumer_tag } => {
                let Some(c) = self.channels.get_mut(&channel.0) else {
                    return;
                };
                let removed = c.consumers.remove(&*consumer_tag).is_some();
                if removed {
                    self.grant_credit(channel.0);
                }
                if removed && self.caps.consumer_cancel_notify {
                    self.out.method(
                        channel.0,
                        AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                            consumer_tag: consumer_tag.as_ref().into(),
                            nowait: true,
                        })),
                    );
                }
            }
            ClientEvent::DirectReply { channel, msg } => {
                let frame_max = self.frame_max;
                let Some(c) = self.channels.get_mut(&channel.0) else {
                    return;
                };
                let Some((_, ctag)) = c.direct_reply.clone() else {
                    return;
                };
                let tag = c.next_tag();
                self.out.deliver(channel.0, &ctag, tag, false, &msg.exchange, &msg.routing_key);
                self.out.content(channel.0, &msg, frame_max);
            }
        }
    }

    /// Gives back what a closing channel holds: cancels its consumers, requeues its unacked
    /// messages (they keep their place and come back redelivered).
    pub(super) fn release_channel(&mut self, c: &mut Channel) {
        for (_, cons) in c.consumers.drain() {
            cast(&cons.queue, Command::Cancel { consumer: cons.id });
        }
        let unacked = std::mem::take(&mut c.unacked);
        for (_, u) in unacked {
            self.settle(&u.queue, Outcome::Requeue, u.id);
        }
        if let Some((name, _)) = c.direct_reply.take() {
            self.node.unregister_direct_reply(&name);
        }
    }

    pub(super) async fn cleanup(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            if let Some(mut c) = self.channels.remove(&id) {
                self.release_channel(&mut c);
            }
        }
        self.inbox.close();
        let mut late: Vec<ClientEvent> = self.deferred.drain(..).collect();
        while let Ok(ev) = self.inbox.try_recv() {
            late.push(ev);
        }
        for ev in late {
            if let ClientEvent::Deliveries { queue, items, .. } = ev {
                for d in items.iter().filter(|d| !d.no_ack) {
                    self.settle(&queue, Outcome::Requeue, d.id);
                }
            }
        }
        self.flush_settles().await;
        self.node.propose_meta(MetaCommand::ConnectionClosed { connection: self.id }).await;
    }
}
