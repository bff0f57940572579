//! Handing messages to other queues without a runner ever waiting on another queue's inbox:
//! a queue's dead letters (in order, by a forwarder task of its own) and messages that must
//! be confirmed by their queues before the sender goes on (delay stores, the management API's
//! publish).

use super::{ConfirmTo, QueueHandle, Request};
use crate::ids::ChannelId;
use crate::queue::Message;
use crate::queue::event::ClientEvent;
use crate::queue::machine::{Command, Reply};
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
/// answered (or gone away): whether every queue confirmed every message (a queue deleted
/// meanwhile counts as taking it, as routing to nothing does). The management API's publish
/// answers only then.
pub async fn forward_confirmed(items: Vec<(Vec<QueueHandle>, Arc<Message>)>) -> bool {
    let (sink, mut confirms) = mpsc::channel::<ClientEvent>(FORWARD_CONFIRMS);
    let refused =
        |event: ClientEvent| matches!(event, ClientEvent::Confirms { ok: false, .. } | ClientEvent::NotTaken { .. });
    let mut taken = true;
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
                    Some(event) = confirms.recv() => taken &= !refused(event),
                }
            }
        }
    }
    // Every pending confirm holds a sender; once all are answered or dropped, this ends.
    drop(sink);
    while let Some(event) = confirms.recv().await {
        taken &= !refused(event);
    }
    taken
}

/// A delayed exchange's store handing released messages to their queues, in order: each as
/// `Command::Enqueue`, or as `Command::EnqueueAgain` (delivered marked redelivered) when it
/// may have reached them once already (`again`: released by a leader that died before it
/// could record it, or sent before without an answer). Returns, per message, whether every
/// queue took it for good: enqueued it, refused it as full (`reject-publish`: the plugin
/// drops it too), already had it (deduplication) or is gone (deleted). A queue without a
/// leader, or an answer that never came, is not: the store keeps the message and tries again.
pub async fn forward_released(items: Vec<(Vec<QueueHandle>, Arc<Message>, bool)>) -> Vec<bool> {
    let mut answers = Vec::with_capacity(items.len());
    for (targets, msg, again) in items {
        let mut replies = Vec::with_capacity(targets.len());
        for h in targets {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let cmd =
                if again { Command::EnqueueAgain { msg: msg.clone() } } else { Command::Enqueue { msg: msg.clone() } };
            // A queue whose runner has stopped is gone: nothing to hand it.
            if h.tx.send(Request::Call { cmd, reply }).await.is_ok() {
                replies.push(answer);
            }
        }
        answers.push(replies);
    }
    let mut taken = Vec::with_capacity(answers.len());
    for replies in answers {
        let mut all = true;
        for answer in replies {
            all &= matches!(answer.await, Ok(Reply::Enqueued(_) | Reply::Dropped | Reply::Duplicate | Reply::Rejected));
        }
        taken.push(all);
    }
    taken
}
