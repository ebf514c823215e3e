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
//! # Brokers
//! | URL | broker |
//! | --- | --- |
//! | `memory://`, `memory://NAME` | embedded in-process broker with AMQP 0-9-1 routing (the default) |
//! | `amqp://`, `amqps://` | RabbitMQ through lapin (feature `amqp`, on by default) |
//! | `sqlite://PATH` | durable embedded broker (parsed today; the backend is not in this version yet) |
//!
//! # Layout
//! - [`connection`](BrokerConnection): opens the broker a URL names ([`url`]).
//! - [`Publisher`], [`Consumer`], [`ConsumerSet`], [`Messaging`]: the seed's four classes.
//! - [`Message`]: body, properties, delivery information, ack / reject / requeue, decode.
//! - [`serialization`]: json (default), raw, and custom serializers.
//! - [`blocking`]: the same API with blocking methods and real `Iterator`s.
//! - Brokers sit behind one internal trait; the embedded ones share one routing engine
//!   (direct, fanout, topic, headers); RabbitMQ routes for itself.
//!
//! # Cargo features
//! - `amqp` (default): the RabbitMQ backend, on lapin with rustls.
//!
//! # Where carrot does better than the seed
//! - the memory broker routes exactly like RabbitMQ (the seed's had no routing at all);
//! - `discard_all_matching` puts back the messages the filter keeps (the seed left them
//!   unacknowledged);
//! - `payload` decodes once, also falsy values;
//! - pickle is never decoded unless a consumer's accept list names it.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(clippy::unwrap_in_result)]

mod backend;
pub mod blocking;
mod connection;
mod consumer;
mod consumer_set;
mod entity;
mod error;
mod message;
mod messaging;
mod properties;
mod publisher;
mod routing;
pub mod serialization;
mod table;
pub mod url;

pub use backend::memory::MemoryBroker;
#[cfg(feature = "sqlite")]
pub use backend::sqlite::SqliteBroker;
pub use backend::QueueInfo;
pub use connection::{BrokerConnection, ConnectionBuilder, BROKER_URL_ENV};
pub use consumer::{
    Callback, Consumer, ConsumerBuilder, DecodeErrorHandler, FetchOptions, IterConsume, IterQueue,
};
pub use consumer_set::{ConsumerOptions, ConsumerSet, SetIterConsume};
pub use entity::{DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec, QueueType};
pub use error::{BoxError, Error, Result};
pub use message::{Message, MessageState};
pub use messaging::{Messaging, MessagingBuilder};
pub use properties::Properties;
pub use publisher::{OutgoingMessage, Publisher, PublisherBuilder, SendOptions};
pub use serialization::Payload;
pub use table::{table, FieldTable, FieldValue};

/// The README's examples, compiled and run as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
