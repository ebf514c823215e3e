//! The one interface every broker implements, and the data that crosses it.
//!
//! The public types (`Publisher`, `Consumer`, ...) know nothing of any broker: they talk to a
//! [`Transport`] (a connection) and its [`Channel`]s. Brokers that do not route natively
//! share the engine in `crate::routing`.

#[cfg(feature = "amqp")]
pub(crate) mod amqp;
pub(crate) mod arguments;
pub(crate) mod death;
pub(crate) mod embedded;
pub(crate) mod memory;
pub(crate) mod rules;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::future::Future;
use std::pin::Pin;
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

/// Deliveries of one consumer. It ends after the application cancels the consumer or closes
/// its channel; an end the application did not ask for is an error: the last item says why
/// when the broker knows ([`Error::ConsumerCancelled`](crate::Error::ConsumerCancelled), a
/// recovery that gave up), and the consumer reports an end without one as cancelled by the
/// broker.
pub(crate) type DeliveryStream = mpsc::UnboundedReceiver<Result<Delivery>>;

/// What `publish` returns: the message is routed (`Done`), or its publisher confirm is still
/// to come (`Pending`, RabbitMQ), for the caller to await now or later (pipelined confirms).
pub(crate) enum Confirmation {
    /// The broker has the message.
    Done,
    /// Resolves when the broker confirms the message, or with why not.
    Pending(Pin<Box<dyn Future<Output = Result<()>> + Send>>),
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Confirmation::Done => "Done",
            Confirmation::Pending(_) => "Pending",
        })
    }
}

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
    /// Which of the connection's URLs it is connected to now (failover).
    fn current_url(&self) -> usize {
        0
    }
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
    /// Publishes; with `flags.confirm` the returned confirmation resolves once the broker has
    /// taken responsibility for the message.
    async fn publish(&self, message: Arc<Published>, flags: PublishFlags) -> Result<Confirmation>;
    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>>;
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
    ) -> Result<(Arc<str>, DeliveryStream)>;
    async fn cancel(&self, consumer_tag: &str) -> Result<()>;
    /// Whether a delivery came before its channel was replaced (a recovery, a channel error):
    /// the broker has requeued it, so it cannot be acknowledged and will come again.
    fn is_stale(&self, _delivery_tag: u64) -> bool {
        false
    }
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
