//! Proposing a batch of requests and answering it once applied. Batches are submitted to
//! the store in the order they were taken from the inbox, and the log keeps that order; a
//! runner can have [`IN_FLIGHT`] of them proposed at once (a publish does not wait behind the
//! commit of an ack proposed just before it), and answers them strictly in that order.

use super::lead::Lead;
use super::store::{Proposal, Proposed};
use super::{ConfirmTo, Reply, Request, Runner};
use crate::ids::{ChannelId, ConsumerId};
use crate::queue::event::{ClientEvent, ClientSink};
use crate::queue::machine::{Command, QueueMachine};
use crate::raft::GroupError;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use tokio::sync::oneshot;

/// Most batches a runner has proposed and not yet answered.
pub(super) const IN_FLIGHT: usize = 4;

/// Batches proposed and not yet answered, in the order they were proposed.
pub(super) type InFlight = FuturesOrdered<BoxFuture<'static, (u64, Vec<Post>, Proposed)>>;

/// What to do with a request's reply once its batch is applied.
pub(super) enum Post {
    Confirm(Option<ConfirmTo>),
    Consume(ConsumerId, oneshot::Sender<Reply>),
    Reply(oneshot::Sender<Reply>),
    /// A consumer attached again (its sink is dropped if the queue no longer knows it).
    Attach(ConsumerId, oneshot::Sender<Reply>),
    /// Answered from the applied state, after the batch (reads stay out of the log).
    Stats(oneshot::Sender<Reply>),
    Nothing,
}

impl Runner {
    /// Answers every batch in flight, in order.
    pub(super) async fn drain(&mut self, inflight: &mut InFlight) {
        while let Some((now, posts, r)) = inflight.next().await {
            self.answer(now, posts, r).await;
        }
    }

    /// Proposes a batch of requests. Its answers (replies, confirms, then its effects) come
    /// once it is applied, in the order batches were submitted: at once when nothing is in
    /// flight and the store answered already, else through `inflight`.
    pub(super) async fn serve_batch(
        &mut self,
        now: u64,
        batch: &mut Vec<Request>,
        lead: &mut Option<Lead>,
        inflight: &mut InFlight,
    ) {
        let deleting = batch.iter().any(|r| matches!(r, Request::Cast { cmd: Command::Delete { .. } }));
        if lead.is_some() && deleting {
            // The metadata deleted the queue: every member retires at once, the leader too,
            // without proposing (the others stopped already: no majority would take it); the
            // connections cancel their consumers themselves (`node/queues.rs`).
            return self.refuse(batch, None).await;
        }
        if let Some(l) = lead.as_mut() {
            if !l.settled() {
                // Taking over proposes on its own: what is in flight is answered first.
                self.drain(inflight).await;
            }
            if !self.serve_or_wait(l).await {
                let hint = l.hint();
                return self.refuse(batch, hint).await;
            }
        }
        let replicated = lead.is_some();
        let mut cmds = Vec::with_capacity(batch.len());
        let mut posts = Vec::with_capacity(batch.len());
        for req in batch.drain(..) {
            match req {
                Request::Publish { msg, confirm } => {
                    cmds.push(Command::Enqueue { msg });
                    posts.push(Post::Confirm(confirm));
                }
                // Register the sink first: the consume (or attach) itself may dispatch to it.
                Request::Consume { spec, sink, reply } => {
                    tracing::debug!(queue = %self.key, consumer = spec.id.0, "consume");
                    self.register(&spec, sink);
                    posts.push(Post::Consume(spec.id, reply));
                    cmds.push(Command::Consume(spec));
                }
                Request::Attach { spec, sink, reply } => {
                    tracing::debug!(queue = %self.key, consumer = spec.id.0, "attach");
                    self.register(&spec, sink);
                    posts.push(Post::Attach(spec.id, reply));
                    cmds.push(Command::Attach { consumers: vec![spec.id] });
                }
                Request::Call { cmd: Command::Stats, reply } => posts.push(Post::Stats(reply)),
                Request::Call { cmd, reply } => {
                    cmds.push(cmd);
                    posts.push(Post::Reply(reply));
                }
                Request::Cast { cmd } => {
                    match &cmd {
                        Command::Cancel { consumer } => {
                            tracing::debug!(queue = %self.key, consumer = consumer.0, "cancel");
                            self.sinks.remove(consumer);
                        }
                        Command::Detach { consumers } => tracing::debug!(queue = %self.key, ?consumers, "detach"),
                        _ => {}
                    }
                    cmds.push(cmd);
                    posts.push(Post::Nothing);
                }
            }
        }
        match self.submit(now, cmds, replicated).await {
            Proposal::Done(r) if inflight.is_empty() => self.answer(now, posts, r).await,
            Proposal::Done(r) => inflight.push_back(Box::pin(std::future::ready((now, posts, r)))),
            Proposal::Pending(p) => inflight.push_back(Box::pin(async move { (now, posts, p.await) })),
        }
    }

    /// Answers a batch that was applied (or failed) and carries out its effects.
    pub(super) async fn answer(&mut self, now: u64, posts: Vec<Post>, proposed: Proposed) {
        let results = match proposed {
            Ok(r) => r,
            Err(e) => {
                // Not applied (or not known to be): publishers get a nack, callers an error
                // (their reply channel closes; `NotLeader` when leadership moved meanwhile, so
                // they may go to the new leader), consumers registered for this batch are
                // dropped.
                tracing::error!(queue = %self.key, error = %e, "proposal failed");
                let moved = match e {
                    GroupError::NotLeader(l) => Some(l),
                    _ => None,
                };
                for post in posts {
                    match post {
                        Post::Confirm(Some(c)) => {
                            let _ = c
                                .sink
                                .send(ClientEvent::Confirms { channel: c.channel, seqs: vec![c.seq], ok: false })
                                .await;
                        }
                        Post::Consume(id, tx) | Post::Attach(id, tx) => {
                            self.sinks.remove(&id);
                            if let Some(l) = moved {
                                let _ = tx.send(Reply::NotLeader(l));
                            }
                        }
                        Post::Reply(tx) | Post::Stats(tx) => {
                            if let Some(l) = moved {
                                let _ = tx.send(Reply::NotLeader(l));
                            }
                        }
                        _ => {}
                    }
                }
                return;
            }
        };
        let mut effects = Vec::new();
        let mut confirms: Vec<(ClientSink, ChannelId, bool, Vec<u64>)> = Vec::new();
        let mut results = results.into_iter();
        for post in posts {
            if let Post::Stats(reply) = post {
                let _ = reply.send(self.store.read(QueueMachine::stats));
                continue;
            }
            let Some((reply, fx)) = results.next() else { break };
            effects.extend(fx);
            match post {
                Post::Confirm(Some(c)) => {
                    // A publish the length limit refused is nacked (`x-overflow` reject-publish).
                    let ok = !matches!(reply, Reply::Rejected);
                    match confirms.last_mut() {
                        Some((s, ch, k, seqs)) if *ch == c.channel && *k == ok && s.same_channel(&c.sink) => {
                            seqs.push(c.seq)
                        }
                        _ => confirms.push((c.sink, c.channel, ok, vec![c.seq])),
                    }
                }
                Post::Consume(id, tx) => {
                    if !matches!(reply, Reply::Consumed) {
                        self.sinks.remove(&id);
                    }
                    let _ = tx.send(reply);
                }
                Post::Reply(tx) => {
                    let _ = tx.send(self.with_body(reply));
                }
                Post::Attach(id, tx) => {
                    if matches!(&reply, Reply::Attached(missing) if missing.contains(&id)) {
                        self.sinks.remove(&id);
                    }
                    let _ = tx.send(reply);
                }
                Post::Confirm(None) | Post::Stats(_) | Post::Nothing => {}
            }
        }
        for (sink, channel, ok, seqs) in confirms {
            let _ = sink.send(ClientEvent::Confirms { channel, seqs, ok }).await;
        }
        self.carry_out(now, effects).await;
    }
}
