//! Request and reply over queues: [`RpcClient`] sends a request with `reply_to` and
//! `correlation_id` and awaits its reply; [`RpcServer`] answers the requests of a queue.
//!
//! On `amqp://` (RabbitMQ, and `carrot serve`) the client uses RabbitMQ's direct reply-to
//! (`amq.rabbitmq.reply-to`): no reply queue is declared, replies go straight to the client's
//! channel. On the embedded brokers it consumes an exclusive queue of its own, named by the
//! broker and deleted with the client. Either way a reply is a message to the default
//! exchange with the request's `reply_to` as routing key and its `correlation_id`, as kombu's
//! RPC pattern (and Celery's `rpc://` result backend) sends it, so carrot and kombu clients
//! and servers answer each other.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::connection::BrokerConnection;
use crate::consumer::{Consumer, Qos};
use crate::entity::QueueSpec;
use crate::error::{BoxError, Error, Result};
use crate::message::Message;
use crate::publisher::{Publisher, SendOptions};

/// RabbitMQ's direct reply-to pseudo-queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

type Waiter = oneshot::Sender<Result<Message>>;

/// The calls waiting for their reply, by correlation id, and why replies stopped if they did.
#[derive(Debug, Default)]
struct Waiting {
    calls: HashMap<String, Waiter>,
    ended: Option<String>,
}

/// Sends requests and awaits their replies, many in flight at once on one channel.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use carrot::{BrokerConnection, RpcClient, RpcServer};
/// use tokio_util::sync::CancellationToken;
///
/// let conn = BrokerConnection::connect("memory://rpc-doc").await?;
/// let mut server = RpcServer::new(&conn, "add").await?;
/// let stop = CancellationToken::new();
/// let serving = tokio::spawn({
///     let stop = stop.clone();
///     async move {
///         server.serve(|request| async move {
///             let (a, b): (i64, i64) = request.decode()?;
///             Ok::<_, carrot::BoxError>(a + b)
///         }, stop).await
///     }
/// });
/// let client = RpcClient::new(&conn).await?;
/// let reply = client.call("add", &(2, 3), Duration::from_secs(5)).await?;
/// assert_eq!(reply.decode::<i64>()?, 5);
/// stop.cancel();
/// assert_eq!(serving.await.expect("the server task")?, 1);
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct RpcClient {
    publisher: Publisher,
    reply_to: String,
    waiting: Arc<parking_lot::Mutex<Waiting>>,
    reader: tokio::task::JoinHandle<()>,
}

impl RpcClient {
    /// A client on this connection: subscribes to its replies now.
    pub async fn new(connection: &BrokerConnection) -> Result<Self> {
        let direct = matches!(connection.url().scheme(), "amqp" | "amqps");
        let mut consumer = if direct {
            Consumer::builder(connection)
                .queue(DIRECT_REPLY_TO)
                .no_ack(true)
                .auto_declare(false)
                .build()
                .await?
        } else {
            Consumer::builder(connection)
                .queue_spec(QueueSpec::new("").durable(false).exclusive(true))
                .no_ack(true)
                .build()
                .await?
        };
        consumer.consume().await?;
        let reply_to = if direct {
            DIRECT_REPLY_TO.to_string()
        } else {
            consumer.queue().to_string()
        };
        let publisher = Publisher::builder(connection)
            .auto_declare(false)
            .confirm_publish(true)
            .build_on(Some(consumer.channel()))
            .await?;
        let waiting = Arc::new(parking_lot::Mutex::new(Waiting::default()));
        let reader = tokio::spawn(read_replies(consumer, waiting.clone()));
        Ok(RpcClient {
            publisher,
            reply_to,
            waiting,
            reader,
        })
    }

    /// The address replies come to: `amq.rabbitmq.reply-to` on RabbitMQ, the client's own
    /// queue on the embedded brokers.
    pub fn reply_to(&self) -> &str {
        &self.reply_to
    }

    /// How many calls wait for their reply now.
    pub fn in_flight(&self) -> usize {
        self.waiting.lock().calls.len()
    }

    /// Sends `request` (json) to the queue `routing_key` through the default exchange and
    /// waits at most `timeout` for its reply. The request is sent mandatory: a queue that
    /// does not exist is [`Error::Unroutable`] at once rather than a timeout (on RabbitMQ
    /// mandatory sends of a connection go one at a time: for many calls in flight, use
    /// [`call_with`](Self::call_with) without `mandatory`).
    pub async fn call<T: Serialize + ?Sized>(
        &self,
        routing_key: &str,
        request: &T,
        timeout: Duration,
    ) -> Result<Message> {
        let options = SendOptions::new().routing_key(routing_key).mandatory(true);
        self.call_with(request, options, timeout).await
    }

    /// Sends `request` with these options (exchange, routing key, serializer, headers,
    /// priority, expiration, `mandatory`, a correlation id of the caller's; a new UUID
    /// otherwise) and waits at most `timeout` for its reply: [`Error::Timeout`] if none came,
    /// then a late reply is dropped. Every request waits for its publisher confirm (the
    /// broker has it) before its reply; with `mandatory`, a request no queue takes is
    /// [`Error::Unroutable`] at once.
    pub async fn call_with<T: Serialize + ?Sized>(
        &self,
        request: &T,
        mut options: SendOptions,
        timeout: Duration,
    ) -> Result<Message> {
        let id = options
            .correlation_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        options.reply_to = Some(self.reply_to.clone());
        let routing_key = options.routing_key.clone().unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock();
            if let Some(why) = &waiting.ended {
                return Err(ended(&self.reply_to, why));
            }
            if waiting.calls.contains_key(&id) {
                return Err(Error::InvalidArgument(format!(
                    "a call with correlation id {id:?} is already waiting for its reply: give each call its own"
                )));
            }
            waiting.calls.insert(id.clone(), tx);
        }
        // Forgets the call however this future ends (a timeout, an error, a drop).
        let _forget = Forget {
            waiting: &self.waiting,
            id: &id,
        };
        self.publisher.send_with(request, options).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(ended(&self.reply_to, "the client's reply reader stopped")),
            Err(_) => Err(Error::Timeout {
                operation: format!(
                    "the reply to request {id} sent with routing key {routing_key:?}"
                ),
                after: timeout,
            }),
        }
    }

    /// Stops taking replies and closes the client's channel (its reply queue goes with it).
    /// Calls still waiting fail.
    pub async fn close(&self) -> Result<()> {
        self.reader.abort();
        self.publisher.close().await
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a call from the waiting ones when dropped.
struct Forget<'a> {
    waiting: &'a parking_lot::Mutex<Waiting>,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiting.lock().calls.remove(self.id);
    }
}

fn ended(reply_to: &str, why: &str) -> Error {
    Error::ConsumerCancelled {
        consumer_tag: String::new(),
        queue: reply_to.to_string(),
        reason: format!("the RPC client takes no more replies: {why}; make a new client"),
    }
}

/// Hands each reply to the call waiting for it; replies nobody waits for (late ones) go.
async fn read_replies(mut consumer: Consumer, waiting: Arc<parking_lot::Mutex<Waiting>>) {
    let why = loop {
        match consumer.next_message().await {
            Ok(Some(reply)) => {
                let id = reply.properties().correlation_id().unwrap_or_default();
                let waiter = waiting.lock().calls.remove(id);
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(Ok(reply));
                    }
                    None => tracing::debug!(
                        correlation_id = id,
                        "a reply nobody waits for (its call timed out or went) was dropped"
                    ),
                }
            }
            Ok(None) => break "the reply consumer ended".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    let mut waiting = waiting.lock();
    waiting.ended = Some(why.clone());
    for (_, waiter) in waiting.calls.drain() {
        let _ = waiter.send(Err(ended(consumer.queue(), &why)));
    }
}

/// Answers the requests of a queue: each request's handler result goes back, json, to its
/// `reply_to` with its `correlation_id`, then the request is acknowledged.
#[derive(Debug)]
pub struct RpcServer {
    consumer: Consumer,
    publisher: Publisher,
}

impl RpcServer {
    /// A server of the queue `queue` (declared durable, as kombu's `Queue(name)`), taking up
    /// to 16 requests ahead.
    pub async fn new(connection: &BrokerConnection, queue: &str) -> Result<Self> {
        let consumer = Consumer::builder(connection).queue(queue).build().await?;
        Self::from_consumer(consumer).await
    }

    /// A server of what `consumer` consumes (its own queue, bindings and settings; a prefetch
    /// of 16 unless a qos is set later).
    pub async fn from_consumer(mut consumer: Consumer) -> Result<Self> {
        consumer.qos(Qos::new().prefetch_count(16)).await?;
        let publisher = Publisher::builder(consumer.connection())
            .auto_declare(false)
            .build()
            .await?;
        Ok(RpcServer {
            consumer,
            publisher,
        })
    }

    /// The consumer of the requests (for its qos, queue, ...).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Answers requests, one at a time, until `shutdown` is cancelled; returns how many were
    /// answered. The handler gets each request (shared: it may settle it itself) and returns
    /// the reply's data. A handler's error is logged and its request rejected without requeue (so
    /// dead-lettered if the queue says where): no reply goes, and the caller's own timeout
    /// tells it. A request without `reply_to` is handled and acknowledged, with no reply.
    pub async fn serve<F, Fut, R>(
        &mut self,
        mut handler: F,
        shutdown: CancellationToken,
    ) -> Result<u64>
    where
        F: FnMut(Arc<Message>) -> Fut,
        Fut: Future<Output = std::result::Result<R, BoxError>>,
        R: Serialize,
    {
        let mut answered = 0;
        loop {
            let request = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                next = self.consumer.next_message() => next?,
            };
            let Some(request) = request else { break };
            let reply_to = request.properties().reply_to().map(str::to_string);
            let correlation_id = request.properties().correlation_id().map(str::to_string);
            let request = Arc::new(request);
            let handled = handler(request.clone()).await;
            match handled {
                Ok(reply) => {
                    if let Some(reply_to) = reply_to {
                        let mut options = SendOptions::new().routing_key(reply_to);
                        options.correlation_id = correlation_id;
                        if let Err(e) = self.publisher.send_with(&reply, options).await {
                            tracing::warn!(error = %e, "rpc: the reply could not be sent");
                        }
                    }
                    settle(&request, true)?;
                    answered += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rpc: the handler failed; the request is rejected");
                    settle(&request, false)?;
                }
            }
        }
        Ok(answered)
    }
}

/// Acks (or rejects) a request unless the handler settled it itself.
fn settle(request: &Message, ok: bool) -> Result<()> {
    if request.acknowledged() {
        return Ok(());
    }
    if ok {
        request.ack()
    } else {
        request.reject()
    }
}
