//! The blocking [`SimpleQueue`], [`SimpleBuffer`] and their builder.

use std::time::Duration;

use serde::Serialize;

use super::{BrokerConnection, Rt};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::table::FieldTable;
use crate::{Message, SendOptions};

/// A blocking [`crate::SimpleQueue`]: `put`, `get(timeout)`, `get_nowait`, `len`, `clear`,
/// `close`, as kombu's `SimpleQueue`.
///
/// ```
/// use std::time::Duration;
/// let conn = carrot::blocking::BrokerConnection::connect("memory://blocking-simple-doc")?;
/// let queue = carrot::blocking::SimpleQueue::open(&conn, "tasks")?;
/// queue.put(&"hello")?;
/// let message = queue.get(Some(Duration::from_secs(1)))?;
/// assert_eq!(message.decode::<String>()?, "hello");
/// message.ack()?;
/// # Ok::<(), carrot::Error>(())
/// ```
#[derive(Debug)]
pub struct SimpleQueue {
    inner: crate::SimpleQueue,
    rt: Rt,
}

/// The blocking [`crate::SimpleBuffer`].
#[derive(Debug)]
pub struct SimpleBuffer;

/// Builds a blocking [`SimpleQueue`] (see [`crate::SimpleQueueBuilder`]).
#[derive(Debug)]
#[must_use = "call build() to open the queue"]
pub struct SimpleQueueBuilder {
    inner: crate::SimpleQueueBuilder,
    rt: Rt,
}

impl SimpleQueueBuilder {
    forward! {
        no_ack(no_ack: bool);
        serializer(name: impl Into<String>);
        compression(name: impl Into<String>);
        queue_arguments(arguments: FieldTable);
        max_priority(max: u8);
        queue_spec(spec: QueueSpec);
        exchange_spec(spec: ExchangeSpec);
        confirm_publish(confirm: bool);
        prefetch_count(count: u16);
    }

    /// See the async builder's `accept`.
    pub fn accept<I: IntoIterator<Item = S>, S: Into<String>>(self, accept: I) -> Self {
        Self {
            inner: self.inner.accept(accept),
            rt: self.rt,
        }
    }

    /// Declares the exchange and the queue, binds them, and opens the queue.
    pub fn build(self) -> Result<SimpleQueue> {
        let inner = self.rt.block_on(self.inner.build())?;
        Ok(SimpleQueue { inner, rt: self.rt })
    }
}

impl SimpleBuffer {
    /// See [`crate::SimpleBuffer::builder`].
    pub fn builder(connection: &BrokerConnection, name: impl Into<String>) -> SimpleQueueBuilder {
        SimpleQueueBuilder {
            inner: crate::SimpleBuffer::builder(&connection.inner, name),
            rt: connection.rt.clone(),
        }
    }

    /// See [`crate::SimpleBuffer::open`].
    pub fn open(connection: &BrokerConnection, name: &str) -> Result<SimpleQueue> {
        Self::builder(connection, name).build()
    }
}

impl SimpleQueue {
    /// See [`crate::SimpleQueue::builder`].
    pub fn builder(connection: &BrokerConnection, name: impl Into<String>) -> SimpleQueueBuilder {
        SimpleQueueBuilder {
            inner: crate::SimpleQueue::builder(&connection.inner, name),
            rt: connection.rt.clone(),
        }
    }

    /// See [`crate::SimpleQueue::open`].
    pub fn open(connection: &BrokerConnection, name: &str) -> Result<SimpleQueue> {
        Self::builder(connection, name).build()
    }

    /// The async queue underneath.
    pub fn as_async(&self) -> &crate::SimpleQueue {
        &self.inner
    }

    getters! {
        name -> &str;
        no_ack -> bool;
        publisher -> &crate::Publisher;
    }

    /// See [`crate::SimpleQueue::put`].
    pub fn put<T: Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.rt.block_on(self.inner.put(data))
    }

    /// See [`crate::SimpleQueue::put_with`].
    pub fn put_with<T: Serialize + ?Sized>(&self, data: &T, options: SendOptions) -> Result<()> {
        self.rt.block_on(self.inner.put_with(data, options))
    }

    /// See [`crate::SimpleQueue::get`].
    pub fn get(&self, timeout: Option<Duration>) -> Result<Message> {
        self.rt.block_on(self.inner.get(timeout))
    }

    /// See [`crate::SimpleQueue::get_nowait`].
    pub fn get_nowait(&self) -> Result<Message> {
        self.rt.block_on(self.inner.get_nowait())
    }

    /// See [`crate::SimpleQueue::len`].
    pub fn len(&self) -> Result<u32> {
        self.rt.block_on(self.inner.len())
    }

    /// See [`crate::SimpleQueue::is_empty`].
    pub fn is_empty(&self) -> Result<bool> {
        self.rt.block_on(self.inner.is_empty())
    }

    /// See [`crate::SimpleQueue::qsize`].
    pub fn qsize(&self) -> Result<u32> {
        self.rt.block_on(self.inner.qsize())
    }

    /// See [`crate::SimpleQueue::clear`].
    pub fn clear(&self) -> Result<u32> {
        self.rt.block_on(self.inner.clear())
    }

    /// See [`crate::SimpleQueue::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}
