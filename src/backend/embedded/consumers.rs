//! The consumers of one queue (in this process), highest priority first (RabbitMQ's consumer
//! priorities, `x-priority`), served round robin within a priority.

use std::sync::Arc;

use crate::backend::Feed;

/// A consumer subscribed to a queue.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) tag: Arc<str>,
    pub(crate) channel: u64,
    pub(crate) no_ack: bool,
    pub(crate) exclusive: bool,
    /// Its priority (`x-priority`, default 0).
    pub(crate) priority: i32,
    /// Its prefetch window (qos with global = false when it was created); 0: unlimited.
    pub(crate) prefetch: u16,
    /// Its deliveries not settled yet.
    pub(crate) unacked: u32,
    pub(crate) feed: Feed,
    /// Its delivery stream was dropped: it takes nothing more, and goes.
    pub(crate) gone: bool,
}

impl Subscriber {
    /// Whether its own window lets it take one more delivery.
    pub(crate) fn has_credit(&self) -> bool {
        (self.no_ack || self.prefetch == 0 || self.unacked < u32::from(self.prefetch))
            && self.feed.room() > 0
    }

    /// How many deliveries its own window lets it take now, at most `chunk`.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn credit(&self, chunk: usize) -> usize {
        let own = if self.no_ack || self.prefetch == 0 {
            chunk
        } else {
            usize::from(self.prefetch)
                .saturating_sub(self.unacked as usize)
                .min(chunk)
        };
        own.min(self.feed.room())
    }
}

/// The consumers of one queue.
#[derive(Debug)]
pub(crate) struct Subscribers {
    /// The queue's name, shared by the deliveries' records.
    pub(crate) queue: Arc<str>,
    /// Highest priority first; in subscription order within a priority.
    pub(crate) list: Vec<Subscriber>,
    /// Round-robin position.
    pub(crate) next: usize,
}

impl Subscribers {
    pub(crate) fn new(queue: Arc<str>) -> Self {
        Subscribers {
            queue,
            list: Vec::new(),
            next: 0,
        }
    }

    /// Adds a consumer after those of its priority and higher.
    pub(crate) fn add(&mut self, subscriber: Subscriber) {
        let at = self
            .list
            .partition_point(|s| s.priority >= subscriber.priority);
        self.list.insert(at, subscriber);
    }

    /// The consumers of the priority of the one at `start` (the next group after the one
    /// ending there), as a range of `list`; `None` past the end.
    pub(crate) fn priority_from(&self, start: usize) -> Option<std::ops::Range<usize>> {
        let priority = self.list.get(start)?.priority;
        let len = self.list[start..]
            .iter()
            .take_while(|s| s.priority == priority)
            .count();
        Some(start..start + len)
    }

    pub(crate) fn find_mut(&mut self, channel: u64, tag: &str) -> Option<&mut Subscriber> {
        self.list
            .iter_mut()
            .find(|s| s.channel == channel && &*s.tag == tag)
    }

    pub(crate) fn contains(&self, channel: u64, tag: &str) -> bool {
        self.list
            .iter()
            .any(|s| s.channel == channel && &*s.tag == tag)
    }

    /// Removes a consumer; whether it was there.
    pub(crate) fn remove(&mut self, channel: u64, tag: &str) -> bool {
        let before = self.list.len();
        self.list
            .retain(|s| !(s.channel == channel && &*s.tag == tag));
        self.list.len() != before
    }
}
