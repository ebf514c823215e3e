//! The blocking [`Messaging`] and its builder.

use serde::Serialize;

use super::{BrokerConnection, Rt};
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::Result;
use crate::serialization::Payload;
use crate::table::FieldTable;
use crate::{FetchOptions, Message, SendOptions};

/// A blocking [`crate::Messaging`].
#[derive(Debug)]
pub struct Messaging {
    inner: crate::Messaging,
    rt: Rt,
}

/// Builds a blocking [`Messaging`] (see [`crate::MessagingBuilder`] for which entity each
/// keyword sets).
#[derive(Debug)]
#[must_use = "call build() to create it"]
pub struct MessagingBuilder {
    inner: crate::MessagingBuilder,
    rt: Rt,
}

impl MessagingBuilder {
    forward! {
        exchange_spec(spec: ExchangeSpec);
        queue_spec(spec: QueueSpec);
        exchange(name: impl Into<String>);
        queue(name: impl Into<String>);
        routing_key(key: impl Into<String>);
        exchange_type(kind: ExchangeType);
        durable(durable: bool);
        exchange_durable(durable: bool);
        queue_durable(durable: bool);
        auto_delete(auto_delete: bool);
        exchange_auto_delete(auto_delete: bool);
        queue_auto_delete(auto_delete: bool);
        exclusive(exclusive: bool);
        exchange_arguments(arguments: FieldTable);
        queue_arguments(arguments: FieldTable);
        serializer(name: impl Into<String>);
        delivery_mode(mode: DeliveryMode);
        auto_ack(auto_ack: bool);
        no_ack(no_ack: bool);
    }

    /// Builds both sides.
    pub fn build(self) -> Result<Messaging> {
        let inner = self.rt.block_on(self.inner.build())?;
        Ok(Messaging { inner, rt: self.rt })
    }
}

impl Messaging {
    /// Starts building.
    pub fn builder(connection: &BrokerConnection) -> MessagingBuilder {
        MessagingBuilder {
            inner: crate::Messaging::builder(&connection.inner),
            rt: connection.rt.clone(),
        }
    }

    getters! {
        exchange -> &str;
        exchange_spec -> &ExchangeSpec;
        queue -> &str;
        queue_spec -> &QueueSpec;
        routing_key -> &str;
    }

    /// The publishing side, as its async type (read its settings with the getters; send
    /// through the `Messaging`).
    pub fn publisher(&self) -> &crate::Publisher {
        self.inner.publisher()
    }

    /// The consuming side, as its async type (read its settings with the getters; receive
    /// through the `Messaging`).
    pub fn consumer(&mut self) -> &mut crate::Consumer {
        self.inner.consumer()
    }

    /// See [`crate::Messaging::send`].
    pub fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.rt.block_on(self.inner.send(data))
    }

    /// See [`crate::Messaging::send_with`].
    pub fn send_with<T: Serialize + ?Sized>(&self, data: &T, options: SendOptions) -> Result<()> {
        self.rt.block_on(self.inner.send_with(data, options))
    }

    /// See [`crate::Messaging::fetch`].
    pub fn fetch(&mut self) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.fetch())
    }

    /// See [`crate::Messaging::fetch_with`].
    pub fn fetch_with(&mut self, options: FetchOptions) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.fetch_with(options))
    }

    /// See [`crate::Messaging::register_callback`].
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.inner.register_callback(callback)
    }

    /// See [`crate::Messaging::receive`].
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.inner.receive(message)
    }

    /// See [`crate::Messaging::wait`].
    pub fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        self.rt.block_on(self.inner.wait(limit))
    }

    /// See [`crate::Messaging::close`].
    pub fn close(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
