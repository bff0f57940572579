//! Message deduplication for a queue (opt-in, `x-message-deduplication: true`, as the
//! community plugin `rabbitmq-message-deduplication` users know it): a message whose
//! `x-deduplication-header` (or, without one, `message_id`) was seen within the window is
//! confirmed but not enqueued. The window is `x-cache-ttl` ms from the first sighting and at
//! most `x-cache-size` keys (the oldest go first). It is machine state, so it is replicated
//! and survives restarts.

use super::Message;
use amq_protocol::types::AMQPValue;
use std::collections::{HashSet, VecDeque};

/// Keys remembered at most when `x-cache-size` is not given.
pub const DEFAULT_CACHE_SIZE: u64 = 100_000;

/// The window's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub size: u64,
    pub ttl: Option<u64>,
}

/// Keys seen, oldest first.
#[derive(Debug, Default)]
pub(super) struct Seen {
    order: VecDeque<(u64, String)>,
    keys: HashSet<String>,
}

/// A message's deduplication key.
pub(super) fn key_of(msg: &Message) -> Option<String> {
    let header = msg.properties.headers().as_ref().and_then(|h| h.inner().get("x-deduplication-header").cloned());
    match header {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
        Some(other) => Some(format!("{other:?}")),
        None => msg.properties.message_id().as_ref().map(|s| s.as_str().to_owned()),
    }
}

impl Seen {
    /// Records `key` at `now`; false if it was already seen within the window.
    pub(super) fn first_sighting(&mut self, window: &Window, key: String, now: u64) -> bool {
        if let Some(ttl) = window.ttl {
            while self.order.front().is_some_and(|(at, _)| at.saturating_add(ttl) <= now) {
                if let Some((_, k)) = self.order.pop_front() {
                    self.keys.remove(&k);
                }
            }
        }
        if self.keys.contains(&key) {
            return false;
        }
        self.keys.insert(key.clone());
        self.order.push_back((now, key));
        while self.order.len() as u64 > window.size.max(1) {
            if let Some((_, k)) = self.order.pop_front() {
                self.keys.remove(&k);
            }
        }
        true
    }

    /// Keys with the time they were first seen, oldest first (for snapshots).
    pub(super) fn entries(&self) -> impl Iterator<Item = &(u64, String)> {
        self.order.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn push(&mut self, at: u64, key: String) {
        self.keys.insert(key.clone());
        self.order.push_back((at, key));
    }
}
