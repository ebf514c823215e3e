//! The blocking [`ConsumerSet`].

use super::{BrokerConnection, Consumer, Rt, SetIterConsume};
use crate::error::{Error, Result};
use crate::serialization::Payload;
use crate::{Message, Qos};

/// A blocking [`crate::ConsumerSet`].
#[derive(Debug)]
pub struct ConsumerSet {
    inner: crate::ConsumerSet,
    rt: Rt,
}

impl ConsumerSet {
    /// An empty set.
    pub fn new(connection: &BrokerConnection) -> Self {
        ConsumerSet {
            inner: crate::ConsumerSet::new(&connection.inner),
            rt: connection.rt.clone(),
        }
    }

    /// See [`crate::ConsumerSet::set_auto_ack`].
    pub fn set_auto_ack(&mut self, auto_ack: bool) {
        self.inner.set_auto_ack(auto_ack)
    }

    /// See [`crate::ConsumerSet::auto_ack`].
    pub fn auto_ack(&self) -> bool {
        self.inner.auto_ack()
    }

    /// See [`crate::ConsumerSet::set_on_decode_error`].
    pub fn set_on_decode_error(&mut self, handler: impl FnMut(&Message, &Error) + Send + 'static) {
        self.inner.set_on_decode_error(handler)
    }

    /// See [`crate::ConsumerSet::from_dict`].
    pub fn from_dict(&mut self, config: &serde_json::Value) -> Result<()> {
        self.rt.block_on(self.inner.from_dict(config))
    }

    /// See [`crate::ConsumerSet::add_consumer_from_dict`].
    pub fn add_consumer_from_dict(
        &mut self,
        queue: &str,
        options: &serde_json::Value,
    ) -> Result<()> {
        self.rt
            .block_on(self.inner.add_consumer_from_dict(queue, options))
    }

    /// See [`crate::ConsumerSet::add_consumer`].
    pub fn add_consumer(&mut self, consumer: Consumer) {
        self.inner.add_consumer(consumer.inner)
    }

    /// The consumers of the set, as their async types (read their settings with the getters;
    /// receive through the set).
    pub fn consumers(&self) -> &[crate::Consumer] {
        self.inner.consumers()
    }

    /// See [`crate::ConsumerSet::register_callback`].
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.inner.register_callback(callback)
    }

    /// See [`crate::ConsumerSet::declare`].
    pub fn declare(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.declare())
    }

    /// See [`crate::ConsumerSet::receive`].
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.inner.receive(message)
    }

    /// Consumes from every queue with callbacks; an [`Iterator`] (see
    /// [`crate::ConsumerSet::iterconsume`]).
    pub fn iterconsume(&mut self, limit: Option<usize>) -> SetIterConsume<'_> {
        SetIterConsume::new(&mut self.inner, &self.rt, limit)
    }

    /// See [`crate::ConsumerSet::wait`].
    pub fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        self.rt.block_on(self.inner.wait(limit))
    }

    /// See [`crate::ConsumerSet::consume`].
    pub fn consume(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.consume())
    }

    /// See [`crate::ConsumerSet::discard_all`].
    pub fn discard_all(&mut self) -> Result<usize> {
        self.rt.block_on(self.inner.discard_all())
    }

    /// See [`crate::ConsumerSet::qos`].
    pub fn qos(&mut self, qos: Qos) -> Result<()> {
        self.rt.block_on(self.inner.qos(qos))
    }

    /// See [`crate::ConsumerSet::flow`].
    pub fn flow(&mut self, active: bool) -> Result<()> {
        self.rt.block_on(self.inner.flow(active))
    }

    /// See [`crate::ConsumerSet::cancel`].
    pub fn cancel(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.cancel())
    }

    /// See [`crate::ConsumerSet::close`].
    pub fn close(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
