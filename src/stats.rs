//! Message counters and their rates: what RabbitMQ's management plugin calls `message_stats`
//! (`publish`, `deliver`, `ack`, … each with `_details.rate`) and its Prometheus plugin
//! exports as `rabbitmq_global_messages_*_total`.
//!
//! Counters are observations, not state: they live beside the state machines, are bumped with
//! relaxed atomics by whoever sees the event (a connection delivering, acking, confirming),
//! start from zero at every start, and are never replicated. A sampler calls
//! [`Counters::sample`] every few seconds; a rate is the change per second between the last
//! two samples (RabbitMQ's `collect_statistics_interval` is 5 s).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One kind of message event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Published (into a queue, an exchange, or the node as a whole).
    Publish,
    /// Publisher confirms sent.
    Confirm,
    /// Delivered to consumers that must acknowledge.
    Deliver,
    /// Delivered to no-ack consumers.
    DeliverNoAck,
    /// Fetched with `basic.get`, to be acknowledged.
    Get,
    GetNoAck,
    /// `basic.get` on an empty queue.
    GetEmpty,
    Ack,
    /// Delivered or fetched again after a requeue.
    Redeliver,
    /// Unroutable and mandatory: returned.
    ReturnUnroutable,
    /// Unroutable and not mandatory: dropped.
    DropUnroutable,
    /// Published into an exchange.
    PublishIn,
    /// Routed out of an exchange to at least one queue.
    PublishOut,
}

const N: usize = 13;

impl Stat {
    pub const ALL: [Stat; N] = [
        Stat::Publish,
        Stat::Confirm,
        Stat::Deliver,
        Stat::DeliverNoAck,
        Stat::Get,
        Stat::GetNoAck,
        Stat::GetEmpty,
        Stat::Ack,
        Stat::Redeliver,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
        Stat::PublishIn,
        Stat::PublishOut,
    ];
    /// What a queue reports.
    pub const QUEUE: &'static [Stat] = &[
        Stat::Publish,
        Stat::Deliver,
        Stat::DeliverNoAck,
        Stat::Get,
        Stat::GetNoAck,
        Stat::GetEmpty,
        Stat::Ack,
        Stat::Redeliver,
    ];
    /// What an exchange reports.
    pub const EXCHANGE: &'static [Stat] = &[Stat::PublishIn, Stat::PublishOut];
    /// What the node (and a vhost) reports.
    pub const NODE: &'static [Stat] = &[
        Stat::Publish,
        Stat::Confirm,
        Stat::Deliver,
        Stat::DeliverNoAck,
        Stat::Get,
        Stat::GetNoAck,
        Stat::GetEmpty,
        Stat::Ack,
        Stat::Redeliver,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
    ];

    /// RabbitMQ's field name.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Publish => "publish",
            Stat::Confirm => "confirm",
            Stat::Deliver => "deliver",
            Stat::DeliverNoAck => "deliver_no_ack",
            Stat::Get => "get",
            Stat::GetNoAck => "get_no_ack",
            Stat::GetEmpty => "get_empty",
            Stat::Ack => "ack",
            Stat::Redeliver => "redeliver",
            Stat::ReturnUnroutable => "return_unroutable",
            Stat::DropUnroutable => "drop_unroutable",
            Stat::PublishIn => "publish_in",
            Stat::PublishOut => "publish_out",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Counted in RabbitMQ's derived `deliver_get`.
    pub fn is_deliver_get(self) -> bool {
        matches!(self, Stat::Deliver | Stat::DeliverNoAck | Stat::Get | Stat::GetNoAck)
    }
}

#[derive(Debug, Default)]
struct Sample {
    at: Option<Instant>,
    last: [u64; N],
    rate: [f64; N],
}

/// One object's counters (the node, a vhost, a queue, an exchange).
#[derive(Debug, Default)]
pub struct Counters {
    values: [AtomicU64; N],
    sample: Mutex<Sample>,
}

impl Counters {
    pub fn add(&self, s: Stat, n: u64) {
        if n > 0 {
            self.values[s.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, s: Stat) -> u64 {
        self.values[s.index()].load(Ordering::Relaxed)
    }

    /// The rate (per second) between the last two samples.
    pub fn rate(&self, s: Stat) -> f64 {
        self.sample.lock().unwrap_or_else(|p| p.into_inner()).rate[s.index()]
    }

    /// Whether anything was ever counted.
    pub fn any(&self) -> bool {
        self.values.iter().any(|v| v.load(Ordering::Relaxed) > 0)
    }

    /// Takes a sample: rates become the change since the previous sample, per second.
    pub fn sample(&self, now: Instant) {
        let current: [u64; N] = std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed));
        let mut s = self.sample.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = s.at {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                for (i, value) in current.iter().enumerate() {
                    s.rate[i] = value.saturating_sub(s.last[i]) as f64 / secs;
                }
            }
        }
        s.at = Some(now);
        s.last = current;
    }
}

/// Counts one task gathers and adds to the shared counters in one go, once per batch of work:
/// a few atomic additions per batch instead of several per message, and no cache line
/// bouncing between the cores of a queue's publishers and consumers.
#[derive(Debug, Default)]
pub struct Tally {
    entries: Vec<(Arc<Counters>, [u64; N])>,
}

/// Counters a tally keeps referring to between flushes at most (then it lets go of them).
const TALLY_KEEP: usize = 64;

impl Tally {
    pub fn add(&mut self, c: &Arc<Counters>, s: Stat, n: u64) {
        match self.entries.iter_mut().find(|(k, _)| Arc::ptr_eq(k, c)) {
            Some((_, v)) => v[s.index()] += n,
            None => {
                let mut v = [0; N];
                v[s.index()] = n;
                self.entries.push((c.clone(), v));
            }
        }
    }

    /// Adds what was gathered to the shared counters.
    pub fn flush(&mut self) {
        for (c, v) in &mut self.entries {
            for (i, n) in v.iter_mut().enumerate() {
                if *n > 0 {
                    c.values[i].fetch_add(*n, Ordering::Relaxed);
                    *n = 0;
                }
            }
        }
        if self.entries.len() > TALLY_KEEP {
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_are_the_change_per_second_between_samples() {
        let c = Counters::default();
        let t0 = Instant::now();
        c.add(Stat::Publish, 10);
        c.sample(t0);
        assert_eq!(c.rate(Stat::Publish), 0.0);
        c.add(Stat::Publish, 20);
        c.sample(t0 + Duration::from_secs(2));
        assert_eq!(c.get(Stat::Publish), 30);
        assert_eq!(c.rate(Stat::Publish), 10.0);
        c.sample(t0 + Duration::from_secs(4));
        assert_eq!(c.rate(Stat::Publish), 0.0);
        assert!(c.any());
    }

    #[test]
    fn a_tally_adds_up_on_flush() {
        let (a, b) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
        let mut t = Tally::default();
        t.add(&a, Stat::Deliver, 2);
        t.add(&b, Stat::Ack, 1);
        t.add(&a, Stat::Deliver, 3);
        assert_eq!(a.get(Stat::Deliver), 0, "nothing before the flush");
        t.flush();
        t.flush();
        assert_eq!((a.get(Stat::Deliver), b.get(Stat::Ack)), (5, 1));
    }

    #[test]
    fn names_follow_the_index() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(s.index(), i, "{}", s.name());
        }
    }
}
