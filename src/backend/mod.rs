//! The one interface every broker implements, and the data that crosses it.
//!
//! The public types (`Publisher`, `Consumer`, ...) know nothing of any broker: they talk to a
//! [`Transport`] (a connection) and its [`Channel`]s. Brokers that do not route natively
//! share the engine in `crate::routing`.

#[cfg(feature = "amqp")]
pub(crate) mod amqp;
pub(crate) mod arguments;
mod closings;
pub(crate) mod death;
mod delivery_stream;
pub(crate) mod embedded;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod rules;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
#[cfg(all(test, feature = "serve"))]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::properties::Properties;
use crate::table::FieldTable;

/// A message as a broker holds it; queues reached by one publish share it.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) body: Box<[u8]>,
    pub(crate) properties: Properties,
    pub(crate) exchange: Arc<str>,
    pub(crate) routing_key: Arc<str>,
}

/// A message handed to a client, by `get` or to a consumer.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Published>,
    pub(crate) delivery_tag: u64,
    pub(crate) redelivered: bool,
    pub(crate) consumer_tag: Option<Arc<str>>,
}

pub(crate) use closings::Closings;
pub(crate) use delivery_stream::{DeliveryStream, Feed, Replenish};

/// What `publish` returns: the message is routed (`Done`), or its publisher confirm is still
/// to come (`Pending`, RabbitMQ), for the caller to await now or later (pipelined confirms).
pub(crate) enum Confirmation {
    /// The broker has the message.
    Done,
    /// Resolves when the broker confirms the message, or with why not.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    Pending(Pin<Box<dyn Future<Output = Result<()>> + Send>>),
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Confirmation::Done => "Done",
            Confirmation::Pending(_) => "Pending",
        })
    }
}

/// What `queue.declare` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name (chosen by the broker when declared with an empty name).
    pub name: String,
    /// Messages ready for delivery.
    pub message_count: u32,
    /// Active consumers.
    pub consumer_count: u32,
}

/// A queue's counts at one moment: what `carrot serve --metrics` reports.
#[cfg(feature = "serve")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue's name.
    pub name: String,
    /// Messages waiting to be delivered.
    pub ready: u64,
    /// Messages delivered and not yet acknowledged.
    pub unacked: u64,
    /// Consumers of the queue.
    pub consumers: u64,
}

/// Everything an embedded broker has declared: what a management API lists (RabbitMQ's
/// `/api/exchanges`, `/api/queues`, `/api/bindings`) and a definitions export holds.
#[cfg(feature = "serve")]
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// Every exchange, by name: the default exchange `""` and the predeclared `amq.` ones
    /// included.
    pub exchanges: Vec<ExchangeSpec>,
    /// Every queue with its counts, by name.
    pub queues: Vec<QueueEntry>,
    /// Every binding of a queue or an exchange to an exchange, by source, destination and
    /// routing key; without the implicit bindings of the default exchange to every queue.
    pub bindings: Vec<BindingEntry>,
}

/// A queue of a [`Topology`]: its declaration and its counts (those of [`QueueStats`]).
#[cfg(feature = "serve")]
#[derive(Clone, Debug, PartialEq)]
pub struct QueueEntry {
    /// The queue as declared (a server-named queue with the name it was given).
    pub spec: QueueSpec,
    /// Messages waiting to be delivered.
    pub ready: u64,
    /// Messages delivered and not yet acknowledged.
    pub unacked: u64,
    /// Consumers of the queue.
    pub consumers: u64,
    /// Whether the queue is exclusive to a connection (deleted when that connection closes).
    pub exclusive_owner: bool,
}

/// A binding of a [`Topology`]: what `source` routes that matches `routing_key` (or, for a
/// headers exchange, `arguments`) goes to `destination`.
#[cfg(feature = "serve")]
#[derive(Clone, Debug, PartialEq)]
pub struct BindingEntry {
    /// The exchange the binding belongs to.
    pub source: String,
    /// The queue or exchange it leads to.
    pub destination: String,
    /// Whether `destination` is a queue (`false`: an exchange-to-exchange binding).
    pub destination_is_queue: bool,
    /// The binding key.
    pub routing_key: String,
    /// The binding arguments (`x-match` and the headers to match, ...).
    pub arguments: FieldTable,
}

#[cfg(feature = "serve")]
impl Topology {
    /// A topology in the documented order, the default exchange added; `bindings` gives each
    /// exchange's bindings by name.
    pub(crate) fn new<'a>(
        mut exchanges: Vec<ExchangeSpec>,
        mut queues: Vec<QueueEntry>,
        bindings: impl IntoIterator<Item = (&'a str, &'a crate::routing::Bindings)>,
    ) -> Topology {
        use crate::routing::Destination;
        if !exchanges.iter().any(|e| e.name.is_empty()) {
            exchanges.push(ExchangeSpec::new("", crate::ExchangeType::Direct));
        }
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        queues.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let mut bindings: Vec<BindingEntry> = bindings
            .into_iter()
            .flat_map(|(source, bindings)| {
                bindings
                    .entries()
                    .map(move |(destination, key, arguments)| {
                        let (destination, destination_is_queue) = match destination {
                            Destination::Queue(q) => (q, true),
                            Destination::Exchange(x) => (x, false),
                        };
                        BindingEntry {
                            source: source.to_string(),
                            destination: destination.to_string(),
                            destination_is_queue,
                            routing_key: key.to_string(),
                            arguments: arguments.clone(),
                        }
                    })
            })
            .collect();
        bindings.sort_by(|a, b| {
            (&a.source, &a.destination, &a.routing_key).cmp(&(
                &b.source,
                &b.destination,
                &b.routing_key,
            ))
        });
        Topology {
            exchanges,
            queues,
            bindings,
        }
    }
}

#[cfg(feature = "serve")]
impl QueueEntry {
    /// A queue with the counts `queue_stats` gave it.
    pub(crate) fn new(spec: QueueSpec, stats: &QueueStats, exclusive_owner: bool) -> QueueEntry {
        QueueEntry {
            spec,
            ready: stats.ready,
            unacked: stats.unacked,
            consumers: stats.consumers,
            exclusive_owner,
        }
    }
}

/// Publish flags.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PublishFlags {
    pub(crate) mandatory: bool,
    pub(crate) immediate: bool,
    /// Wait until the broker has taken responsibility for the message (publisher confirms).
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) confirm: bool,
    /// The caller awaits the outcome at once (`send`, not `begin_send`): a broker that
    /// would otherwise hand the message to a task may send it in the call.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) awaited: bool,
}

/// An open connection to a broker.
///
/// Errors common to every method: [`Error::ConnectionClosed`](crate::Error::ConnectionClosed)
/// once the connection is closed or lost (RabbitMQ with recovery on waits for the recovery
/// first, under the retry policy, and then reports
/// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted) if it gives up), and
/// [`Error::Timeout`](crate::Error::Timeout) when RabbitMQ does not answer within the
/// operation timeout.
#[async_trait]
pub(crate) trait Transport: Send + Sync + std::fmt::Debug {
    /// Opens a new channel on the connection (RabbitMQ: `channel.open` now, so that a broker
    /// that refuses one says so here).
    async fn channel(&self) -> Result<Arc<dyn Channel>>;
    /// Closes the connection and every channel on it: their consumers end and their
    /// unacknowledged deliveries go back to their queues; the exclusive queues of the
    /// connection are deleted. Closing a closed connection does nothing.
    async fn close(&self) -> Result<()>;
    /// The index, in the URLs the connection was opened with, of the one it is connected to
    /// now (it changes with a failover); 0 for the embedded brokers.
    fn current_url(&self) -> usize {
        0
    }
    /// The closes that drops of this connection's channels (and of the connection) started
    /// and left running in the background: RabbitMQ's, which wait for the broker's answer.
    /// The embedded brokers close at once and have none.
    fn closings(&self) -> Closings {
        Closings::default()
    }
    /// Every queue of the broker with its ready and unacknowledged messages and its
    /// consumers, by name (the embedded brokers; RabbitMQ's management plugin has its own).
    #[cfg(feature = "serve")]
    async fn queue_stats(&self) -> Result<Vec<crate::backend::QueueStats>> {
        Err(crate::Error::Unsupported(
            "queue statistics come from the embedded brokers only; RabbitMQ has `rabbitmqctl list_queues`".into(),
        ))
    }
    /// Every exchange, queue (with the counts of [`queue_stats`](Transport::queue_stats)) and
    /// binding of the broker, in one consistent view (the embedded brokers; RabbitMQ's
    /// management plugin has its own).
    #[cfg(feature = "serve")]
    async fn topology(&self) -> Result<crate::backend::Topology> {
        Err(crate::Error::Unsupported(
            "the topology comes from the embedded brokers only; RabbitMQ has its management plugin"
                .into(),
        ))
    }
}

/// A channel: the unit that owns consumers, unacknowledged deliveries, qos and flow.
///
/// Refusals follow RabbitMQ's (see `rules`): 404 [`Error::NotFound`](crate::Error::NotFound),
/// 405 [`Error::ResourceLocked`](crate::Error::ResourceLocked) (a queue exclusive to another
/// connection), 406 [`Error::PreconditionFailed`](crate::Error::PreconditionFailed), 403
/// [`Error::AccessRefused`](crate::Error::AccessRefused). On RabbitMQ a refusal closes the
/// channel and the next call opens a new one transparently. Every method fails with
/// [`Error::ChannelClosed`](crate::Error::ChannelClosed) once the channel was closed by
/// [`close`](Channel::close) or [`shutdown`](Channel::shutdown), and with the connection errors
/// of [`Transport`].
#[async_trait]
pub(crate) trait Channel: Send + Sync + std::fmt::Debug {
    /// `exchange.declare`. With `passive`, only checks that the exchange exists (404
    /// otherwise; its settings are not compared, and the empty name, the default exchange,
    /// always exists); otherwise creates it, or checks that the existing one has the same
    /// type, `durable`, `auto_delete` and arguments (406 otherwise). A new name starting with
    /// `amq.` and the default exchange are refused (403).
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()>;
    /// `exchange.delete`, with its bindings. A missing exchange is deleted already (OK, as
    /// RabbitMQ answers); with `if_unused`, an exchange that still has bindings is 406; the
    /// default and `amq.` exchanges are 403.
    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()>;
    /// `queue.declare`: the queue's name (chosen by the broker, `amq.gen-...`, for an empty
    /// one), its ready messages and its consumers. With `passive`, only looks the queue up
    /// (404 if missing, 405 if exclusive to another connection); otherwise creates it, or
    /// checks that the existing one is equivalent (405 for another `exclusive`, then 406 for
    /// another `durable`, ignored for an exclusive queue, `auto_delete` or arguments).
    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo>;
    /// `queue.delete`: how many messages it held; 0 for a missing queue (deleted already, as
    /// RabbitMQ answers); 405 for another connection's exclusive queue; 406 with `if_unused`
    /// for a queue that has consumers, with `if_empty` for one that has messages. Its consumers are cancelled
    /// (their streams end with [`Error::ConsumerCancelled`](crate::Error::ConsumerCancelled)).
    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32>;
    /// `queue.bind`: routes what `exchange` receives with a matching key (or, for a headers
    /// exchange, matching `arguments`) to `queue`. Binding twice is binding once; 404 if
    /// either is missing, 403 for the default exchange.
    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()>;
    /// `queue.unbind`: removes the binding made with the same key and arguments; a binding
    /// that does not exist is not an error (as on RabbitMQ); 404 if the queue or exchange is
    /// missing.
    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()>;
    /// `exchange.bind`: what `source` routes with a matching key (or, for a headers exchange,
    /// matching `arguments`) goes on to the exchange `destination`, which routes it with the
    /// same key and headers; a queue that several paths lead to gets one copy, a cycle ends.
    /// Binding twice is binding once; 404 if either is missing, 403 for the default exchange.
    async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()>;
    /// `exchange.unbind`: removes the binding made with the same key and arguments (one that
    /// does not exist is not an error); an auto-delete source left without bindings goes.
    /// 404 if either exchange is missing.
    async fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()>;
    /// `basic.publish`. Returns [`Confirmation::Done`] once the broker has routed the message
    /// (embedded brokers, or RabbitMQ without `flags.confirm`; on Redis without
    /// `flags.confirm` a default-exchange message that is not `mandatory` once it is queued
    /// in the connection's outbox), or [`Confirmation::Pending`], which resolves when the
    /// broker confirms it: `Ok`, [`Error::Nacked`](crate::Error::Nacked)
    /// if it refused it, [`Error::Unroutable`](crate::Error::Unroutable) for a returned
    /// `mandatory` or `immediate` message. A missing exchange is 404; `immediate` where it is
    /// not implemented is [`Error::Unsupported`](crate::Error::Unsupported); a send while
    /// RabbitMQ blocks publishing waits, at most the send timeout
    /// ([`Error::Blocked`](crate::Error::Blocked)).
    async fn publish(&self, message: Arc<Published>, flags: PublishFlags) -> Result<Confirmation>;
    /// `basic.get`: the next ready message of `queue`, `None` if it has none. With `no_ack`
    /// the message counts as acknowledged at once; otherwise it stays unacknowledged on this
    /// channel until [`ack`](Channel::ack) or [`reject`](Channel::reject). 404 / 405 for a
    /// missing queue or one exclusive to another connection.
    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>>;
    /// `basic.consume`: the consumer's tag (the broker's `amq.ctag-...` when `consumer_tag` is
    /// empty) and the stream of its deliveries, bounded by qos and paused by flow. The stream
    /// ends after [`cancel`](Channel::cancel) or when the channel closes, and yields
    /// [`Error::ConsumerCancelled`](crate::Error::ConsumerCancelled) when the broker cancels
    /// the consumer (its queue deleted). With `exclusive`, refused (403) if the queue has other
    /// consumers, and other consumers are refused while it lasts; a tag already used on the
    /// channel is 406. `priority` is RabbitMQ's consumer priority (`x-priority`, default 0):
    /// the consumers of the highest priority that have room take the messages (round robin
    /// among them), lower ones only what those cannot take now.
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(Arc<str>, DeliveryStream)>;
    /// `basic.cancel`: ends the consumer's stream; its unacknowledged deliveries stay so (they
    /// are acknowledged or rejected as before, or go back when the channel closes). An unknown
    /// tag is not an error.
    async fn cancel(&self, consumer_tag: &str) -> Result<()>;
    /// Whether a delivery came before its channel was replaced (a recovery, a channel error):
    /// the broker has requeued it, so it cannot be acknowledged and will come again.
    fn is_stale(&self, _delivery_tag: u64) -> bool {
        false
    }
    /// `basic.ack` of the delivery `delivery_tag` of this channel (with `multiple`, of every
    /// unacknowledged one up to it), without waiting for the broker (acks are pipelined). A
    /// tag the channel does not have is 406 (RabbitMQ closes the channel: the error comes with
    /// the next call); a delivery of a channel since replaced is
    /// [`Error::ChannelClosed`](crate::Error::ChannelClosed) (see [`is_stale`](Channel::is_stale)).
    fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()>;
    /// `basic.reject` (`basic.nack` on RabbitMQ) of one delivery, without waiting for the
    /// broker: back to its queue with `requeue` (marked redelivered), otherwise dropped or
    /// dead-lettered. Errors as for [`ack`](Channel::ack).
    fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()>;
    /// `basic.qos`: at most `prefetch_count` unacknowledged deliveries (0: no limit) per
    /// consumer started afterwards, or with `global` for the whole channel. A
    /// `prefetch_size` other than 0 is [`Error::Unsupported`](crate::Error::Unsupported), as
    /// RabbitMQ does not implement it.
    async fn qos(&self, prefetch_size: u32, prefetch_count: u16, global: bool) -> Result<()>;
    /// `channel.flow`: `false` pauses deliveries to the channel's consumers, `true` resumes
    /// them (on RabbitMQ, which refuses it from clients, the pause is done on this side).
    async fn flow(&self, active: bool) -> Result<()>;
    /// `queue.purge`: drops the queue's ready messages (not the unacknowledged ones) and
    /// returns how many. 404 / 405 as for [`get`](Channel::get).
    async fn purge(&self, queue: &str) -> Result<u32>;
    /// `tx.select`: from now on the channel's publishes and settlements are held until
    /// [`tx_commit`](Channel::tx_commit) (again is fine).
    async fn tx_select(&self) -> Result<()>;
    /// `tx.commit`: applies what the transaction held, at once, in order (SQLite: in one
    /// transaction); the messages it published that were mandatory and reached no queue come
    /// back, with their [`Error::Unroutable`](crate::Error::Unroutable), to be returned. 406
    /// without `tx.select`; on RabbitMQ, a transaction lost with its channel is
    /// [`Error::ChannelClosed`](crate::Error::ChannelClosed) (nothing of it was applied).
    async fn tx_commit(&self) -> Result<Vec<(Arc<Published>, crate::Error)>>;
    /// `tx.rollback`: drops what the transaction held (its deliveries stay unsettled). 406
    /// without `tx.select`.
    async fn tx_rollback(&self) -> Result<()>;
    /// Waits until the messages this channel published without confirms have reached the
    /// broker, and reports a failure to store one. Only Redis queues them on the client (its
    /// connection's outbox); the others have nothing to wait for.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// `channel.close`: ends the channel's consumers and sends its unacknowledged deliveries
    /// back to their queues, marked redelivered. Closing a closed channel does nothing.
    async fn close(&self) -> Result<()>;
    /// Closes without waiting, for `Drop`: unacknowledged deliveries go back to their queues.
    fn shutdown(&self);
    /// [`ack`](Channel::ack) without waiting for it to be stored: the operation is ordered
    /// with the channel's next ones now, and its outcome comes with the `Confirmation`
    /// (SQLite: after its commit). The other brokers settle at once.
    #[cfg(feature = "serve")]
    fn ack_pipelined(&self, delivery_tag: u64, multiple: bool) -> Result<Confirmation> {
        self.ack(delivery_tag, multiple)
            .map(|()| Confirmation::Done)
    }
    /// [`reject`](Channel::reject), pipelined as [`ack_pipelined`](Channel::ack_pipelined).
    #[cfg(feature = "serve")]
    fn reject_pipelined(&self, delivery_tag: u64, requeue: bool) -> Result<Confirmation> {
        self.reject(delivery_tag, requeue)
            .map(|()| Confirmation::Done)
    }
}
