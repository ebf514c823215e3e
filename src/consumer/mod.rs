//! `Consumer`: receives messages from a queue bound to an exchange.

mod attributes;
mod builder;
mod handlers;
mod iterate;
mod options;

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Channel, DeliveryStream, QueueInfo};
use crate::connection::BrokerConnection;
use crate::error::{Error, Result};
use crate::message::{AckMode, DecodeSettings, Message};
use crate::serialization::Payload;

pub use builder::ConsumerBuilder;
pub(crate) use builder::ConsumerSettings;
pub(crate) use handlers::Handlers;
pub use handlers::{Callback, DecodeErrorHandler};
pub use iterate::{IterConsume, IterQueue};
pub use options::{FetchOptions, IterQueueOptions, Qos};

/// Receives messages from a queue: by `fetch` (basic.get), `iterqueue`, or by consuming with
/// callbacks (`register_callback` + `wait` / `iterconsume`).
///
/// Every setting given to its [`ConsumerBuilder`] can be read back: [`queue_spec`](Self::queue_spec)
/// and [`exchange_spec`](Self::exchange_spec) whole, or the seed's attributes one by one
/// ([`queue`](Self::queue), [`exchange`](Self::exchange), [`routing_key`](Self::routing_key),
/// [`durable`](Self::durable), [`auto_delete`](Self::auto_delete),
/// [`exclusive`](Self::exclusive), [`exchange_type`](Self::exchange_type),
/// [`no_ack`](Self::no_ack), [`auto_ack`](Self::auto_ack), ...).
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

impl Consumer {
    /// Starts building a consumer on this connection.
    pub fn builder(connection: &BrokerConnection) -> ConsumerBuilder {
        ConsumerBuilder::new(connection, ConsumerSettings::default())
    }

    pub(crate) fn from_settings(
        connection: &BrokerConnection,
        settings: ConsumerSettings,
    ) -> ConsumerBuilder {
        ConsumerBuilder::new(connection, settings)
    }

    /// The connection the consumer receives on.
    pub fn connection(&self) -> &BrokerConnection {
        &self._connection
    }

    /// The consumer's channel.
    pub(crate) fn channel(&self) -> Arc<dyn Channel> {
        self.channel.clone()
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
        for binding in &s.bindings {
            crate::limits::check_exchange(&binding.exchange)?;
            crate::limits::check_binding(
                &s.queue.name,
                &binding.exchange.name,
                &binding.routing_key,
                &binding.arguments,
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
        for binding in &s.bindings {
            self.channel
                .declare_exchange(&binding.exchange, false)
                .await?;
            self.channel
                .bind(
                    &s.queue.name,
                    &binding.exchange.name,
                    &binding.routing_key,
                    &binding.arguments,
                )
                .await?;
        }
        Ok(info)
    }

    /// Registers a callback, called with the decoded payload and the message of every message
    /// received by `wait`, `iterconsume`, `receive` or `fetch` with `enable_callbacks`.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use carrot::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://register-callback-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("feeds").build().await?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let record = seen.clone();
    /// consumer.register_callback(move |payload, message| {
    ///     record.lock().unwrap().push(payload.as_data().cloned());
    ///     message.ack()
    /// });
    /// Publisher::builder(&conn).routing_key("feeds").build().await?.send(&"hello").await?;
    /// consumer.wait(Some(1)).await?;
    /// assert_eq!(*seen.lock().unwrap(), vec![Some(serde_json::json!("hello"))]);
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, Consumer, FetchOptions, Publisher};
    /// let conn = BrokerConnection::connect("memory://fetch-with-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build().await?;
    /// consumer.register_callback(|payload, _message| {
    ///     assert_eq!(payload.as_data(), Some(&serde_json::json!(7)));
    ///     Ok(())
    /// });
    /// Publisher::builder(&conn).routing_key("jobs").build().await?.send(&7).await?;
    /// // Acknowledged as it is taken, after the callbacks ran on it.
    /// let options = FetchOptions::new().auto_ack(true).enable_callbacks(true);
    /// let message = consumer.fetch_with(options).await?.expect("a message");
    /// assert!(message.acknowledged());
    /// assert!(consumer.fetch().await?.is_none());
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
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
                    self.settings.priority,
                )
                .await?;
            self.subscription = Some(subscription);
        }
        Ok(())
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

    /// [`next_message`](Self::next_message), waiting at most `timeout` for a message:
    /// `Ok(None)` when none came within it. The consumer goes on consuming (a message that
    /// comes later is there for the next call); subscribing first is bounded by the operation
    /// timeout, as always.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let conn = carrot::BrokerConnection::connect("memory://next-message-timeout-doc").await?;
    /// let mut consumer = carrot::Consumer::builder(&conn).queue("jobs").build().await?;
    /// assert!(consumer.next_message_timeout(Duration::from_millis(10)).await?.is_none());
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn next_message_timeout(&mut self, timeout: Duration) -> Result<Option<Message>> {
        // Subscribed outside the timeout: a basic.consume cut short would leave a consumer on
        // the broker that nothing reads. Waiting for a delivery can stop at any point.
        self.consume().await?;
        match tokio::time::timeout(timeout, self.next_message()).await {
            Ok(next) => next,
            Err(_) => Ok(None),
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

    /// Drops every waiting message; returns how many.
    pub async fn discard_all(&mut self) -> Result<usize> {
        Ok(self.channel.purge(&self.settings.queue.name).await? as usize)
    }

    /// Drops the waiting messages `filter` accepts and puts the others back, in order
    /// (the seed left them unacknowledged); returns how many were dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://discard-matching-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build().await?;
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build().await?;
    /// for n in 1..=4 {
    ///     publisher.send(&n).await?;
    /// }
    /// // Drop the even numbers; the odd ones stay, in order.
    /// let dropped = consumer
    ///     .discard_all_matching(|m| m.decode::<i32>().is_ok_and(|n| n % 2 == 0))
    ///     .await?;
    /// assert_eq!(dropped, 2);
    /// let first = consumer.fetch().await?.expect("a message");
    /// assert_eq!(first.decode::<i32>()?, 1);
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
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

    /// Quality of service: at most [`Qos::prefetch_count`] unacknowledged deliveries per
    /// consumer (per channel with [`Qos::apply_global`]); 0 for no limit. As on RabbitMQ, a
    /// per-consumer limit applies to consuming started after the call. `prefetch_size` must
    /// be 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, Consumer, Publisher, Qos};
    /// let conn = BrokerConnection::connect("memory://qos-doc").await?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build().await?;
    /// consumer.qos(Qos::new().prefetch_count(1)).await?; // before consuming starts
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build().await?;
    /// publisher.send(&1).await?;
    /// publisher.send(&2).await?;
    /// let first = consumer.next_message().await?.expect("a message");
    /// // The second is held back by the broker until the first is acknowledged.
    /// first.ack()?;
    /// let second = consumer.next_message().await?.expect("a message");
    /// assert_eq!(second.decode::<i32>()?, 2);
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn qos(&mut self, qos: Qos) -> Result<()> {
        self.channel
            .qos(qos.prefetch_size, qos.prefetch_count, qos.apply_global)
            .await
    }

    /// Pauses (`false`) or resumes (`true`) deliveries to this consumer; nothing is lost.
    pub async fn flow(&mut self, active: bool) -> Result<()> {
        self.channel.flow(active).await
    }

    /// Stops consuming (basic.cancel). Messages the application took and did not acknowledge
    /// stay so until acked or the consumer is closed; those the broker had sent and the
    /// application had not taken yet go back to the queue now (rejected with requeue, so
    /// marked redelivered), instead of waiting unacknowledged for the channel to close.
    pub async fn cancel(&mut self) -> Result<()> {
        if let Some((tag, mut deliveries)) = self.subscription.take() {
            self.channel.cancel(&tag).await?;
            // After cancel-ok nothing more comes: what is buffered is all there is.
            while let Some(item) = deliveries.try_recv() {
                let Ok(delivery) = item else { break };
                if self.settings.no_ack || self.channel.is_stale(delivery.delivery_tag) {
                    continue;
                }
                self.channel.reject(delivery.delivery_tag, true)?;
            }
        }
        Ok(())
    }

    /// Its consumer priority (see [`ConsumerBuilder::priority`]).
    pub fn priority(&self) -> i32 {
        self.settings.priority
    }

    /// Whether the consumer's channel is transactional (see
    /// [`ConsumerBuilder::transactional`]).
    pub fn transactional(&self) -> bool {
        self.settings.transactional
    }

    /// Applies the acks, rejects and requeues of its messages held since the last commit or
    /// rollback, together (AMQP's `tx.commit`). [`Error::PreconditionFailed`] if the consumer
    /// is not [transactional](ConsumerBuilder::transactional); on RabbitMQ, a transaction lost
    /// with its channel is [`Error::ChannelClosed`] (nothing of it was applied).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let conn = carrot::BrokerConnection::connect("memory://consumer-commit-doc").await?;
    /// let mut consumer = carrot::Consumer::builder(&conn).queue("jobs").transactional(true).build().await?;
    /// carrot::Publisher::builder(&conn).routing_key("jobs").build().await?.send(&1).await?;
    /// let message = consumer.fetch().await?.expect("the message");
    /// message.ack()?;                                  // held
    /// consumer.commit().await?;                        // applied
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn commit(&self) -> Result<()> {
        self.channel.tx_commit().await.map(|_| ())
    }

    /// Drops the acks, rejects and requeues held since the last commit or rollback (AMQP's
    /// `tx.rollback`): those messages stay unacknowledged.
    pub async fn rollback(&self) -> Result<()> {
        self.channel.tx_rollback().await
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
