//! How a runner carries out its machine's effects: deliveries grouped per channel (bodies
//! read back from the log in one batch), cancellations, ack timeouts, auto-delete and dead
//! letters; and the follow-up commands for deliveries that found no connection (cancel the
//! consumer, or detach a replicated queue's, and requeue its messages).

use super::forward::spawn_forwarder;
use super::{Runner, now_ms};
use crate::ids::{ChannelId, ConnectionId, ConsumerId, MsgId};
use crate::queue::Message;
use crate::queue::dead_letter::{self, Reason};
use crate::queue::event::{ClientEvent, ClientSink, Delivery};
use crate::queue::machine::{Command, Effect, Outcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

impl Runner {
    /// Carries out effects, and the follow-up commands they need (deliveries to a connection
    /// that is gone are requeued), until quiet.
    pub(super) async fn carry_out(&mut self, now: u64, mut effects: Vec<Effect>) {
        while !effects.is_empty() {
            let followups = self.execute(&mut effects).await;
            if followups.is_empty() {
                break;
            }
            let replicated = self.fenced;
            match self.propose(now, followups, replicated).await {
                Ok(results) => effects.extend(results.into_iter().flat_map(|(_, fx)| fx)),
                Err(e) => tracing::error!(queue = %self.key, error = %e, "requeue after a lost delivery failed"),
            }
        }
    }

    /// A replicated queue's leader delivers only while its leadership is confirmed
    /// (`DurableGroup::confirm_leadership`): one that was paused or cut off long enough for
    /// another to be elected must not deliver what its old term decided (the new leader gave
    /// those messages back). Unconfirmed, its deliveries are taken out of `effects` and the
    /// messages requeued instead (a no-op where it no longer leads); `None` when confirmed.
    async fn fence(&mut self, effects: &mut Vec<Effect>) -> Option<Vec<Command>> {
        let super::store::Store::Durable(g, _) = &self.store else { return None };
        if !self.fenced || !effects.iter().any(|e| matches!(e, Effect::Deliver { .. })) {
            return None;
        }
        let confirmed = g.confirm_leadership().await;
        tracing::debug!(queue = %self.key, confirmed, "leadership checked before delivering");
        if confirmed {
            return None;
        }
        let mut ids = Vec::new();
        effects.retain(|e| match e {
            Effect::Deliver { consumer, id, .. } => {
                if self.sinks.get(consumer).is_some_and(|s| !s.no_ack) {
                    ids.push(*id);
                }
                false
            }
            _ => true,
        });
        tracing::warn!(queue = %self.key, messages = ids.len(), "leadership not confirmed: deliveries held back");
        let mut followups = self.execute_rest(effects).await;
        if !ids.is_empty() {
            followups.push(Command::Settle { ids, outcome: Outcome::Requeue });
        }
        Some(followups)
    }

    /// Carries out what is left once deliveries were held back.
    async fn execute_rest(&mut self, effects: &mut Vec<Effect>) -> Vec<Command> {
        Box::pin(self.execute(effects)).await
    }

    /// Republishes a message to the queue's dead-letter exchange, with its death recorded.
    pub(super) async fn dead_letter(&self, msg: &Message, reason: Reason) {
        // The target in force now (a policy may have changed it).
        let Some(target) = self.store.read(|m| m.config().dead_letter.clone()) else { return };
        let (out, keys) = dead_letter::dead_letter(msg, &self.key.name, reason, &target, now_ms() / 1000);
        let targets = (self.hooks.dead_letter)(&self.key.vhost, &out, &keys);
        if !targets.is_empty() {
            let fwd = self.dead_letters.get_or_init(spawn_forwarder);
            let _ = fwd.send((targets, Arc::new(out))).await;
        }
    }

    /// Reads back, in one batch, the bodies the machine did not hold of deliveries (to
    /// consumers still connected) and dead letters.
    pub(super) fn load_bodies(&self, effects: &[Effect]) -> HashMap<MsgId, Arc<Message>> {
        let ids: Vec<MsgId> = effects
            .iter()
            .filter_map(|fx| match fx {
                Effect::Deliver { consumer, id, msg: None, .. } if self.sinks.contains_key(consumer) => Some(*id),
                Effect::DeadLetter { id, msg: None, .. } => Some(*id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return HashMap::new();
        }
        let msgs = self.store.load(&self.key, &ids);
        ids.into_iter().zip(msgs).filter_map(|(id, m)| Some((id, m?))).collect()
    }

    /// Carries out effects; returns the commands needed for deliveries that could not be made
    /// (the connection is gone): cancel the consumer and requeue its messages.
    pub(super) async fn execute(&mut self, effects: &mut Vec<Effect>) -> Vec<Command> {
        if let Some(requeue) = self.fence(effects).await {
            return requeue;
        }
        // Per channel, in dispatch order: two consumers on one channel see strict
        // round-robin on the wire, as RabbitMQ delivers them.
        let mut per_channel: BTreeMap<(ConnectionId, ChannelId), (ClientSink, Vec<(ConsumerId, Delivery)>)> =
            BTreeMap::new();
        let mut lost: Vec<(ConsumerId, Vec<MsgId>)> = Vec::new();
        let mut unreadable = Vec::new();
        let mut loaded = self.load_bodies(effects);
        for fx in effects.drain(..) {
            match fx {
                Effect::Deliver { consumer, id, msg, redelivered, delivery_count } => {
                    let Some(s) = self.sinks.get(&consumer) else {
                        lost.push((consumer, vec![id]));
                        continue;
                    };
                    let Some(msg) = msg.or_else(|| loaded.remove(&id)) else {
                        unreadable.push(id);
                        continue;
                    };
                    let msg = match delivery_count {
                        Some(n) => Arc::new(msg.with_delivery_count(n)),
                        None => msg,
                    };
                    let d = Delivery { consumer_tag: s.tag.clone(), id, msg, redelivered, no_ack: s.no_ack };
                    per_channel
                        .entry((s.connection, s.channel))
                        .or_insert_with(|| (s.sink.clone(), Vec::new()))
                        .1
                        .push((consumer, d));
                }
                Effect::ConsumerCancelled { consumer } => {
                    tracing::debug!(queue = %self.key, consumer = consumer.0, "consumer cancelled by the queue");
                    if let Some(s) = self.sinks.remove(&consumer) {
                        let ev = ClientEvent::ConsumerCancelled { channel: s.channel, consumer_tag: s.tag };
                        let _ = s.sink.send(ev).await;
                    }
                }
                Effect::AutoDelete => (self.hooks.auto_delete)((*self.key).clone()),
                Effect::AckTimeout { consumer, timeout_ms } => {
                    if let Some(s) = self.sinks.get(&consumer) {
                        let _ = s.sink.send(ClientEvent::AckTimeout { channel: s.channel, timeout_ms }).await;
                    }
                }
                Effect::DeadLetter { id, msg, reason } => match msg.or_else(|| loaded.remove(&id)) {
                    Some(msg) => self.dead_letter(&msg, reason).await,
                    None => tracing::error!(queue = %self.key, id = id.0, "a dead letter's body is gone; dropped"),
                },
            }
        }
        let me = self.deliver_as.upgrade();
        if !per_channel.is_empty() {
            self.flow.delivered(std::time::Instant::now());
            let n: usize = per_channel.values().map(|(_, items)| items.len()).sum();
            tracing::debug!(queue = %self.key, deliveries = n, "delivering");
        }
        for ((_, channel), (sink, items)) in per_channel {
            let Some(me) = me.as_ref() else {
                tracing::debug!(queue = %self.key, "deliveries dropped: the queue's handle is gone");
                continue;
            };
            let owners: Vec<(ConsumerId, MsgId, bool)> = items.iter().map(|(c, d)| (*c, d.id, d.no_ack)).collect();
            let items = items.into_iter().map(|(_, d)| d).collect();
            if sink.send(ClientEvent::Deliveries { channel, queue: me.clone(), items }).await.is_err() {
                for (consumer, id, no_ack) in owners {
                    let pos = match lost.iter().position(|(c, _)| *c == consumer) {
                        Some(p) => p,
                        None => {
                            lost.push((consumer, Vec::new()));
                            lost.len() - 1
                        }
                    };
                    if !no_ack {
                        lost[pos].1.push(id);
                    }
                }
            }
        }
        let mut followups = Vec::new();
        if !unreadable.is_empty() {
            // Storage lost them (logged by `load`): drop them rather than retry forever.
            followups.push(Command::Settle { ids: unreadable, outcome: Outcome::Discard });
        }
        for (consumer, ids) in lost {
            self.sinks.remove(&consumer);
            if self.fenced {
                // A replicated queue's consumer may reach the leader again by another way (its
                // node's front attaches it): detached, not cancelled, and what it held goes back.
                tracing::debug!(queue = %self.key, consumer = consumer.0, "deliveries found no connection: detached");
                followups.push(Command::Detach { consumers: vec![consumer] });
                followups.push(Command::Settle { ids, outcome: Outcome::Requeue });
            } else {
                tracing::debug!(queue = %self.key, consumer = consumer.0, "deliveries found no connection: cancelled");
                followups.push(Command::Cancel { consumer });
                followups.push(Command::Settle { ids, outcome: Outcome::Requeue });
            }
        }
        followups
    }
}
