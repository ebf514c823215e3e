//! The deliveries a channel has not settled yet, by delivery tag.
//!
//! Tags only grow, and consumers mostly ack in order, so a deque sorted by tag makes the
//! common insert (at the back) and ack (at the front) O(1); an ack out of order is a binary
//! search and a shift of the shorter side.

use std::collections::VecDeque;

#[derive(Debug)]
pub(super) struct Ledger<T> {
    entries: VecDeque<(u64, T)>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Ledger {
            entries: VecDeque::new(),
        }
    }
}

impl<T> Ledger<T> {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Records a delivery; `tag` is greater than every tag recorded before.
    pub(super) fn insert(&mut self, tag: u64, value: T) {
        debug_assert!(self.entries.back().is_none_or(|(last, _)| *last < tag));
        self.entries.push_back((tag, value));
    }

    /// Settles one delivery.
    pub(super) fn remove(&mut self, tag: u64) -> Option<T> {
        if self.entries.front().is_some_and(|(t, _)| *t == tag) {
            return self.entries.pop_front().map(|(_, v)| v);
        }
        let i = self.entries.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
        self.entries.remove(i).map(|(_, v)| v)
    }

    /// Settles every delivery up to and including `tag` (AMQP's `multiple`).
    pub(super) fn remove_through(&mut self, tag: u64) -> Vec<T> {
        let end = self.entries.partition_point(|(t, _)| *t <= tag);
        self.entries.drain(..end).map(|(_, v)| v).collect()
    }

    /// Every unsettled delivery, newest first.
    pub(super) fn into_newest_first(self) -> impl Iterator<Item = T> {
        self.entries.into_iter().rev().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_and_multiple() {
        let mut l = Ledger::default();
        for t in [1, 2, 5, 7, 9] {
            l.insert(t, t * 10);
        }
        assert_eq!(l.remove(1), Some(10));
        assert_eq!(l.remove(7), Some(70));
        assert_eq!(l.remove(7), None);
        assert_eq!(l.remove(3), None);
        assert_eq!(l.remove_through(5), vec![20, 50]);
        assert_eq!(l.len(), 1);
        assert_eq!(l.into_newest_first().collect::<Vec<_>>(), vec![90]);
    }
}
