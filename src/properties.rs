//! AMQP basic properties of a message, stored compactly.
//!
//! The embedded broker may hold millions of messages, so the rarely used properties live behind
//! one optional box and the content type and encoding share the serializer's strings.

use std::sync::Arc;

use crate::entity::DeliveryMode;
use crate::table::FieldTable;

/// The AMQP basic properties of a message.
///
/// Read them with the getters and set them with the `with_` builders:
///
/// ```
/// use carrot::{DeliveryMode, Properties};
/// let p = Properties::default()
///     .with_content_type("application/json")
///     .with_delivery_mode(DeliveryMode::Transient)
///     .with_correlation_id("42");
/// assert_eq!(p.correlation_id(), Some("42"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    content_type: Option<Arc<str>>,
    content_encoding: Option<Arc<str>>,
    delivery_mode: Option<DeliveryMode>,
    priority: Option<u8>,
    headers: Option<Box<FieldTable>>,
    rare: Option<Box<Rare>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Rare {
    correlation_id: Option<String>,
    reply_to: Option<String>,
    expiration: Option<String>,
    message_id: Option<String>,
    timestamp: Option<u64>,
    kind: Option<String>,
    user_id: Option<String>,
    app_id: Option<String>,
    cluster_id: Option<String>,
}

macro_rules! rare_string {
    ($($field:ident, $with:ident, $doc:literal;)*) => {$(
        #[doc = concat!("The `", stringify!($field), "` property: ", $doc)]
        pub fn $field(&self) -> Option<&str> {
            self.rare.as_ref().and_then(|r| r.$field.as_deref())
        }

        #[doc = concat!("Sets the `", stringify!($field), "` property.")]
        pub fn $with(mut self, value: impl Into<String>) -> Self {
            self.rare.get_or_insert_with(Default::default).$field = Some(value.into());
            self
        }
    )*};
}

impl Properties {
    /// The MIME type of the body, such as `application/json`.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, value: impl Into<Arc<str>>) -> Self {
        self.content_type = Some(value.into());
        self
    }

    /// The body's encoding: a character set such as `utf-8`, or `binary`.
    pub fn content_encoding(&self) -> Option<&str> {
        self.content_encoding.as_deref()
    }

    /// Sets the content encoding.
    pub fn with_content_encoding(mut self, value: impl Into<Arc<str>>) -> Self {
        self.content_encoding = Some(value.into());
        self
    }

    /// Transient or persistent; `None` when the publisher did not say (brokers treat it as transient).
    pub fn delivery_mode(&self) -> Option<DeliveryMode> {
        self.delivery_mode
    }

    /// Sets the delivery mode.
    pub fn with_delivery_mode(mut self, mode: DeliveryMode) -> Self {
        self.delivery_mode = Some(mode);
        self
    }

    /// The priority, 0 (lowest) upwards; honoured by queues declared with a max priority.
    pub fn priority(&self) -> Option<u8> {
        self.priority
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Application headers (used by headers exchanges).
    pub fn headers(&self) -> Option<&FieldTable> {
        self.headers.as_deref()
    }

    /// Sets the application headers; an empty table clears them.
    pub fn with_headers(mut self, headers: FieldTable) -> Self {
        self.headers = (!headers.is_empty()).then(|| Box::new(headers));
        self
    }

    /// The `timestamp` property, in seconds since the Unix epoch.
    pub fn timestamp(&self) -> Option<u64> {
        self.rare.as_ref().and_then(|r| r.timestamp)
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, seconds: u64) -> Self {
        self.rare.get_or_insert_with(Default::default).timestamp = Some(seconds);
        self
    }

    /// The `type` property: the application's name for the kind of message.
    pub fn kind(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.kind.as_deref())
    }

    /// Sets the `type` property.
    pub fn with_kind(mut self, value: impl Into<String>) -> Self {
        self.rare.get_or_insert_with(Default::default).kind = Some(value.into());
        self
    }

    rare_string! {
        correlation_id, with_correlation_id, "ties a reply to its request.";
        reply_to, with_reply_to, "the queue to send replies to.";
        expiration, with_expiration, "a per-message TTL in milliseconds, as text.";
        message_id, with_message_id, "the application's identifier of the message.";
        user_id, with_user_id, "the publishing user, checked by RabbitMQ.";
        app_id, with_app_id, "the publishing application.";
        cluster_id, with_cluster_id, "deprecated in AMQP 0-9-1, kept for completeness.";
    }

    /// The same properties without `expiration` (dead-lettered expired messages lose it).
    pub(crate) fn without_expiration(mut self) -> Self {
        if let Some(rare) = &mut self.rare {
            rare.expiration = None;
        }
        self
    }

    pub(crate) fn set_content_type(&mut self, value: Arc<str>) {
        self.content_type = Some(value);
    }

    pub(crate) fn set_content_encoding(&mut self, value: Arc<str>) {
        self.content_encoding = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_stay_small() {
        // Part of the memory budget of the embedded broker: 1M queued messages under 350 MB.
        assert!(
            std::mem::size_of::<Properties>() <= 56,
            "{}",
            std::mem::size_of::<Properties>()
        );
    }

    #[test]
    fn rare_fields_round_trip() {
        let p = Properties::default()
            .with_reply_to("replies")
            .with_message_id("m1")
            .with_timestamp(7)
            .with_kind("order");
        assert_eq!(p.reply_to(), Some("replies"));
        assert_eq!(p.message_id(), Some("m1"));
        assert_eq!(p.timestamp(), Some(7));
        assert_eq!(p.kind(), Some("order"));
        assert_eq!(p.app_id(), None);
    }
}
