//! One error type for the whole crate, with variants grouped by what the caller can do.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

    /// The broker could not be reached, refused the credentials or failed the TLS handshake.
    #[error("could not connect to {url}: {reason}")]
    ConnectFailed {
        /// The URL, password redacted.
        url: String,
        /// What went wrong, and what to check.
        reason: String,
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
    #[error("content type {content_type:?} is not accepted by this consumer (accepted: {accepted}); add its serializer to the consumer's accept list")]
    ContentTypeNotAccepted {
        /// The message's content type.
        content_type: String,
        /// The serializers the consumer accepts.
        accepted: String,
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
        state: crate::MessageState,
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

    /// The channel is closed (the publisher or consumer was closed, or the broker closed it).
    #[error("channel closed: {0}")]
    ChannelClosed(String),

    /// The connection is closed or was lost.
    #[error("connection closed: {0}")]
    ConnectionClosed(String),

    /// The broker's storage failed: a `sqlite://` file that is corrupt, read-only, locked by
    /// another program, not a carrot broker, or on a full disk. The message says which.
    #[error("broker storage: {0}")]
    Storage(String),

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

impl Error {
    /// The AMQP reply code of a broker refusal, when the error is one.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Error::PreconditionFailed(_) => Some(406),
            Error::ResourceLocked(_) => Some(405),
            Error::NotFound(_) => Some(404),
            Error::AccessRefused(_) => Some(403),
            Error::Unroutable { reply_code, .. } => Some(*reply_code),
            Error::ChannelClosed(_) | Error::ConnectionClosed(_) => Some(320),
            Error::RetriesExhausted { last, .. } => last.reply_code(),
            _ => None,
        }
    }

    /// Whether the error says the connection to the broker was lost or could not be made (as
    /// opposed to a refusal of what was asked): the errors a [`RetryPolicy`](crate::RetryPolicy)
    /// retries.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::ConnectFailed { .. } | Error::ConnectionClosed(_) | Error::Io(_) => true,
            Error::RetriesExhausted { last, .. } => last.is_connection_error(),
            _ => false,
        }
    }

    pub(crate) fn invalid_url(url: &str, reason: impl fmt::Display) -> Self {
        Error::InvalidUrl {
            url: crate::redact::redact(url),
            reason: reason.to_string(),
        }
    }
}
