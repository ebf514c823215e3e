//! The deliveries a channel has not settled yet, by delivery tag.
//!
//! Tags only grow, and consumers mostly ack in order, so a deque sorted by tag makes the
//! common insert (at the back) and ack (at the front) O(1); an ack out of order is a binary
//! search and a shift of the shorter side.

use std::collections::VecDeque;

#[derive(Debug)]
pub(crate) struct Ledger<T> {
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
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The unsettled deliveries, oldest first.
    #[cfg(feature = "serve")]
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Records a delivery; `tag` is greater than every tag recorded before.
    pub(crate) fn insert(&mut self, tag: u64, value: T) {
        debug_assert!(self.entries.back().is_none_or(|(last, _)| *last < tag));
        self.entries.push_back((tag, value));
    }

    /// Settles one delivery.
    pub(crate) fn remove(&mut self, tag: u64) -> Option<T> {
        if self.entries.front().is_some_and(|(t, _)| *t == tag) {
            return self.entries.pop_front().map(|(_, v)| v);
        }
        let i = self.entries.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
        self.entries.remove(i).map(|(_, v)| v)
    }

    /// The tags a settlement of `tag` covers (with `multiple`, every one up to it; 0: all),
    /// oldest first, without settling them; `None` when `tag` is not outstanding.
    pub(crate) fn tags(&self, tag: u64, multiple: bool) -> Option<Vec<u64>> {
        if multiple && tag == 0 {
            return Some(self.entries.iter().map(|(t, _)| *t).collect());
        }
        let i = self.entries.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
        Some(match multiple {
            true => self.entries.range(..=i).map(|(t, _)| *t).collect(),
            false => vec![tag],
        })
    }

    /// Settles every delivery up to and including `tag` (AMQP's `multiple`), oldest first;
    /// tag 0 settles them all. `None` (and nothing settled) when `tag` is not 0 and not
    /// outstanding, as RabbitMQ refuses it.
    pub(crate) fn remove_through(&mut self, tag: u64) -> Option<impl Iterator<Item = T> + '_> {
        let end = if tag == 0 {
            self.entries.len()
        } else {
            let i = self.entries.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
            i + 1
        };
        Some(self.entries.drain(..end).map(|(_, v)| v))
    }

    /// Every unsettled delivery, newest first.
    pub(crate) fn into_newest_first(self) -> impl Iterator<Item = T> {
        self.entries.into_iter().rev().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_and_multiple() {
        let mut l = Ledger::default();
        for t in [1, 2, 5, 7, 9, 11] {
            l.insert(t, t * 10);
        }
        assert_eq!(l.remove(1), Some(10));
        assert_eq!(l.remove(7), Some(70));
        assert_eq!(l.remove(7), None);
        assert_eq!(l.remove(3), None);
        assert!(l.remove_through(3).is_none(), "3 is not outstanding");
        assert_eq!(l.len(), 4);
        assert_eq!(
            l.remove_through(5).unwrap().collect::<Vec<_>>(),
            vec![20, 50]
        );
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.remove_through(0).unwrap().collect::<Vec<_>>(),
            vec![90, 110]
        );
        assert_eq!(l.len(), 0);
        l.insert(12, 120);
        assert_eq!(l.into_newest_first().collect::<Vec<_>>(), vec![120]);
    }
}
