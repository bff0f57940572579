//! Flow control from a queue to the connections that publish into it.
//!
//! RabbitMQ's credit flow slows a publishing connection to what the processes behind it keep
//! up with: when a queue falls behind, the reader of each connection publishing into it stops
//! reading its socket for a while (the connection's state shows `flow`), and TCP pushes back on
//! the client. Warren's queues apply publishes far faster than consumers take them, so what
//! falls behind is the consumers, and the backlog is the measure: a queue whose ready messages
//! pile up while its consumers are taking them closes its [`FlowGate`]; connections that publish
//! into it stop reading until it opens again (`amqp/connection.rs`). Nothing is refused, and a
//! connection that publishes elsewhere, or only consumes, is never held.
//!
//! The gate ([`Policy`]) closes at [`HIGH`] ready messages (or [`HIGH_BYTES`] of ready bodies)
//! and opens again at half of that, so a throttled publisher moves at its consumers' pace with
//! a bounded backlog between. It stays open while the queue has no consumers (a queue nobody
//! consumes from is a buffer: it takes everything, up to the memory alarm), and opens when its
//! consumers took nothing for [`STALL`] (they are stopped, not slow: throttling would only turn
//! a pause into a wait on both sides, and a publisher holding its own consumers' acks behind
//! the gate must not wait on itself). Internal publishers (dead letters, delayed messages,
//! forwarding between nodes) never wait at a gate: only a client's socket is held.
//!
//! On other nodes, the queue's proxy (or a replicated queue's front) has a gate of its own,
//! which the link from the queue's node keeps closed while the queue's is (`queue/remote`):
//! publishers are held wherever they are connected.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Ready messages at which a queue with consumers holds its publishers.
pub const HIGH: u32 = 5_000;
/// Ready message bytes at which a queue with consumers holds its publishers.
pub const HIGH_BYTES: u64 = 32 * 1024 * 1024;
/// How long consumers may take nothing before the queue stops holding publishers.
pub const STALL: Duration = Duration::from_secs(2);

/// Whether a queue takes publishes at full speed: shared by the queue's runner (which opens and
/// closes it) and every connection publishing into the queue (which waits while it is closed).
#[derive(Debug, Default)]
pub struct FlowGate {
    closed: AtomicBool,
    opened: Notify,
}

impl FlowGate {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the gate is open.
    pub async fn opened(&self) {
        loop {
            let notified = self.opened.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Opens or closes the gate: its queue's runner, or on another node the link from the
    /// queue's node, which mirrors the gate there (`queue/remote`).
    pub fn set(&self, closed: bool) {
        if self.closed.swap(closed, Ordering::AcqRel) && !closed {
            self.opened.notify_waiters();
        }
    }
}

/// What the gate is decided on: the queue's state after a batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Backlog {
    pub ready: u32,
    pub ready_bytes: u64,
    pub consumers: u32,
    /// This runner serves the queue (a replicated queue's follower does not).
    pub serving: bool,
}

/// A runner's side of its gate: decides from the backlog and when consumers last took
/// something, and opens the gate when the runner stops (its publishers must not wait forever).
///
/// The gate is written only when the policy's own decision changes: a replicated queue's
/// front on this node shares its gate with this node's member, and while another node's member
/// leads, the link from there mirrors that leader's gate into it (`queue/remote`).
#[derive(Debug)]
pub struct Policy {
    gate: Arc<FlowGate>,
    closed: bool,
    last_delivery: Option<Instant>,
}

impl Policy {
    pub fn new(gate: Arc<FlowGate>) -> Self {
        Self { gate, closed: false, last_delivery: None }
    }

    /// Consumers took messages now.
    pub fn delivered(&mut self, now: Instant) {
        self.last_delivery = Some(now);
    }

    /// When the consumers will have taken nothing for [`STALL`], if this policy holds
    /// publishers: the runner looks again then.
    pub fn stall_at(&self) -> Option<Instant> {
        self.closed.then(|| self.last_delivery.map_or_else(Instant::now, |t| t + STALL))
    }

    /// Opens or closes the gate for this backlog; returns whether it is closed.
    pub fn decide(&mut self, b: Backlog, now: Instant) -> bool {
        let taking = self.last_delivery.is_some_and(|t| now.saturating_duration_since(t) < STALL);
        let closed = if !b.serving || b.consumers == 0 || !taking {
            false
        } else if self.closed {
            b.ready > HIGH / 2 || b.ready_bytes > HIGH_BYTES / 2
        } else {
            b.ready >= HIGH || b.ready_bytes >= HIGH_BYTES
        };
        if closed != self.closed {
            tracing::debug!(ready = b.ready, ready_bytes = b.ready_bytes, closed, "queue flow");
            self.closed = closed;
            self.gate.set(closed);
        }
        closed
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        if self.closed {
            self.gate.set(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(ready: u32, consumers: u32) -> Backlog {
        Backlog { ready, ready_bytes: u64::from(ready) * 16, consumers, serving: true }
    }

    #[test]
    fn closes_at_the_high_mark_and_opens_at_half() {
        let gate = Arc::new(FlowGate::default());
        let mut p = Policy::new(gate.clone());
        let t = Instant::now();
        p.delivered(t);
        assert!(!p.decide(backlog(HIGH - 1, 1), t));
        assert!(p.decide(backlog(HIGH, 1), t));
        assert!(gate.is_closed());
        assert!(p.decide(backlog(HIGH / 2 + 1, 1), t), "stays closed above the low mark");
        assert!(!p.decide(backlog(HIGH / 2, 1), t));
        assert!(!gate.is_closed());
    }

    #[test]
    fn large_bodies_close_it_by_bytes() {
        let mut p = Policy::new(Arc::default());
        let t = Instant::now();
        p.delivered(t);
        let b = Backlog { ready: 40, ready_bytes: HIGH_BYTES, consumers: 1, serving: true };
        assert!(p.decide(b, t));
    }

    #[test]
    fn a_queue_without_consumers_or_whose_consumers_stopped_takes_everything() {
        let mut p = Policy::new(Arc::default());
        let t = Instant::now();
        assert!(!p.decide(backlog(HIGH * 10, 1), t), "consumers that never took anything are not slow");
        p.delivered(t);
        assert!(!p.decide(backlog(HIGH * 10, 0), t));
        assert!(p.decide(backlog(HIGH * 10, 1), t));
        assert_eq!(p.stall_at(), Some(t + STALL));
        assert!(!p.decide(backlog(HIGH * 10, 1), t + STALL), "stalled consumers open it");
        assert!(!p.decide(Backlog { serving: false, ..backlog(HIGH * 10, 1) }, t));
    }

    #[test]
    fn a_policy_that_does_not_hold_leaves_a_mirrored_gate_alone() {
        let gate = Arc::new(FlowGate::default());
        let mut follower = Policy::new(gate.clone());
        gate.set(true);
        let t = Instant::now();
        assert!(!follower.decide(Backlog { serving: false, ..backlog(HIGH, 1) }, t));
        assert!(gate.is_closed(), "the leader's gate, mirrored here, stays");
        assert_eq!(follower.stall_at(), None, "nothing to look at again");
        drop(follower);
        assert!(gate.is_closed());
    }

    #[tokio::test]
    async fn waiters_wake_when_it_opens_and_when_the_runner_goes() {
        let gate = Arc::new(FlowGate::default());
        let mut p = Policy::new(gate.clone());
        let t = Instant::now();
        p.delivered(t);
        p.decide(backlog(HIGH, 1), t);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.opened().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(p);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("joined");
        assert!(!gate.is_closed());
    }
}
