//! `Messaging`: a publisher and a consumer on the same exchange, queue and routing key.

use serde::Serialize;

use crate::connection::BrokerConnection;
use crate::consumer::{Consumer, ConsumerBuilder, FetchOptions};
use crate::entity::{DeliveryMode, ExchangeType};
use crate::error::Result;
use crate::message::Message;
use crate::publisher::{Publisher, PublisherBuilder, SendOptions};
use crate::serialization::Payload;

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
#[derive(Debug)]
#[must_use = "call build().await to create it"]
pub struct MessagingBuilder {
    publisher: PublisherBuilder,
    consumer: ConsumerBuilder,
}

impl MessagingBuilder {
    /// The exchange, for both sides.
    pub fn exchange(mut self, name: &str) -> Self {
        self.publisher = self.publisher.exchange(name);
        self.consumer = self.consumer.exchange(name);
        self
    }
    /// The queue to receive from.
    pub fn queue(mut self, name: &str) -> Self {
        self.consumer = self.consumer.queue(name);
        self
    }
    /// The routing key: the publisher's default and the consumer's binding key.
    pub fn routing_key(mut self, key: &str) -> Self {
        self.publisher = self.publisher.routing_key(key);
        self.consumer = self.consumer.routing_key(key);
        self
    }
    /// The exchange type, for both sides.
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.publisher = self.publisher.exchange_type(kind);
        self.consumer = self.consumer.exchange_type(kind);
        self
    }
    /// Durability of exchange and queue.
    pub fn durable(mut self, durable: bool) -> Self {
        self.publisher = self.publisher.durable(durable);
        self.consumer = self.consumer.durable(durable).exchange_durable(durable);
        self
    }
    /// Auto-delete of exchange and queue.
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.publisher = self.publisher.auto_delete(auto_delete);
        self.consumer = self
            .consumer
            .auto_delete(auto_delete)
            .exchange_auto_delete(auto_delete);
        self
    }
    /// Exclusive queue.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.consumer = self.consumer.exclusive(exclusive);
        self
    }
    /// The publisher's serializer.
    pub fn serializer(mut self, name: &str) -> Self {
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
