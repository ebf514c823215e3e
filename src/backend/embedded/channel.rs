//! One channel's state: flow, prefetch windows, delivery tags and unsettled deliveries.

use std::sync::Arc;

use super::ledger::Ledger;

/// A delivery not settled yet; `item` is what the storage needs to settle or requeue it (the
/// message itself in memory, its row id in SQLite).
#[derive(Debug)]
pub(crate) struct Unacked<X> {
    pub(crate) queue: Arc<str>,
    /// The consumer it was delivered to; `None` for `basic.get`.
    pub(crate) consumer: Option<Arc<str>>,
    /// Whether that consumer's prefetch window counts it (so settling it gives credit back).
    pub(crate) bounded: bool,
    pub(crate) item: X,
}

/// A channel; `C` is the storage's connection id.
#[derive(Debug)]
pub(crate) struct ChannelState<C, X> {
    pub(crate) connection: C,
    /// `channel.flow`: false stops deliveries to consumers (not `get`, not publishing).
    pub(crate) flow: bool,
    /// Prefetch given to consumers created from now on (qos with global = false).
    pub(crate) consumer_prefetch: u16,
    /// Limit on unacknowledged consumer deliveries across the channel (qos with global = true).
    pub(crate) channel_prefetch: u16,
    next_tag: u64,
    pub(crate) unacked: Ledger<Unacked<X>>,
    /// Server-named consumer tags made so far.
    pub(crate) consumer_tags: u64,
}

impl<C, X> ChannelState<C, X> {
    pub(crate) fn new(connection: C) -> Self {
        ChannelState {
            connection,
            flow: true,
            consumer_prefetch: 0,
            channel_prefetch: 0,
            next_tag: 1,
            unacked: Ledger::default(),
            consumer_tags: 0,
        }
    }

    /// The tag the next delivery gets.
    pub(crate) fn peek_tag(&self) -> u64 {
        self.next_tag
    }

    /// Takes the next delivery tag.
    pub(crate) fn take_tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }

    /// Whether the channel-wide window (qos global) is full for a delivery that needs an ack.
    pub(crate) fn is_full(&self) -> bool {
        self.channel_prefetch != 0 && self.unacked.len() >= usize::from(self.channel_prefetch)
    }

    /// Deliveries the channel-wide window still allows (`None`: no limit).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn room(&self) -> Option<usize> {
        (self.channel_prefetch != 0)
            .then(|| usize::from(self.channel_prefetch).saturating_sub(self.unacked.len()))
    }
}
