//! `Consumer`: receives messages from a queue bound to an exchange.

use std::sync::Arc;

use crate::backend::{Channel, DeliveryStream, QueueInfo};
use crate::connection::BrokerConnection;
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::message::{AckMode, DecodeSettings, Message};
use crate::serialization::Payload;
use crate::table::FieldTable;

/// A callback: receives the decoded payload and the message (the seed's
/// `callback(message_data, message)`). An error stops `wait` / `iterconsume` and is returned.
pub type Callback = Box<dyn FnMut(&Payload, &Message) -> Result<()> + Send>;

/// Called when a message cannot be decoded (`on_decode_error(message, error)`). Without one,
/// the error is returned and the message stays unacknowledged.
pub type DecodeErrorHandler = Box<dyn FnMut(&Message, &Error) + Send>;

/// The callbacks and decode-error handler of a consumer or consumer set: what `receive` runs.
#[derive(Default)]
pub(crate) struct Handlers {
    callbacks: Vec<Callback>,
    on_decode_error: Option<DecodeErrorHandler>,
}

impl Handlers {
    pub(crate) fn add(&mut self, callback: Callback) {
        self.callbacks.push(callback);
    }

    pub(crate) fn set_on_decode_error(&mut self, handler: DecodeErrorHandler) {
        self.on_decode_error = Some(handler);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Passes a message to every callback: [`Error::NoCallbacks`] without any; a body that
    /// cannot be decoded goes to the decode-error handler, or is returned as the error.
    pub(crate) fn receive(&mut self, message: &Message) -> Result<()> {
        if self.callbacks.is_empty() {
            return Err(Error::NoCallbacks);
        }
        let payload = match message.payload() {
            Ok(payload) => payload,
            Err(error) => {
                return match &mut self.on_decode_error {
                    Some(handler) => {
                        handler(message, &error);
                        Ok(())
                    }
                    None => Err(error),
                }
            }
        };
        for callback in &mut self.callbacks {
            callback(payload, message)?;
        }
        Ok(())
    }
}

/// Options of [`Consumer::fetch_with`].
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

/// Settings of a consumer, as the builder and `ConsumerSet` dictionaries give them.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSettings {
    pub(crate) queue: QueueSpec,
    pub(crate) exchange: ExchangeSpec,
    pub(crate) routing_key: String,
    pub(crate) binding_arguments: FieldTable,
    pub(crate) auto_ack: bool,
    pub(crate) no_ack: bool,
    pub(crate) warn_if_exists: bool,
    pub(crate) auto_declare: bool,
    pub(crate) consumer_tag: String,
    pub(crate) accept: Option<Arc<[String]>>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            queue: QueueSpec::new(""),
            exchange: ExchangeSpec::new("", ExchangeType::Direct),
            routing_key: String::new(),
            binding_arguments: FieldTable::new(),
            auto_ack: false,
            no_ack: false,
            warn_if_exists: false,
            auto_declare: true,
            consumer_tag: String::new(),
            accept: None,
        }
    }
}

/// Receives messages from a queue: by `fetch` (basic.get), `iterqueue`, or by consuming with
/// callbacks (`register_callback` + `wait` / `iterconsume`).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::{BrokerConnection, Consumer, ExchangeType, Publisher};
/// let conn = BrokerConnection::connect("memory://consumer-doc").await?;
/// let mut consumer = Consumer::builder(&conn)
///     .queue("feeds").exchange("feeds").exchange_type(ExchangeType::Topic).routing_key("feed.#")
///     .build().await?;
/// let publisher = Publisher::builder(&conn).exchange("feeds").exchange_type(ExchangeType::Topic)
///     .routing_key("feed.import").build().await?;
/// publisher.send(&serde_json::json!({"url": "https://example.org"})).await?;
/// while let Some(message) = consumer.fetch().await? {
///     let data: serde_json::Value = message.decode()?;
///     assert_eq!(data["url"], "https://example.org");
///     message.ack()?;
/// }
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
pub struct Consumer {
    /// Keeps the connection open as long as the consumer lives.
    _connection: BrokerConnection,
    channel: Arc<dyn Channel>,
    settings: ConsumerSettings,
    decode: DecodeSettings,
    handlers: Handlers,
    subscription: Option<(Arc<str>, DeliveryStream)>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.settings.queue.name)
            .field("exchange", &self.settings.exchange.name)
            .field("routing_key", &self.settings.routing_key)
            .field("callbacks", &self.handlers.len())
            .field("consuming", &self.subscription.is_some())
            .finish()
    }
}

/// Builds a [`Consumer`]; every setting of the seed, with its default.
#[must_use = "call build().await to create the consumer"]
pub struct ConsumerBuilder {
    connection: BrokerConnection,
    settings: ConsumerSettings,
    handlers: Handlers,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ConsumerBuilder {
    /// The queue to receive from (empty: a name chosen by the broker).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.settings.queue.name = name.into();
        self
    }
    /// The exchange the queue binds to (empty: only the default exchange, by queue name).
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.settings.exchange.name = name.into();
        self
    }
    /// The binding key (see [`ExchangeType`] for how each type reads it).
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.settings.routing_key = key.into();
        self
    }
    /// The exchange type (default direct).
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.settings.exchange.kind = kind;
        self
    }
    /// Whether the queue survives a broker restart (default true).
    pub fn durable(mut self, durable: bool) -> Self {
        self.settings.queue.durable = durable;
        self
    }
    /// Whether the queue goes with its last consumer (default false).
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.settings.queue.auto_delete = auto_delete;
        self
    }
    /// Whether the exchange survives a broker restart (default true).
    ///
    /// The seed used `durable` for both queue and exchange; they are separate here, as in
    /// kombu, so that consumers of one exchange may have queues of different kinds.
    pub fn exchange_durable(mut self, durable: bool) -> Self {
        self.settings.exchange.durable = durable;
        self
    }
    /// Whether the exchange goes with its last binding (default false).
    pub fn exchange_auto_delete(mut self, auto_delete: bool) -> Self {
        self.settings.exchange.auto_delete = auto_delete;
        self
    }
    /// Whether only this connection may use the queue; implies auto_delete (default false).
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.settings.queue.exclusive = exclusive;
        if exclusive {
            self.settings.queue.auto_delete = true;
        }
        self
    }
    /// Acknowledge each message as it is received (default false).
    pub fn auto_ack(mut self, auto_ack: bool) -> Self {
        self.settings.auto_ack = auto_ack;
        self
    }
    /// Let the broker forget messages as it sends them (default false).
    pub fn no_ack(mut self, no_ack: bool) -> Self {
        self.settings.no_ack = no_ack;
        self
    }
    /// Log a warning when the queue already exists (default false).
    pub fn warn_if_exists(mut self, warn: bool) -> Self {
        self.settings.warn_if_exists = warn;
        self
    }
    /// Whether `build` declares the queue and exchange and binds them (default true).
    pub fn auto_declare(mut self, auto_declare: bool) -> Self {
        self.settings.auto_declare = auto_declare;
        self
    }
    /// Queue arguments (`x-max-priority`, ...); see [`QueueSpec`] for typed helpers.
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.settings.queue.arguments = arguments;
        self
    }
    /// Declares the queue with a maximum priority, so that priorities 0..=max are honoured.
    pub fn max_priority(mut self, max: u8) -> Self {
        self.settings.queue = self.settings.queue.max_priority(max);
        self
    }
    /// Binding arguments: for a headers exchange, the headers to match and `x-match`.
    pub fn binding_arguments(mut self, arguments: FieldTable) -> Self {
        self.settings.binding_arguments = arguments;
        self
    }
    /// The consumer tag (default: chosen by the broker).
    pub fn consumer_tag(mut self, tag: impl Into<String>) -> Self {
        self.settings.consumer_tag = tag.into();
        self
    }
    /// The serializers (or content types) to decode; others are
    /// [`Error::ContentTypeNotAccepted`]. Default: every registered serializer but
    /// pickle, which is decoded only when named here.
    pub fn accept<I: IntoIterator<Item = S>, S: Into<String>>(mut self, accept: I) -> Self {
        self.settings.accept = Some(accept.into_iter().map(Into::into).collect());
        self
    }
    /// Registers a callback (see [`Consumer::register_callback`]).
    pub fn callback(
        mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) -> Self {
        self.handlers.add(Box::new(callback));
        self
    }
    /// Sets the decode-error handler.
    pub fn on_decode_error(
        mut self,
        handler: impl FnMut(&Message, &Error) + Send + 'static,
    ) -> Self {
        self.handlers.set_on_decode_error(Box::new(handler));
        self
    }

    /// Opens a channel and, with auto_declare, declares the queue and exchange and binds them.
    pub async fn build(self) -> Result<Consumer> {
        crate::limits::check_name("queue name", &self.settings.queue.name)?;
        crate::limits::check_name("consumer tag", &self.settings.consumer_tag)?;
        let channel = self.connection.channel().await?;
        let mut consumer = Consumer {
            _connection: self.connection.clone(),
            channel,
            decode: DecodeSettings {
                registry: self.connection.registry(),
                accept: self.settings.accept.clone(),
            },
            settings: self.settings,
            handlers: self.handlers,
            subscription: None,
        };
        if consumer.settings.auto_declare {
            consumer.declare().await?;
        }
        Ok(consumer)
    }
}

impl Consumer {
    /// Starts building a consumer on this connection.
    pub fn builder(connection: &BrokerConnection) -> ConsumerBuilder {
        ConsumerBuilder {
            connection: connection.clone(),
            settings: ConsumerSettings::default(),
            handlers: Handlers::default(),
        }
    }

    pub(crate) fn from_settings(
        connection: &BrokerConnection,
        settings: ConsumerSettings,
    ) -> ConsumerBuilder {
        ConsumerBuilder {
            connection: connection.clone(),
            settings,
            handlers: Handlers::default(),
        }
    }

    /// The queue's name (chosen by the broker if it was declared without one).
    pub fn queue(&self) -> &str {
        &self.settings.queue.name
    }

    /// The exchange the queue is bound to.
    pub fn exchange(&self) -> &ExchangeSpec {
        &self.settings.exchange
    }

    /// The binding key.
    pub fn routing_key(&self) -> &str {
        &self.settings.routing_key
    }

    /// Declares the queue, the exchange, and binds the queue to the exchange.
    pub async fn declare(&mut self) -> Result<QueueInfo> {
        let s = &mut self.settings;
        crate::limits::check_queue(&s.queue)?;
        if !s.exchange.name.is_empty() {
            crate::limits::check_exchange(&s.exchange)?;
            crate::limits::check_binding(
                &s.queue.name,
                &s.exchange.name,
                &s.routing_key,
                &s.binding_arguments,
            )?;
        }
        if s.warn_if_exists && !s.queue.name.is_empty() {
            if let Ok(existing) = self.channel.declare_queue(&s.queue, true).await {
                tracing::warn!(queue = %existing.name, "queue already exists: new settings may be ignored (warn_if_exists)");
            }
        }
        let info = self.channel.declare_queue(&s.queue, false).await?;
        s.queue.name = info.name.clone();
        if !s.exchange.name.is_empty() {
            self.channel.declare_exchange(&s.exchange, false).await?;
            self.channel
                .bind(
                    &s.queue.name,
                    &s.exchange.name,
                    &s.routing_key,
                    &s.binding_arguments,
                )
                .await?;
        }
        Ok(info)
    }

    /// Registers a callback, called with the decoded payload and the message of every message
    /// received by `wait`, `iterconsume`, `receive` or `fetch` with `enable_callbacks`.
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.handlers.add(Box::new(callback));
    }

    /// Sets the handler called when a message cannot be decoded for the callbacks.
    pub fn set_on_decode_error(&mut self, handler: impl FnMut(&Message, &Error) + Send + 'static) {
        self.handlers.set_on_decode_error(Box::new(handler));
    }

    fn ack_mode(&self, no_ack: bool, auto_ack: bool) -> AckMode {
        if no_ack {
            AckMode::NoAck
        } else if auto_ack {
            AckMode::AutoAck
        } else {
            AckMode::Manual
        }
    }

    /// Takes the next waiting message (basic.get), or `None` when the queue is empty.
    pub async fn fetch(&mut self) -> Result<Option<Message>> {
        self.fetch_with(FetchOptions::default()).await
    }

    /// [`fetch`](Self::fetch) with the seed's options: `no_ack`, `auto_ack`, `enable_callbacks`.
    pub async fn fetch_with(&mut self, options: FetchOptions) -> Result<Option<Message>> {
        let no_ack = options.no_ack.unwrap_or(self.settings.no_ack);
        let auto_ack = options.auto_ack.unwrap_or(self.settings.auto_ack);
        let Some(delivery) = self.channel.get(&self.settings.queue.name, no_ack).await? else {
            return Ok(None);
        };
        let message = Message::new(
            delivery,
            self.channel.clone(),
            self.ack_mode(no_ack, auto_ack),
            self.decode.clone(),
        );
        message.auto_ack()?;
        if options.enable_callbacks {
            self.receive(&message)?;
        }
        Ok(Some(message))
    }

    /// Passes a message to every callback; [`Error::NoCallbacks`] when there is none.
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.handlers.receive(message)
    }

    /// Starts consuming (basic.consume) if not already; deliveries wait for
    /// [`next_message`](Self::next_message).
    pub async fn consume(&mut self) -> Result<()> {
        if self.subscription.is_none() {
            let subscription = self
                .channel
                .consume(
                    &self.settings.queue.name,
                    &self.settings.consumer_tag,
                    self.settings.no_ack,
                    false,
                )
                .await?;
            self.subscription = Some(subscription);
        }
        Ok(())
    }

    /// The consumer tag while consuming.
    pub fn consumer_tag(&self) -> Option<&str> {
        self.subscription.as_ref().map(|(tag, _)| &**tag)
    }

    /// Waits for the next consumed message (starting to consume if needed), without callbacks.
    ///
    /// A consumer ends only when the application cancels or closes it; anything else that
    /// ends it is an error, never a silent end: [`Error::ConsumerCancelled`] when the broker
    /// cancelled it (its queue was deleted), or the error a connection recovery gave up with
    /// ([`Error::RetriesExhausted`], or [`Error::ConnectionClosed`] with recovery off). So
    /// `Ok(None)` is not returned. On RabbitMQ a lost connection is recovered and the
    /// consumer resumed meanwhile: messages delivered before the loss and not acknowledged
    /// come again, marked redelivered (those received but not yet taken from this consumer
    /// are dropped here: RabbitMQ requeued them). After [`cancel`](Self::cancel), the next
    /// call starts consuming again.
    pub async fn next_message(&mut self) -> Result<Option<Message>> {
        self.consume().await?;
        loop {
            let Some((_, deliveries)) = &mut self.subscription else {
                return Ok(None);
            };
            let item = deliveries.recv().await;
            if let Some(taken) = self.take(item) {
                return taken.map(Some);
            }
        }
    }

    /// What the consumer makes of an item of its delivery stream: a message, the error that
    /// ended the subscription, or `None` for a delivery to drop (it came from a replaced
    /// channel, so the broker requeued it and it cannot be acknowledged).
    pub(crate) fn take(
        &mut self,
        item: Option<Result<crate::backend::Delivery>>,
    ) -> Option<Result<Message>> {
        match item {
            Some(Ok(delivery)) => {
                if !self.settings.no_ack && self.channel.is_stale(delivery.delivery_tag) {
                    tracing::debug!(
                        delivery_tag = delivery.delivery_tag,
                        "dropped a delivery of a replaced channel (the broker requeued it)"
                    );
                    return None;
                }
                Some(self.wrap(delivery))
            }
            Some(Err(error)) => {
                self.subscription = None;
                Some(Err(error))
            }
            None => {
                let tag = self
                    .subscription
                    .take()
                    .map(|(tag, _)| tag.to_string())
                    .unwrap_or_default();
                Some(Err(Error::ConsumerCancelled {
                    consumer_tag: tag,
                    queue: self.settings.queue.name.clone(),
                    reason: "the broker ended the subscription (its queue was deleted, or the broker restarted)".into(),
                }))
            }
        }
    }

    pub(crate) fn wrap(&self, delivery: crate::backend::Delivery) -> Result<Message> {
        let mode = self.ack_mode(self.settings.no_ack, self.settings.auto_ack);
        let message = Message::new(delivery, self.channel.clone(), mode, self.decode.clone());
        message.auto_ack()?;
        Ok(message)
    }

    pub(crate) fn subscription_mut(&mut self) -> Option<&mut DeliveryStream> {
        self.subscription.as_mut().map(|(_, s)| s)
    }

    pub(crate) fn has_callbacks(&self) -> bool {
        !self.handlers.is_empty()
    }

    /// Consumes messages as they arrive, passing each to the callbacks and yielding it
    /// afterwards; stops after `limit` messages, or when the consumer is cancelled.
    pub fn iterconsume(&mut self, limit: Option<usize>) -> IterConsume<'_> {
        IterConsume {
            consumer: self,
            remaining: limit,
        }
    }

    /// Consumes with callbacks until `limit` messages were processed (forever without one);
    /// returns how many were.
    pub async fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        let mut it = self.iterconsume(limit);
        let mut n = 0;
        while let Some(message) = it.next().await {
            message?;
            n += 1;
        }
        Ok(n)
    }

    /// Fetches waiting messages one by one (basic.get). Ends when the queue is empty, unless
    /// `infinite`, in which case it yields `Ok(None)` for an empty queue and goes on; stops
    /// after `limit` items.
    pub fn iterqueue(&mut self, limit: Option<usize>, infinite: bool) -> IterQueue<'_> {
        IterQueue {
            consumer: self,
            remaining: limit,
            infinite,
        }
    }

    /// Drops every waiting message; returns how many.
    pub async fn discard_all(&mut self) -> Result<usize> {
        Ok(self.channel.purge(&self.settings.queue.name).await? as usize)
    }

    /// Drops the waiting messages `filter` accepts and puts the others back, in order
    /// (the seed left them unacknowledged); returns how many were dropped.
    pub async fn discard_all_matching(
        &mut self,
        mut filter: impl FnMut(&Message) -> bool,
    ) -> Result<usize> {
        let waiting = self
            .channel
            .declare_queue(&self.settings.queue, true)
            .await?
            .message_count;
        let mut kept = Vec::new();
        let mut dropped = 0;
        for _ in 0..waiting {
            let Some(message) = self
                .fetch_with(FetchOptions::new().no_ack(false).auto_ack(false))
                .await?
            else {
                break;
            };
            if filter(&message) {
                message.ack()?;
                dropped += 1;
            } else {
                kept.push(message);
            }
        }
        // Requeued messages go to the head of the queue: last first keeps their order.
        for message in kept.iter().rev() {
            message.requeue()?;
        }
        Ok(dropped)
    }

    /// Quality of service: at most `prefetch_count` unacknowledged deliveries per consumer
    /// (per channel with `apply_global`); 0 for no limit. As on RabbitMQ, a per-consumer limit
    /// applies to consuming started after the call. `prefetch_size` must be 0.
    pub async fn qos(
        &mut self,
        prefetch_size: u32,
        prefetch_count: u16,
        apply_global: bool,
    ) -> Result<()> {
        self.channel
            .qos(prefetch_size, prefetch_count, apply_global)
            .await
    }

    /// Pauses (`false`) or resumes (`true`) deliveries to this consumer; nothing is lost.
    pub async fn flow(&mut self, active: bool) -> Result<()> {
        self.channel.flow(active).await
    }

    /// Stops consuming; messages received and not acknowledged stay so until acked or closed.
    pub async fn cancel(&mut self) -> Result<()> {
        if let Some((tag, _)) = self.subscription.take() {
            self.channel.cancel(&tag).await?;
        }
        Ok(())
    }

    /// Closes the channel: unacknowledged messages go back to the queue, marked redelivered.
    pub async fn close(&mut self) -> Result<()> {
        self.subscription = None;
        self.channel.close().await
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.channel.shutdown();
    }
}

/// The iterator of [`Consumer::iterconsume`]: call `next().await`.
#[derive(Debug)]
pub struct IterConsume<'a> {
    consumer: &'a mut Consumer,
    remaining: Option<usize>,
}

impl IterConsume<'_> {
    /// The next message, after the callbacks ran on it; `None` at the limit or on cancel.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        if self.remaining == Some(0) {
            return None;
        }
        if !self.consumer.has_callbacks() {
            self.remaining = Some(0);
            return Some(Err(Error::NoCallbacks));
        }
        let message = match self.consumer.next_message().await {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Some(self.consumer.receive(&message).map(|()| message))
    }
}

/// The iterator of [`Consumer::iterqueue`]: call `next().await`.
#[derive(Debug)]
pub struct IterQueue<'a> {
    consumer: &'a mut Consumer,
    remaining: Option<usize>,
    infinite: bool,
}

impl IterQueue<'_> {
    /// The next waiting message; `Some(Ok(None))` for an empty queue when infinite.
    pub async fn next(&mut self) -> Option<Result<Option<Message>>> {
        if self.remaining == Some(0) {
            return None;
        }
        let item = match self.consumer.fetch().await {
            Ok(None) if !self.infinite => return None,
            other => other,
        };
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Some(item)
    }
}
