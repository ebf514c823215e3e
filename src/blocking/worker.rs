//! The blocking [`Worker`]: the same loop, with handlers that are plain functions.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{BrokerConnection, ConsumerBuilder, Rt};
use crate::error::{BoxError, Error, Result};
use crate::{CancellationToken, ConnectionEvent, Message, OnError, WorkerStats};

/// A blocking [`crate::Worker`]: handlers are plain functions, run on tokio's blocking
/// threads (at most [`concurrency`](Self::concurrency) at once); [`run`](Self::run) blocks
/// until the shutdown.
///
/// ```
/// use carrot::blocking::{BrokerConnection, Consumer, Publisher, Worker};
///
/// let conn = BrokerConnection::connect("memory://blocking-worker-doc")?;
/// conn.declare_queue(&carrot::QueueSpec::new("jobs"))?;   // keeps what is sent before run
/// let worker = Worker::builder(&conn).concurrency(4);
/// let stop = worker.shutdown_token();
/// let worker = worker.decoded(Consumer::builder(&conn).queue("jobs"), move |n: u32, _message| {
///     if n == 9 { stop.cancel() }
///     Ok(())
/// });
/// let publisher = Publisher::builder(&conn).routing_key("jobs").build()?;
/// for n in 0..10u32 { publisher.send(&n)?; }
/// let stats = worker.run()?;
/// assert!(stats.handled() >= 1);
/// # Ok::<(), carrot::Error>(())
/// ```
#[derive(Debug)]
pub struct Worker {
    inner: crate::Worker,
    rt: Rt,
}

impl Worker {
    /// See [`crate::Worker::builder`].
    pub fn builder(connection: &BrokerConnection) -> Worker {
        Worker {
            inner: crate::Worker::builder(&connection.inner),
            rt: connection.rt.clone(),
        }
    }

    fn with(self, set: impl FnOnce(crate::Worker) -> crate::Worker) -> Self {
        Worker {
            inner: set(self.inner),
            rt: self.rt,
        }
    }

    /// See [`crate::Worker::queue`]; the handler is a plain function (as
    /// [`queue_blocking`](Self::queue_blocking)).
    pub fn queue<F>(self, consumer: ConsumerBuilder, handler: F) -> Self
    where
        F: Fn(Arc<Message>) -> std::result::Result<(), BoxError> + Send + Sync + 'static,
    {
        self.queue_blocking(consumer, handler)
    }

    /// See [`crate::Worker::queue_blocking`].
    pub fn queue_blocking<F>(self, consumer: ConsumerBuilder, handler: F) -> Self
    where
        F: Fn(Arc<Message>) -> std::result::Result<(), BoxError> + Send + Sync + 'static,
    {
        self.with(|w| w.queue_blocking(consumer.into_inner(), handler))
    }

    /// See [`crate::Worker::decoded`]; the handler is a plain function.
    pub fn decoded<T, F>(self, consumer: ConsumerBuilder, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, Arc<Message>) -> std::result::Result<(), BoxError> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.with(|w| {
            w.decoded(consumer.into_inner(), move |data: T, message| {
                let handler = handler.clone();
                async move {
                    match tokio::task::spawn_blocking(move || handler(data, message)).await {
                        Ok(outcome) => outcome,
                        Err(e) => Err(Box::new(e) as BoxError),
                    }
                }
            })
        })
    }

    /// See [`crate::Worker::concurrency`].
    pub fn concurrency(self, handlers: usize) -> Self {
        self.with(|w| w.concurrency(handlers))
    }

    /// See [`crate::Worker::prefetch_count`].
    pub fn prefetch_count(self, count: u16) -> Self {
        self.with(|w| w.prefetch_count(count))
    }

    /// See [`crate::Worker::grace`].
    pub fn grace(self, grace: Duration) -> Self {
        self.with(|w| w.grace(grace))
    }

    /// See [`crate::Worker::on_error`].
    pub fn on_error(self, policy: OnError) -> Self {
        self.with(|w| w.on_error(policy))
    }

    /// See [`crate::Worker::shutdown`].
    pub fn shutdown(self, token: CancellationToken) -> Self {
        self.with(|w| w.shutdown(token))
    }

    /// See [`crate::Worker::shutdown_on_signals`].
    pub fn shutdown_on_signals(self, signals: bool) -> Self {
        self.with(|w| w.shutdown_on_signals(signals))
    }

    /// See [`crate::Worker::on_decode_error`].
    pub fn on_decode_error(self, hook: impl Fn(&Message, &Error) + Send + Sync + 'static) -> Self {
        self.with(|w| w.on_decode_error(hook))
    }

    /// See [`crate::Worker::on_connection_event`].
    pub fn on_connection_event(
        self,
        hook: impl Fn(&ConnectionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.with(|w| w.on_connection_event(hook))
    }

    getters! {
        shutdown_token -> CancellationToken;
        stats -> WorkerStats;
    }

    /// See [`crate::Worker::run`]: blocks until the shutdown.
    pub fn run(self) -> Result<WorkerStats> {
        let Worker { inner, rt } = self;
        rt.block_on(inner.run())
    }
}
