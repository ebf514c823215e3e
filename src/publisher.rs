//! `Publisher`: sends messages to an exchange.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Serialize;

use crate::backend::{Channel, Confirmation, PublishFlags, Published};
use crate::connection::BrokerConnection;
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType};
use crate::error::{Error, Result};
use crate::properties::Properties;
use crate::serialization::Registry;
use crate::table::FieldTable;

/// A message ready to publish: a body and its properties (see [`Publisher::create_message`]).
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

/// Per-message options of [`Publisher::send_with`]; unset options take the publisher's defaults.
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
    /// Fail with [`Error::Unroutable`] when no queue takes the message.
    pub mandatory: bool,
    /// Fail with [`Error::Unroutable`] when no consumer can take the message now.
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

/// Sends messages to one exchange, with default routing key, delivery mode and serializer.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::{BrokerConnection, ExchangeType, Publisher, SendOptions};
/// let conn = BrokerConnection::connect("memory://publisher-doc").await?;
/// let publisher = Publisher::builder(&conn)
///     .exchange("feeds").exchange_type(ExchangeType::Topic).routing_key("feed.import")
///     .build().await?;
/// publisher.send(&serde_json::json!({"url": "https://example.org"})).await?;
/// publisher.send_with("plain text", SendOptions::new().serializer("raw").priority(3)).await?;
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Publisher {
    /// Keeps the connection open as long as the publisher lives.
    _connection: BrokerConnection,
    channel: Arc<dyn Channel>,
    exchange: ExchangeSpec,
    exchange_name: Arc<str>,
    routing_key: Arc<str>,
    delivery_mode: DeliveryMode,
    serializer: String,
    registry: Registry,
    confirm_publish: bool,
    max_message_size: usize,
}

/// The broker's answer to one message, to await now or later: `Ok(())` once the broker has
/// taken responsibility for it (publisher confirms), [`Error::Nacked`] if it refused,
/// [`Error::Unroutable`] if a mandatory message found no queue, [`Error::Timeout`] or
/// [`Error::Blocked`] if no answer came within the send timeout. Without confirms (and on the
/// embedded brokers, which store a message before `begin_send` returns) it is ready at once.
///
/// Awaiting many at once keeps many confirms in flight: one publisher is then no longer
/// bound by the broker's round trip (see [`Publisher::begin_send`]). A confirm lost with a
/// connection is not lost for the message: it is sent again on the recovered connection.
#[must_use = "await it: it says whether the broker took the message"]
pub struct PendingConfirm {
    confirmation: Option<Confirmation>,
}

impl std::fmt::Debug for PendingConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConfirm")
            .field("confirmation", &self.confirmation)
            .finish()
    }
}

impl PendingConfirm {
    /// Waits for the broker's answer (the same as awaiting it).
    pub async fn wait(self) -> Result<()> {
        self.await
    }

    /// Whether the answer is known without waiting (no confirms, or the memory broker; on
    /// sqlite:// a confirmed message is confirmed by its commit).
    pub fn is_ready(&self) -> bool {
        matches!(self.confirmation, Some(Confirmation::Done) | None)
    }
}

impl Future for PendingConfirm {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.confirmation {
            None | Some(Confirmation::Done) => {
                self.confirmation = None;
                Poll::Ready(Ok(()))
            }
            Some(Confirmation::Pending(pending)) => {
                let outcome = std::task::ready!(pending.as_mut().poll(cx));
                self.confirmation = None;
                Poll::Ready(outcome)
            }
        }
    }
}

/// Builds a [`Publisher`]; every setting of the seed, with its default.
#[derive(Debug)]
#[must_use = "call build().await to create the publisher"]
pub struct PublisherBuilder {
    connection: BrokerConnection,
    exchange: ExchangeSpec,
    routing_key: String,
    delivery_mode: DeliveryMode,
    auto_declare: bool,
    serializer: String,
    confirm_publish: bool,
}

impl PublisherBuilder {
    /// The exchange to send to (default: the default exchange `""`, which routes by queue name).
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange.name = name.into();
        self
    }
    /// The exchange type (default direct).
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.exchange.kind = kind;
        self
    }
    /// The default routing key.
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = key.into();
        self
    }
    /// The default delivery mode (default persistent).
    pub fn delivery_mode(mut self, mode: DeliveryMode) -> Self {
        self.delivery_mode = mode;
        self
    }
    /// Whether the exchange survives a broker restart (default true).
    pub fn durable(mut self, durable: bool) -> Self {
        self.exchange.durable = durable;
        self
    }
    /// Whether the exchange is deleted when its last queue unbinds (default false).
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.exchange.auto_delete = auto_delete;
        self
    }
    /// Exchange arguments.
    pub fn exchange_arguments(mut self, arguments: FieldTable) -> Self {
        self.exchange.arguments = arguments;
        self
    }
    /// Whether `build` declares the exchange (default true).
    pub fn auto_declare(mut self, auto_declare: bool) -> Self {
        self.auto_declare = auto_declare;
        self
    }
    /// The default serializer (default `json`).
    pub fn serializer(mut self, name: impl Into<String>) -> Self {
        self.serializer = name.into();
        self
    }
    /// Publisher confirms: `send` returns only once the broker has taken responsibility for
    /// the message (default: the URL's `confirm_publish` option, else false). Mandatory
    /// messages are always confirmed, so that an unroutable one is an error.
    pub fn confirm_publish(mut self, confirm: bool) -> Self {
        self.confirm_publish = confirm;
        self
    }

    /// Opens a channel and, with auto_declare, declares the exchange.
    pub async fn build(self) -> Result<Publisher> {
        let registry = self.connection.registry();
        registry.check(&self.serializer)?;
        let channel = self.connection.channel().await?;
        let publisher = Publisher {
            _connection: self.connection.clone(),
            channel,
            exchange_name: self.exchange.name.as_str().into(),
            exchange: self.exchange,
            routing_key: self.routing_key.into(),
            delivery_mode: self.delivery_mode,
            serializer: self.serializer,
            registry,
            confirm_publish: self.confirm_publish,
            max_message_size: self.connection.max_message_size(),
        };
        if self.auto_declare {
            publisher.declare().await?;
        }
        Ok(publisher)
    }
}

impl Publisher {
    /// Starts building a publisher on this connection.
    pub fn builder(connection: &BrokerConnection) -> PublisherBuilder {
        PublisherBuilder {
            connection: connection.clone(),
            exchange: ExchangeSpec::new("", ExchangeType::Direct),
            routing_key: String::new(),
            delivery_mode: DeliveryMode::Persistent,
            auto_declare: true,
            serializer: "json".into(),
            confirm_publish: connection.confirm_publish_default(),
        }
    }

    /// The exchange this publisher sends to.
    pub fn exchange(&self) -> &ExchangeSpec {
        &self.exchange
    }

    /// The default routing key.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The default serializer.
    pub fn serializer(&self) -> &str {
        &self.serializer
    }

    /// Declares the exchange (nothing to do for the default exchange).
    pub async fn declare(&self) -> Result<()> {
        if self.exchange.name.is_empty() {
            return Ok(());
        }
        crate::limits::check_exchange(&self.exchange)?;
        self.channel.declare_exchange(&self.exchange, false).await
    }

    /// Serializes data into a message with the right properties, without sending it.
    pub fn create_message<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: &SendOptions,
    ) -> Result<OutgoingMessage> {
        let mut properties = Properties::default()
            .with_delivery_mode(options.delivery_mode.unwrap_or(self.delivery_mode));
        let body = if let Some(content_type) = &options.content_type {
            // The seed: with an explicit content type the data is sent as it is.
            let encoded = self.registry.encode("raw", data).map_err(|e| match e {
                Error::Encode { source, .. } => Error::Encode {
                    serializer: format!("none (content_type {content_type:?} given)"),
                    source,
                },
                other => other,
            })?;
            properties.set_content_type(content_type.as_str().into());
            properties.set_content_encoding(match &options.content_encoding {
                Some(e) => e.as_str().into(),
                None => encoded.content_encoding,
            });
            encoded.body
        } else {
            let serializer = options.serializer.as_deref().unwrap_or(&self.serializer);
            let encoded = self.registry.encode(serializer, data)?;
            properties.set_content_type(encoded.content_type);
            properties.set_content_encoding(match &options.content_encoding {
                Some(e) => e.as_str().into(),
                None => encoded.content_encoding,
            });
            encoded.body
        };
        if let Some(priority) = options.priority {
            properties = properties.with_priority(priority);
        }
        if let Some(headers) = &options.headers {
            properties = properties.with_headers(headers.clone());
        }
        Ok(OutgoingMessage { body, properties })
    }

    /// Sends data with the publisher's defaults; with confirms, returns once the broker has
    /// taken responsibility for the message.
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.send_with(data, SendOptions::default()).await
    }

    /// Sends data with per-message options.
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: SendOptions,
    ) -> Result<()> {
        self.begin_send_with(data, options).await?.await
    }

    /// Sends data without waiting for its confirm: returns once the message is handed to the
    /// broker, with a [`PendingConfirm`] to await later. Keeping a window of them in flight
    /// is how one publisher sends confirmed messages at the broker's speed instead of one
    /// round trip each:
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::collections::VecDeque;
    /// let conn = carrot::BrokerConnection::connect("memory://window-doc").await?;
    /// let publisher = carrot::Publisher::builder(&conn).confirm_publish(true).build().await?;
    /// let mut in_flight = VecDeque::new();
    /// for n in 0..1000 {
    ///     if in_flight.len() == 256 {
    ///         let oldest: carrot::PendingConfirm = in_flight.pop_front().unwrap();
    ///         oldest.await?;                     // confirmed, or why not
    ///     }
    ///     in_flight.push_back(publisher.begin_send(&n).await?);
    /// }
    /// for pending in in_flight {
    ///     pending.await?;
    /// }
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn begin_send<T: Serialize + ?Sized>(&self, data: &T) -> Result<PendingConfirm> {
        self.begin_send_with(data, SendOptions::default()).await
    }

    /// [`begin_send`](Self::begin_send) with per-message options.
    pub async fn begin_send_with<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: SendOptions,
    ) -> Result<PendingConfirm> {
        let message = self.create_message(data, &options)?;
        self.begin_publish(message, &options).await
    }

    /// Sends every item, with all their confirms in flight at once, then waits for them;
    /// returns each message's outcome, in order (an item that could not be sent has its
    /// error there too).
    pub async fn send_batch<'a, T, I>(&self, items: I) -> Vec<Result<()>>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        let mut pending = Vec::new();
        for item in items {
            pending.push(self.begin_send(item).await);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for p in pending {
            outcomes.push(match p {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            });
        }
        outcomes
    }

    /// Sends a message made by [`create_message`](Self::create_message) or by hand; `options`
    /// gives routing key, exchange, mandatory and immediate.
    pub async fn publish(&self, message: OutgoingMessage, options: &SendOptions) -> Result<()> {
        self.begin_publish(message, options).await?.await
    }

    /// [`publish`](Self::publish) without waiting for the confirm (see
    /// [`begin_send`](Self::begin_send)).
    pub async fn begin_publish(
        &self,
        message: OutgoingMessage,
        options: &SendOptions,
    ) -> Result<PendingConfirm> {
        if message.body.len() > self.max_message_size {
            return Err(Error::MessageTooLarge {
                size: message.body.len(),
                max: self.max_message_size,
            });
        }
        let exchange = match &options.exchange {
            Some(e) => e.as_str().into(),
            None => self.exchange_name.clone(),
        };
        let routing_key = match &options.routing_key {
            Some(k) => k.as_str().into(),
            None => self.routing_key.clone(),
        };
        crate::limits::check_name("exchange", &exchange)?;
        crate::limits::check_name("routing key", &routing_key)?;
        if let Some(headers) = message.properties.headers() {
            crate::limits::check_table("header", headers)?;
        }
        let flags = PublishFlags {
            mandatory: options.mandatory,
            immediate: options.immediate,
            confirm: self.confirm_publish,
        };
        let published = Arc::new(Published {
            body: message.body.into_boxed_slice(),
            properties: message.properties,
            exchange,
            routing_key,
        });
        let confirmation = self.channel.publish(published, flags).await?;
        Ok(PendingConfirm {
            confirmation: Some(confirmation),
        })
    }

    /// Closes the publisher's channel.
    pub async fn close(&self) -> Result<()> {
        self.channel.close().await
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.channel.shutdown();
    }
}
