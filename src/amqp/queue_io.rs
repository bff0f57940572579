//! How a connection talks to queues: requests that never deadlock, ordered settles, casts.
//!
//! A connection never waits on a queue without taking in its own inbox (events are deferred
//! while it waits), and queues only wait on connection inboxes, so no cycle of waits can
//! form. Settles are buffered per read batch and always go before any later request to a
//! queue, so each queue sees a connection's requests in the client's order.

use super::connection::Connection;
use super::error::{AmqpError, Result};
use crate::ids::MsgId;
use crate::queue::QueueHandle;
use crate::queue::machine::{Command, Outcome, Reply};
use crate::queue::runner::Request;
use tokio::sync::{mpsc, oneshot};

impl Connection {
    /// Sends a request to a queue, handling this connection's inbox while the queue is busy.
    /// Settles the client sent earlier go first, so a queue sees this connection's requests in
    /// the order the client made them.
    pub async fn send_to(&mut self, q: &QueueHandle, req: Request) -> Result<()> {
        self.flush_settles().await;
        self.send_now(q, req).await
    }

    pub(super) async fn send_now(&mut self, q: &QueueHandle, req: Request) -> Result<()> {
        let inbox = q.inbox_for(&req).clone();
        let req = match inbox.try_send(req) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(AmqpError::not_found(format!("no queue '{}' in vhost '{}'", q.key.name, q.key.vhost)));
            }
            Err(mpsc::error::TrySendError::Full(req)) => req,
        };
        loop {
            tokio::select! {
                permit = inbox.reserve() => {
                    let Ok(permit) = permit else {
                        return Err(AmqpError::not_found(format!("no queue '{}' in vhost '{}'", q.key.name, q.key.vhost)));
                    };
                    permit.send(req);
                    return Ok(());
                }
                Some(ev) = self.inbox.recv() => self.deferred.push_back(ev),
            }
        }
    }

    /// Asks a queue something and waits for the answer, deferring inbox events meanwhile.
    pub async fn call(&mut self, q: &QueueHandle, cmd: Command) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.send_to(q, Request::Call { cmd, reply: tx }).await?;
        self.await_reply(q, rx).await
    }

    pub async fn await_reply(&mut self, q: &QueueHandle, mut rx: oneshot::Receiver<Reply>) -> Result<Reply> {
        loop {
            tokio::select! {
                r = &mut rx => {
                    return r.map_err(|_| AmqpError::not_found(format!("no queue '{}' in vhost '{}'", q.key.name, q.key.vhost)));
                }
                Some(ev) = self.inbox.recv() => self.deferred.push_back(ev),
            }
        }
    }

    /// Queues a settle for sending after this batch (acks are merged per queue).
    pub fn settle(&mut self, queue: &QueueHandle, outcome: Outcome, id: MsgId) {
        match self.settles.last_mut() {
            Some((q, o, ids)) if *o == outcome && q.same_queue(queue) => ids.push(id),
            _ => self.settles.push((queue.clone(), outcome, vec![id])),
        }
    }

    /// Sends buffered settles in order (draining the inbox while a queue is busy).
    pub async fn flush_settles(&mut self) {
        let settles = std::mem::take(&mut self.settles);
        for (q, outcome, ids) in settles {
            // A queue that is gone has nothing left to settle.
            let _ = self.send_now(&q, Request::Cast { cmd: Command::Settle { ids, outcome } }).await;
        }
    }
}

/// Sends a command nobody waits for; if the queue is busy, a task waits instead of us.
pub fn cast(q: &QueueHandle, cmd: Command) {
    let req = Request::Cast { cmd };
    let inbox = q.inbox_for(&req).clone();
    match inbox.try_send(req) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(req)) => {
            tokio::spawn(async move {
                let _ = inbox.send(req).await;
            });
        }
    }
}
