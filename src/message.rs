//! Received messages: body, properties, delivery information, acknowledgement and decoding.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;

use crate::backend::{Channel, Delivery, Published};
use crate::entity::DeliveryMode;
use crate::error::{Error, Result};
use crate::message_state::MessageState;
use crate::properties::Properties;
use crate::serialization::{accept, Compression, Payload, Registry};
use crate::table::FieldTable;

/// How a message is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// The application acks, rejects or requeues.
    Manual,
    /// carrot acked it on receipt (the seed's `auto_ack`).
    AutoAck,
    /// The broker forgot it as it sent it (`no_ack`).
    NoAck,
}

/// What a consumer passes on to its messages for decoding.
#[derive(Clone, Debug)]
pub(crate) struct DecodeSettings {
    pub(crate) registry: Registry,
    /// Serializer names or content types accepted; `None`: the default list (see
    /// [`accept`](crate::serialization::accept)).
    pub(crate) accept: Option<Arc<[String]>>,
    /// The most a compressed body may inflate to.
    pub(crate) max_message_size: usize,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            registry: Registry::default(),
            accept: None,
            max_message_size: crate::options::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// A message received from a queue, by `fetch`, `iterqueue`, `iterconsume` or a callback.
///
/// Acknowledge it exactly once with [`ack`](Message::ack), [`reject`](Message::reject) or
/// [`requeue`](Message::requeue); a second call is [`Error::AlreadyAcknowledged`]. A message
/// left unacknowledged goes back to its queue, marked redelivered, when its consumer closes.
pub struct Message {
    message: Arc<Published>,
    delivery_tag: u64,
    redelivered: bool,
    consumer_tag: Option<Arc<str>>,
    channel: Arc<dyn Channel>,
    mode: AckMode,
    state: AtomicU8,
    decode: DecodeSettings,
    payload: OnceLock<Payload>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("delivery_tag", &self.delivery_tag)
            .field("exchange", &self.exchange())
            .field("routing_key", &self.routing_key())
            .field("redelivered", &self.redelivered)
            .field("state", &self.state())
            .field("properties", &self.message.properties)
            .field("body_len", &self.message.body.len())
            .finish()
    }
}

impl Message {
    pub(crate) fn new(
        delivery: Delivery,
        channel: Arc<dyn Channel>,
        mode: AckMode,
        decode: DecodeSettings,
    ) -> Self {
        let settled = if mode == AckMode::Manual { 0 } else { 1 };
        Message {
            message: delivery.message,
            delivery_tag: delivery.delivery_tag,
            redelivered: delivery.redelivered,
            consumer_tag: delivery.consumer_tag,
            channel,
            mode,
            state: AtomicU8::new(settled),
            decode,
            payload: OnceLock::new(),
        }
    }

    /// The body as sent.
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }

    /// All AMQP basic properties.
    pub fn properties(&self) -> &Properties {
        &self.message.properties
    }

    /// The content type, such as `application/json`.
    pub fn content_type(&self) -> Option<&str> {
        self.message.properties.content_type()
    }

    /// The content encoding, such as `utf-8` or `binary`.
    pub fn content_encoding(&self) -> Option<&str> {
        self.message.properties.content_encoding()
    }

    /// The delivery mode the publisher chose.
    pub fn delivery_mode(&self) -> Option<DeliveryMode> {
        self.message.properties.delivery_mode()
    }

    /// The priority the publisher chose.
    pub fn priority(&self) -> Option<u8> {
        self.message.properties.priority()
    }

    /// Application headers.
    pub fn headers(&self) -> Option<&FieldTable> {
        self.message.properties.headers()
    }

    /// The exchange the message was published to (empty for the default exchange).
    pub fn exchange(&self) -> &str {
        &self.message.exchange
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        &self.message.routing_key
    }

    /// The delivery tag, unique on the consumer's channel.
    pub fn delivery_tag(&self) -> u64 {
        self.delivery_tag
    }

    /// Whether the message was delivered before and not acknowledged.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The tag of the consumer that received it; `None` for `fetch`.
    pub fn consumer_tag(&self) -> Option<&str> {
        self.consumer_tag.as_deref()
    }

    /// What has happened to the message so far.
    pub fn state(&self) -> MessageState {
        MessageState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether it was acknowledged, rejected or requeued (by hand, or by auto_ack / no_ack).
    pub fn acknowledged(&self) -> bool {
        self.state() != MessageState::Received
    }

    /// The `compression` header (kombu's: the content type of the compression method), if the
    /// body is compressed.
    pub fn compression(&self) -> Option<&str> {
        self.headers()
            .and_then(|h| h.get("compression"))
            .and_then(|v| v.as_str())
    }

    /// The body as the serializer wrote it: decompressed when a `compression` header names a
    /// method, refused when it would inflate past the connection's maximum message size.
    pub fn decompressed_body(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        let Some(header) = self.compression() else {
            return Ok(std::borrow::Cow::Borrowed(self.body()));
        };
        let method = Compression::from_name(header).map_err(|_| Error::Decode {
            content_type: self.content_type().unwrap_or("").to_string(),
            source: format!(
                "the compression header names {header:?}, which carrot does not know (it reads gzip, bzip2, lzma, brotli and zstd)"
            )
            .into(),
        })?;
        method
            .decompress(self.body(), self.decode.max_message_size)
            .map(std::borrow::Cow::Owned)
    }

    /// Decodes the body into `T` with the serializer its content type names, after
    /// decompressing it. Decode into a [`Value`](crate::Value) to keep every distinction
    /// the format makes (bytes and text, integer keys, NaN).
    ///
    /// Fails with [`Error::ContentTypeNotAccepted`] when the consumer does not accept the
    /// content type, and with [`Error::Decode`] when the body is not valid for it (or
    /// inflates past the maximum message size). The message can be acked or rejected
    /// either way.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        self.check_accepted()?;
        let body = self.decompressed_body()?;
        self.decode
            .registry
            .decode(self.content_type(), self.content_encoding(), &body)
    }

    /// The decoded body, decoded once and kept (also when it is a falsy value such as `0`,
    /// `""` or `[]`, which the seed decoded again each time). msgpack, yaml and pickle data
    /// is given as its JSON view ([`Value::to_json`](crate::Value::to_json)).
    pub fn payload(&self) -> Result<&Payload> {
        if let Some(p) = self.payload.get() {
            return Ok(p);
        }
        self.check_accepted()?;
        let body = self.decompressed_body()?;
        let decoded = self.decode.registry.decode_payload(
            self.content_type(),
            self.content_encoding(),
            &body,
        )?;
        Ok(self.payload.get_or_init(|| decoded))
    }

    fn check_accepted(&self) -> Result<()> {
        accept::check(
            &self.decode.registry,
            self.decode.accept.as_deref(),
            self.content_type(),
        )
    }

    /// Acknowledges the message: the broker forgets it.
    pub fn ack(&self) -> Result<()> {
        self.settle(1, || self.channel.ack(self.delivery_tag, false))
    }

    /// Rejects the message without requeueing it: the broker drops it (or dead-letters it).
    pub fn reject(&self) -> Result<()> {
        self.settle(2, || self.channel.reject(self.delivery_tag, false))
    }

    /// Rejects the message and puts it back in its queue, marked redelivered.
    pub fn requeue(&self) -> Result<()> {
        self.settle(3, || self.channel.reject(self.delivery_tag, true))
    }

    /// Moves the state from received to `code` exactly once, then tells the broker; when the
    /// broker cannot be told (closed channel), the message is received again, not settled.
    fn settle(&self, code: u8, tell_broker: impl FnOnce() -> Result<()>) -> Result<()> {
        match self.mode {
            AckMode::AutoAck => {
                return Err(Error::AutoAcknowledged {
                    delivery_tag: self.delivery_tag,
                    mode: "auto_ack",
                })
            }
            AckMode::NoAck => {
                return Err(Error::AutoAcknowledged {
                    delivery_tag: self.delivery_tag,
                    mode: "no_ack",
                })
            }
            AckMode::Manual => {}
        }
        self.state
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|previous| Error::AlreadyAcknowledged {
                delivery_tag: self.delivery_tag,
                state: MessageState::from_u8(previous),
            })?;
        tell_broker().inspect_err(|_| self.state.store(0, Ordering::Release))
    }

    /// Acks on receipt, for consumers with `auto_ack`.
    pub(crate) fn auto_ack(&self) -> Result<()> {
        if self.mode == AckMode::AutoAck {
            self.channel.ack(self.delivery_tag, false)?;
        }
        Ok(())
    }
}
