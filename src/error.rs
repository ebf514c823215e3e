//! One error type for the whole crate, with variants grouped by what the caller can do.
//!
//! An error made from another one (a lapin, rusqlite, I/O or task error) keeps it as its
//! [`source`](std::error::Error::source), and the predicates ([`Error::is_connection_error`],
//! [`Error::is_timeout`], [`Error::is_retryable`], [`Error::reply_code`]) say what kind of
//! failure it is without matching on variants or texts.

mod cause;
mod constructors;

use std::sync::Arc;
use std::time::Duration;

pub use cause::Cause;

/// The result type of every fallible carrot operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error kept as the cause of a carrot error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every error carrot reports.
///
/// Broker refusals keep the AMQP reply code ([`Error::reply_code`]) and the broker's reply text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker URL could not be understood. The URL is shown with its password redacted.
    #[error("invalid broker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The URL names a backend that this build of carrot does not include.
    #[error("the {scheme}:// backend is not available in this build: {hint}")]
    BackendUnavailable {
        /// The URL scheme.
        scheme: String,
        /// What to do about it.
        hint: String,
    },

    /// The broker could not be reached, or the connection failed before the AMQP handshake
    /// ended (TLS, a server that is not a broker, no answer in time).
    #[error("could not connect to {url}: {reason}")]
    ConnectFailed {
        /// The URL, password redacted.
        url: String,
        /// What went wrong, and what to check.
        reason: String,
        /// The error of the client library (lapin), down to the I/O error, if there was one.
        #[source]
        source: Option<Cause>,
    },

    /// An argument is out of range or inconsistent (for example a priority above 255).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No serializer is registered under this name.
    #[error(
        "unknown serializer {0:?}: register it with Registry::register or use one of json, raw"
    )]
    UnknownSerializer(String),

    /// The message's content type is not in the consumer's accept list.
    #[error("content type {content_type:?} is not accepted by this consumer (it accepts {accepted}); to decode it, add {allow:?} to the consumer's accept list (ConsumerBuilder::accept, or --accept {allow} on the command line); the message can still be acked or rejected")]
    ContentTypeNotAccepted {
        /// The message's content type.
        content_type: String,
        /// The serializers the consumer accepts.
        accepted: String,
        /// What to add to the accept list to decode it: a serializer name, or the content
        /// type itself.
        allow: String,
    },

    /// Data could not be serialized.
    #[error("could not encode the message body with serializer {serializer:?}: {source}")]
    Encode {
        /// The serializer used.
        serializer: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },

    /// A message body could not be decoded.
    #[error("could not decode a message body of content type {content_type:?}: {source}")]
    Decode {
        /// The message's content type.
        content_type: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },

    /// The broker refused to redeclare an entity with other settings (AMQP 406 PRECONDITION_FAILED),
    /// or another precondition did not hold.
    #[error("precondition failed (406): {0}")]
    PreconditionFailed(String),

    /// An exclusive queue belongs to another connection (AMQP 405 RESOURCE_LOCKED).
    #[error("resource locked (405): {0}")]
    ResourceLocked(String),

    /// The exchange or queue does not exist (AMQP 404 NOT_FOUND).
    #[error("not found (404): {0}")]
    NotFound(String),

    /// The broker refused access (AMQP 403 ACCESS_REFUSED), for example a reserved `amq.` name.
    #[error("access refused (403): {0}")]
    AccessRefused(String),

    /// A mandatory message could not be routed to any queue (AMQP 312 NO_ROUTE), or an immediate
    /// message found no ready consumer (AMQP 313 NO_CONSUMERS). The message was not delivered.
    #[error("message returned ({reply_code} {reply_text}) by exchange {exchange:?} with routing key {routing_key:?}")]
    Unroutable {
        /// 312 (NO_ROUTE) or 313 (NO_CONSUMERS).
        reply_code: u16,
        /// The broker's reply text.
        reply_text: String,
        /// The exchange the message was published to.
        exchange: String,
        /// The message's routing key.
        routing_key: String,
    },

    /// The backend cannot do this (for example `immediate` on RabbitMQ 3 and later).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// The message was already acknowledged, rejected or requeued.
    #[error("message {delivery_tag} was already {state}: a message is acknowledged, rejected or requeued exactly once")]
    AlreadyAcknowledged {
        /// The message's delivery tag.
        delivery_tag: u64,
        /// What already happened to it.
        state: crate::message_state::MessageState,
    },

    /// The message was received with auto_ack or no_ack, so it cannot be acknowledged by hand.
    #[error("message {delivery_tag} was received with {mode}: it cannot be acknowledged, rejected or requeued by hand")]
    AutoAcknowledged {
        /// The message's delivery tag.
        delivery_tag: u64,
        /// `auto_ack` or `no_ack`.
        mode: &'static str,
    },

    /// A message was received but no callback is registered (the seed's `NotImplementedError`).
    #[error("no callbacks registered: call register_callback before wait, iterconsume or receive")]
    NoCallbacks,

    /// The channel is closed: the publisher or consumer was closed, or the broker closed the
    /// channel (then `reply_code` says why). The refusals 403, 404, 405 and 406 have variants
    /// of their own.
    #[error("channel closed{}: {reply_text}", code_of(*reply_code))]
    ChannelClosed {
        /// The broker's AMQP reply code when the broker closed the channel (such as 311
        /// CONTENT_TOO_LARGE or 504 CHANNEL_ERROR); `None` when carrot or the application
        /// closed it.
        reply_code: Option<u16>,
        /// The broker's reply text, or what happened and what to do.
        reply_text: String,
        /// The error of the client library, if there was one.
        #[source]
        source: Option<Cause>,
    },

    /// The connection is closed or was lost: the broker closed it (then `reply_code` says
    /// why, such as 320 CONNECTION_FORCED), the network failed, or the application closed it.
    #[error("connection closed{}: {reply_text}", code_of(*reply_code))]
    ConnectionClosed {
        /// The broker's AMQP reply code when the broker closed the connection; `None` when it
        /// was lost or closed on this side.
        reply_code: Option<u16>,
        /// The broker's reply text, or what happened and what to do.
        reply_text: String,
        /// The error of the client library (lapin), down to the I/O error, if there was one.
        #[source]
        source: Option<Cause>,
    },

    /// The broker's storage failed: a `sqlite://` file that is corrupt, read-only, locked by
    /// another program, not a carrot broker, or on a full disk. The message says which.
    #[error("broker storage: {reason}")]
    Storage {
        /// What failed, and what to do about it.
        reason: String,
        /// The SQLite error, if there was one.
        #[source]
        source: Option<Cause>,
    },

    /// A task carrot ran for the operation did not finish: it panicked (a bug, in carrot or in
    /// a callback) or was cancelled because its tokio runtime is shutting down.
    #[error("{task} did not finish: {}", if *panicked { "it panicked; this is a bug, please report it with the panic message" } else { "it was cancelled: its tokio runtime is shutting down" })]
    TaskFailed {
        /// What the task was doing.
        task: String,
        /// Whether it panicked (otherwise it was cancelled).
        panicked: bool,
        /// The task's `JoinError`, with the panic message.
        #[source]
        source: Cause,
    },

    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The broker did not answer in time. What was asked may or may not have been done (a
    /// message may still be delivered); the connection stays usable.
    #[error("{operation}: no answer from the broker within {after:?}; it may be overloaded or unreachable (raise the timeout with Timeouts if it is only slow)")]
    Timeout {
        /// What was waited for (`exchange.declare`, `publisher confirm`, ...).
        operation: String,
        /// How long carrot waited.
        after: Duration,
    },

    /// The broker blocks publishing (RabbitMQ's `connection.blocked`: a memory or disk alarm)
    /// and did not resume within the send timeout.
    #[error("the broker blocks publishing ({reason}) and did not resume within {waited:?}: it resumes when its memory or disk alarm clears; {}", if *sent { "the message was sent and may still be delivered then" } else { "the message was not sent, send it again later" })]
    Blocked {
        /// The broker's reason, such as `low on memory`.
        reason: String,
        /// How long the send waited.
        waited: Duration,
        /// Whether the message had been handed to the broker before the wait.
        sent: bool,
    },

    /// The broker refused responsibility for a published message (`basic.nack`): it was not
    /// stored and must be sent again.
    #[error("the broker refused responsibility for the message (basic.nack) sent to exchange {exchange:?} with routing key {routing_key:?}; send it again")]
    Nacked {
        /// The exchange the message was published to.
        exchange: String,
        /// The message's routing key.
        routing_key: String,
    },

    /// A retry policy gave up: `attempts` attempts over `elapsed`, the last one failing with
    /// `last` (see [`RetryPolicy`](crate::RetryPolicy)).
    #[error(
        "{what}: gave up after {attempts} attempt(s) over {elapsed:.1?}; the last error: {last}"
    )]
    RetriesExhausted {
        /// What was retried, such as `connecting to amqp://guest:***@host:5672/%2F`.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long the attempts took, sleeps included.
        elapsed: Duration,
        /// The error of the last attempt.
        #[source]
        last: Arc<Error>,
    },

    /// The broker cancelled a consumer (its queue was deleted, or a cluster node failed with
    /// `x-cancel-on-ha-failover`). Messages delivered to it and not acknowledged go back.
    #[error("the broker cancelled consumer {consumer_tag:?} of queue {queue:?} ({reason}); declare the queue again and consume anew")]
    ConsumerCancelled {
        /// The consumer's tag.
        consumer_tag: String,
        /// The queue it consumed from.
        queue: String,
        /// Why, as far as carrot knows.
        reason: String,
    },

    /// A simple queue had no message for the caller (kombu's `SimpleQueue.Empty`):
    /// [`SimpleQueue::get_nowait`](crate::SimpleQueue::get_nowait) found none, or
    /// [`SimpleQueue::get`](crate::SimpleQueue::get) waited its whole timeout.
    #[error("queue {queue:?} is empty{}", waited.map_or_else(String::new, |w| format!(": no message came within {w:?}")))]
    Empty {
        /// The queue.
        queue: String,
        /// How long `get` waited (`None`: it did not wait).
        waited: Option<Duration>,
    },

    /// Every resource of a pool was in use for the whole acquire timeout
    /// ([`ConnectionPool`](crate::ConnectionPool), [`PublisherPool`](crate::PublisherPool)).
    #[error("all {limit} {what} of the pool stayed in use for {waited:?}: release them sooner (drop what acquire gave), raise the pool's limit, or wait longer")]
    PoolExhausted {
        /// What the pool holds (`connections`, `publishers`).
        what: String,
        /// The pool's limit.
        limit: usize,
        /// How long the acquire waited.
        waited: Duration,
    },

    /// A message body is larger than the connection's maximum message size
    /// ([`ConnectionBuilder::max_message_size`](crate::ConnectionBuilder::max_message_size),
    /// 128 MiB by default as on RabbitMQ).
    #[error("the message body is {size} bytes, more than the maximum message size of {max} bytes; send large data by reference (a URL or a file path) or raise max_message_size (RabbitMQ's own limit is max_message_size in rabbitmq.conf)")]
    MessageTooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The maximum in bytes.
        max: usize,
    },
}

/// ` (CODE)` after "channel closed" when the broker gave a reply code.
fn code_of(reply_code: Option<u16>) -> String {
    reply_code.map_or_else(String::new, |code| format!(" ({code})"))
}

/// Whether an AMQP reply code says that the client sent something wrong (a frame or a method
/// the broker refused, 501-506, 530, 540, 541): sending it again would fail the same way.
pub(crate) fn is_client_fault_code(code: u16) -> bool {
    matches!(code, 501..=506 | 530 | 540 | 541)
}

impl Error {
    /// The AMQP reply code of a broker refusal, or of a channel or connection the broker
    /// closed, when the error is one.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Error::PreconditionFailed(_) => Some(406),
            Error::ResourceLocked(_) => Some(405),
            Error::NotFound(_) => Some(404),
            Error::AccessRefused(_) => Some(403),
            Error::Unroutable { reply_code, .. } => Some(*reply_code),
            Error::ChannelClosed { reply_code, .. }
            | Error::ConnectionClosed { reply_code, .. } => *reply_code,
            Error::RetriesExhausted { last, .. } => last.reply_code(),
            _ => None,
        }
    }

    /// Whether the error says the connection to the broker was lost or could not be made (as
    /// opposed to a refusal of what was asked): the errors a [`RetryPolicy`](crate::RetryPolicy)
    /// retries (those that [`is_retryable`](Self::is_retryable) too).
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::ConnectFailed { .. } | Error::ConnectionClosed { .. } | Error::Io(_) => true,
            Error::RetriesExhausted { last, .. } => last.is_connection_error(),
            _ => false,
        }
    }

    /// Whether the broker did not answer in time ([`Error::Timeout`], or an I/O time-out). What
    /// was asked may or may not have been done.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::PoolExhausted { .. } => true,
            Error::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
            Error::RetriesExhausted { last, .. } => last.is_timeout(),
            _ => false,
        }
    }

    /// Whether doing the same thing again, later, can succeed: the connection was lost or
    /// could not be made (then on the recovered connection, or on a new one: a connection
    /// that is closed stays so), the broker did not answer in time, blocked publishing or
    /// refused responsibility for a message (`basic.nack`), or its storage was locked by
    /// another program; a simple queue was empty or a pool had nothing free. Refusals of what was asked (403, 404, 405, 406, an unroutable
    /// message), bad input, a closed publisher or consumer, a task that panicked and a broker
    /// that closed the connection because of what the client sent (5xx) are not: retrying
    /// them fails the same way.
    ///
    /// For [`Error::RetriesExhausted`], whether its last error is: the policy gave up, but
    /// trying again later (the broker back) may still succeed.
    ///
    /// ```
    /// use carrot::Error;
    ///
    /// assert!(!Error::NotFound("no queue 'q' in vhost '/'".into()).is_retryable());
    /// assert!(Error::Nacked { exchange: "ex".into(), routing_key: "k".into() }.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ConnectFailed { .. }
            | Error::Timeout { .. }
            | Error::Blocked { .. }
            | Error::Nacked { .. }
            | Error::Empty { .. }
            | Error::PoolExhausted { .. } => true,
            Error::ConnectionClosed { reply_code, .. } => {
                !reply_code.is_some_and(is_client_fault_code)
            }
            Error::Io(io) => !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::Unsupported
            ),
            Error::Storage {
                source: Some(cause),
                ..
            } => storage_busy(cause),
            Error::RetriesExhausted { last, .. } => last.is_retryable(),
            _ => false,
        }
    }
}

/// Whether a storage failure is SQLite's "busy" or "locked": another program held the file
/// for too long, and it may let go.
fn storage_busy(cause: &Cause) -> bool {
    #[cfg(feature = "sqlite")]
    {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        if let Some(e) = cause.downcast_ref::<rusqlite::Error>() {
            return matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked));
        }
    }
    let _ = cause;
    false
}

#[cfg(test)]
mod tests;
