//! Options of single consumer calls: [`FetchOptions`], [`IterQueueOptions`], and [`Qos`].

/// Options of [`Consumer::fetch_with`](crate::Consumer::fetch_with).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Overrides the consumer's `no_ack`.
    pub no_ack: Option<bool>,
    /// Overrides the consumer's `auto_ack`.
    pub auto_ack: Option<bool>,
    /// Passes the message to the callbacks (default false).
    pub enable_callbacks: bool,
}

impl FetchOptions {
    /// Defaults: the consumer's settings, no callbacks.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `no_ack`.
    pub fn no_ack(mut self, no_ack: bool) -> Self {
        self.no_ack = Some(no_ack);
        self
    }
    /// Sets `auto_ack`.
    pub fn auto_ack(mut self, auto_ack: bool) -> Self {
        self.auto_ack = Some(auto_ack);
        self
    }
    /// Sets `enable_callbacks`.
    pub fn enable_callbacks(mut self, enable: bool) -> Self {
        self.enable_callbacks = enable;
        self
    }
}

/// Options of [`Consumer::iterqueue`](crate::Consumer::iterqueue) (the seed's
/// `iterqueue(limit=None, infinite=False)`).
///
/// ```
/// use carrot::IterQueueOptions;
/// let options = IterQueueOptions::new().limit(10).infinite(true);
/// assert_eq!((options.limit, options.infinite), (Some(10), true));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IterQueueOptions {
    /// Stop after this many items (default: no limit).
    pub limit: Option<usize>,
    /// Go on when the queue is empty, yielding `Ok(None)` for it (default false: the
    /// iteration ends at the first empty fetch).
    pub infinite: bool,
}

impl IterQueueOptions {
    /// Defaults: no limit, ends when the queue is empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Stops after `limit` items.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Sets `infinite`.
    pub fn infinite(mut self, infinite: bool) -> Self {
        self.infinite = infinite;
        self
    }
}

/// Quality of service (`basic.qos`): how many unacknowledged deliveries a consumer may hold,
/// given to [`Consumer::qos`](crate::Consumer::qos) and
/// [`ConsumerSet::qos`](crate::ConsumerSet::qos).
///
/// The default is no limit (`prefetch_count` 0), per consumer.
///
/// ```
/// use carrot::Qos;
/// let qos = Qos::new().prefetch_count(10);
/// assert_eq!((qos.prefetch_size, qos.prefetch_count, qos.apply_global), (0, 10, false));
/// let per_channel = Qos::new().prefetch_count(100).apply_global(true);
/// assert!(per_channel.apply_global);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Qos {
    /// A limit in bytes; must be 0 (no broker implements it, RabbitMQ refuses others).
    pub prefetch_size: u32,
    /// At most this many unacknowledged deliveries; 0 for no limit.
    pub prefetch_count: u16,
    /// The limit is shared by every consumer of the channel instead of applying to each
    /// consumer (the seed's `apply_global`; RabbitMQ's meaning).
    pub apply_global: bool,
}

impl Qos {
    /// No limit, per consumer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `prefetch_count`.
    pub fn prefetch_count(mut self, count: u16) -> Self {
        self.prefetch_count = count;
        self
    }
    /// Sets `prefetch_size` (only 0 is accepted by the brokers).
    pub fn prefetch_size(mut self, size: u32) -> Self {
        self.prefetch_size = size;
        self
    }
    /// Sets `apply_global`.
    pub fn apply_global(mut self, global: bool) -> Self {
        self.apply_global = global;
        self
    }
}
