//! [`Worker`]: the consume loop of a service, kombu's `ConsumerMixin` done the Rust way.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::FutureExt;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::connection::BrokerConnection;
use crate::consumer::{Consumer, ConsumerBuilder, Qos};
use crate::error::{BoxError, Error, Result};
use crate::message::Message;
use crate::status::ConnectionEvent;

type HandlerFuture = Pin<Box<dyn Future<Output = std::result::Result<(), BoxError>> + Send>>;
type Handler = Arc<dyn Fn(Arc<Message>) -> HandlerFuture + Send + Sync>;
type DecodeErrorHook = Arc<dyn Fn(&Message, &Error) + Send + Sync>;
type EventHook = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

/// What a worker does with a message whose handler failed (returned an error or panicked).
/// It never acknowledges it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnError {
    /// Requeue it the first time; reject it (no requeue: dead-lettered if its queue has a
    /// dead-letter exchange, dropped otherwise) when it fails again, that is when it came
    /// marked redelivered.
    #[default]
    RequeueOnce,
    /// Always requeue it (a message that always fails comes back forever).
    Requeue,
    /// Reject it at once (dead-lettered, or dropped).
    Reject,
}

/// The counts of a worker, readable while it runs ([`Worker::stats`]) and returned by
/// [`Worker::run`].
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    handled: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicUsize,
    abandoned: AtomicU64,
}

impl WorkerStats {
    /// Messages whose handler succeeded (and that were acknowledged).
    pub fn handled(&self) -> u64 {
        self.counts.handled.load(Ordering::Relaxed)
    }
    /// Messages whose handler failed, panicked, or that could not be decoded.
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }
    /// Handlers running now.
    pub fn in_flight(&self) -> usize {
        self.counts.in_flight.load(Ordering::Relaxed)
    }
    /// Handlers still running when the shutdown grace period ended: stopped, their messages
    /// went back to their queue and will be handled again.
    pub fn abandoned(&self) -> u64 {
        self.counts.abandoned.load(Ordering::Relaxed)
    }
}

/// Runs handlers on the messages of one or more queues, at most N at once, until told to stop.
/// Set it up from [`Worker::builder`], then [`run`](Worker::run) it.
///
/// - **Concurrency**: at most [`concurrency`](Worker::concurrency) handlers run at
///   once (default 1), each a task; each queue's prefetch follows that number (4 per
///   handler), so the broker hands this worker little more than it can start.
/// - **Acknowledgement**: a message is acknowledged when its handler returns `Ok` (unless the
///   handler settled it itself); a failure (an error, a panic) follows [`OnError`], never an
///   ack. A message that cannot be decoded (with [`Worker::decoded`]) goes to the
///   decode-error hook and is rejected without requeue.
/// - **Shutdown**: on the [`CancellationToken`] ([`shutdown`](Worker::shutdown)), or
///   SIGINT / SIGTERM with [`shutdown_on_signals`](Worker::shutdown_on_signals), the
///   worker stops taking messages (its consumers are cancelled, and what the broker had sent
///   ahead goes back to the queue), lets running handlers finish and settle within the
///   [`grace`](Worker::grace) period (30 s by default), stops those that did not (their
///   messages go back, counted as [abandoned](WorkerStats::abandoned)), and closes.
/// - **Recovery**: it rides on the connection's automatic recovery: after a broker restart
///   the consumers resume and handlers see only redeliveries (an acknowledgement that was
///   lost with the connection makes its message come again).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use carrot::{BrokerConnection, Consumer, Message, Publisher, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// let conn = BrokerConnection::connect("memory://worker-doc").await?;
/// conn.declare_queue(&carrot::QueueSpec::new("jobs")).await?; // keeps what is sent before run
/// let stop = CancellationToken::new();
/// let done = stop.clone();
/// let worker = Worker::builder(&conn)
///     .concurrency(8)
///     .shutdown(stop.clone())
///     .decoded(Consumer::builder(&conn).queue("jobs"), move |n: u32, _message: Arc<Message>| {
///         let done = done.clone();
///         async move {
///             if n == 99 { done.cancel() }
///             Ok(())
///         }
///     });
/// let stats = worker.stats();
/// let publisher = Publisher::builder(&conn).routing_key("jobs").build().await?;
/// let running = tokio::spawn(worker.run());
/// for n in 0..100u32 { publisher.send(&n).await?; }
/// let report = running.await.expect("the worker task")?;
/// assert!(report.handled() >= 1 && stats.failed() == 0);
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
pub struct Worker {
    connection: BrokerConnection,
    queues: Vec<(ConsumerBuilder, Handler)>,
    concurrency: usize,
    prefetch: Option<u16>,
    grace: Duration,
    on_error: OnError,
    shutdown: CancellationToken,
    signals: bool,
    on_decode_error: Option<DecodeErrorHook>,
    on_event: Option<EventHook>,
    stats: WorkerStats,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.queues.len())
            .field("concurrency", &self.concurrency)
            .field("grace", &self.grace)
            .field("on_error", &self.on_error)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker on this connection, with no queue yet.
    pub fn builder(connection: &BrokerConnection) -> Worker {
        Worker {
            connection: connection.clone(),
            queues: Vec::new(),
            concurrency: 1,
            prefetch: None,
            grace: Duration::from_secs(30),
            on_error: OnError::default(),
            shutdown: CancellationToken::new(),
            signals: false,
            on_decode_error: None,
            on_event: None,
            stats: WorkerStats::default(),
        }
    }

    /// Consumes what `consumer` describes (queue, exchange, bindings; it is built when the
    /// worker runs) and runs `handler` on each message. The handler gets the message shared:
    /// it may ack, reject or requeue it itself; otherwise `Ok` acks it and an error follows
    /// [`on_error`](Self::on_error).
    pub fn queue<F, Fut>(mut self, consumer: ConsumerBuilder, handler: F) -> Self
    where
        F: Fn(Arc<Message>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), BoxError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |message| Box::pin(handler(message)));
        self.queues
            .push((consumer.no_ack(false).auto_ack(false), handler));
        self
    }

    /// [`queue`](Self::queue) with the body decoded first (json, or what the message says):
    /// a message that cannot be decoded goes to the [decode-error
    /// hook](Self::on_decode_error) and is rejected without requeue, counted as failed.
    pub fn decoded<T, F, Fut>(self, consumer: ConsumerBuilder, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, Arc<Message>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), BoxError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.queue(consumer, move |message: Arc<Message>| {
            let handler = handler.clone();
            async move {
                let data = message
                    .decode::<T>()
                    .map_err(|e| Box::new(Undecodable(e)) as BoxError)?;
                handler(data, message).await
            }
        })
    }

    /// [`queue`](Self::queue) with a blocking handler, run on tokio's blocking threads (the
    /// way to call synchronous code: database drivers, CPU work, `carrot::blocking`).
    pub fn queue_blocking<F>(self, consumer: ConsumerBuilder, handler: F) -> Self
    where
        F: Fn(Arc<Message>) -> std::result::Result<(), BoxError> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.queue(consumer, move |message: Arc<Message>| {
            let handler = handler.clone();
            async move {
                match tokio::task::spawn_blocking(move || handler(message)).await {
                    Ok(outcome) => outcome,
                    Err(e) => Err(Box::new(e) as BoxError),
                }
            }
        })
    }

    /// At most this many handlers at once (default 1; at least 1). Each queue's prefetch
    /// follows it: 4 per handler unless [`prefetch_count`](Self::prefetch_count) says
    /// otherwise (Celery's multiplier), so that the next message is there when a handler
    /// ends instead of one round trip to the broker later.
    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.concurrency = handlers.clamp(1, usize::from(u16::MAX));
        self
    }

    /// Each queue's prefetch (`basic.qos`), instead of 4 per handler: `concurrency` itself
    /// for a strictly fair share between workers of slow messages, more for quick handlers
    /// far from the broker. What is prefetched and not started goes back at shutdown.
    pub fn prefetch_count(mut self, count: u16) -> Self {
        self.prefetch = Some(count.max(1));
        self
    }

    /// How long a shutdown waits for running handlers (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// What a failed handler's message becomes (default [`OnError::RequeueOnce`]).
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }

    /// Stops the worker when this token is cancelled (the worker's own by default: see
    /// [`shutdown_token`](Self::shutdown_token)).
    pub fn shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Also stops on SIGINT (Ctrl-C) and, on Unix, SIGTERM (default off: a library does not
    /// take the process's signals unless asked).
    pub fn shutdown_on_signals(mut self, signals: bool) -> Self {
        self.signals = signals;
        self
    }

    /// Called with each message that could not be decoded and why (before it is rejected).
    pub fn on_decode_error(
        mut self,
        hook: impl Fn(&Message, &Error) + Send + Sync + 'static,
    ) -> Self {
        self.on_decode_error = Some(Arc::new(hook));
        self
    }

    /// Called with each event of the connection while the worker runs: lost, recovered,
    /// recovery failed, blocked, unblocked.
    pub fn on_connection_event(
        mut self,
        hook: impl Fn(&ConnectionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_event = Some(Arc::new(hook));
        self
    }

    /// The token that stops this worker (cancel it from anywhere).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The worker's counts, live.
    pub fn stats(&self) -> WorkerStats {
        self.stats.clone()
    }

    /// Builds the consumers and runs until shutdown; returns the final counts. An error that
    /// ends a consumer for good (its queue deleted, recovery given up) stops the worker the
    /// same way as a shutdown, and is returned after it.
    pub async fn run(self) -> Result<WorkerStats> {
        if self.queues.is_empty() {
            return Err(Error::InvalidArgument(
                "a worker needs at least one queue: add one with Worker::queue".into(),
            ));
        }
        let prefetch = self.prefetch.unwrap_or_else(|| {
            u16::try_from(self.concurrency.saturating_mul(4)).unwrap_or(u16::MAX)
        });
        let mut consumers = Vec::with_capacity(self.queues.len());
        for (builder, handler) in self.queues {
            let mut consumer = builder.build().await?;
            consumer.qos(Qos::new().prefetch_count(prefetch)).await?;
            consumer.consume().await?;
            consumers.push((Arc::new(tokio::sync::Mutex::new(consumer)), handler));
        }
        let stop = self.shutdown.child_token();
        let watchers = watch(&self.connection, self.on_event, self.signals, &stop);
        let running = Arc::new(Running {
            permits: Semaphore::new(self.concurrency),
            policy: self.on_error,
            on_decode_error: self.on_decode_error,
            stats: self.stats.clone(),
            error: parking_lot::Mutex::new(None),
        });
        // Each queue has as many lanes as handlers may run: a lane takes a message, waits for
        // a handler slot (shared by every queue), runs the handler and settles the message.
        let mut lanes = tokio::task::JoinSet::new();
        for (consumer, handler) in &consumers {
            for _ in 0..self.concurrency {
                lanes.spawn(lane(
                    consumer.clone(),
                    handler.clone(),
                    running.clone(),
                    stop.clone(),
                ));
            }
        }
        stop.cancelled().await;
        // Stop taking: each consumer is cancelled as soon as no lane waits on it, and what
        // the broker had sent ahead goes back to the queue.
        for (consumer, _) in &consumers {
            if let Err(e) = consumer.lock().await.cancel().await {
                tracing::debug!(error = %e, "worker: cancelling a consumer");
            }
        }
        let drained = tokio::time::timeout(self.grace, async {
            while lanes.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let abandoned = self.stats.in_flight();
            lanes.abort_all();
            while lanes.join_next().await.is_some() {}
            self.stats
                .counts
                .abandoned
                .fetch_add(abandoned as u64, Ordering::Relaxed);
            self.stats.counts.in_flight.store(0, Ordering::Relaxed);
            tracing::warn!(
                abandoned,
                grace = ?self.grace,
                "worker: handlers still running after the grace period were stopped; their messages go back to their queues"
            );
        }
        for (consumer, _) in &consumers {
            if let Err(e) = consumer.lock().await.close().await {
                tracing::debug!(error = %e, "worker: closing a consumer");
            }
        }
        for watcher in watchers {
            watcher.abort();
        }
        let error = running.error.lock().take();
        match error {
            Some(e) => Err(e),
            None => Ok(self.stats),
        }
    }
}

/// A handler's error that says its message could not be decoded.
#[derive(Debug)]
struct Undecodable(Error);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Undecodable {}

/// What the lanes share.
struct Running {
    permits: Semaphore,
    policy: OnError,
    on_decode_error: Option<DecodeErrorHook>,
    stats: WorkerStats,
    /// The error that ended a consumer for good, if one did.
    error: parking_lot::Mutex<Option<Error>>,
}

/// One lane of a queue: takes a message, waits for a handler slot, handles it; until `stop`.
/// A message taken and not started when the stop comes goes back to its queue.
async fn lane(
    consumer: Arc<tokio::sync::Mutex<Consumer>>,
    handler: Handler,
    running: Arc<Running>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            next = async { consumer.lock().await.next_message().await } => next,
        };
        let message = match next {
            Ok(Some(message)) => Arc::new(message),
            Ok(None) => return,
            Err(e) => {
                running.error.lock().get_or_insert(e);
                stop.cancel();
                return;
            }
        };
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = running.permits.acquire() => permit.ok(),
        };
        let Some(_permit) = permit else {
            if let Err(e) = message.requeue() {
                tracing::debug!(error = %e, "worker: giving back a message not started");
            }
            return;
        };
        let counts = &running.stats.counts;
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        handle(&running, &handler, message).await;
        counts.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the handler on one message and settles it.
async fn handle(running: &Running, handler: &Handler, message: Arc<Message>) {
    let outcome = AssertUnwindSafe(handler(message.clone()))
        .catch_unwind()
        .await;
    let counts = &running.stats.counts;
    let failure = match outcome {
        Ok(Ok(())) => {
            if !message.acknowledged() {
                if let Err(e) = message.ack() {
                    tracing::debug!(error = %e, "worker: an ack was lost (the message comes again)");
                }
            }
            counts.handled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err(error)) => error,
        Err(_) => "the handler panicked".into(),
    };
    counts.failed.fetch_add(1, Ordering::Relaxed);
    if message.acknowledged() {
        return;
    }
    let settled = match failure.downcast_ref::<Undecodable>() {
        Some(Undecodable(error)) => {
            if let Some(hook) = &running.on_decode_error {
                hook(&message, error);
            }
            tracing::warn!(error = %error, "worker: a message that cannot be decoded is rejected");
            message.reject()
        }
        None => {
            tracing::warn!(error = %failure, policy = ?running.policy, "worker: a handler failed");
            match running.policy {
                OnError::Requeue => message.requeue(),
                OnError::RequeueOnce if !message.redelivered() => message.requeue(),
                OnError::RequeueOnce | OnError::Reject => message.reject(),
            }
        }
    };
    if let Err(e) = settled {
        tracing::debug!(error = %e, "worker: settling a failed message");
    }
}

/// The tasks that watch the connection's events and the process's signals.
fn watch(
    connection: &BrokerConnection,
    hook: Option<EventHook>,
    signals: bool,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut watchers = Vec::new();
    if let Some(hook) = hook {
        let mut events = connection.events();
        watchers.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                hook(&event);
            }
        }));
    }
    if signals {
        let stop = stop.clone();
        watchers.push(tokio::spawn(async move {
            terminated().await;
            tracing::info!("worker: shutting down on a signal");
            stop.cancel();
        }));
    }
    watchers
}

/// SIGINT, or SIGTERM on Unix.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker: SIGTERM cannot be watched; only SIGINT stops it");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
