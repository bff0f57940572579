//! A total-queue checker in Jepsen's sense (`jepsen/checker.clj` `total-queue`, see
//! `../shared/reference/reliability.md` §1.3), stricter on repeats: what clients did to one
//! queue, and whether the queue lost or invented anything.
//!
//! - lost: confirmed by the broker, never delivered;
//! - unexpected: delivered, never published;
//! - a repeat without `redelivered`: a message delivered again, the later delivery not marked
//!   redelivered (AMQP allows at-least-once, but only with the flag);
//! - recovered: published without a confirm (nacked, or the connection died first) and
//!   delivered anyway — allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// What the clients saw, as it happened.
#[derive(Default)]
pub struct History {
    /// Values whose publish was sent.
    pub attempted: BTreeSet<u64>,
    /// Values the broker confirmed (`basic.ack`).
    pub confirmed: BTreeSet<u64>,
    /// Values nacked, or whose confirm never came (the connection or channel died first).
    pub indeterminate: BTreeSet<u64>,
    /// Every delivery, in the order consumers got them: (value, redelivered).
    pub delivered: Vec<(u64, bool)>,
    /// When each confirm arrived.
    pub confirm_times: Vec<Instant>,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub attempted: usize,
    pub confirmed: usize,
    pub indeterminate: usize,
    pub delivered: usize,
    pub lost: Vec<u64>,
    pub unexpected: Vec<u64>,
    pub repeated_unflagged: Vec<u64>,
    /// Delivered more than once (all later deliveries flagged).
    pub duplicated: usize,
    /// Indeterminate publishes that were delivered.
    pub recovered: usize,
}

impl Verdict {
    pub fn valid(&self) -> bool {
        self.lost.is_empty() && self.unexpected.is_empty() && self.repeated_unflagged.is_empty()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let few = |v: &[u64]| v.iter().take(10).map(|x| x.to_string()).collect::<Vec<_>>().join(",");
        write!(
            f,
            "attempted {} confirmed {} indeterminate {} delivered {} | lost {} [{}] unexpected {} [{}] \
             repeated without redelivered {} [{}] | duplicated (flagged) {} recovered {}",
            self.attempted,
            self.confirmed,
            self.indeterminate,
            self.delivered,
            self.lost.len(),
            few(&self.lost),
            self.unexpected.len(),
            few(&self.unexpected),
            self.repeated_unflagged.len(),
            few(&self.repeated_unflagged),
            self.duplicated,
            self.recovered
        )
    }
}

pub fn check(h: &History) -> Verdict {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut repeated_unflagged = BTreeSet::new();
    for &(v, redelivered) in &h.delivered {
        let n = seen.entry(v).or_default();
        *n += 1;
        if *n > 1 && !redelivered {
            repeated_unflagged.insert(v);
        }
    }
    let delivered: BTreeSet<u64> = seen.keys().copied().collect();
    Verdict {
        attempted: h.attempted.len(),
        confirmed: h.confirmed.len(),
        indeterminate: h.indeterminate.len(),
        delivered: delivered.len(),
        lost: h.confirmed.difference(&delivered).copied().collect(),
        unexpected: delivered.difference(&h.attempted).copied().collect(),
        repeated_unflagged: repeated_unflagged.into_iter().collect(),
        duplicated: seen.values().filter(|&&n| n > 1).count(),
        recovered: h.indeterminate.intersection(&delivered).count(),
    }
}

/// The longest time without a confirm in the ten seconds after a fault (from the fault to
/// the first confirm, or between two confirms): how long publishing stalled while the
/// cluster recovered.
pub fn longest_gap_after(faults: &[Instant], confirms: &[Instant]) -> std::time::Duration {
    let mut sorted = confirms.to_vec();
    sorted.sort();
    let window = std::time::Duration::from_secs(10);
    faults
        .iter()
        .map(|&f| {
            let mut last = f;
            let mut longest = std::time::Duration::ZERO;
            for &c in sorted.iter().filter(|&&c| c > f && c < f + window) {
                longest = longest.max(c - last);
                last = c;
            }
            longest
        })
        .max()
        .unwrap_or_default()
}

#[test]
fn the_checker_finds_what_went_wrong() {
    let mut h = History::default();
    h.attempted.extend([1, 2, 3, 4, 5]);
    h.confirmed.extend([1, 2, 3]);
    h.indeterminate.extend([4, 5]);
    h.delivered = vec![(1, false), (2, false), (1, true), (4, false), (2, false), (9, false)];
    let v = check(&h);
    assert_eq!(v.lost, vec![3]);
    assert_eq!(v.unexpected, vec![9]);
    assert_eq!(v.repeated_unflagged, vec![2]);
    assert_eq!((v.duplicated, v.recovered), (2, 1));
    assert!(!v.valid());
    h.delivered = vec![(1, false), (2, false), (3, false), (3, true)];
    assert!(check(&h).valid(), "{}", check(&h));
}
