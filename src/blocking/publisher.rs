//! The blocking [`Publisher`], its builder and its [`PendingConfirm`].

use serde::Serialize;

use super::{BrokerConnection, Rt};
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType};
use crate::error::Result;
use crate::table::FieldTable;
use crate::{OutgoingMessage, SendOptions};

/// A blocking [`crate::Publisher`].
#[derive(Debug)]
pub struct Publisher {
    inner: crate::Publisher,
    rt: Rt,
}

/// Builds a blocking [`Publisher`] (see [`crate::PublisherBuilder`] for which entity each
/// keyword sets).
#[derive(Debug)]
#[must_use = "call build() to create the publisher"]
pub struct PublisherBuilder {
    inner: crate::PublisherBuilder,
    rt: Rt,
}

impl PublisherBuilder {
    forward! {
        exchange_spec(spec: ExchangeSpec);
        exchange(name: impl Into<String>);
        exchange_type(kind: ExchangeType);
        routing_key(key: impl Into<String>);
        delivery_mode(mode: DeliveryMode);
        durable(durable: bool);
        auto_delete(auto_delete: bool);
        exchange_arguments(arguments: FieldTable);
        auto_declare(auto_declare: bool);
        serializer(name: impl Into<String>);
        compression(name: impl Into<String>);
        confirm_publish(confirm: bool);
        transactional(transactional: bool);
    }

    /// A blocking builder around an async one (a pool's).
    pub(super) fn wrap(inner: crate::PublisherBuilder, rt: Rt) -> Self {
        PublisherBuilder { inner, rt }
    }

    /// The async builder inside.
    pub(super) fn into_inner(self) -> crate::PublisherBuilder {
        self.inner
    }

    /// Builds the publisher (declaring the exchange with auto_declare).
    pub fn build(self) -> Result<Publisher> {
        let inner = self.rt.block_on(self.inner.build())?;
        Ok(Publisher { inner, rt: self.rt })
    }
}

impl Publisher {
    /// Starts building a publisher.
    pub fn builder(connection: &BrokerConnection) -> PublisherBuilder {
        PublisherBuilder {
            inner: crate::Publisher::builder(&connection.inner),
            rt: connection.rt.clone(),
        }
    }

    /// See [`crate::Publisher::connection`] (a handle of it).
    pub fn connection(&self) -> BrokerConnection {
        BrokerConnection {
            inner: self.inner.connection().clone(),
            rt: self.rt.clone(),
        }
    }

    /// The async publisher underneath.
    pub fn as_async(&self) -> &crate::Publisher {
        &self.inner
    }

    getters! {
        exchange -> &str;
        exchange_spec -> &ExchangeSpec;
        exchange_type -> ExchangeType;
        durable -> bool;
        auto_delete -> bool;
        routing_key -> &str;
        delivery_mode -> DeliveryMode;
        serializer -> &str;
        compression -> Option<crate::Compression>;
        confirm_publish -> bool;
        transactional -> bool;
        auto_declare -> bool;
    }

    /// See [`crate::Publisher::declare`].
    pub fn declare(&self) -> Result<()> {
        self.rt.block_on(self.inner.declare())
    }

    /// See [`crate::Publisher::create_message`].
    pub fn create_message<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: &SendOptions,
    ) -> Result<OutgoingMessage> {
        self.inner.create_message(data, options)
    }

    /// See [`crate::Publisher::send`].
    pub fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.rt.block_on(self.inner.send(data))
    }

    /// See [`crate::Publisher::send_with`].
    pub fn send_with<T: Serialize + ?Sized>(&self, data: &T, options: SendOptions) -> Result<()> {
        self.rt.block_on(self.inner.send_with(data, options))
    }

    /// See [`crate::Publisher::publish`].
    pub fn publish(&self, message: OutgoingMessage, options: &SendOptions) -> Result<()> {
        self.rt.block_on(self.inner.publish(message, options))
    }

    /// See [`crate::Publisher::begin_publish`]: the message is sent, its confirm comes later.
    pub fn begin_publish(
        &self,
        message: OutgoingMessage,
        options: &SendOptions,
    ) -> Result<PendingConfirm> {
        let inner = self
            .rt
            .block_on(self.inner.begin_publish(message, options))?;
        Ok(self.pending(inner))
    }

    /// See [`crate::Publisher::begin_send`]: the message is sent, its confirm comes later.
    pub fn begin_send<T: Serialize + ?Sized>(&self, data: &T) -> Result<PendingConfirm> {
        let inner = self.rt.block_on(self.inner.begin_send(data))?;
        Ok(self.pending(inner))
    }

    /// See [`crate::Publisher::begin_send_with`].
    pub fn begin_send_with<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: SendOptions,
    ) -> Result<PendingConfirm> {
        let inner = self
            .rt
            .block_on(self.inner.begin_send_with(data, options))?;
        Ok(self.pending(inner))
    }

    fn pending(&self, inner: crate::PendingConfirm) -> PendingConfirm {
        PendingConfirm {
            inner,
            rt: self.rt.clone(),
        }
    }

    /// See [`crate::Publisher::send_batch`].
    pub fn send_batch<'a, T, I>(&self, items: I) -> Vec<Result<()>>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        self.rt.block_on(self.inner.send_batch(items))
    }

    /// See [`crate::Publisher::commit`].
    pub fn commit(&self) -> Result<()> {
        self.rt.block_on(self.inner.commit())
    }

    /// See [`crate::Publisher::rollback`].
    pub fn rollback(&self) -> Result<()> {
        self.rt.block_on(self.inner.rollback())
    }

    /// See [`crate::Publisher::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }

    /// Waits until every message sent without confirms has reached the broker (see
    /// [`crate::Publisher::flush`]).
    pub fn flush(&self) -> Result<()> {
        self.rt.block_on(self.inner.flush())
    }
}

/// A blocking [`crate::PendingConfirm`]: [`wait`](Self::wait) for the broker's answer.
#[derive(Debug)]
#[must_use = "wait for it: it says whether the broker took the message"]
pub struct PendingConfirm {
    inner: crate::PendingConfirm,
    rt: Rt,
}

impl PendingConfirm {
    /// See [`crate::PendingConfirm::wait`].
    ///
    /// ```
    /// use carrot::blocking::{BrokerConnection, Publisher};
    /// let conn = BrokerConnection::connect("memory://blocking-confirm-doc")?;
    /// let publisher = Publisher::builder(&conn).confirm_publish(true).build()?;
    /// let pending: Vec<_> = (0..10).map(|n| publisher.begin_send(&n)).collect::<Result<_, _>>()?;
    /// for confirm in pending {
    ///     confirm.wait()?;
    /// }
    /// # Ok::<(), carrot::Error>(())
    /// ```
    pub fn wait(self) -> Result<()> {
        self.rt.block_on(self.inner)
    }

    /// See [`crate::PendingConfirm::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}
