//! The same API with blocking methods, for programs without an async runtime.
//!
//! Each type wraps its async twin and a small tokio runtime (one worker thread) owned by the
//! connection, as the blocking clients of reqwest and mini-redis do. `iterconsume` and `iterqueue` return real
//! [`Iterator`]s. Do not call these methods from inside an async runtime (they block it);
//! use the async types there.
//!
//! ```
//! use carrot::blocking::{BrokerConnection, Consumer, Publisher};
//!
//! let conn = BrokerConnection::connect("memory://blocking-doc")?;
//! let mut consumer = Consumer::builder(&conn).queue("feed").exchange("feed").routing_key("importer").build()?;
//! let publisher = Publisher::builder(&conn).exchange("feed").routing_key("importer").build()?;
//! publisher.send(&serde_json::json!({"import_feed": "http://cnn.com/rss/edition.rss"}))?;
//! for message in consumer.iterqueue(None, false) {
//!     let message = message?.expect("iterqueue without infinite yields messages");
//!     println!("{:?}", message.payload()?);
//!     message.ack()?;
//! }
//! # Ok::<(), carrot::Error>(())
//! ```

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use tokio::runtime::Runtime;

use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::serialization::{Payload, Registry, Serializer};
use crate::table::FieldTable;
use crate::url::BrokerUrl;
use crate::{ConnectionBuilder, FetchOptions, Message, OutgoingMessage, QueueInfo, SendOptions};

#[derive(Debug, Clone)]
struct Rt(Arc<Runtime>);

impl Rt {
    /// One worker thread: carrot's background work (heartbeats, recovering a lost connection,
    /// resuming consumers) goes on between the application's calls.
    fn new() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("carrot-blocking")
            .enable_all()
            .build()?;
        Ok(Rt(Arc::new(rt)))
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

/// A blocking [`crate::BrokerConnection`].
#[derive(Debug, Clone)]
pub struct BrokerConnection {
    inner: crate::BrokerConnection,
    rt: Rt,
}

impl BrokerConnection {
    /// See [`crate::BrokerConnection::connect`].
    pub fn connect(url: &str) -> Result<Self> {
        let rt = Rt::new()?;
        let inner = rt.block_on(crate::BrokerConnection::connect(url))?;
        Ok(BrokerConnection { inner, rt })
    }

    /// See [`crate::BrokerConnection::from_env`].
    pub fn from_env() -> Result<Self> {
        let rt = Rt::new()?;
        let inner = rt.block_on(crate::BrokerConnection::from_env())?;
        Ok(BrokerConnection { inner, rt })
    }

    /// See [`crate::BrokerConnection::open`].
    pub fn open(url: BrokerUrl) -> Result<Self> {
        let rt = Rt::new()?;
        let inner = rt.block_on(crate::BrokerConnection::open(url))?;
        Ok(BrokerConnection { inner, rt })
    }

    /// Connects with a [`ConnectionBuilder`] (the seed's keywords, failover URLs, retry
    /// policy, recovery, timeouts).
    pub fn connect_with(builder: ConnectionBuilder) -> Result<Self> {
        let rt = Rt::new()?;
        let inner = rt.block_on(builder.connect())?;
        Ok(BrokerConnection { inner, rt })
    }

    /// See [`crate::BrokerConnection::state`].
    pub fn state(&self) -> crate::ConnectionState {
        self.inner.state()
    }

    /// See [`crate::BrokerConnection::current_url`].
    pub fn current_url(&self) -> &BrokerUrl {
        self.inner.current_url()
    }

    /// The async connection underneath.
    pub fn as_async(&self) -> &crate::BrokerConnection {
        &self.inner
    }

    /// See [`crate::BrokerConnection::url`].
    pub fn url(&self) -> &BrokerUrl {
        self.inner.url()
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

    /// See [`crate::BrokerConnection::declare_queue`].
    pub fn declare_queue(&self, spec: &QueueSpec) -> Result<QueueInfo> {
        self.rt.block_on(self.inner.declare_queue(spec))
    }

    /// See [`crate::BrokerConnection::queue_info`].
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        self.rt.block_on(self.inner.queue_info(name))
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

    /// See [`crate::BrokerConnection::purge`].
    pub fn purge(&self, queue: &str) -> Result<u32> {
        self.rt.block_on(self.inner.purge(queue))
    }

    /// See [`crate::BrokerConnection::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}

/// Forwards builder setters to the async builder.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[doc = concat!("See the async builder's `", stringify!($name), "`.")]
        pub fn $name(self, $($arg: $ty),*) -> Self {
            Self { inner: self.inner.$name($($arg),*), rt: self.rt }
        }
    )*};
}

/// A blocking [`crate::Publisher`].
#[derive(Debug)]
pub struct Publisher {
    inner: crate::Publisher,
    rt: Rt,
}

/// Builds a blocking [`Publisher`].
#[derive(Debug)]
#[must_use = "call build() to create the publisher"]
pub struct PublisherBuilder {
    inner: crate::PublisherBuilder,
    rt: Rt,
}

impl PublisherBuilder {
    forward! {
        exchange(name: impl Into<String>);
        exchange_type(kind: ExchangeType);
        routing_key(key: impl Into<String>);
        delivery_mode(mode: DeliveryMode);
        durable(durable: bool);
        auto_delete(auto_delete: bool);
        exchange_arguments(arguments: FieldTable);
        auto_declare(auto_declare: bool);
        serializer(name: impl Into<String>);
        confirm_publish(confirm: bool);
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

    /// The async publisher underneath.
    pub fn as_async(&self) -> &crate::Publisher {
        &self.inner
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

    /// See [`crate::Publisher::begin_send`]: the message is sent, its confirm comes later.
    pub fn begin_send<T: Serialize + ?Sized>(&self, data: &T) -> Result<PendingConfirm> {
        let inner = self.rt.block_on(self.inner.begin_send(data))?;
        Ok(PendingConfirm {
            inner,
            rt: self.rt.clone(),
        })
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
        Ok(PendingConfirm {
            inner,
            rt: self.rt.clone(),
        })
    }

    /// See [`crate::Publisher::send_batch`].
    pub fn send_batch<'a, T, I>(&self, items: I) -> Vec<Result<()>>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        self.rt.block_on(self.inner.send_batch(items))
    }

    /// See [`crate::Publisher::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
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
    pub fn wait(self) -> Result<()> {
        self.rt.block_on(self.inner)
    }
}

/// A blocking [`crate::Consumer`].
#[derive(Debug)]
pub struct Consumer {
    inner: crate::Consumer,
    rt: Rt,
}

/// Builds a blocking [`Consumer`].
#[derive(Debug)]
#[must_use = "call build() to create the consumer"]
pub struct ConsumerBuilder {
    inner: crate::ConsumerBuilder,
    rt: Rt,
}

impl ConsumerBuilder {
    forward! {
        queue(name: impl Into<String>);
        exchange(name: impl Into<String>);
        routing_key(key: impl Into<String>);
        exchange_type(kind: ExchangeType);
        durable(durable: bool);
        auto_delete(auto_delete: bool);
        exchange_durable(durable: bool);
        exchange_auto_delete(auto_delete: bool);
        exclusive(exclusive: bool);
        auto_ack(auto_ack: bool);
        no_ack(no_ack: bool);
        warn_if_exists(warn: bool);
        auto_declare(auto_declare: bool);
        queue_arguments(arguments: FieldTable);
        max_priority(max: u8);
        binding_arguments(arguments: FieldTable);
        consumer_tag(tag: impl Into<String>);
        callback(callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static);
        on_decode_error(handler: impl FnMut(&Message, &Error) + Send + 'static);
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

    /// The async consumer underneath.
    pub fn as_async(&mut self) -> &mut crate::Consumer {
        &mut self.inner
    }

    /// See [`crate::Consumer::queue`].
    pub fn queue(&self) -> &str {
        self.inner.queue()
    }

    /// See [`crate::Consumer::declare`].
    pub fn declare(&mut self) -> Result<QueueInfo> {
        self.rt.block_on(self.inner.declare())
    }

    /// See [`crate::Consumer::register_callback`].
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.inner.register_callback(callback)
    }

    /// See [`crate::Consumer::fetch`].
    pub fn fetch(&mut self) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.fetch())
    }

    /// See [`crate::Consumer::fetch_with`].
    pub fn fetch_with(&mut self, options: FetchOptions) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.fetch_with(options))
    }

    /// See [`crate::Consumer::receive`].
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.inner.receive(message)
    }

    /// See [`crate::Consumer::next_message`].
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        self.rt.block_on(self.inner.next_message())
    }

    /// Consumes with callbacks; an [`Iterator`] of the processed messages (see
    /// [`crate::Consumer::iterconsume`]).
    pub fn iterconsume(
        &mut self,
        limit: Option<usize>,
    ) -> impl Iterator<Item = Result<Message>> + '_ {
        let (rt, inner) = (&self.rt, &mut self.inner);
        consume_iter(limit, move || {
            rt.block_on(async { inner.iterconsume(Some(1)).next().await })
        })
    }

    /// Fetches waiting messages; an [`Iterator`] (see [`crate::Consumer::iterqueue`]).
    pub fn iterqueue(
        &mut self,
        limit: Option<usize>,
        infinite: bool,
    ) -> impl Iterator<Item = Result<Option<Message>>> + '_ {
        let mut remaining = limit;
        std::iter::from_fn(move || {
            if remaining == Some(0) {
                return None;
            }
            let item = self
                .rt
                .block_on(async { self.inner.iterqueue(Some(1), infinite).next().await });
            if let (Some(_), Some(r)) = (&item, &mut remaining) {
                *r -= 1;
            }
            item
        })
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
    pub fn discard_all_matching(&mut self, filter: impl FnMut(&Message) -> bool) -> Result<usize> {
        self.rt.block_on(self.inner.discard_all_matching(filter))
    }

    /// See [`crate::Consumer::qos`].
    pub fn qos(
        &mut self,
        prefetch_size: u32,
        prefetch_count: u16,
        apply_global: bool,
    ) -> Result<()> {
        self.rt
            .block_on(self.inner.qos(prefetch_size, prefetch_count, apply_global))
    }

    /// See [`crate::Consumer::flow`].
    pub fn flow(&mut self, active: bool) -> Result<()> {
        self.rt.block_on(self.inner.flow(active))
    }

    /// See [`crate::Consumer::cancel`].
    pub fn cancel(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.cancel())
    }

    /// See [`crate::Consumer::close`].
    pub fn close(&mut self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}

/// An iterator over `next` that stops after `limit` items or at the first error.
fn consume_iter<T>(
    limit: Option<usize>,
    mut next: impl FnMut() -> Option<Result<T>>,
) -> impl Iterator<Item = Result<T>> {
    let mut remaining = limit;
    std::iter::from_fn(move || {
        if remaining == Some(0) {
            return None;
        }
        let item = next();
        match (&item, &mut remaining) {
            (Some(Err(_)), r) => *r = Some(0),
            (Some(Ok(_)), Some(r)) => *r -= 1,
            _ => {}
        }
        item
    })
}

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
    pub fn iterconsume(
        &mut self,
        limit: Option<usize>,
    ) -> impl Iterator<Item = Result<Message>> + '_ {
        let (rt, inner) = (&self.rt, &mut self.inner);
        consume_iter(limit, move || {
            rt.block_on(async { inner.iterconsume(Some(1)).next().await })
        })
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
    pub fn qos(
        &mut self,
        prefetch_size: u32,
        prefetch_count: u16,
        apply_global: bool,
    ) -> Result<()> {
        self.rt
            .block_on(self.inner.qos(prefetch_size, prefetch_count, apply_global))
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

/// A blocking [`crate::Messaging`].
#[derive(Debug)]
pub struct Messaging {
    inner: crate::Messaging,
    rt: Rt,
}

/// Builds a blocking [`Messaging`].
#[derive(Debug)]
#[must_use = "call build() to create it"]
pub struct MessagingBuilder {
    inner: crate::MessagingBuilder,
    rt: Rt,
}

impl MessagingBuilder {
    forward! {
        exchange(name: &str);
        queue(name: &str);
        routing_key(key: &str);
        exchange_type(kind: ExchangeType);
        durable(durable: bool);
        auto_delete(auto_delete: bool);
        exclusive(exclusive: bool);
        serializer(name: &str);
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
