//! What a connection reports about itself: snapshots of its channels and consumers for the
//! management API (answering [`Control::Inspect`](crate::node::clients::Control)), and the
//! message counters it bumps (`message_stats`: node-wide, per queue and per exchange).

use super::connection::Connection;
use crate::node::clients::{ChannelInfo, ConsumerInfo};
use crate::queue::QueueHandle;
use crate::stats::Stat;

impl Connection {
    /// The state of every open channel.
    pub(super) fn inspect(&self) -> Vec<ChannelInfo> {
        let mut out: Vec<ChannelInfo> = self
            .channels
            .iter()
            .map(|(&number, c)| ChannelInfo {
                number,
                prefetch_count: c.prefetch_consumer,
                global_prefetch_count: c.prefetch_channel,
                confirm: c.confirm.is_some(),
                transactional: c.tx.is_some(),
                unacked: c.unacked.len(),
                unconfirmed: c.confirm.as_ref().map_or(0, |s| s.outstanding.len()),
                consumers: c
                    .consumers
                    .iter()
                    .map(|(tag, e)| ConsumerInfo {
                        tag: tag.clone(),
                        queue: e.queue.key.name.clone(),
                        ack_required: !e.no_ack,
                        exclusive: e.exclusive,
                        prefetch_count: e.prefetch,
                        arguments: e.arguments.clone(),
                    })
                    .collect(),
            })
            .collect();
        out.sort_by_key(|c| c.number);
        out
    }

    /// Counts an event node-wide and, if given, on a queue (added to the shared counters after
    /// the current batch).
    pub(super) fn count(&mut self, queue: Option<&QueueHandle>, s: Stat, n: u64) {
        self.tally.add(self.node.stats(), s, n);
        if let Some(q) = queue {
            self.tally.add(&q.stats, s, n);
        }
    }
}
