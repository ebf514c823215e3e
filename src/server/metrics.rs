//! What a server counts, for `carrot serve --metrics` and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicU64,
    channels: AtomicU64,
    published: AtomicU64,
}

impl Metrics {
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
}
