//! The blocking iterators: [`IterConsume`], [`IterQueue`] and [`SetIterConsume`], named types
//! (not `impl Iterator`), so that the consumer they borrow is free again after their last use.

use super::Rt;
use crate::error::Result;
use crate::{IterQueueOptions, Message};

/// Counts down a limit: `None` past it, and after the first error.
#[derive(Debug)]
struct Countdown(Option<usize>);

impl Countdown {
    fn next<T>(&mut self, item: impl FnOnce() -> Option<Result<T>>) -> Option<Result<T>> {
        if self.0 == Some(0) {
            return None;
        }
        let item = item();
        match (&item, &mut self.0) {
            (Some(Err(_)), remaining) => *remaining = Some(0),
            (Some(Ok(_)), Some(remaining)) => *remaining -= 1,
            _ => {}
        }
        item
    }
}

/// The [`Iterator`] of [`Consumer::iterconsume`](super::Consumer::iterconsume): each message
/// once the consumer's callbacks have processed it; it ends after the limit or the first error.
#[derive(Debug)]
#[must_use = "iterators do nothing unless iterated"]
pub struct IterConsume<'a> {
    consumer: &'a mut crate::Consumer,
    rt: &'a Rt,
    countdown: Countdown,
}

impl<'a> IterConsume<'a> {
    pub(super) fn new(consumer: &'a mut crate::Consumer, rt: &'a Rt, limit: Option<usize>) -> Self {
        IterConsume {
            consumer,
            rt,
            countdown: Countdown(limit),
        }
    }
}

impl Iterator for IterConsume<'_> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        let (consumer, rt) = (&mut *self.consumer, self.rt);
        self.countdown
            .next(|| rt.block_on(async { consumer.iterconsume(Some(1)).next().await }))
    }
}

/// The [`Iterator`] of [`ConsumerSet::iterconsume`](super::ConsumerSet::iterconsume): each
/// message of any of the set's queues once the callbacks have processed it; it ends after the
/// limit or the first error.
#[derive(Debug)]
#[must_use = "iterators do nothing unless iterated"]
pub struct SetIterConsume<'a> {
    set: &'a mut crate::ConsumerSet,
    rt: &'a Rt,
    countdown: Countdown,
}

impl<'a> SetIterConsume<'a> {
    pub(super) fn new(set: &'a mut crate::ConsumerSet, rt: &'a Rt, limit: Option<usize>) -> Self {
        SetIterConsume {
            set,
            rt,
            countdown: Countdown(limit),
        }
    }
}

impl Iterator for SetIterConsume<'_> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        let (set, rt) = (&mut *self.set, self.rt);
        self.countdown
            .next(|| rt.block_on(async { set.iterconsume(Some(1)).next().await }))
    }
}

/// The [`Iterator`] of [`Consumer::iterqueue`](super::Consumer::iterqueue): the waiting
/// messages (basic.get), then, with `infinite`, `None` for each empty look.
#[derive(Debug)]
#[must_use = "iterators do nothing unless iterated"]
pub struct IterQueue<'a> {
    consumer: &'a mut crate::Consumer,
    rt: &'a Rt,
    remaining: Option<usize>,
    infinite: bool,
}

impl<'a> IterQueue<'a> {
    pub(super) fn new(
        consumer: &'a mut crate::Consumer,
        rt: &'a Rt,
        options: IterQueueOptions,
    ) -> Self {
        IterQueue {
            consumer,
            rt,
            remaining: options.limit,
            infinite: options.infinite,
        }
    }
}

impl Iterator for IterQueue<'_> {
    type Item = Result<Option<Message>>;

    fn next(&mut self) -> Option<Result<Option<Message>>> {
        if self.remaining == Some(0) {
            return None;
        }
        let one = IterQueueOptions::new().limit(1).infinite(self.infinite);
        let consumer = &mut *self.consumer;
        let item = self
            .rt
            .block_on(async { consumer.iterqueue(one).next().await });
        if let (Some(_), Some(remaining)) = (&item, &mut self.remaining) {
            *remaining -= 1;
        }
        item
    }
}
