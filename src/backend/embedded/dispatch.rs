//! Handing ready messages to consumers: to those of the highest priority with credit, round
//! robin among them, within each consumer's prefetch window and its channel's window, never to
//! a channel whose flow is off; a lower priority takes what the higher ones cannot take now.

use std::hash::Hash;

use super::channel::Unacked;
use super::consumers::Subscriber;
use super::ChannelLayer;

/// A delivery about to be made.
#[derive(Debug)]
pub(crate) struct Handing<'a, C> {
    pub(crate) consumer: &'a Subscriber,
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) connection: C,
    pub(crate) delivery_tag: u64,
}

/// The ready messages of one queue, as its storage gives them out.
pub(crate) trait Source<C, X> {
    /// What the storage takes from the queue.
    type Message;
    /// The next ready message, if any.
    fn next(&mut self) -> Option<Self::Message>;
    /// Delivers a message (sends it, or queues it to be sent once stored). `Ok` with the
    /// storage's handle to record when the consumer must settle it (`None` for no_ack); `Err`
    /// gives the message back when the consumer's stream is gone.
    fn deliver(
        &mut self,
        to: Handing<'_, C>,
        message: Self::Message,
    ) -> Result<Option<X>, Self::Message>;
    /// Puts back a message that could not be delivered, as it was.
    fn put_back(&mut self, message: Self::Message);
}

/// What a dispatch did.
#[derive(Debug, Default)]
pub(crate) struct Dispatched {
    /// Messages delivered.
    pub(crate) given: usize,
    /// Whether a consumer's stream was found gone (see `ChannelLayer::remove_gone`).
    pub(crate) gone: bool,
}

impl<C: Copy + Eq + Hash + std::fmt::Display, X> ChannelLayer<C, X> {
    /// How many messages the consumers of `queue` can take now, at most `chunk`: what a
    /// storage that reads in batches should read.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn credit(&self, queue: &str, chunk: usize) -> usize {
        let Some(subs) = self.consumers.get(queue) else {
            return 0;
        };
        let mut total = 0usize;
        let mut rooms: Vec<(u64, usize)> = Vec::new();
        for s in &subs.list {
            let Some(ch) = self.channels.get(&s.channel) else {
                continue;
            };
            if !ch.flow || s.gone || s.feed.is_closed() {
                continue;
            }
            let mut own = s.credit(chunk);
            if !s.no_ack {
                if let Some(room) = ch.room() {
                    let left = match rooms.iter_mut().find(|(c, _)| *c == s.channel) {
                        Some((_, left)) => left,
                        None => {
                            rooms.push((s.channel, room));
                            &mut rooms.last_mut().expect("just pushed").1
                        }
                    };
                    own = own.min(*left);
                    *left -= own;
                }
            }
            total = total.saturating_add(own);
        }
        total.min(chunk)
    }

    /// Whether some consumer of `queue` would take a message now (for `immediate`).
    pub(crate) fn has_ready_consumer(&self, queue: &str) -> bool {
        self.consumers_of(queue).iter().any(|s| {
            s.has_credit()
                && !s.gone
                && self
                    .channels
                    .get(&s.channel)
                    .is_some_and(|c| c.flow && (s.no_ack || !c.is_full()))
        })
    }

    /// Hands messages from `source` to the consumers of `queue` until it runs out or no
    /// consumer has credit.
    pub(crate) fn hand_out<S: Source<C, X>>(&mut self, queue: &str, source: &mut S) -> Dispatched {
        let mut done = Dispatched::default();
        // A broker without consumers (messages fetched with `get`) pays no lookup per publish.
        if self.consumers.is_empty() {
            return done;
        }
        let mut start = 0;
        // One priority at a time, highest first (no allocation: most queues have one).
        while let Some(group) = self
            .consumers
            .get(queue)
            .and_then(|subs| subs.priority_from(start))
        {
            start = group.end;
            if !self.hand_out_to(queue, group, source, &mut done) {
                break;
            }
        }
        done
    }

    /// Hands messages to the consumers `group` of `queue` (one priority) until none of them
    /// has credit (true: a lower priority may take the rest) or `source` runs dry (false).
    fn hand_out_to<S: Source<C, X>>(
        &mut self,
        queue: &str,
        group: std::ops::Range<usize>,
        source: &mut S,
        done: &mut Dispatched,
    ) -> bool {
        let Some(subs) = self.consumers.get_mut(queue) else {
            return false;
        };
        let n = group.len();
        let mut idle = 0;
        while idle < n {
            // The turn passes on only when used or declined, not when the queue ran dry.
            let i = group.start + subs.next % n;
            let s = &mut subs.list[i];
            let ready = match self.channels.get_mut(&s.channel) {
                Some(ch) if !s.gone && ch.flow && s.has_credit() && (s.no_ack || !ch.is_full()) => {
                    Some(ch)
                }
                _ => None,
            };
            let Some(ch) = ready else {
                subs.next = subs.next.wrapping_add(1);
                idle += 1;
                continue;
            };
            let Some(message) = source.next() else {
                return false;
            };
            subs.next = subs.next.wrapping_add(1);
            idle = 0;
            let handing = Handing {
                consumer: s,
                connection: ch.connection,
                delivery_tag: ch.peek_tag(),
            };
            match source.deliver(handing, message) {
                Ok(item) => {
                    let tag = ch.take_tag();
                    done.given += 1;
                    if let (false, Some(item)) = (s.no_ack, item) {
                        s.unacked += 1;
                        ch.unacked.insert(
                            tag,
                            Unacked {
                                queue: subs.queue.clone(),
                                consumer: Some(s.tag.clone()),
                                bounded: s.prefetch != 0,
                                item,
                            },
                        );
                    }
                }
                Err(message) => {
                    source.put_back(message);
                    s.gone = true;
                    done.gone = true;
                }
            }
        }
        true
    }
}
