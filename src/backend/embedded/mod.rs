//! The AMQP channel semantics the embedded brokers (memory, SQLite) share, written once.
//!
//! [`ChannelLayer`] owns connections, channels, consumers, delivery tags, prefetch windows and
//! credit, round-robin dispatch, flow and unsettled deliveries. A broker keeps only storage:
//! it routes and enqueues messages, hands the layer a [`Source`] of ready messages when a queue
//! may have work for its consumers, and settles, requeues or expires what the layer gives back
//! (an [`Unacked`] carries the storage's own handle on the message). A third embedded broker is
//! then a storage module; the refusals (codes and texts) are in `backend::rules`.

mod channel;
mod consumers;
mod dispatch;
mod ledger;
mod transaction;

use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

pub(crate) use channel::{ChannelState, Unacked};
pub(crate) use consumers::{Subscriber, Subscribers};
pub(crate) use dispatch::{Handing, Source};
pub(crate) use transaction::{Held as TxHeld, Settlement, Transaction};

use crate::backend::{rules, DeliveryStream, Feed, Replenish};
use crate::error::Result;

/// When settling a delivery makes its queue worth another dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refill {
    /// As soon as the consumer has room for one more (dispatching is cheap: memory).
    Each,
    /// Once half the consumer's window is free, so that one read of the queue fetches many
    /// messages (SQLite).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    HalfWindow,
}

/// A channel that was closed: what its storage must undo.
#[derive(Debug)]
pub(crate) struct Closed<C, X> {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) connection: C,
    /// Its unsettled deliveries, newest first (requeued in that order, each at the head of its
    /// queue, they keep their order).
    pub(crate) unacked: Vec<Unacked<X>>,
    /// Its consumers, as (queue, tag), already removed; with how many consumers each queue has
    /// left in this process afterwards.
    pub(crate) consumers: Vec<(Arc<str>, Arc<str>, usize)>,
}

/// Connections, channels and consumers of one embedded broker (in one process); `C` is the
/// storage's connection id, `X` its handle on a delivered message.
#[derive(Debug)]
pub(crate) struct ChannelLayer<C, X> {
    connections: HashSet<C>,
    channels: HashMap<u64, ChannelState<C, X>>,
    /// Consumers by queue.
    consumers: HashMap<Arc<str>, Subscribers>,
    next_channel: u64,
    refill: Refill,
}

impl<C: Copy + Eq + Hash + std::fmt::Display, X> ChannelLayer<C, X> {
    pub(crate) fn new(refill: Refill) -> Self {
        ChannelLayer {
            connections: HashSet::default(),
            channels: HashMap::default(),
            consumers: HashMap::default(),
            next_channel: 0,
            refill,
        }
    }

    // Connections.

    pub(crate) fn add_connection(&mut self, connection: C) {
        self.connections.insert(connection);
    }

    pub(crate) fn has_connection(&self, connection: C) -> bool {
        self.connections.contains(&connection)
    }

    /// The open connections.
    pub(crate) fn connections(&self) -> Vec<C> {
        self.connections.iter().copied().collect()
    }

    /// Forgets a connection after its channels were closed; whether it was open.
    pub(crate) fn remove_connection(&mut self, connection: C) -> bool {
        self.connections.remove(&connection)
    }

    /// The open channels of a connection.
    pub(crate) fn channels_of(&self, connection: C) -> Vec<u64> {
        self.channels
            .iter()
            .filter(|(_, c)| c.connection == connection)
            .map(|(id, _)| *id)
            .collect()
    }

    // Channels.

    pub(crate) fn open_channel(&mut self, connection: C) -> Result<u64> {
        if !self.connections.contains(&connection) {
            return Err(rules::connection_closed());
        }
        self.next_channel += 1;
        self.channels
            .insert(self.next_channel, ChannelState::new(connection));
        Ok(self.next_channel)
    }

    /// Closes a channel: its consumers go, its unsettled deliveries are handed back.
    pub(crate) fn close_channel(&mut self, channel: u64) -> Option<Closed<C, X>> {
        let state = self.channels.remove(&channel)?;
        let mut consumers = Vec::new();
        for subs in self.consumers.values_mut() {
            let before = consumers.len();
            subs.list.retain(|s| {
                let mine = s.channel == channel;
                if mine {
                    consumers.push((subs.queue.clone(), s.tag.clone(), 0));
                }
                !mine
            });
            let left = subs.list.len();
            for c in &mut consumers[before..] {
                c.2 = left;
            }
        }
        self.consumers.retain(|_, subs| !subs.list.is_empty());
        Some(Closed {
            connection: state.connection,
            unacked: state.unacked.into_newest_first().collect(),
            consumers,
        })
    }

    /// The connection of an open channel.
    pub(crate) fn connection_of(&self, channel: u64) -> Result<C> {
        self.channels
            .get(&channel)
            .map(|c| c.connection)
            .ok_or_else(rules::channel_closed)
    }

    fn channel_mut(&mut self, channel: u64) -> Result<&mut ChannelState<C, X>> {
        self.channels
            .get_mut(&channel)
            .ok_or_else(rules::channel_closed)
    }

    /// `basic.qos`; the queues of the channel's consumers are then worth a dispatch
    /// ([`queues_of_channel`](Self::queues_of_channel)).
    pub(crate) fn qos(
        &mut self,
        channel: u64,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) -> Result<()> {
        rules::prefetch_size(prefetch_size)?;
        let ch = self.channel_mut(channel)?;
        if global {
            ch.channel_prefetch = prefetch_count;
        } else {
            ch.consumer_prefetch = prefetch_count;
        }
        Ok(())
    }

    /// `channel.flow`.
    pub(crate) fn flow(&mut self, channel: u64, active: bool) -> Result<()> {
        self.channel_mut(channel)?.flow = active;
        Ok(())
    }

    /// The queues a channel's consumers read.
    pub(crate) fn queues_of_channel(&self, channel: u64) -> Vec<Arc<str>> {
        self.consumers
            .values()
            .filter(|subs| subs.list.iter().any(|s| s.channel == channel))
            .map(|subs| subs.queue.clone())
            .collect()
    }

    // Consumers.

    /// The queues that have consumers in this process.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn consumed_queues(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.consumers.keys().cloned()
    }

    /// The consumers of a queue in this process.
    /// Unsettled deliveries by queue, across every channel (of this process).
    #[cfg(feature = "serve")]
    pub(crate) fn unacked_by_queue(&self) -> HashMap<Arc<str>, u64> {
        let mut counts: HashMap<Arc<str>, u64> = HashMap::default();
        for channel in self.channels.values() {
            for unacked in channel.unacked.values() {
                *counts.entry(unacked.queue.clone()).or_default() += 1;
            }
        }
        counts
    }

    pub(crate) fn consumers_of(&self, queue: &str) -> &[Subscriber] {
        self.consumers.get(queue).map_or(&[], |s| &s.list)
    }

    /// The tag a new consumer gets: the one asked for, or a server-named one; 406 when the
    /// channel already has a consumer with that tag.
    pub(crate) fn consumer_tag(&mut self, channel: u64, requested: &str) -> Result<Arc<str>> {
        let ch = self.channel_mut(channel)?;
        let tag: Arc<str> = if requested.is_empty() {
            ch.consumer_tags += 1;
            format!("amq.ctag-{}-{channel}-{}", ch.connection, ch.consumer_tags).into()
        } else {
            requested.into()
        };
        if self
            .consumers
            .values()
            .any(|subs| subs.contains(channel, &tag))
        {
            return Err(rules::reused_tag(&tag));
        }
        Ok(tag)
    }

    /// Adds a consumer (its tag from [`consumer_tag`](Self::consumer_tag)) with its no_ack,
    /// exclusive and priority; its window is the channel's consumer prefetch now. The queue is
    /// then worth a dispatch.
    pub(crate) fn subscribe(
        &mut self,
        channel: u64,
        queue: &Arc<str>,
        tag: Arc<str>,
        (no_ack, exclusive, priority): (bool, bool, i32),
        replenish: Replenish,
    ) -> Result<DeliveryStream> {
        let prefetch = self.channel_mut(channel)?.consumer_prefetch;
        let (feed, rx) = Feed::new(queue.clone(), replenish);
        self.consumers
            .entry(queue.clone())
            .or_insert_with(|| Subscribers::new(queue.clone()))
            .add(Subscriber {
                tag,
                channel,
                no_ack,
                exclusive,
                priority,
                prefetch,
                unacked: 0,
                feed,
                gone: false,
            });
        Ok(rx)
    }

    /// Removes a consumer of a channel: its queue and how many consumers that queue has left
    /// in this process (`None`: no such consumer, which `basic.cancel` accepts).
    pub(crate) fn unsubscribe(
        &mut self,
        channel: u64,
        tag: &str,
    ) -> Result<Option<(Arc<str>, usize)>> {
        self.connection_of(channel)?;
        let Some(subs) = self
            .consumers
            .values_mut()
            .find(|s| s.contains(channel, tag))
        else {
            return Ok(None);
        };
        subs.remove(channel, tag);
        let (queue, left) = (subs.queue.clone(), subs.list.len());
        if left == 0 {
            self.consumers.remove(&queue);
        }
        Ok(Some((queue, left)))
    }

    /// The queue was deleted: its consumers' streams end with "cancelled by the broker".
    /// Settling their deliveries afterwards succeeds and changes nothing.
    pub(crate) fn queue_deleted(&mut self, queue: &str) {
        if let Some(subs) = self.consumers.remove(queue) {
            for s in subs.list {
                s.feed.fail(rules::consumer_cancelled(&s.tag, queue));
            }
        }
    }

    /// Removes the consumers whose delivery stream is gone: (queue, consumers left).
    pub(crate) fn remove_gone(&mut self, queue: &str) -> Option<(Arc<str>, usize)> {
        let subs = self.consumers.get_mut(queue)?;
        subs.list.retain(|s| !s.gone);
        let (queue, left) = (subs.queue.clone(), subs.list.len());
        if left == 0 {
            self.consumers.remove(&queue);
        }
        Some((queue, left))
    }

    // Deliveries.

    /// Records a `basic.get` delivery; `item` is `None` with no_ack (nothing to settle).
    pub(crate) fn record_get(
        &mut self,
        channel: u64,
        queue: &Arc<str>,
        item: Option<X>,
    ) -> Result<u64> {
        let ch = self.channel_mut(channel)?;
        let tag = ch.take_tag();
        if let Some(item) = item {
            ch.unacked.insert(
                tag,
                Unacked {
                    queue: queue.clone(),
                    consumer: None,
                    bounded: false,
                    item,
                },
            );
        }
        Ok(tag)
    }

    /// Settles one delivery, or with `multiple` all up to `tag` (0: all), oldest first, giving
    /// each to `each`; `refill` is told of every queue worth a dispatch afterwards (possibly
    /// more than once). 406 for a tag that is not outstanding.
    pub(crate) fn settle(
        &mut self,
        channel: u64,
        tag: u64,
        multiple: bool,
        mut each: impl FnMut(Unacked<X>),
        mut refill: impl FnMut(&Arc<str>),
    ) -> Result<()> {
        let policy = self.refill;
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or_else(rules::channel_closed)?;
        let channel_limited = ch.channel_prefetch != 0;
        let consumers = &mut self.consumers;
        let mut release = |u: &Unacked<X>| {
            if !u.bounded {
                return;
            }
            let (Some(tag), Some(subs)) = (&u.consumer, consumers.get_mut(&u.queue)) else {
                return;
            };
            if let Some(s) = subs.find_mut(channel, tag) {
                s.unacked = s.unacked.saturating_sub(1);
                let worth = match policy {
                    Refill::Each => true,
                    Refill::HalfWindow => s.unacked * 2 <= u32::from(s.prefetch),
                };
                if worth && !channel_limited {
                    refill(&u.queue);
                }
            }
        };
        if multiple {
            let settled = ch
                .unacked
                .remove_through(tag)
                .ok_or_else(|| rules::unknown_tag(tag))?;
            for u in settled {
                release(&u);
                each(u);
            }
        } else {
            let u = ch
                .unacked
                .remove(tag)
                .ok_or_else(|| rules::unknown_tag(tag))?;
            release(&u);
            each(u);
        }
        if channel_limited {
            for subs in self.consumers.values() {
                if subs.list.iter().any(|s| s.channel == channel) {
                    refill(&subs.queue);
                }
            }
        }
        Ok(())
    }

    /// The outstanding tags a settlement of `tag` would cover (see `Ledger::tags`), settling
    /// nothing: what a transaction holds. 406 for a tag that is not outstanding.
    pub(crate) fn outstanding(&self, channel: u64, tag: u64, multiple: bool) -> Result<Vec<u64>> {
        let ch = self
            .channels
            .get(&channel)
            .ok_or_else(rules::channel_closed)?;
        ch.unacked
            .tags(tag, multiple)
            .ok_or_else(|| rules::unknown_tag(tag))
    }

    /// Forgets a delivery that never reached its consumer (its transaction did not commit).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn unrecord(&mut self, channel: u64, tag: u64) {
        let Some(u) = self
            .channels
            .get_mut(&channel)
            .and_then(|ch| ch.unacked.remove(tag))
        else {
            return;
        };
        if let (Some(consumer), Some(subs)) = (&u.consumer, self.consumers.get_mut(&u.queue)) {
            if let Some(s) = subs.find_mut(channel, consumer) {
                s.unacked = s.unacked.saturating_sub(1);
            }
        }
    }
}
