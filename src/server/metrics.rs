//! What a server counts, for `carrot serve --metrics` and tests: connections, channels,
//! messages published and delivered (rates are differences of these totals over time), and
//! the broker's queues with their ready and unacknowledged messages.

use crate::backend::QueueStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Result;

/// Deliveries (basic.deliver and basic.get-ok) and acks of one queue.
#[derive(Debug, Default)]
pub(super) struct QueueCounters {
    deliver_get: AtomicU64,
    ack: AtomicU64,
}

impl QueueCounters {
    pub(super) fn delivered(&self, count: u64) {
        self.deliver_get.fetch_add(count, Ordering::Relaxed);
    }
    pub(super) fn acknowledged(&self) {
        self.ack.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of a running server, and its broker's queues.
#[derive(Debug)]
pub struct Metrics {
    connections: AtomicU64,
    channels: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    acknowledged: AtomicU64,
    confirmed: AtomicU64,
    connections_opened: AtomicU64,
    channels_opened: AtomicU64,
    /// Deliveries and acks by (vhost, queue).
    per_queue: parking_lot::Mutex<HashMap<(String, String), Arc<QueueCounters>>>,
    vhosts: Arc<super::vhosts::Vhosts>,
}

impl Metrics {
    pub(super) fn new(vhosts: Arc<super::vhosts::Vhosts>) -> Self {
        Metrics {
            connections: AtomicU64::new(0),
            channels: AtomicU64::new(0),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            channels_opened: AtomicU64::new(0),
            per_queue: parking_lot::Mutex::new(HashMap::new()),
            vhosts,
        }
    }
    pub(super) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
    pub(super) fn channel_opened(&self) {
        self.channels.fetch_add(1, Ordering::Relaxed);
        self.channels_opened.fetch_add(1, Ordering::Relaxed);
    }
    /// The counters of a queue (made on first use).
    pub(super) fn queue(&self, vhost: &str, queue: &str) -> Arc<QueueCounters> {
        let mut all = self.per_queue.lock();
        if let Some(c) = all.get(&(vhost.to_string(), queue.to_string())) {
            return c.clone();
        }
        let c = Arc::new(QueueCounters::default());
        all.insert((vhost.to_string(), queue.to_string()), c.clone());
        c
    }

    /// Deliveries and acks of a queue since the server started (0 for one never served).
    pub fn queue_totals(&self, vhost: &str, queue: &str) -> (u64, u64) {
        self.per_queue
            .lock()
            .get(&(vhost.to_string(), queue.to_string()))
            .map_or((0, 0), |c| {
                (
                    c.deliver_get.load(Ordering::Relaxed),
                    c.ack.load(Ordering::Relaxed),
                )
            })
    }

    /// Every queue's (deliveries, acks) so far.
    pub(super) fn queue_snapshot(&self) -> Vec<((String, String), (u64, u64))> {
        self.per_queue
            .lock()
            .iter()
            .map(|(k, c)| {
                (
                    k.clone(),
                    (
                        c.deliver_get.load(Ordering::Relaxed),
                        c.ack.load(Ordering::Relaxed),
                    ),
                )
            })
            .collect()
    }

    pub(super) fn acknowledged(&self, count: u64) {
        self.acknowledged.fetch_add(count, Ordering::Relaxed);
    }
    pub(super) fn confirmed(&self) {
        self.confirmed.fetch_add(1, Ordering::Relaxed);
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

    /// Deliveries acknowledged by clients since the server started.
    pub fn acknowledged_total(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }
    /// Publishes confirmed to clients in confirm mode since the server started.
    pub fn confirmed_total(&self) -> u64 {
        self.confirmed.load(Ordering::Relaxed)
    }
    /// Client connections opened since the server started.
    pub fn connections_opened_total(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }
    /// Channels opened since the server started.
    pub fn channels_opened_total(&self) -> u64 {
        self.channels_opened.load(Ordering::Relaxed)
    }

    /// Every queue of the default vhost (`/`), by name, with its ready and unacknowledged
    /// messages and its consumers (over sqlite://, those of every process sharing the file).
    pub async fn queues(&self) -> Result<Vec<QueueStats>> {
        self.vhosts.handle("/").await?.queue_stats().await
    }

    /// Every queue of every vhost, by vhost then name.
    pub async fn queues_by_vhost(&self) -> Result<Vec<(String, Vec<QueueStats>)>> {
        let mut all = Vec::new();
        for vhost in self.vhosts.access.vhosts() {
            let queues = self.vhosts.handle(&vhost.name).await?.queue_stats().await?;
            all.push((vhost.name, queues));
        }
        Ok(all)
    }
}
