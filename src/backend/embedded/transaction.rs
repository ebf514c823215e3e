//! AMQP transactions (`tx.select`, `tx.commit`, `tx.rollback`) of an embedded broker's
//! channel, as RabbitMQ has them: once a channel is transactional, its publishes and its
//! settlements (ack, reject, nack, requeue) are held, checked as they come (a missing or
//! internal exchange, an unknown delivery tag: refused at once), and applied together at
//! commit, in the order they came (over sqlite:// in one SQLite transaction); a rollback drops
//! them (the deliveries stay unsettled, as before the settlements). A channel closed with a
//! transaction open applies none of it.

use std::sync::Arc;

use rustc_hash::FxHashSet as HashSet;

use crate::backend::{rules, PublishFlags, Published};
use crate::error::{Error, Result};

/// How a held delivery is settled at commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settlement {
    Ack,
    Reject { requeue: bool },
}

/// One operation held until the commit.
#[derive(Debug)]
pub(crate) enum Held {
    Publish(Arc<Published>, PublishFlags),
    Settle(u64, Settlement),
}

/// A channel's transaction mode and what it holds.
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    selected: bool,
    held: Vec<Held>,
    /// Delivery tags settled in the open transaction (settling one again is 406).
    settled: HashSet<u64>,
}

/// The refusal of `tx.commit` or `tx.rollback` on a channel that never said `tx.select`.
fn not_transactional() -> Error {
    Error::PreconditionFailed("channel is not transactional".into())
}

impl Transaction {
    /// `tx.select` (again is fine).
    pub(crate) fn select(&mut self) {
        self.selected = true;
    }

    pub(crate) fn is_selected(&self) -> bool {
        self.selected
    }

    /// Holds a publish until the commit.
    pub(crate) fn hold_publish(&mut self, message: Arc<Published>, flags: PublishFlags) {
        self.held.push(Held::Publish(message, flags));
    }

    /// Holds the settlement of the deliveries `outstanding` says `tag` covers (with
    /// `multiple`, every one up to it; the broker checked that the tag is outstanding): those
    /// this transaction settled already are skipped, and settling one tag twice is 406.
    pub(crate) fn hold_settlement(
        &mut self,
        tag: u64,
        multiple: bool,
        outstanding: Vec<u64>,
        how: Settlement,
    ) -> Result<()> {
        if !multiple && self.settled.contains(&tag) {
            return Err(rules::unknown_tag(tag));
        }
        let fresh: Vec<u64> = outstanding
            .into_iter()
            .filter(|t| !self.settled.contains(t))
            .collect();
        if multiple && tag != 0 && fresh.is_empty() {
            return Err(rules::unknown_tag(tag));
        }
        for t in fresh {
            self.settled.insert(t);
            self.held.push(Held::Settle(t, how));
        }
        Ok(())
    }

    /// `tx.commit`: what to apply, in order; the next transaction starts empty.
    pub(crate) fn commit(&mut self) -> Result<Vec<Held>> {
        if !self.selected {
            return Err(not_transactional());
        }
        self.settled.clear();
        Ok(std::mem::take(&mut self.held))
    }

    /// `tx.rollback`: drops what was held.
    pub(crate) fn rollback(&mut self) -> Result<()> {
        if !self.selected {
            return Err(not_transactional());
        }
        self.settled.clear();
        self.held.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Arc<Published> {
        Arc::new(Published {
            body: Box::new([]),
            properties: Default::default(),
            exchange: "".into(),
            routing_key: "q".into(),
        })
    }

    #[test]
    fn commit_and_rollback_need_select_and_hand_over_in_order() {
        let mut tx = Transaction::default();
        assert!(matches!(tx.commit(), Err(Error::PreconditionFailed(_))));
        assert!(matches!(tx.rollback(), Err(Error::PreconditionFailed(_))));
        tx.select();
        tx.hold_publish(message(), PublishFlags::default());
        tx.hold_settlement(3, false, vec![3], Settlement::Ack)
            .expect("held");
        let held = tx.commit().expect("committed");
        assert!(matches!(held[0], Held::Publish(..)));
        assert!(matches!(held[1], Held::Settle(3, Settlement::Ack)));
        assert!(tx.commit().expect("an empty transaction").is_empty());
        tx.hold_publish(message(), PublishFlags::default());
        tx.rollback().expect("rolled back");
        assert!(tx.commit().expect("nothing").is_empty());
    }

    #[test]
    fn a_delivery_is_settled_once_per_transaction() {
        let mut tx = Transaction::default();
        tx.select();
        tx.hold_settlement(2, false, vec![2], Settlement::Ack)
            .expect("held");
        assert!(tx
            .hold_settlement(2, false, vec![2], Settlement::Ack)
            .is_err());
        // multiple up to 4 covers 1, 3 and 4 still (2 is settled already).
        tx.hold_settlement(
            4,
            true,
            vec![1, 2, 3, 4],
            Settlement::Reject { requeue: true },
        )
        .expect("held");
        assert!(tx
            .hold_settlement(4, true, vec![1, 2, 3, 4], Settlement::Ack)
            .is_err());
        let tags: Vec<u64> = tx
            .commit()
            .expect("committed")
            .iter()
            .map(|h| match h {
                Held::Settle(t, _) => *t,
                Held::Publish(..) => 0,
            })
            .collect();
        assert_eq!(tags, vec![2, 1, 3, 4]);
    }
}
