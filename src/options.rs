//! How a connection behaves when the broker is slow or gone: timeouts, failover, recovery,
//! heartbeats and the maximum message size. Below the backends, which honour them, and the
//! connection, which is built with them.

use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::status::EventCallback;

/// The most RabbitMQ accepts by default (its `max_message_size`), and carrot's default.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;

/// The heartbeat interval carrot asks for unless told otherwise: RabbitMQ's default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// How long carrot waits for the broker before it reports [`Error::Timeout`](crate::Error::Timeout).
/// No call waits without a bound.
///
/// | timeout | default | bounds |
/// | --- | --- | --- |
/// | `connect` | 10 s | one connection attempt: TCP, TLS and the AMQP handshake (the URL option `connection_timeout` sets it too) |
/// | `operation` | 30 s | each declare, bind, delete, purge, qos, `fetch` (basic.get), consume, cancel, channel open and close |
/// | `send` | 30 s | a send waiting for the broker: its publisher confirm, or the end of a `connection.blocked` alarm |
///
/// A call that meets a lost connection also waits for the recovery, which the
/// [`RetryPolicy`] bounds.
///
/// ```
/// use std::time::Duration;
/// let timeouts = carrot::Timeouts::default().send(Duration::from_secs(5));
/// assert_eq!(timeouts.get_send(), Duration::from_secs(5));
/// assert_eq!(timeouts.get_operation(), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    operation: Duration,
    send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            operation: Duration::from_secs(30),
            send: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// Sets the connect timeout.
    pub fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }
    /// Sets the operation timeout.
    pub fn operation(mut self, timeout: Duration) -> Self {
        self.operation = timeout;
        self
    }
    /// Sets the send timeout.
    pub fn send(mut self, timeout: Duration) -> Self {
        self.send = timeout;
        self
    }
    /// The connect timeout.
    pub fn get_connect(&self) -> Duration {
        self.connect
    }
    /// The operation timeout.
    pub fn get_operation(&self) -> Duration {
        self.operation
    }
    /// The send timeout.
    pub fn get_send(&self) -> Duration {
        self.send
    }
}

/// In which order failover URLs are tried (kombu's `failover_strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverStrategy {
    /// In the order given, starting after the URL that failed (the default).
    #[default]
    RoundRobin,
    /// In a new random order for each pass.
    Shuffle,
}

/// Everything a connection was built with besides its URLs.
#[derive(Clone)]
pub(crate) struct ConnectionOptions {
    pub(crate) policy: RetryPolicy,
    pub(crate) retry_on_connect: bool,
    pub(crate) recovery: bool,
    pub(crate) timeouts: Timeouts,
    /// `None`: the URL's `heartbeat`, else [`DEFAULT_HEARTBEAT`].
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) failover: FailoverStrategy,
    pub(crate) max_message_size: usize,
    pub(crate) on_event: Option<EventCallback>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            policy: RetryPolicy::default(),
            retry_on_connect: false,
            recovery: true,
            timeouts: Timeouts::default(),
            heartbeat: None,
            failover: FailoverStrategy::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            on_event: None,
        }
    }
}

impl std::fmt::Debug for ConnectionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionOptions")
            .field("policy", &self.policy)
            .field("retry_on_connect", &self.retry_on_connect)
            .field("recovery", &self.recovery)
            .field("timeouts", &self.timeouts)
            .field("heartbeat", &self.heartbeat)
            .field("failover", &self.failover)
            .field("max_message_size", &self.max_message_size)
            .field("on_event", &self.on_event.as_ref().map(|_| "Fn"))
            .finish()
    }
}
