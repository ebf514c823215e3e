//! [`SimpleQueue`] and [`SimpleBuffer`]: kombu's `kombu.simple`, a queue used like a local one.

use std::time::Duration;

use serde::Serialize;

use crate::connection::BrokerConnection;
use crate::consumer::Consumer;
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::publisher::{Publisher, SendOptions};
use crate::table::FieldTable;

/// A queue used like a local one, kombu's `SimpleQueue`: [`put`](Self::put) sends,
/// [`get`](Self::get) waits for the next message.
///
/// `SimpleQueue::open(&conn, "tasks")` declares what kombu's `SimpleQueue("tasks")` declares:
/// a durable direct exchange `tasks` and a durable queue `tasks` bound to it with the key
/// `tasks`, and sends persistent messages to it, in kombu's bytes, so that kombu's
/// `SimpleQueue` and carrot's share a queue both ways. Its messages are acknowledged by the
/// caller ([`Message::ack`]); [`SimpleBuffer`] makes the transient, no-ack kind.
///
/// Unlike kombu's, `put` waits for the broker's publisher confirm (the broker has the message
/// when it returns), and the queue is `Sync`: tasks and threads share it by reference or
/// `Arc`, and each `get` takes its own message.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use carrot::{BrokerConnection, Error, SimpleQueue};
///
/// let conn = BrokerConnection::connect("memory://simple-doc").await?;
/// let queue = SimpleQueue::open(&conn, "tasks").await?;
/// queue.put(&serde_json::json!({"hello": "world"})).await?;
/// assert_eq!(queue.len().await?, 1);
/// let message = queue.get(Some(Duration::from_secs(1))).await?;
/// assert_eq!(message.decode::<serde_json::Value>()?["hello"], "world");
/// message.ack()?;
/// assert!(matches!(queue.get_nowait().await, Err(Error::Empty { .. })));
/// queue.close().await?;
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct SimpleQueue {
    name: String,
    publisher: Publisher,
    consumer: tokio::sync::Mutex<Consumer>,
    no_ack: bool,
}

/// kombu's `SimpleBuffer`: a [`SimpleQueue`] for data that may be lost, with no
/// acknowledgements. Its exchange is transient and auto-delete, its queue transient,
/// exclusive (to this connection) and auto-delete, its messages transient, and messages are
/// acknowledged as they are taken.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let conn = carrot::BrokerConnection::connect("memory://simple-buffer-doc").await?;
/// let buffer = carrot::SimpleBuffer::open(&conn, "updates").await?;
/// buffer.put(&42).await?;
/// assert_eq!(buffer.get_nowait().await?.decode::<i32>()?, 42);
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct SimpleBuffer;

impl SimpleBuffer {
    /// Starts building a simple buffer named `name`.
    pub fn builder(connection: &BrokerConnection, name: impl Into<String>) -> SimpleQueueBuilder {
        let name = name.into();
        let mut builder = SimpleQueueBuilder::new(connection, name.clone());
        builder.exchange = ExchangeSpec::new(&name, ExchangeType::Direct)
            .durable(false)
            .auto_delete(true);
        builder.queue = QueueSpec::new(&name).durable(false).exclusive(true);
        builder.queue.auto_delete = true;
        builder.delivery_mode = DeliveryMode::Transient;
        builder.no_ack = true;
        builder.confirm = None;
        builder
    }

    /// Opens (declares) a simple buffer named `name` with kombu's settings.
    pub async fn open(connection: &BrokerConnection, name: &str) -> Result<SimpleQueue> {
        Self::builder(connection, name).build().await
    }
}

/// Builds a [`SimpleQueue`] (or a [`SimpleBuffer`]): kombu's `SimpleQueue` keywords.
#[derive(Debug)]
#[must_use = "call build().await to open the queue"]
pub struct SimpleQueueBuilder {
    connection: BrokerConnection,
    name: String,
    exchange: ExchangeSpec,
    queue: QueueSpec,
    delivery_mode: DeliveryMode,
    no_ack: bool,
    serializer: Option<String>,
    compression: Option<String>,
    accept: Option<Vec<String>>,
    /// Publisher confirms: `Some(true)` for a SimpleQueue, `None` (the connection's default)
    /// for a SimpleBuffer.
    confirm: Option<bool>,
    prefetch: Option<u16>,
}

impl SimpleQueueBuilder {
    fn new(connection: &BrokerConnection, name: String) -> Self {
        SimpleQueueBuilder {
            connection: connection.clone(),
            exchange: ExchangeSpec::new(&name, ExchangeType::Direct),
            queue: QueueSpec::new(&name),
            name,
            delivery_mode: DeliveryMode::Persistent,
            no_ack: false,
            serializer: None,
            compression: None,
            accept: None,
            confirm: Some(true),
            prefetch: None,
        }
    }

    /// Messages acknowledged as they are taken (kombu's `no_ack`).
    pub fn no_ack(mut self, no_ack: bool) -> Self {
        self.no_ack = no_ack;
        self
    }

    /// The serializer of [`put`](SimpleQueue::put) (default json).
    pub fn serializer(mut self, name: impl Into<String>) -> Self {
        self.serializer = Some(name.into());
        self
    }

    /// The compression of [`put`](SimpleQueue::put) (none by default).
    pub fn compression(mut self, name: impl Into<String>) -> Self {
        self.compression = Some(name.into());
        self
    }

    /// The serializers [`get`](SimpleQueue::get) decodes (kombu's `accept`).
    pub fn accept<I: IntoIterator<Item = S>, S: Into<String>>(mut self, accept: I) -> Self {
        self.accept = Some(accept.into_iter().map(Into::into).collect());
        self
    }

    /// The queue's arguments (kombu's `queue_args`), such as `x-max-priority`.
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.queue.arguments = arguments;
        self
    }

    /// A priority queue: priorities `0..=max` are honoured by [`put_with`](SimpleQueue::put_with).
    pub fn max_priority(mut self, max: u8) -> Self {
        self.queue = self.queue.max_priority(max);
        self
    }

    /// The queue whole (kombu's `queue_opts`), named as the simple queue.
    pub fn queue_spec(mut self, spec: QueueSpec) -> Self {
        self.queue = spec;
        self.queue.name.clone_from(&self.name);
        self
    }

    /// The exchange whole (kombu's `exchange_opts`), named as the simple queue.
    pub fn exchange_spec(mut self, spec: ExchangeSpec) -> Self {
        self.exchange = spec;
        self.exchange.name.clone_from(&self.name);
        self
    }

    /// Whether `put` waits for the broker's confirm (default: yes for a SimpleQueue, the
    /// connection's default for a SimpleBuffer).
    pub fn confirm_publish(mut self, confirm: bool) -> Self {
        self.confirm = Some(confirm);
        self
    }

    /// How many messages the broker may send ahead of `get` (`basic.qos`; default: no limit,
    /// as kombu). With several consumers of one queue, a small window shares it fairly.
    pub fn prefetch_count(mut self, count: u16) -> Self {
        self.prefetch = Some(count);
        self
    }

    /// Declares the exchange and the queue, binds them, and opens the queue.
    pub async fn build(self) -> Result<SimpleQueue> {
        let mut consumer = Consumer::builder(&self.connection)
            .queue_spec(self.queue)
            .exchange_spec(self.exchange.clone())
            .routing_key(&self.name)
            .no_ack(self.no_ack);
        if let Some(accept) = self.accept {
            consumer = consumer.accept(accept);
        }
        let mut consumer = consumer.build().await?;
        if let Some(count) = self.prefetch {
            consumer
                .qos(crate::consumer::Qos::new().prefetch_count(count))
                .await?;
        }
        let mut publisher = Publisher::builder(&self.connection)
            .exchange_spec(self.exchange)
            .routing_key(&self.name)
            .delivery_mode(self.delivery_mode)
            .auto_declare(false);
        if let Some(serializer) = self.serializer {
            publisher = publisher.serializer(serializer);
        }
        if let Some(compression) = self.compression {
            publisher = publisher.compression(compression);
        }
        if let Some(confirm) = self.confirm {
            publisher = publisher.confirm_publish(confirm);
        }
        Ok(SimpleQueue {
            name: self.name,
            publisher: publisher.build().await?,
            consumer: tokio::sync::Mutex::new(consumer),
            no_ack: self.no_ack,
        })
    }
}

impl SimpleQueue {
    /// Starts building a simple queue named `name` (kombu's keywords on the builder).
    pub fn builder(connection: &BrokerConnection, name: impl Into<String>) -> SimpleQueueBuilder {
        SimpleQueueBuilder::new(connection, name.into())
    }

    /// Opens (declares) a simple queue named `name` with kombu's settings.
    pub async fn open(connection: &BrokerConnection, name: &str) -> Result<SimpleQueue> {
        Self::builder(connection, name).build().await
    }

    /// The queue's name (also its exchange's and its routing key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether messages are acknowledged as they are taken.
    pub fn no_ack(&self) -> bool {
        self.no_ack
    }

    /// The publisher underneath (its serializer, compression, delivery mode).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Sends data to the queue (kombu's `put`).
    pub async fn put<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.publisher.send(data).await
    }

    /// Sends data with per-message options: serializer, compression, headers, priority, ...
    /// (kombu's `put(message, serializer=, headers=, compression=, priority=)`).
    pub async fn put_with<T: Serialize + ?Sized>(
        &self,
        data: &T,
        options: SendOptions,
    ) -> Result<()> {
        self.publisher.send_with(data, options).await
    }

    /// The next message, waiting at most `timeout` (`None`: until one comes) for it:
    /// [`Error::Empty`] when none came in time (kombu's `get(block=True, timeout=)`). The
    /// queue consumes from its first `get` on, until [`close`](Self::close).
    pub async fn get(&self, timeout: Option<Duration>) -> Result<Message> {
        let mut consumer = self.consumer.lock().await;
        let next = match timeout {
            Some(timeout) => consumer.next_message_timeout(timeout).await?,
            None => consumer.next_message().await?,
        };
        next.ok_or_else(|| Error::Empty {
            queue: self.name.clone(),
            waited: timeout,
        })
    }

    /// The next message if one is there now, else [`Error::Empty`] (kombu's `get_nowait`):
    /// one the broker already sent to this queue's consumer (after a `get`), or one taken
    /// from the queue (basic.get).
    pub async fn get_nowait(&self) -> Result<Message> {
        let mut consumer = self.consumer.lock().await;
        if consumer.consumer_tag().is_some() {
            // Consuming since a `get`: what the broker already sent comes first (it is not
            // in the queue any more).
            if let Some(message) = consumer.next_message_timeout(Duration::ZERO).await? {
                return Ok(message);
            }
        }
        if let Some(message) = consumer.fetch().await? {
            return Ok(message);
        }
        if consumer.consumer_tag().is_some() {
            // A message the broker gave the consumer before it answered the basic.get (so
            // not in the queue for the get) arrived ahead of that answer, on the same
            // connection: it is here now.
            if let Some(message) = consumer.next_message_timeout(Duration::ZERO).await? {
                return Ok(message);
            }
        }
        Err(Error::Empty {
            queue: self.name.clone(),
            waited: None,
        })
    }

    /// How many messages are ready in the queue (kombu's `qsize` and `len`; not those
    /// delivered and not yet acknowledged).
    pub async fn len(&self) -> Result<u32> {
        Ok(self
            .publisher
            .connection()
            .queue_info(&self.name)
            .await?
            .message_count)
    }

    /// Whether no message is ready in the queue.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// kombu's name for [`len`](Self::len).
    pub async fn qsize(&self) -> Result<u32> {
        self.len().await
    }

    /// Deletes every ready message (kombu's `clear`, a purge); returns how many.
    pub async fn clear(&self) -> Result<u32> {
        self.publisher.connection().purge(&self.name).await
    }

    /// Stops consuming (kombu's `close`): messages delivered to this queue and not taken or
    /// acknowledged go back to the queue. The queue stays usable: the next `get` consumes
    /// again.
    pub async fn close(&self) -> Result<()> {
        self.consumer.lock().await.cancel().await
    }
}
