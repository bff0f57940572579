//! Handing messages to other queues without a runner ever waiting on another queue's inbox:
//! a queue's dead letters (in order, by a forwarder task of its own) and messages that must
//! be confirmed by their queues before the sender goes on (delay stores, the management API's
//! publish).

use super::{ConfirmTo, QueueHandle, Request};
use crate::ids::ChannelId;
use crate::queue::Message;
use crate::queue::event::ClientEvent;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Dead letters waiting for the forwarder at most (then the runner waits: back-pressure).
const DEAD_LETTERS: usize = 1024;
/// Confirms buffered while forwarding with [`forward_confirmed`].
const FORWARD_CONFIRMS: usize = 1024;

/// The task that delivers a queue's dead letters to their target queues, in order.
pub(super) fn spawn_forwarder() -> mpsc::Sender<(Vec<QueueHandle>, Arc<Message>)> {
    let (tx, mut rx) = mpsc::channel::<(Vec<QueueHandle>, Arc<Message>)>(DEAD_LETTERS);
    tokio::spawn(async move {
        while let Some((targets, msg)) = rx.recv().await {
            for h in targets {
                // A queue deleted meanwhile simply does not take it.
                let _ = h.tx.send(Request::Publish { msg: msg.clone(), confirm: None }).await;
            }
        }
    });
    tx
}

/// Hands each message to its queues with a confirm request and returns once every queue has
/// confirmed (or refused, or gone away). A delay store forgets a message only after that;
/// the management API's publish answers only then.
pub async fn forward_confirmed(items: Vec<(Vec<QueueHandle>, Arc<Message>)>) {
    if items.is_empty() {
        return;
    }
    let (sink, mut confirms) = mpsc::channel::<ClientEvent>(FORWARD_CONFIRMS);
    let mut seq = 0;
    for (targets, msg) in items {
        for h in targets {
            seq += 1;
            let confirm = Some(ConfirmTo { sink: sink.clone(), channel: ChannelId(0), seq });
            let send = h.tx.send(Request::Publish { msg: msg.clone(), confirm });
            tokio::pin!(send);
            // Drain confirms while waiting for room, so a queue blocked on our confirm
            // channel never waits on us while we wait on its inbox.
            loop {
                tokio::select! {
                    _ = &mut send => break,
                    Some(_) = confirms.recv() => {}
                }
            }
        }
    }
    // Every pending confirm holds a sender; once all are answered or dropped, this ends.
    drop(sink);
    while confirms.recv().await.is_some() {}
}
