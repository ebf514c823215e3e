//! The one interface every broker implements, and the data that crosses it.
//!
//! The public types (`Publisher`, `Consumer`, ...) know nothing of any broker: they talk to a
//! [`Transport`] (a connection) and its [`Channel`]s. Brokers that do not route natively
//! share the engine in `crate::routing`.

#[cfg(feature = "amqp")]
pub(crate) mod amqp;
pub(crate) mod arguments;
pub(crate) mod death;
pub(crate) mod memory;
pub(crate) mod rules;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::properties::Properties;
use crate::table::FieldTable;

/// A message as a broker holds it; queues reached by one publish share it.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) body: Box<[u8]>,
    pub(crate) properties: Properties,
    pub(crate) exchange: Arc<str>,
    pub(crate) routing_key: Arc<str>,
}

/// A message handed to a client, by `get` or to a consumer.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Published>,
    pub(crate) delivery_tag: u64,
    pub(crate) redelivered: bool,
    pub(crate) consumer_tag: Option<Arc<str>>,
}

/// Deliveries of one consumer; ends when the consumer is cancelled or its channel closes.
pub(crate) type DeliveryStream = mpsc::UnboundedReceiver<Delivery>;

/// What `queue.declare` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name (chosen by the broker when declared with an empty name).
    pub name: String,
    /// Messages ready for delivery.
    pub message_count: u32,
    /// Active consumers.
    pub consumer_count: u32,
}

/// Publish flags.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PublishFlags {
    pub(crate) mandatory: bool,
    pub(crate) immediate: bool,
    /// Wait until the broker has taken responsibility for the message (publisher confirms).
    pub(crate) confirm: bool,
}

/// An open connection to a broker.
#[async_trait]
pub(crate) trait Transport: Send + Sync + std::fmt::Debug {
    /// Opens a channel.
    async fn channel(&self) -> Result<Arc<dyn Channel>>;
    /// Closes the connection and every channel on it.
    async fn close(&self) -> Result<()>;
}

/// A channel: the unit that owns consumers, unacknowledged deliveries, qos and flow.
#[async_trait]
pub(crate) trait Channel: Send + Sync + std::fmt::Debug {
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()>;
    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()>;
    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo>;
    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32>;
    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()>;
    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()>;
    async fn publish(&self, message: Published, flags: PublishFlags) -> Result<()>;
    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>>;
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
    ) -> Result<(Arc<str>, DeliveryStream)>;
    async fn cancel(&self, consumer_tag: &str) -> Result<()>;
    /// Acknowledges without waiting for the broker (acks are pipelined).
    fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()>;
    /// Rejects without waiting for the broker.
    fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()>;
    async fn qos(&self, prefetch_size: u32, prefetch_count: u16, global: bool) -> Result<()>;
    async fn flow(&self, active: bool) -> Result<()>;
    async fn purge(&self, queue: &str) -> Result<u32>;
    async fn close(&self) -> Result<()>;
    /// Closes without waiting, for `Drop`: unacknowledged deliveries go back to their queues.
    fn shutdown(&self);
}
