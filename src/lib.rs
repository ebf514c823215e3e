//! # carrot
//!
//! AMQP messaging for Rust with the API of Python's `carrot.messaging`: [`Publisher`],
//! [`Consumer`], [`ConsumerSet`] and [`Messaging`], over brokers chosen by URL.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use carrot::{BrokerConnection, Consumer, ExchangeType, Publisher};
//! use serde_json::json;
//!
//! let conn = BrokerConnection::connect("memory://").await?;
//! let publisher = Publisher::builder(&conn)
//!     .exchange("feeds").exchange_type(ExchangeType::Topic).routing_key("feed.import")
//!     .build().await?;
//! let mut consumer = Consumer::builder(&conn)
//!     .queue("feeds").exchange("feeds").exchange_type(ExchangeType::Topic)
//!     .routing_key("feed.#").build().await?;
//!
//! publisher.send(&json!({"url": "https://example.org"})).await?;
//! while let Some(message) = consumer.fetch().await? {
//!     let data: serde_json::Value = message.decode()?;
//!     assert_eq!(data["url"], "https://example.org");
//!     message.ack()?;
//! }
//! # Ok::<(), carrot::Error>(()) }).unwrap();
//! ```
//!
//! # Declaring queues and exchanges
//! Builders take whole declarations, [`QueueSpec`] and [`ExchangeSpec`], with a typed helper
//! for every queue argument; the same builder declares the same thing on every broker. The
//! seed's keywords (`durable`, `auto_delete`, `exclusive`, ...) set fields of the same specs,
//! each documented with the entity it belongs to (see [`ConsumerBuilder`]), and what a
//! builder was given reads back from what it built.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use carrot::{BrokerConnection, Consumer, ExchangeSpec, ExchangeType, QueueSpec};
//!
//! let conn = BrokerConnection::connect("memory://declaring-doc").await?; // or sqlite://, amqp://
//! let consumer = Consumer::builder(&conn)
//!     .queue_spec(QueueSpec::new("reports")
//!         .message_ttl(Duration::from_secs(3600))       // x-message-ttl
//!         .dead_letter_exchange("reports.dead"))        // x-dead-letter-exchange
//!     .exchange_spec(ExchangeSpec::new("jobs", ExchangeType::Topic).durable(true))
//!     .routing_key("report.#")
//!     .build().await?;
//! assert_eq!(consumer.queue(), "reports");
//! assert_eq!(consumer.exchange_type(), ExchangeType::Topic);
//! assert!(consumer.queue_spec().arguments.contains_key("x-dead-letter-exchange"));
//! # Ok::<(), carrot::Error>(()) }).unwrap();
//! ```
//!
//! RabbitMQ's extensions work on every broker, the embedded ones included:
//! exchange-to-exchange bindings ([`BrokerConnection::bind_exchange`]) and internal
//! exchanges ([`ExchangeSpec::internal`]), consumer priorities ([`ConsumerBuilder::priority`]),
//! and transactions ([`PublisherBuilder::transactional`], [`ConsumerBuilder::transactional`]).
//!
//! Calls with flags take option types instead of positional booleans: [`Qos`],
//! [`IterQueueOptions`], [`FetchOptions`], [`DeleteQueueOptions`], [`DeleteExchangeOptions`].
//!
//! # Brokers
//! | URL | broker |
//! | --- | --- |
//! | `memory://`, `memory://NAME` | embedded in-process broker with AMQP 0-9-1 routing (the default) |
//! | `amqp://`, `amqps://` | RabbitMQ through lapin (feature `amqp`, on by default) |
//! | `sqlite://PATH` | durable embedded broker in one SQLite file, shared by processes (feature `sqlite`, on by default; see [`SqliteBroker`]) |
//! | `redis://`, `rediss://`, `redis+socket://`, `sentinel://` | Redis in kombu's format, shared with kombu and Celery (feature `redis`, on by default; see [`url::RedisSettings`]) |
//!
//! # Layout
//! - [`connection`](BrokerConnection): opens the broker a URL names ([`url`]).
//! - [`Publisher`], [`Consumer`], [`ConsumerSet`], [`Messaging`]: the seed's four classes.
//! - [`Message`]: body, properties, delivery information, ack / reject / requeue, decode.
//! - [`serialization`]: json (default), raw, msgpack, yaml and pickle, kombu's compressions, and custom serializers.
//! - [`blocking`]: the same API with blocking methods and real `Iterator`s.
//! - What services build on them, kombu's layer: [`SimpleQueue`] and [`SimpleBuffer`], the
//!   [`Worker`] loop (concurrency, graceful shutdown, failure policy [`OnError`]),
//!   [`ConnectionPool`] and [`PublisherPool`], [`RpcClient`] and [`RpcServer`], queues with
//!   several bindings ([`ConsumerBuilder::binding`]) and broadcast queues
//!   ([`ConsumerBuilder::broadcast`]).
//! - Brokers sit behind one internal trait; the embedded ones share one routing engine
//!   (direct, fanout, topic, headers); RabbitMQ routes for itself; on Redis, Lua scripts route
//!   through kombu's binding sets, a connection's publishes leave in order in batches (a send
//!   without confirms returns once queued, as on RabbitMQ), and a consumer moves each message
//!   into a holding list of its own before recording it as unacknowledged, so that no instant
//!   leaves it nowhere.
//!
//! # Cargo features
//! - `amqp` (default): the RabbitMQ backend, on lapin with rustls.
//! - `sqlite` (default): the `sqlite://` backend, on rusqlite with SQLite compiled in.
//! - `redis` (default): the `redis://` backend (and `rediss://`, `redis+socket://`,
//!   `sentinel://`), on the redis crate, in kombu's Redis transport format.
//! - `cli` (default): the `carrot` command-line tool (clap, indicatif, hdrhistogram).
//!
//! # The sqlite broker
//! `sqlite://PATH` keeps exchanges, queues, bindings and messages in one file, with the same
//! routing engine and the same semantics as `memory://` (the conformance suite runs on both).
//! - **Durability:** durable exchanges and queues and persistent messages survive the end of
//!   every process; transient ones last as long as some process has the file open (the broker
//!   "restarts" when the last one closes it, or when the next one opens it after a crash).
//!   The file is in WAL mode with `synchronous = NORMAL`: a `send` or `ack` that returned is
//!   in the log, so killing the process (even with SIGKILL) loses nothing; a power cut may
//!   lose the last commits, never corrupting the file.
//! - **Processes:** any number may share the file on one machine. Competing consumers get
//!   distinct messages. A commit that makes messages ready wakes the other processes through
//!   a datagram (Linux abstract socket), so a consumer in another process gets a message in
//!   about a millisecond, and an idle consumer uses no CPU.
//! - **Crashes:** every process checks each second whether the processes registered in the
//!   file still run (pid and start time from `/proc`, so no heartbeat writes). What a dead
//!   process held comes back: its unacknowledged messages (marked redelivered), its consumers
//!   and exclusive queues go.
//! - **Speed:** one thread per process and file runs every operation; callers that overlap
//!   share one transaction and one commit (see BENCHMARKS.md).
//! - **Bad files:** a folder, a file that is not SQLite, another application's database, a
//!   corrupt or read-only file is an [`Error::Storage`] that says which, never an empty broker.
//! - `immediate` is [`Error::Unsupported`] (consumers may be in other processes).
//!
//! # Reliability
//! - [`RetryPolicy`] (kombu's `max_retries`, `interval_start`, `interval_step`,
//!   `interval_max`, plus a total `timeout` and an `on_retry` callback) bounds how long carrot
//!   retries; failover URLs (`amqp://a;amqp://b`) are tried in turn ([`FailoverStrategy`]).
//! - On RabbitMQ a lost connection is recovered: reconnected under the policy, its exchanges,
//!   queues and bindings declared again, channels reopened with their confirm mode and qos,
//!   consumers resumed ([`ConnectionBuilder::recovery`]). [`BrokerConnection::state`],
//!   [`BrokerConnection::events`] and [`ConnectionBuilder::on_event`] show what happens.
//! - Every wait on the broker is bounded ([`Timeouts`]); heartbeats (60 s) find a silent
//!   broker within two intervals; a broker alarm (`connection.blocked`) makes sends wait at
//!   most their timeout ([`Error::Blocked`]).
//! - A consumer ends normally only when the application cancels it: a queue deleted under it
//!   is [`Error::ConsumerCancelled`], a recovery that gave up is its error.
//! - [`Publisher::begin_send`] keeps many publisher confirms in flight ([`PendingConfirm`]).
//! - Names and header keys over 255 bytes and bodies over the maximum message size are
//!   refused the same way on every broker.
//!
//! # Where carrot does better than the seed
//! - the memory broker routes exactly like RabbitMQ (the seed's had no routing at all);
//! - `discard_all_matching` puts back the messages the filter keeps (the seed left them
//!   unacknowledged);
//! - `payload` decodes once, also falsy values;
//! - pickle is never decoded unless a consumer's accept list names it.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(clippy::unwrap_in_result)]

mod backend;
pub mod blocking;
mod connection;
mod consumer;
mod consumer_set;
mod entity;
mod error;
mod limits;
mod message;
mod message_state;
mod messaging;
mod options;
mod pool;
mod properties;
mod publisher;
mod redact;
mod retry;
mod routing;
mod rpc;
pub mod serialization;
#[cfg(feature = "serve")]
pub mod server;
mod simple;
mod status;
mod table;
pub mod url;
mod worker;

pub use backend::memory::MemoryBroker;
#[cfg(feature = "sqlite")]
pub use backend::sqlite::SqliteBroker;
pub use backend::QueueInfo;
pub use connection::{
    BrokerConnection, ConnectionBuilder, DeleteExchangeOptions, DeleteQueueOptions, BROKER_URL_ENV,
};
pub use consumer::{
    Callback, Consumer, ConsumerBuilder, DecodeErrorHandler, FetchOptions, IterConsume, IterQueue,
    IterQueueOptions, Qos,
};
pub use consumer_set::{ConsumerOptions, ConsumerSet, SetIterConsume};
pub use entity::{Binding, DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec, QueueType};
pub use error::{BoxError, Cause, Error, Result};
pub use message::Message;
pub use message_state::MessageState;
pub use messaging::{Messaging, MessagingBuilder};
pub use options::{FailoverStrategy, Timeouts, DEFAULT_HEARTBEAT, DEFAULT_MAX_MESSAGE_SIZE};
pub use pool::{ConnectionPool, PooledConnection, PooledPublisher, PublisherPool};
pub use properties::Properties;
pub use publisher::{OutgoingMessage, PendingConfirm, Publisher, PublisherBuilder, SendOptions};
pub use retry::{RetryCallback, RetryPolicy};
pub use rpc::{RpcClient, RpcServer};
pub use serialization::{Compression, Payload, Value};
pub use simple::{SimpleBuffer, SimpleQueue, SimpleQueueBuilder};
pub use status::{ConnectionEvent, ConnectionEvents, ConnectionState};
pub use table::{table, FieldTable, FieldValue};
pub use tokio_util::sync::CancellationToken;
pub use worker::{OnError, Worker, WorkerStats};

/// The README's examples, compiled and run as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
