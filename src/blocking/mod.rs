//! The same API with blocking methods, for programs without an async runtime.
//!
//! Every public method of the async types has its twin here, of the same name (a test,
//! `tests/blocking_parity.rs`, fails when one is missing; its short list of exceptions says
//! why each has none). `iterconsume` and `iterqueue` return real [`Iterator`]s, whose `next`
//! is the twin of the async iterators' `next().await`; the keyword
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
mod messaging;
mod publisher;

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Runtime;

use crate::error::Result;

pub use connection::{BrokerConnection, ConnectionEvents};
pub use consumer::{Consumer, ConsumerBuilder};
pub use consumer_set::ConsumerSet;
pub use messaging::{Messaging, MessagingBuilder};
pub use publisher::{PendingConfirm, Publisher, PublisherBuilder};

/// The runtime of a blocking connection (see the module documentation).
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
