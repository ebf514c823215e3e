//! The blocking [`BrokerConnection`] and its [`ConnectionEvents`].

use super::Rt;
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::retry::RetryPolicy;
use crate::serialization::{Registry, Serializer};
use crate::table::FieldTable;
use crate::url::BrokerUrl;
use crate::{
    ConnectionBuilder, ConnectionEvent, ConnectionState, DeleteExchangeOptions, DeleteQueueOptions,
    QueueInfo, Timeouts,
};

/// A blocking [`crate::BrokerConnection`].
#[derive(Debug, Clone)]
pub struct BrokerConnection {
    pub(super) inner: crate::BrokerConnection,
    pub(super) rt: Rt,
}

impl BrokerConnection {
    /// See [`crate::BrokerConnection::connect`].
    pub fn connect(url: &str) -> Result<Self> {
        let (inner, rt) = Rt::connect(crate::BrokerConnection::connect(url))?;
        Ok(BrokerConnection { inner, rt })
    }

    /// See [`crate::BrokerConnection::from_env`].
    pub fn from_env() -> Result<Self> {
        let (inner, rt) = Rt::connect(crate::BrokerConnection::from_env())?;
        Ok(BrokerConnection { inner, rt })
    }

    /// See [`crate::BrokerConnection::open`].
    pub fn open(url: BrokerUrl) -> Result<Self> {
        let (inner, rt) = Rt::connect(crate::BrokerConnection::open(url))?;
        Ok(BrokerConnection { inner, rt })
    }

    /// The keyword builder (see [`crate::BrokerConnection::builder`]); connect with
    /// [`connect_with`](Self::connect_with).
    pub fn builder() -> ConnectionBuilder {
        crate::BrokerConnection::builder()
    }

    /// Connects with a [`ConnectionBuilder`] (the seed's keywords, failover URLs, retry
    /// policy, recovery, timeouts): the blocking twin of [`ConnectionBuilder::connect`].
    pub fn connect_with(builder: ConnectionBuilder) -> Result<Self> {
        let (inner, rt) = Rt::connect(builder.connect())?;
        Ok(BrokerConnection { inner, rt })
    }

    /// The async connection underneath.
    pub fn as_async(&self) -> &crate::BrokerConnection {
        &self.inner
    }

    /// See [`crate::BrokerConnection::url`].
    pub fn url(&self) -> &BrokerUrl {
        self.inner.url()
    }

    /// See [`crate::BrokerConnection::urls`].
    pub fn urls(&self) -> &[BrokerUrl] {
        self.inner.urls()
    }

    /// See [`crate::BrokerConnection::current_url`].
    pub fn current_url(&self) -> &BrokerUrl {
        self.inner.current_url()
    }

    /// See [`crate::BrokerConnection::state`].
    pub fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    /// See [`crate::BrokerConnection::events`].
    pub fn events(&self) -> ConnectionEvents {
        ConnectionEvents {
            inner: self.inner.events(),
            rt: self.rt.clone(),
        }
    }

    /// See [`crate::BrokerConnection::retry_policy`].
    pub fn retry_policy(&self) -> &RetryPolicy {
        self.inner.retry_policy()
    }

    /// See [`crate::BrokerConnection::timeouts`].
    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts()
    }

    /// See [`crate::BrokerConnection::max_message_size`].
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size()
    }

    /// See [`crate::BrokerConnection::confirm_publish_default`].
    pub fn confirm_publish_default(&self) -> bool {
        self.inner.confirm_publish_default()
    }

    /// See [`crate::BrokerConnection::registry`].
    pub fn registry(&self) -> Registry {
        self.inner.registry()
    }

    /// See [`crate::BrokerConnection::register_serializer`].
    pub fn register_serializer(
        &self,
        name: &str,
        content_type: &str,
        content_encoding: &str,
        serializer: impl Serializer,
    ) {
        self.inner
            .register_serializer(name, content_type, content_encoding, serializer)
    }

    /// See [`crate::BrokerConnection::declare_exchange`].
    pub fn declare_exchange(&self, spec: &ExchangeSpec) -> Result<()> {
        self.rt.block_on(self.inner.declare_exchange(spec))
    }

    /// See [`crate::BrokerConnection::exchange_exists`].
    pub fn exchange_exists(&self, name: &str) -> Result<()> {
        self.rt.block_on(self.inner.exchange_exists(name))
    }

    /// See [`crate::BrokerConnection::delete_exchange`].
    pub fn delete_exchange(&self, name: &str, options: DeleteExchangeOptions) -> Result<()> {
        self.rt.block_on(self.inner.delete_exchange(name, options))
    }

    /// See [`crate::BrokerConnection::declare_queue`].
    pub fn declare_queue(&self, spec: &QueueSpec) -> Result<QueueInfo> {
        self.rt.block_on(self.inner.declare_queue(spec))
    }

    /// See [`crate::BrokerConnection::queue_info`].
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        self.rt.block_on(self.inner.queue_info(name))
    }

    /// See [`crate::BrokerConnection::delete_queue`].
    pub fn delete_queue(&self, name: &str, options: DeleteQueueOptions) -> Result<u32> {
        self.rt.block_on(self.inner.delete_queue(name, options))
    }

    /// See [`crate::BrokerConnection::bind`].
    pub fn bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.rt
            .block_on(self.inner.bind(queue, exchange, routing_key, arguments))
    }

    /// See [`crate::BrokerConnection::unbind`].
    pub fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.rt
            .block_on(self.inner.unbind(queue, exchange, routing_key, arguments))
    }

    /// See [`crate::BrokerConnection::bind_exchange`].
    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.rt.block_on(
            self.inner
                .bind_exchange(destination, source, routing_key, arguments),
        )
    }

    /// See [`crate::BrokerConnection::unbind_exchange`].
    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.rt.block_on(
            self.inner
                .unbind_exchange(destination, source, routing_key, arguments),
        )
    }

    /// See [`crate::BrokerConnection::purge`].
    pub fn purge(&self, queue: &str) -> Result<u32> {
        self.rt.block_on(self.inner.purge(queue))
    }

    /// See [`crate::BrokerConnection::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}

/// A blocking [`crate::ConnectionEvents`]: [`recv`](Self::recv) waits for the next event.
#[derive(Debug)]
pub struct ConnectionEvents {
    inner: crate::ConnectionEvents,
    rt: Rt,
}

impl ConnectionEvents {
    /// See [`crate::ConnectionEvents::recv`]: blocks until the next event, `None` once the
    /// connection is gone.
    pub fn recv(&mut self) -> Option<ConnectionEvent> {
        self.rt.block_on(self.inner.recv())
    }
}
