//! What a server counts, for `carrot serve --metrics` and tests: connections, channels,
//! messages published and delivered (rates are differences of these totals over time), and
//! the broker's queues with their ready and unacknowledged messages.

use crate::backend::QueueStats;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;

/// Counters of a running server, and its broker's queues.
#[derive(Debug)]
pub struct Metrics {
    connections: AtomicU64,
    channels: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    broker: crate::BrokerConnection,
}

impl Metrics {
    pub(super) fn new(broker: crate::BrokerConnection) -> Self {
        Metrics {
            connections: AtomicU64::new(0),
            channels: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            broker,
        }
    }
    pub(super) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
    pub(super) fn channel_opened(&self) {
        self.channels.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn channel_closed(&self) {
        self.channels.fetch_sub(1, Ordering::Relaxed);
    }
    pub(super) fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn delivered(&self) {
        self.delivered_many(1);
    }
    pub(super) fn delivered_many(&self, count: u64) {
        self.delivered.fetch_add(count, Ordering::Relaxed);
    }

    /// Open client connections.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
    /// Open channels.
    pub fn channels(&self) -> u64 {
        self.channels.load(Ordering::Relaxed)
    }
    /// Messages published since the server started.
    pub fn published_total(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Messages delivered (basic.deliver and basic.get-ok) since the server started.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Every queue of the broker, by name, with its ready and unacknowledged messages and its
    /// consumers (over sqlite://, those of every process sharing the file).
    pub async fn queues(&self) -> Result<Vec<QueueStats>> {
        self.broker.queue_stats().await
    }
}
