//! What a publisher sends: an [`OutgoingMessage`], with per-message [`SendOptions`].

use crate::entity::DeliveryMode;
use crate::properties::Properties;
use crate::table::FieldTable;

/// A message ready to publish: a body and its properties (see [`Publisher::create_message`](crate::Publisher::create_message)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutgoingMessage {
    /// The serialized body.
    pub body: Vec<u8>,
    /// Its properties (content type, encoding, delivery mode, priority, headers, ...).
    pub properties: Properties,
}

impl OutgoingMessage {
    /// A message of this body and these properties, sent as they are.
    pub fn new(body: impl Into<Vec<u8>>, properties: Properties) -> Self {
        OutgoingMessage {
            body: body.into(),
            properties,
        }
    }
}

/// Per-message options of [`Publisher::send_with`](crate::Publisher::send_with); unset options take the publisher's defaults.
///
/// ```
/// use carrot::{DeliveryMode, SendOptions};
/// let options = SendOptions::new().routing_key("feed.import").priority(5).delivery_mode(DeliveryMode::Transient);
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// Routing key (default: the publisher's).
    pub routing_key: Option<String>,
    /// Delivery mode (default: the publisher's).
    pub delivery_mode: Option<DeliveryMode>,
    /// Fail with [`Error::Unroutable`](crate::Error::Unroutable) when no queue takes the message.
    /// The send itself fails, on every broker: on RabbitMQ a mandatory message waits for its
    /// confirm before the send returns, and is sent alone (after the confirms in flight on its
    /// channel), so that a `basic.return` can only be its own; a mandatory send costs a round
    /// trip, even with [`Publisher::begin_send`](crate::Publisher::begin_send).
    pub mandatory: bool,
    /// Fail with [`Error::Unroutable`](crate::Error::Unroutable) when no consumer can take the message now.
    pub immediate: bool,
    /// Priority (the seed's 0..9; queues honour up to their max priority).
    pub priority: Option<u8>,
    /// A content type: the data is then sent as it is (a string or bytes), not serialized.
    pub content_type: Option<String>,
    /// The content encoding to go with `content_type`.
    pub content_encoding: Option<String>,
    /// Serializer (default: the publisher's).
    pub serializer: Option<String>,
    /// Exchange to publish to instead of the publisher's (it must exist).
    pub exchange: Option<String>,
    /// Application headers.
    pub headers: Option<FieldTable>,
    /// Compression (default: the publisher's): kombu's names, see
    /// [`PublisherBuilder::compression`](crate::PublisherBuilder::compression).
    pub compression: Option<String>,
    /// The `correlation_id` property.
    pub correlation_id: Option<String>,
    /// The `reply_to` property.
    pub reply_to: Option<String>,
    /// The `expiration` property: a per-message TTL in milliseconds, as text.
    pub expiration: Option<String>,
    /// The `message_id` property.
    pub message_id: Option<String>,
    /// The `timestamp` property, in seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// The `type` property.
    pub message_type: Option<String>,
    /// The `user_id` property (RabbitMQ refuses one that is not the connection's user).
    pub user_id: Option<String>,
    /// The `app_id` property.
    pub app_id: Option<String>,
}

macro_rules! setters {
    ($($field:ident: $ty:ty => $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $field(mut self, value: impl Into<$ty>) -> Self {
            self.$field = Some(value.into());
            self
        }
    )*};
}

impl SendOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }
    setters! {
        routing_key: String => "Sets the routing key.";
        delivery_mode: DeliveryMode => "Sets the delivery mode.";
        priority: u8 => "Sets the priority.";
        content_type: String => "Sends the data as it is, with this content type.";
        content_encoding: String => "Sets the content encoding.";
        serializer: String => "Sets the serializer.";
        exchange: String => "Publishes to this exchange instead.";
        headers: FieldTable => "Sets the application headers.";
        compression: String => "Compresses the body (`gzip`, `bzip2`, `lzma`, `brotli`, `zstd`).";
        correlation_id: String => "Sets the `correlation_id` property.";
        reply_to: String => "Sets the `reply_to` property.";
        expiration: String => "Sets the `expiration` property (milliseconds, as text).";
        message_id: String => "Sets the `message_id` property.";
        timestamp: u64 => "Sets the `timestamp` property (seconds since the Unix epoch).";
        message_type: String => "Sets the `type` property.";
        user_id: String => "Sets the `user_id` property.";
        app_id: String => "Sets the `app_id` property.";
    }
    /// Sets `mandatory`.
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }
    /// Sets `immediate`.
    pub fn immediate(mut self, immediate: bool) -> Self {
        self.immediate = immediate;
        self
    }
}
