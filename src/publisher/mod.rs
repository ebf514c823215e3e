//! `Publisher`: sends messages to an exchange.

mod builder;
mod compose;
mod confirm;
mod options;

use std::sync::Arc;

use serde::Serialize;

use crate::backend::{Channel, PublishFlags, Published};
use crate::connection::BrokerConnection;
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType};
use crate::error::{Error, Result};
use crate::serialization::{Compression, Registry};

pub use builder::PublisherBuilder;
pub use confirm::PendingConfirm;
pub use options::{OutgoingMessage, SendOptions};

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
    compression: Option<Compression>,
    registry: Registry,
    confirm_publish: bool,
    transactional: bool,
    auto_declare: bool,
    max_message_size: usize,
}

impl Publisher {
    /// The connection the publisher sends on.
    pub fn connection(&self) -> &BrokerConnection {
        &self._connection
    }

    /// Starts building a publisher on this connection.
    pub fn builder(connection: &BrokerConnection) -> PublisherBuilder {
        PublisherBuilder {
            connection: connection.clone(),
            exchange: ExchangeSpec::new("", ExchangeType::Direct),
            routing_key: String::new(),
            delivery_mode: DeliveryMode::Persistent,
            auto_declare: true,
            serializer: "json".into(),
            compression: None,
            confirm_publish: connection.confirm_publish_default(),
            confirm_set: false,
            transactional: false,
        }
    }

    /// The name of the exchange this publisher sends to (empty: the default exchange).
    pub fn exchange(&self) -> &str {
        &self.exchange.name
    }

    /// The declaration of the exchange this publisher sends to.
    pub fn exchange_spec(&self) -> &ExchangeSpec {
        &self.exchange
    }

    /// The exchange's type.
    pub fn exchange_type(&self) -> ExchangeType {
        self.exchange.kind
    }

    /// Whether the **exchange** is durable.
    pub fn durable(&self) -> bool {
        self.exchange.durable
    }

    /// Whether the **exchange** is auto-delete.
    pub fn auto_delete(&self) -> bool {
        self.exchange.auto_delete
    }

    /// The default routing key.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The default delivery mode.
    pub fn delivery_mode(&self) -> DeliveryMode {
        self.delivery_mode
    }

    /// The default serializer.
    pub fn serializer(&self) -> &str {
        &self.serializer
    }

    /// Whether sends wait for the broker's confirm.
    pub fn confirm_publish(&self) -> bool {
        self.confirm_publish
    }

    /// The default compression, if any (kombu's name, such as `gzip`).
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// Whether `build` declared the exchange.
    pub fn auto_declare(&self) -> bool {
        self.auto_declare
    }

    /// Declares the exchange (nothing to do for the default exchange).
    pub async fn declare(&self) -> Result<()> {
        if self.exchange.name.is_empty() {
            return Ok(());
        }
        crate::limits::check_exchange(&self.exchange)?;
        self.channel.declare_exchange(&self.exchange, false).await
    }

    /// Serializes data into a message with the right properties, without sending it:
    /// serialized (or sent as it is when `options` give a content type), encoded in the
    /// character set `content_encoding` names when it is text, compressed when a compression
    /// is set (kombu's `compression` header names it), with every property `options` set.
    pub fn create_message<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: &SendOptions,
    ) -> Result<OutgoingMessage> {
        let encoded = match &options.content_type {
            // The seed: with an explicit content type the data is sent as it is.
            Some(content_type) => {
                let mut raw = self.registry.encode("raw", data).map_err(|e| match e {
                    Error::Encode { source, .. } => Error::Encode {
                        serializer: format!("none (content_type {content_type:?} given)"),
                        source,
                    },
                    other => other,
                })?;
                raw.content_type = content_type.as_str().into();
                raw
            }
            None => {
                let serializer = options.serializer.as_deref().unwrap_or(&self.serializer);
                self.registry.encode(serializer, data)?
            }
        };
        let content_type = encoded.content_type.clone();
        let (body, content_encoding) =
            compose::in_charset(encoded, options.content_encoding.as_deref())?;
        let mut properties = compose::properties(options)
            .with_delivery_mode(options.delivery_mode.unwrap_or(self.delivery_mode));
        properties.set_content_type(content_type);
        properties.set_content_encoding(content_encoding);
        let compression = match &options.compression {
            Some(name) => Some(compose::compression(name)?),
            None => self.compression,
        };
        let body = match compression {
            Some(method) => {
                let mut headers = properties.headers().cloned().unwrap_or_default();
                headers.insert("compression".into(), method.content_type().into());
                properties = properties.with_headers(headers);
                method.compress(&body)?
            }
            None => body,
        };
        Ok(OutgoingMessage { body, properties })
    }

    /// Sends data with the publisher's defaults; with confirms, returns once the broker has
    /// taken responsibility for the message. Without confirms it returns once the message is
    /// on its way (on redis://, queued in the connection's outbox: a failure to store it is
    /// the error of the publisher's next send or of its close).
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.send_with(data, SendOptions::default()).await
    }

    /// Sends data with per-message options.
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: SendOptions,
    ) -> Result<()> {
        let message = self.create_message(data, &options)?;
        self.dispatch(message, &options, true).await?.await
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
    /// error there too). Without confirms it returns once the batch has reached the broker
    /// ([`flush`](Self::flush)); a message Redis refused then makes every outcome that error,
    /// as which one it was is not known without confirms.
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
        if let Err(e) = self.flush().await {
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(e
                    .duplicate()
                    .unwrap_or_else(|| crate::Error::storage(e.to_string())));
            }
        }
        outcomes
    }

    /// Waits until every message this publisher sent without confirms has reached the broker,
    /// and reports a failure to store one. On redis://, where a send without confirms returns
    /// once the message is queued in the connection's outbox, it returns once Redis has
    /// stored them (or with the error Redis gave: the same error the next send or the close
    /// would report). The other brokers have nothing to wait for: the embedded ones store a
    /// message before `send` returns, and RabbitMQ tells nothing without confirms.
    pub async fn flush(&self) -> Result<()> {
        self.channel.flush().await
    }

    /// Sends a message made by [`create_message`](Self::create_message) or by hand; `options`
    /// gives routing key, exchange, mandatory and immediate.
    pub async fn publish(&self, message: OutgoingMessage, options: &SendOptions) -> Result<()> {
        self.dispatch(message, options, true).await?.await
    }

    /// [`publish`](Self::publish) without waiting for the confirm (see
    /// [`begin_send`](Self::begin_send)).
    pub async fn begin_publish(
        &self,
        message: OutgoingMessage,
        options: &SendOptions,
    ) -> Result<PendingConfirm> {
        self.dispatch(message, options, false).await
    }

    /// Hands the message to the channel; `awaited` when the caller awaits its confirm at once
    /// (`send`, `publish`), which lets a broker answer in the same call.
    async fn dispatch(
        &self,
        message: OutgoingMessage,
        options: &SendOptions,
        awaited: bool,
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
        if self.transactional && options.mandatory {
            return Err(Error::InvalidArgument(
                "mandatory on a transactional publisher: RabbitMQ returns such a message after the commit, apart from its send; send it with a publisher that is not transactional".into(),
            ));
        }
        let flags = PublishFlags {
            mandatory: options.mandatory,
            immediate: options.immediate,
            confirm: self.confirm_publish,
            awaited,
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

    /// Whether the publisher's channel is transactional (see
    /// [`PublisherBuilder::transactional`]).
    pub fn transactional(&self) -> bool {
        self.transactional
    }

    /// Routes every message sent since the last commit or rollback, together (AMQP's
    /// `tx.commit`): once it returns, the broker has them all. [`Error::PreconditionFailed`]
    /// if the publisher is not [transactional](PublisherBuilder::transactional); on RabbitMQ,
    /// a transaction lost with its channel is [`Error::ChannelClosed`] (nothing of it was
    /// applied: send again and commit).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let conn = carrot::BrokerConnection::connect("memory://publisher-commit-doc").await?;
    /// conn.declare_queue(&carrot::QueueSpec::new("jobs")).await?;
    /// let publisher = carrot::Publisher::builder(&conn).routing_key("jobs").transactional(true).build().await?;
    /// publisher.send(&1).await?;
    /// publisher.send(&2).await?;
    /// assert_eq!(conn.queue_info("jobs").await?.message_count, 0); // held
    /// publisher.commit().await?;
    /// assert_eq!(conn.queue_info("jobs").await?.message_count, 2);
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn commit(&self) -> Result<()> {
        self.channel.tx_commit().await.map(|_| ())
    }

    /// Drops every message sent since the last commit or rollback (AMQP's `tx.rollback`).
    pub async fn rollback(&self) -> Result<()> {
        self.channel.tx_rollback().await
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
