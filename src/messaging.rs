//! `Messaging`: a publisher and a consumer on the same exchange, queue and routing key.

use serde::Serialize;

use crate::connection::BrokerConnection;
use crate::consumer::{Consumer, ConsumerBuilder, FetchOptions};
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::Result;
use crate::message::Message;
use crate::publisher::{Publisher, PublisherBuilder, SendOptions};
use crate::serialization::Payload;
use crate::table::FieldTable;

/// A combined publisher and consumer (the seed's `Messaging`).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let conn = carrot::BrokerConnection::connect("memory://messaging-doc").await?;
/// let mut m = carrot::Messaging::builder(&conn).exchange("jobs").queue("jobs").routing_key("jobs").build().await?;
/// m.send(&42).await?;
/// let message = m.fetch().await?.expect("a message");
/// assert_eq!(message.decode::<i32>()?, 42);
/// message.ack()?;
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Messaging {
    publisher: Publisher,
    consumer: Consumer,
}

/// Builds a [`Messaging`]: the settings of both sides.
///
/// The publisher and the consumer share one **exchange**; the consumer also declares a
/// **queue** and binds it. Give them whole as an [`ExchangeSpec`] and a [`QueueSpec`], or
/// through the seed's keywords; each keyword's documentation says which entity it sets. The
/// seed's `durable` and `auto_delete` set both entities; `exchange_durable`,
/// `queue_durable`, `exchange_auto_delete` and `queue_auto_delete` set one.
#[derive(Debug)]
#[must_use = "call build().await to create it"]
pub struct MessagingBuilder {
    publisher: PublisherBuilder,
    consumer: ConsumerBuilder,
}

impl MessagingBuilder {
    /// The whole exchange declaration, for both sides (replaces what earlier exchange
    /// keywords set).
    pub fn exchange_spec(mut self, spec: ExchangeSpec) -> Self {
        self.publisher = self.publisher.exchange_spec(spec.clone());
        self.consumer = self.consumer.exchange_spec(spec);
        self
    }
    /// The whole queue declaration (replaces what earlier queue keywords set; an exclusive
    /// queue is made auto-delete, see [`ConsumerBuilder::exclusive`]).
    pub fn queue_spec(mut self, spec: QueueSpec) -> Self {
        self.consumer = self.consumer.queue_spec(spec);
        self
    }
    /// **Exchange**: its name, for both sides.
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.publisher = self.publisher.exchange(name.clone());
        self.consumer = self.consumer.exchange(name);
        self
    }
    /// **Queue**: the name of the queue to receive from.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.consumer = self.consumer.queue(name);
        self
    }
    /// The routing key: the publisher's default and the consumer's binding key.
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.publisher = self.publisher.routing_key(key.clone());
        self.consumer = self.consumer.routing_key(key);
        self
    }
    /// **Exchange**: its type.
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.publisher = self.publisher.exchange_type(kind);
        self.consumer = self.consumer.exchange_type(kind);
        self
    }
    /// **Exchange and queue**: whether both survive a broker restart (default true), as in
    /// the seed. [`exchange_durable`](Self::exchange_durable) and
    /// [`queue_durable`](Self::queue_durable) set one of them.
    pub fn durable(self, durable: bool) -> Self {
        self.exchange_durable(durable).queue_durable(durable)
    }
    /// **Exchange**: whether it survives a broker restart (default true).
    pub fn exchange_durable(mut self, durable: bool) -> Self {
        self.publisher = self.publisher.durable(durable);
        self.consumer = self.consumer.exchange_durable(durable);
        self
    }
    /// **Queue**: whether it survives a broker restart (default true).
    pub fn queue_durable(mut self, durable: bool) -> Self {
        self.consumer = self.consumer.queue_durable(durable);
        self
    }
    /// **Exchange and queue**: whether the exchange goes with its last binding and the queue
    /// with its last consumer (default false), as in the seed.
    /// [`exchange_auto_delete`](Self::exchange_auto_delete) and
    /// [`queue_auto_delete`](Self::queue_auto_delete) set one of them.
    pub fn auto_delete(self, auto_delete: bool) -> Self {
        self.exchange_auto_delete(auto_delete)
            .queue_auto_delete(auto_delete)
    }
    /// **Exchange**: whether it goes with its last binding (default false).
    pub fn exchange_auto_delete(mut self, auto_delete: bool) -> Self {
        self.publisher = self.publisher.auto_delete(auto_delete);
        self.consumer = self.consumer.exchange_auto_delete(auto_delete);
        self
    }
    /// **Queue**: whether it goes with its last consumer (default false; always true for an
    /// exclusive queue).
    pub fn queue_auto_delete(mut self, auto_delete: bool) -> Self {
        self.consumer = self.consumer.queue_auto_delete(auto_delete);
        self
    }
    /// **Queue**: exclusive to this connection, and therefore auto-delete (see
    /// [`ConsumerBuilder::exclusive`]).
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.consumer = self.consumer.exclusive(exclusive);
        self
    }
    /// **Exchange**: its arguments, for both sides.
    pub fn exchange_arguments(mut self, arguments: FieldTable) -> Self {
        self.publisher = self.publisher.exchange_arguments(arguments.clone());
        self.consumer = self.consumer.exchange_arguments(arguments);
        self
    }
    /// **Queue**: its arguments (see [`QueueSpec`] for typed helpers).
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.consumer = self.consumer.queue_arguments(arguments);
        self
    }
    /// The publisher's serializer.
    pub fn serializer(mut self, name: impl Into<String>) -> Self {
        self.publisher = self.publisher.serializer(name);
        self
    }
    /// The publisher's delivery mode.
    pub fn delivery_mode(mut self, mode: DeliveryMode) -> Self {
        self.publisher = self.publisher.delivery_mode(mode);
        self
    }
    /// The consumer's auto_ack.
    pub fn auto_ack(mut self, auto_ack: bool) -> Self {
        self.consumer = self.consumer.auto_ack(auto_ack);
        self
    }
    /// The consumer's no_ack.
    pub fn no_ack(mut self, no_ack: bool) -> Self {
        self.consumer = self.consumer.no_ack(no_ack);
        self
    }

    /// Builds both sides (declaring the exchange, queue and binding).
    pub async fn build(self) -> Result<Messaging> {
        let consumer = self.consumer.build().await?;
        let publisher = self.publisher.build().await?;
        Ok(Messaging {
            publisher,
            consumer,
        })
    }
}

impl Messaging {
    /// Starts building on this connection.
    pub fn builder(connection: &BrokerConnection) -> MessagingBuilder {
        MessagingBuilder {
            publisher: Publisher::builder(connection),
            consumer: Consumer::builder(connection),
        }
    }

    /// The publishing side (the seed's `publisher_cls`).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The consuming side (the seed's `consumer_cls`).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// The exchange's name (see [`exchange_spec`](Self::exchange_spec) for the rest).
    pub fn exchange(&self) -> &str {
        self.consumer.exchange()
    }

    /// The exchange's declaration, as both sides use it.
    pub fn exchange_spec(&self) -> &ExchangeSpec {
        self.consumer.exchange_spec()
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        self.consumer.queue()
    }

    /// The queue's declaration.
    pub fn queue_spec(&self) -> &QueueSpec {
        self.consumer.queue_spec()
    }

    /// The routing key: the publisher's default and the consumer's binding key.
    pub fn routing_key(&self) -> &str {
        self.publisher.routing_key()
    }

    /// See [`Publisher::send`].
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.publisher.send(data).await
    }

    /// See [`Publisher::send_with`].
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: SendOptions,
    ) -> Result<()> {
        self.publisher.send_with(data, options).await
    }

    /// See [`Consumer::fetch`].
    pub async fn fetch(&mut self) -> Result<Option<Message>> {
        self.consumer.fetch().await
    }

    /// See [`Consumer::fetch_with`].
    pub async fn fetch_with(&mut self, options: FetchOptions) -> Result<Option<Message>> {
        self.consumer.fetch_with(options).await
    }

    /// See [`Consumer::register_callback`].
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.consumer.register_callback(callback);
    }

    /// See [`Consumer::receive`].
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.consumer.receive(message)
    }

    /// See [`Consumer::wait`].
    pub async fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        self.consumer.wait(limit).await
    }

    /// Closes both sides.
    pub async fn close(&mut self) -> Result<()> {
        self.consumer.close().await?;
        self.publisher.close().await
    }
}
