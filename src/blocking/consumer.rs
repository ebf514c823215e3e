//! The blocking [`Consumer`] and its builder.

use super::{BrokerConnection, IterConsume, IterQueue, Rt};
use crate::entity::{Binding, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::serialization::Payload;
use crate::table::FieldTable;
use crate::{FetchOptions, IterQueueOptions, Message, Qos, QueueInfo};

/// A blocking [`crate::Consumer`].
#[derive(Debug)]
pub struct Consumer {
    pub(super) inner: crate::Consumer,
    pub(super) rt: Rt,
}

/// Builds a blocking [`Consumer`] (see [`crate::ConsumerBuilder`] for which entity each
/// keyword sets).
#[derive(Debug)]
#[must_use = "call build() to create the consumer"]
pub struct ConsumerBuilder {
    inner: crate::ConsumerBuilder,
    rt: Rt,
}

impl ConsumerBuilder {
    forward! {
        queue_spec(spec: QueueSpec);
        exchange_spec(spec: ExchangeSpec);
        queue(name: impl Into<String>);
        exchange(name: impl Into<String>);
        routing_key(key: impl Into<String>);
        exchange_type(kind: ExchangeType);
        durable(durable: bool);
        queue_durable(durable: bool);
        auto_delete(auto_delete: bool);
        queue_auto_delete(auto_delete: bool);
        exchange_durable(durable: bool);
        exchange_auto_delete(auto_delete: bool);
        exclusive(exclusive: bool);
        auto_ack(auto_ack: bool);
        no_ack(no_ack: bool);
        warn_if_exists(warn: bool);
        auto_declare(auto_declare: bool);
        queue_arguments(arguments: FieldTable);
        exchange_arguments(arguments: FieldTable);
        max_priority(max: u8);
        binding_arguments(arguments: FieldTable);
        consumer_tag(tag: impl Into<String>);
        transactional(transactional: bool);
        priority(priority: i32);
        callback(callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static);
        on_decode_error(handler: impl FnMut(&Message, &Error) + Send + 'static);
        binding(binding: Binding);
        bindings(bindings: impl IntoIterator<Item = Binding>);
        broadcast(name: impl Into<String>);
    }

    /// The async builder inside.
    pub(super) fn into_inner(self) -> crate::ConsumerBuilder {
        self.inner
    }

    /// See the async builder's `accept`.
    pub fn accept<I: IntoIterator<Item = S>, S: Into<String>>(self, accept: I) -> Self {
        Self {
            inner: self.inner.accept(accept),
            rt: self.rt,
        }
    }

    /// Builds the consumer (declaring queue, exchange and binding with auto_declare).
    pub fn build(self) -> Result<Consumer> {
        let inner = self.rt.block_on(self.inner.build())?;
        Ok(Consumer { inner, rt: self.rt })
    }
}

impl Consumer {
    /// Starts building a consumer.
    pub fn builder(connection: &BrokerConnection) -> ConsumerBuilder {
        ConsumerBuilder {
            inner: crate::Consumer::builder(&connection.inner),
            rt: connection.rt.clone(),
        }
    }

    /// See [`crate::Consumer::connection`] (a handle of it).
    pub fn connection(&self) -> BrokerConnection {
        BrokerConnection {
            inner: self.inner.connection().clone(),
            rt: self.rt.clone(),
        }
    }

    /// The async consumer underneath.
    pub fn as_async(&mut self) -> &mut crate::Consumer {
        &mut self.inner
    }

    getters! {
        queue -> &str;
        queue_spec -> &QueueSpec;
        exchange -> &str;
        exchange_spec -> &ExchangeSpec;
        exchange_type -> ExchangeType;
        routing_key -> &str;
        binding_arguments -> &FieldTable;
        durable -> bool;
        auto_delete -> bool;
        exclusive -> bool;
        no_ack -> bool;
        auto_ack -> bool;
        warn_if_exists -> bool;
        auto_declare -> bool;
        accept -> Option<&[String]>;
        consumer_tag -> Option<&str>;
        transactional -> bool;
        priority -> i32;
        bindings -> &[Binding];
    }

    /// See [`crate::Consumer::declare`].
    pub fn declare(&mut self) -> Result<QueueInfo> {
        self.rt.block_on(self.inner.declare())
    }

    /// See [`crate::Consumer::register_callback`].
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://blocking-callback-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build()?;
    /// consumer.register_callback(|payload, message| {
    ///     println!("{payload:?}");
    ///     message.ack()
    /// });
    /// Publisher::builder(&conn).routing_key("jobs").build()?.send(&1)?;
    /// assert_eq!(consumer.wait(Some(1))?, 1);
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.inner.register_callback(callback)
    }

    /// See [`crate::Consumer::set_on_decode_error`].
    pub fn set_on_decode_error(&mut self, handler: impl FnMut(&Message, &Error) + Send + 'static) {
        self.inner.set_on_decode_error(handler)
    }

    /// See [`crate::Consumer::fetch`].
    pub fn fetch(&mut self) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.fetch())
    }

    /// See [`crate::Consumer::fetch_with`].
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Consumer, Publisher};
    /// use carrot::FetchOptions;
    /// let conn = BrokerConnection::connect("memory://blocking-fetch-with-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build()?;
    /// Publisher::builder(&conn).routing_key("jobs").build()?.send(&1)?;
    /// let message = consumer.fetch_with(FetchOptions::new().auto_ack(true))?.expect("a message");
    /// assert!(message.acknowledged());
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn fetch_with(&mut self, options: FetchOptions) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.fetch_with(options))
    }

    /// See [`crate::Consumer::receive`].
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.inner.receive(message)
    }

    /// See [`crate::Consumer::consume`].
    pub fn consume(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.consume())
    }

    /// See [`crate::Consumer::next_message`].
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.next_message())
    }

    /// See [`crate::Consumer::next_message_timeout`]: `Ok(None)` when no message came within
    /// `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use carrot::blocking::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://blocking-next-timeout-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build()?;
    /// assert!(consumer.next_message_timeout(Duration::from_millis(10))?.is_none());
    /// Publisher::builder(&conn).routing_key("jobs").build()?.send(&1)?;
    /// let message = consumer.next_message_timeout(Duration::from_secs(5))?.expect("the message");
    /// message.ack()?;
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn next_message_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.next_message_timeout(timeout))
    }

    /// Consumes with callbacks; an [`Iterator`] of the processed messages (see
    /// [`crate::Consumer::iterconsume`]).
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://blocking-iterconsume-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").callback(|_, m| m.ack()).build()?;
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build()?;
    /// publisher.send(&1)?;
    /// publisher.send(&2)?;
    /// for message in consumer.iterconsume(Some(2)) {
    ///     assert!(message?.acknowledged());
    /// }
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn iterconsume(&mut self, limit: Option<usize>) -> IterConsume<'_> {
        IterConsume::new(&mut self.inner, &self.rt, limit)
    }

    /// Fetches waiting messages; an [`Iterator`] (see [`crate::Consumer::iterqueue`]).
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Consumer, Publisher};
    /// use carrot::IterQueueOptions;
    /// let conn = BrokerConnection::connect("memory://blocking-iterqueue-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build()?;
    /// Publisher::builder(&conn).routing_key("jobs").build()?.send(&1)?;
    /// let items: Vec<_> = consumer.iterqueue(IterQueueOptions::new().limit(2).infinite(true)).collect();
    /// assert!(items[0].as_ref().is_ok_and(|m| m.is_some())); // the message
    /// assert!(items[1].as_ref().is_ok_and(|m| m.is_none())); // then an empty queue
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn iterqueue(&mut self, options: IterQueueOptions) -> IterQueue<'_> {
        IterQueue::new(&mut self.inner, &self.rt, options)
    }

    /// See [`crate::Consumer::wait`].
    pub fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        self.rt.block_on(self.inner.wait(limit))
    }

    /// See [`crate::Consumer::discard_all`].
    pub fn discard_all(&mut self) -> Result<usize> {
        self.rt.block_on(self.inner.discard_all())
    }

    /// See [`crate::Consumer::discard_all_matching`].
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Consumer, Publisher};
    /// let conn = BrokerConnection::connect("memory://blocking-discard-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build()?;
    /// let publisher = Publisher::builder(&conn).routing_key("jobs").build()?;
    /// publisher.send(&1)?;
    /// publisher.send(&2)?;
    /// assert_eq!(consumer.discard_all_matching(|m| m.decode::<i32>().is_ok_and(|n| n == 2))?, 1);
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn discard_all_matching(&mut self, filter: impl FnMut(&Message) -> bool) -> Result<usize> {
        self.rt.block_on(self.inner.discard_all_matching(filter))
    }

    /// See [`crate::Consumer::qos`].
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Consumer};
    /// use carrot::Qos;
    /// let conn = BrokerConnection::connect("memory://blocking-qos-doc")?;
    /// let mut consumer = Consumer::builder(&conn).queue("jobs").build()?;
    /// consumer.qos(Qos::new().prefetch_count(10))?;
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn qos(&mut self, qos: Qos) -> Result<()> {
        self.rt.block_on(self.inner.qos(qos))
    }

    /// See [`crate::Consumer::flow`].
    pub fn flow(&mut self, active: bool) -> Result<()> {
        self.rt.block_on(self.inner.flow(active))
    }

    /// See [`crate::Consumer::cancel`].
    pub fn cancel(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.cancel())
    }

    /// See [`crate::Consumer::commit`].
    pub fn commit(&self) -> Result<()> {
        self.rt.block_on(self.inner.commit())
    }

    /// See [`crate::Consumer::rollback`].
    pub fn rollback(&self) -> Result<()> {
        self.rt.block_on(self.inner.rollback())
    }

    /// See [`crate::Consumer::close`].
    pub fn close(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
