//! One error type for the whole crate, with variants grouped by what the caller can do.

use std::fmt;

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
            _ => None,
        }
    }

    pub(crate) fn invalid_url(url: &str, reason: impl fmt::Display) -> Self {
        Error::InvalidUrl {
            url: crate::url::redact(url),
            reason: reason.to_string(),
        }
    }
}
