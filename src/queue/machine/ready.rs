//! A queue's ready messages in delivery order ([D:priority]): with `x-max-priority`, higher
//! priorities first (a message's priority is capped at the maximum; none counts as 0), FIFO
//! within a priority; a requeued message goes back to its original place among its priority.

use super::Entry;
use crate::ids::MsgId;
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
pub(super) struct Ready {
    /// Never-delivered messages per priority (the index), in publish order.
    levels: Vec<VecDeque<Entry>>,
    /// Requeued messages, highest priority first, then by original position.
    returned: BTreeMap<(Reverse<u8>, MsgId), Entry>,
    len: usize,
}

impl Ready {
    pub(super) fn new(max_priority: u8) -> Self {
        Self { levels: (0..=max_priority).map(|_| VecDeque::new()).collect(), returned: BTreeMap::new(), len: 0 }
    }

    pub(super) fn max_priority(&self) -> u8 {
        (self.levels.len() - 1) as u8
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// A new message, behind the others of its priority.
    pub(super) fn push(&mut self, e: Entry) {
        let level = usize::from(e.priority).min(self.levels.len() - 1);
        self.levels[level].push_back(e);
        self.len += 1;
    }

    /// A requeued message, back in its original place.
    pub(super) fn put_back(&mut self, e: Entry) {
        self.returned.insert((Reverse(e.priority), e.id), e);
        self.len += 1;
    }

    fn best_level(&self) -> Option<usize> {
        self.levels.iter().rposition(|l| !l.is_empty())
    }

    fn head_is_returned(&self) -> bool {
        let returned = self.returned.keys().next().map(|(Reverse(p), id)| (*p, *id));
        let fresh = self.best_level().and_then(|i| self.levels[i].front()).map(|e| (e.priority, e.id));
        match (returned, fresh) {
            (Some((rp, rid)), Some((fp, fid))) => rp > fp || (rp == fp && rid < fid),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The next message to deliver.
    pub(super) fn head(&self) -> Option<&Entry> {
        if self.head_is_returned() {
            self.returned.values().next()
        } else {
            self.best_level().and_then(|i| self.levels[i].front())
        }
    }

    pub(super) fn pop(&mut self) -> Option<Entry> {
        let e = if self.head_is_returned() {
            self.returned.pop_first().map(|(_, e)| e)
        } else {
            self.best_level().and_then(|i| self.levels[i].pop_front())
        };
        if e.is_some() {
            self.len -= 1;
        }
        e
    }

    /// The oldest message (lowest id) of any priority.
    pub(super) fn first_id(&self) -> Option<MsgId> {
        let fresh = self.levels.iter().filter_map(|l| l.front().map(|e| e.id)).min();
        let returned = self.returned.keys().map(|(_, id)| *id).min();
        fresh.into_iter().chain(returned).min()
    }

    pub(super) fn clear(&mut self) {
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.returned.clear();
        self.len = 0;
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        for l in &mut self.levels {
            l.retain(&mut keep);
        }
        self.returned.retain(|_, e| keep(e));
        self.len = self.levels.iter().map(VecDeque::len).sum::<usize>() + self.returned.len();
    }

    /// Never-delivered messages, level by level (for snapshots).
    pub(super) fn fresh(&self) -> impl Iterator<Item = &Entry> {
        self.levels.iter().flatten()
    }

    /// Requeued messages (for snapshots).
    pub(super) fn requeued(&self) -> impl Iterator<Item = &Entry> {
        self.returned.values()
    }

    pub(super) fn fresh_len(&self) -> usize {
        self.len - self.returned.len()
    }

    pub(super) fn requeued_len(&self) -> usize {
        self.returned.len()
    }
}
