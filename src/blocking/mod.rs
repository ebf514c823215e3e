//! The same API with blocking methods, for programs without an async runtime.
//!
//! Every public method of the async types has its twin here, of the same name (a test,
//! `tests/blocking_parity.rs`, fails when one is missing; its short list of exceptions says
//! why each has none). `iterconsume` and `iterqueue` return real [`Iterator`]s ([`IterConsume`],
//! [`IterQueue`], [`SetIterConsume`]), whose `next` is the twin of the async iterators' `next().await`; the keyword
//! [`ConnectionBuilder`](crate::ConnectionBuilder) is shared, and
//! [`BrokerConnection::connect_with`] is the twin of its `connect`. Do not call these methods from inside an async runtime (they
//! block it); use the async types there.
//!
//! # The runtime
//! A connection owns a tokio **multi-thread runtime with one worker thread**, shared by
//! everything built on it, as the blocking clients of reqwest and mini-redis do. Each call
//! runs its async twin on the calling thread (`block_on`); the worker thread runs carrot's
//! background tasks (heartbeats, recovering a lost connection and resuming its consumers,
//! moving deliveries to consumers) also *between* the application's calls. A current-thread
//! runtime would run them only while some call is blocked in it, so a program busy between
//! two calls would miss heartbeats and let deliveries wait.
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
mod publisher;
mod runtime;

use runtime::Rt;

pub use connection::{BrokerConnection, ConnectionEvents};
pub use consumer::{Consumer, ConsumerBuilder};
pub use consumer_set::ConsumerSet;
pub use iter::{IterConsume, IterQueue, SetIterConsume};
pub use messaging::{Messaging, MessagingBuilder};
pub use publisher::{PendingConfirm, Publisher, PublisherBuilder};
