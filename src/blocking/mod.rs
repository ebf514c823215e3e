//! The same API with blocking methods, for programs without an async runtime.
//!
//! Every public method of the async types has its twin here, of the same name (a test,
//! `tests/blocking_parity.rs`, fails when one is missing; its short list of exceptions says
//! why each has none), and behaves the same on every broker: the conformance suite runs a
//! second time against these types (`tests/blocking_conformance`). `iterconsume` and
//! `iterqueue` return real [`Iterator`]s ([`IterConsume`], [`IterQueue`], [`SetIterConsume`]),
//! whose `next` is the twin of the async iterators' `next().await`; the keyword
//! [`ConnectionBuilder`](crate::ConnectionBuilder) is shared, and
//! [`BrokerConnection::connect_with`] is the twin of its `connect`. A blocking program bounds
//! its waits with [`Consumer::next_message_timeout`] and the [`Timeouts`](crate::Timeouts) of
//! every call on the broker.
//!
//! # The runtime
//! Blocking connections share one tokio **multi-thread runtime with one worker thread**,
//! started with the first of them and kept for the life of the process (the thread
//! `carrot-blocking`). Each call runs its async twin on the calling thread; the worker thread
//! runs carrot's background tasks (heartbeats, recovering a lost connection and resuming its
//! consumers, moving deliveries to consumers) also *between* the application's calls. A
//! current-thread runtime would run them only while some call is blocked in it, so a program
//! busy between two calls would miss heartbeats and let deliveries wait; a runtime per
//! connection would cost a thread each, and stopping it under a connection that is still
//! reconnecting would cancel lapin's own tasks.
//!
//! # Threads
//! Every handle (connection, publisher, consumer, consumer set, messaging, messages, pending
//! confirms, events) is `Send` and can be used and dropped on any thread:
//! - a thread of no runtime, the usual case;
//! - a thread of an async program: `spawn_blocking` (the way to call blocking code from async
//!   code), the thread of `#[tokio::main]`, or even an async task itself. A call there blocks
//!   that thread until it returns (on a multi-thread runtime inside `block_in_place`, so that
//!   the runtime's other tasks move to another worker; on a current-thread runtime the other
//!   tasks wait): prefer the async types in async code, but nothing panics.
//!
//! Dropping a handle closes what it holds, as `close` does: a publisher's or consumer's
//! channel (unacknowledged messages go back to their queue), and with the last handle the
//! connection (its exclusive queues go). The last drop of a connection waits for the broker's
//! answers to those closes, at most 2 seconds (a broker that does not answer costs that, once),
//! so that a program that drops its connection and exits has closed it cleanly; in an async
//! context they finish in the background. After a lost connection a drop does not wait.
//!
//! ```
//! use carrot::blocking::{BrokerConnection, Consumer, Publisher};
//! use carrot::IterQueueOptions;
//!
//! let conn = BrokerConnection::connect("memory://blocking-doc")?;
//! let mut consumer = Consumer::builder(&conn).queue("feed").exchange("feed").routing_key("importer").build()?;
//! let publisher = Publisher::builder(&conn).exchange("feed").routing_key("importer").build()?;
//! publisher.send(&serde_json::json!({"import_feed": "http://cnn.com/rss/edition.rss"}))?;
//! for message in consumer.iterqueue(IterQueueOptions::new()) {
//!     let message = message?.expect("iterqueue without infinite yields messages");
//!     println!("{:?}", message.payload()?);
//!     message.ack()?;
//! }
//! # Ok::<(), carrot::Error>(())
//! ```

/// Forwards builder setters to the async builder.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[doc = concat!("See the async builder's `", stringify!($name), "`.")]
        pub fn $name(self, $($arg: $ty),*) -> Self {
            Self { inner: self.inner.$name($($arg),*), rt: self.rt }
        }
    )*};
}

/// Forwards getters to the async type underneath.
macro_rules! getters {
    ($($name:ident -> $ty:ty;)*) => {$(
        #[doc = concat!("See the async type's `", stringify!($name), "`.")]
        pub fn $name(&self) -> $ty {
            self.inner.$name()
        }
    )*};
}

mod connection;
mod consumer;
mod consumer_set;
mod iter;
mod messaging;
mod pool;
mod publisher;
mod rpc;
mod runtime;
mod simple;
mod worker;

use runtime::Rt;

pub use connection::{BrokerConnection, ConnectionEvents};
pub use consumer::{Consumer, ConsumerBuilder};
pub use consumer_set::ConsumerSet;
pub use iter::{IterConsume, IterQueue, SetIterConsume};
pub use messaging::{Messaging, MessagingBuilder};
pub use pool::{ConnectionPool, PooledConnection, PooledPublisher, PublisherPool};
pub use publisher::{PendingConfirm, Publisher, PublisherBuilder};
pub use rpc::{RpcClient, RpcServer};
pub use simple::{SimpleBuffer, SimpleQueue, SimpleQueueBuilder};
pub use worker::Worker;
