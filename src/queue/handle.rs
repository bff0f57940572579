//! The address of a running queue ([`QueueHandle`]) and the requests its runner takes.

use super::Message;
use super::event::ClientSink;
use super::flow::FlowGate;
use super::machine::{Command, ConsumerSpec, Reply};
use crate::ids::{ChannelId, QueueKey};
use crate::stats::Counters;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Where a publisher wants its confirm.
#[derive(Debug)]
pub struct ConfirmTo {
    pub sink: ClientSink,
    pub channel: ChannelId,
    pub seq: u64,
}

#[derive(Debug)]
pub enum Request {
    Publish {
        msg: Arc<Message>,
        confirm: Option<ConfirmTo>,
    },
    Consume {
        spec: ConsumerSpec,
        sink: ClientSink,
        reply: oneshot::Sender<Reply>,
    },
    Call {
        cmd: Command,
        reply: oneshot::Sender<Reply>,
    },
    /// A command whose reply nobody waits for (settles, cancels on close).
    Cast {
        cmd: Command,
    },
    /// A consumer registered before a leader change (or a broken link) reaches the leader of
    /// its replicated queue again through `sink` (`Command::Attach`): answered with
    /// `Reply::Attached` (naming it if the queue no longer knows it).
    Attach {
        spec: ConsumerSpec,
        sink: ClientSink,
        reply: oneshot::Sender<Reply>,
    },
}

/// A cheap, cloneable address of a running queue.
///
/// A queue has two inboxes. Settles and cancels use `ctl`, which the runner drains first:
/// they never wait behind a backlog of publishes, so a consumer's credit comes back at once
/// (with a single FIFO, prefetch-bound consumers starved behind fast publishers). Reordering
/// is harmless for them: a settle names a message already applied, and a cancel is only sent
/// after its consume was answered. Everything whose order matters (publish, get, consume,
/// purge, delete, stats) goes through `tx`, in the order the connection sent it.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    pub key: Arc<QueueKey>,
    pub tx: mpsc::Sender<Request>,
    pub ctl: mpsc::Sender<Request>,
    /// Message counters of this queue (`message_stats`), bumped by the connections.
    pub stats: Arc<Counters>,
    /// Closed while the queue holds its publishers (`queue::flow`).
    pub flow: Arc<FlowGate>,
}

impl QueueHandle {
    pub fn same_queue(&self, other: &QueueHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// A handle that does not keep the queue's task alive.
    pub fn downgrade(&self) -> WeakQueueHandle {
        WeakQueueHandle {
            key: self.key.clone(),
            tx: self.tx.downgrade(),
            ctl: self.ctl.downgrade(),
            stats: self.stats.clone(),
            flow: self.flow.clone(),
        }
    }

    /// The inbox a request belongs in.
    pub fn inbox_for(&self, req: &Request) -> &mpsc::Sender<Request> {
        match req {
            Request::Cast { cmd: Command::Settle { .. } | Command::Cancel { .. } | Command::Credit { .. } } => {
                &self.ctl
            }
            _ => &self.tx,
        }
    }
}

/// A [`QueueHandle`] that does not keep its task alive (a task holding its own address, or a
/// runner delivering on behalf of the handle clients use).
#[derive(Clone, Debug)]
pub struct WeakQueueHandle {
    pub key: Arc<QueueKey>,
    tx: mpsc::WeakSender<Request>,
    ctl: mpsc::WeakSender<Request>,
    stats: Arc<Counters>,
    pub flow: Arc<FlowGate>,
}

impl WeakQueueHandle {
    /// The handle, while the task still runs.
    pub fn upgrade(&self) -> Option<QueueHandle> {
        Some(QueueHandle {
            key: self.key.clone(),
            tx: self.tx.upgrade()?,
            ctl: self.ctl.upgrade()?,
            stats: self.stats.clone(),
            flow: self.flow.clone(),
        })
    }
}
