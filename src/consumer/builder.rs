//! [`ConsumerBuilder`]: a consumer's queue, exchange and binding, and how it acknowledges.

use std::sync::Arc;

use super::handlers::Handlers;
use super::Consumer;
use crate::connection::BrokerConnection;
use crate::entity::{Binding, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::message::{DecodeSettings, Message};
use crate::serialization::Payload;
use crate::table::FieldTable;

/// Settings of a consumer, as the builder and `ConsumerSet` dictionaries give them.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSettings {
    pub(crate) queue: QueueSpec,
    pub(crate) exchange: ExchangeSpec,
    pub(crate) routing_key: String,
    pub(crate) binding_arguments: FieldTable,
    /// Bindings besides the one to `exchange`.
    pub(crate) bindings: Vec<Binding>,
    pub(crate) auto_ack: bool,
    pub(crate) no_ack: bool,
    pub(crate) warn_if_exists: bool,
    pub(crate) auto_declare: bool,
    pub(crate) consumer_tag: String,
    pub(crate) accept: Option<Arc<[String]>>,
    pub(crate) transactional: bool,
    pub(crate) priority: i32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            queue: QueueSpec::new(""),
            exchange: ExchangeSpec::new("", ExchangeType::Direct),
            routing_key: String::new(),
            binding_arguments: FieldTable::new(),
            bindings: Vec::new(),
            auto_ack: false,
            no_ack: false,
            warn_if_exists: false,
            auto_declare: true,
            consumer_tag: String::new(),
            accept: None,
            transactional: false,
            priority: 0,
        }
    }
}

impl ConsumerSettings {
    /// The seed's rule, applied once when the consumer is built so that the order of the
    /// builder calls does not matter: a consumer's exclusive queue is also auto-delete.
    pub(crate) fn settled(mut self) -> Self {
        if self.queue.exclusive {
            self.queue.auto_delete = true;
        }
        self
    }
}

/// Builds a [`Consumer`]; every setting of the seed, with its default.
///
/// A consumer declares two entities: a **queue** and the **exchange** it binds it to. Give
/// them whole as a [`QueueSpec`] and an [`ExchangeSpec`] ([`queue_spec`](Self::queue_spec),
/// [`exchange_spec`](Self::exchange_spec)), which reach every typed helper (TTL,
/// dead-lettering, max length, priorities, ...), or through the seed's keywords, which set
/// fields of the same two specs; each keyword's documentation says which entity it sets.
/// Keywords called after a spec change that spec's fields.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use carrot::{BrokerConnection, Consumer, ExchangeSpec, ExchangeType, QueueSpec};
/// let conn = BrokerConnection::connect("memory://consumer-builder-doc").await?;
/// let consumer = Consumer::builder(&conn)
///     .queue_spec(QueueSpec::new("jobs").message_ttl(Duration::from_secs(60)).dead_letter_exchange("jobs.dead"))
///     .exchange_spec(ExchangeSpec::new("jobs", ExchangeType::Topic).durable(true))
///     .routing_key("jobs.#")
///     .build().await?;
/// assert_eq!(consumer.queue(), "jobs");
/// assert_eq!(consumer.exchange_type(), ExchangeType::Topic);
/// assert!(consumer.queue_spec().arguments.contains_key("x-message-ttl"));
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[must_use = "call build().await to create the consumer"]
pub struct ConsumerBuilder {
    connection: BrokerConnection,
    settings: ConsumerSettings,
    handlers: Handlers,
}

impl std::fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ConsumerBuilder {
    pub(crate) fn new(connection: &BrokerConnection, settings: ConsumerSettings) -> Self {
        ConsumerBuilder {
            connection: connection.clone(),
            settings,
            handlers: Handlers::default(),
        }
    }

    /// RabbitMQ's consumer priority (`x-priority`, default 0), on every broker: the consumers
    /// of a queue with the highest priority that have room in their prefetch window take its
    /// messages (round robin among them); lower ones take only what those cannot take now.
    /// On sqlite://, consumers in other processes compete as before.
    pub fn priority(mut self, priority: i32) -> Self {
        self.settings.priority = priority;
        self
    }

    /// Transactions on the consumer's channel (AMQP's `tx.select`): acks, rejects and
    /// requeues of its messages are held until [`Consumer::commit`], then applied together
    /// (over sqlite:// in one SQLite transaction), or dropped by [`Consumer::rollback`] (the
    /// messages stay unacknowledged). Default false.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.settings.transactional = transactional;
        self
    }

    /// The whole queue declaration: name, durable, exclusive, auto_delete and arguments
    /// (replaces what earlier queue keywords set). An exclusive queue is made auto-delete
    /// (see [`exclusive`](Self::exclusive)).
    pub fn queue_spec(mut self, spec: QueueSpec) -> Self {
        self.settings.queue = spec;
        self
    }
    /// The whole exchange declaration: name, type, durable, auto_delete and arguments
    /// (replaces what earlier exchange keywords set).
    pub fn exchange_spec(mut self, spec: ExchangeSpec) -> Self {
        self.settings.exchange = spec;
        self
    }
    /// **Queue**: its name (empty: a name chosen by the broker).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.settings.queue.name = name.into();
        self
    }
    /// **Exchange**: the name of the exchange the queue binds to (empty: only the default
    /// exchange, by queue name).
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.settings.exchange.name = name.into();
        self
    }
    /// **Binding**: the binding key (see [`ExchangeType`] for how each type reads it).
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.settings.routing_key = key.into();
        self
    }
    /// **Exchange**: its type (default direct).
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.settings.exchange.kind = kind;
        self
    }
    /// **Queue**: whether it survives a broker restart (default true). The seed's keyword;
    /// the same as [`queue_durable`](Self::queue_durable). The exchange's is
    /// [`exchange_durable`](Self::exchange_durable).
    pub fn durable(self, durable: bool) -> Self {
        self.queue_durable(durable)
    }
    /// **Queue**: whether it survives a broker restart (default true).
    pub fn queue_durable(mut self, durable: bool) -> Self {
        self.settings.queue.durable = durable;
        self
    }
    /// **Queue**: whether it goes with its last consumer (default false). The seed's
    /// keyword; the same as [`queue_auto_delete`](Self::queue_auto_delete). An exclusive
    /// queue is auto-delete whatever this says.
    pub fn auto_delete(self, auto_delete: bool) -> Self {
        self.queue_auto_delete(auto_delete)
    }
    /// **Queue**: whether it goes with its last consumer (default false); an exclusive queue
    /// is auto-delete whatever this says.
    pub fn queue_auto_delete(mut self, auto_delete: bool) -> Self {
        self.settings.queue.auto_delete = auto_delete;
        self
    }
    /// **Exchange**: whether it survives a broker restart (default true).
    ///
    /// The seed used `durable` for both queue and exchange; they are separate here, as in
    /// kombu, so that consumers of one exchange may have queues of different kinds.
    pub fn exchange_durable(mut self, durable: bool) -> Self {
        self.settings.exchange.durable = durable;
        self
    }
    /// **Exchange**: whether it goes with its last binding (default false).
    pub fn exchange_auto_delete(mut self, auto_delete: bool) -> Self {
        self.settings.exchange.auto_delete = auto_delete;
        self
    }
    /// **Queue**: whether only this connection may use it (default false).
    ///
    /// As in the seed, an exclusive queue is also auto-delete: the rule is applied when the
    /// consumer is built, so `.exclusive(true).auto_delete(false)` and
    /// `.auto_delete(false).exclusive(true)` both declare an exclusive auto-delete queue.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.settings.queue.exclusive = exclusive;
        self
    }
    /// Acknowledge each message as it is received (default false).
    pub fn auto_ack(mut self, auto_ack: bool) -> Self {
        self.settings.auto_ack = auto_ack;
        self
    }
    /// Let the broker forget messages as it sends them (default false).
    pub fn no_ack(mut self, no_ack: bool) -> Self {
        self.settings.no_ack = no_ack;
        self
    }
    /// **Queue**: log a warning when it already exists (default false).
    pub fn warn_if_exists(mut self, warn: bool) -> Self {
        self.settings.warn_if_exists = warn;
        self
    }
    /// Whether `build` declares the queue and exchange and binds them (default true).
    pub fn auto_declare(mut self, auto_declare: bool) -> Self {
        self.settings.auto_declare = auto_declare;
        self
    }
    /// **Queue**: its arguments (`x-max-priority`, ...), replacing earlier ones; see
    /// [`QueueSpec`] for typed helpers (give them with [`queue_spec`](Self::queue_spec)).
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.settings.queue.arguments = arguments;
        self
    }
    /// **Exchange**: its arguments (`alternate-exchange`, ...), replacing earlier ones.
    pub fn exchange_arguments(mut self, arguments: FieldTable) -> Self {
        self.settings.exchange.arguments = arguments;
        self
    }
    /// **Queue**: a maximum priority, so that priorities 0..=max are honoured
    /// ([`QueueSpec::max_priority`]).
    pub fn max_priority(mut self, max: u8) -> Self {
        self.settings.queue = self.settings.queue.max_priority(max);
        self
    }
    /// Binds the queue to one more exchange (declared as given), with its own key and
    /// arguments: kombu's `Queue(bindings=[binding(exchange, routing_key, arguments), ...])`.
    /// The queue keeps its binding to [`exchange`](Self::exchange) if one is named; give only
    /// bindings to have just those. Declared together by
    /// [`Consumer::declare`](crate::Consumer::declare) and again after a recovery.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{Binding, BrokerConnection, Consumer, ExchangeSpec, ExchangeType, Publisher};
    /// let conn = BrokerConnection::connect("memory://bindings-doc").await?;
    /// let mut consumer = Consumer::builder(&conn)
    ///     .queue("audit")
    ///     .binding(Binding::new(ExchangeSpec::new("orders", ExchangeType::Topic), "order.#"))
    ///     .binding(Binding::new(ExchangeSpec::new("billing", ExchangeType::Direct), "invoice"))
    ///     .build().await?;
    /// for (exchange, key) in [("orders", "order.created"), ("billing", "invoice")] {
    ///     Publisher::builder(&conn).exchange(exchange).auto_declare(false).routing_key(key)
    ///         .build().await?.send(&key).await?;
    /// }
    /// assert_eq!(consumer.fetch().await?.expect("one").decode::<String>()?, "order.created");
    /// assert_eq!(consumer.fetch().await?.expect("two").decode::<String>()?, "invoice");
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub fn binding(mut self, binding: Binding) -> Self {
        self.settings.bindings.push(binding);
        self
    }
    /// Binds the queue to each of these exchanges (see [`binding`](Self::binding)).
    pub fn bindings(mut self, bindings: impl IntoIterator<Item = Binding>) -> Self {
        self.settings.bindings.extend(bindings);
        self
    }
    /// A broadcast consumer, kombu's `Broadcast(name)`: a fanout exchange `name` (durable, as
    /// kombu declares it) and a queue of this consumer alone, `bcast.<uuid>`, deleted with its
    /// consumer (auto-delete), so that every broadcast consumer gets every message sent to the
    /// exchange. Keywords called after this one change those specs.
    pub fn broadcast(mut self, name: impl Into<String>) -> Self {
        self.settings.exchange = ExchangeSpec::new(name, ExchangeType::Fanout);
        self.settings.queue = QueueSpec::new(crate::entity::unique_name("bcast"));
        self.settings.queue.auto_delete = true;
        self
    }
    /// **Binding**: its arguments; for a headers exchange, the headers to match and `x-match`.
    pub fn binding_arguments(mut self, arguments: FieldTable) -> Self {
        self.settings.binding_arguments = arguments;
        self
    }
    /// The consumer tag (default: chosen by the broker).
    pub fn consumer_tag(mut self, tag: impl Into<String>) -> Self {
        self.settings.consumer_tag = tag.into();
        self
    }
    /// The serializers (or content types) to decode, as kombu's `accept`: names such as
    /// `"json"`, `"raw"`, `"text"`, `"msgpack"`, `"yaml"`, `"pickle"`, or content types such
    /// as `"application/x-msgpack"`. Others are [`Error::ContentTypeNotAccepted`], and the
    /// message can still be acked or rejected. Default (no list): json, raw, text, custom
    /// serializers and unknown content types (as raw); msgpack, yaml and pickle are decoded
    /// only when named here.
    pub fn accept<I: IntoIterator<Item = S>, S: Into<String>>(mut self, accept: I) -> Self {
        self.settings.accept = Some(accept.into_iter().map(Into::into).collect());
        self
    }
    /// Registers a callback (see [`Consumer::register_callback`]).
    pub fn callback(
        mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) -> Self {
        self.handlers.add(Box::new(callback));
        self
    }
    /// Sets the decode-error handler.
    pub fn on_decode_error(
        mut self,
        handler: impl FnMut(&Message, &Error) + Send + 'static,
    ) -> Self {
        self.handlers.set_on_decode_error(Box::new(handler));
        self
    }

    /// Opens a channel and, with auto_declare, declares the queue and exchange and binds them.
    pub async fn build(self) -> Result<Consumer> {
        let settings = self.settings.settled();
        crate::limits::check_name("queue name", &settings.queue.name)?;
        crate::limits::check_name("consumer tag", &settings.consumer_tag)?;
        let channel = self.connection.channel().await?;
        if settings.transactional {
            channel.tx_select().await?;
        }
        let mut consumer = Consumer {
            _connection: self.connection.clone(),
            channel,
            decode: DecodeSettings {
                registry: self.connection.registry(),
                accept: settings.accept.clone(),
                max_message_size: self.connection.max_message_size(),
            },
            settings,
            handlers: self.handlers,
            subscription: None,
        };
        if consumer.settings.auto_declare {
            consumer.declare().await?;
        }
        Ok(consumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn built(configure: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder) -> Consumer {
        let conn = BrokerConnection::connect("memory://builder-unit-tests")
            .await
            .expect("memory:// connects");
        configure(Consumer::builder(&conn).auto_declare(false))
            .build()
            .await
            .expect("the consumer builds")
    }

    #[tokio::test]
    async fn exclusive_implies_auto_delete_in_any_order() {
        let orders: [fn(ConsumerBuilder) -> ConsumerBuilder; 4] = [
            |b| b.exclusive(true).auto_delete(false),
            |b| b.auto_delete(false).exclusive(true),
            |b| b.queue_spec(QueueSpec::new("q").exclusive(true)),
            |b| b.exclusive(true).queue_auto_delete(false),
        ];
        for configure in orders {
            let consumer = built(configure).await;
            assert!(consumer.exclusive() && consumer.auto_delete());
        }
        // Not exclusive: auto_delete is what was given, and exclusive(false) undoes nothing.
        let consumer = built(|b| b.exclusive(true).exclusive(false)).await;
        assert!(!consumer.exclusive() && !consumer.auto_delete());
        let consumer = built(|b| b.auto_delete(true)).await;
        assert!(!consumer.exclusive() && consumer.auto_delete());
    }

    #[tokio::test]
    async fn keywords_set_fields_of_the_specs_given_before() {
        let consumer = built(|b| {
            b.queue_spec(QueueSpec::new("q").max_priority(3))
                .exchange_spec(ExchangeSpec::new("x", ExchangeType::Topic))
                .durable(false)
                .exchange_auto_delete(true)
                .routing_key("a.#")
                .no_ack(true)
                .auto_ack(true)
                .accept(["json"])
        })
        .await;
        assert_eq!(
            consumer.queue_spec(),
            &QueueSpec::new("q").max_priority(3).durable(false)
        );
        assert_eq!(
            consumer.exchange_spec(),
            &ExchangeSpec::new("x", ExchangeType::Topic).auto_delete(true)
        );
        assert_eq!(consumer.routing_key(), "a.#");
        assert!(consumer.no_ack() && consumer.auto_ack() && !consumer.auto_declare());
        assert_eq!(consumer.accept(), Some(&["json".to_string()][..]));
        // A spec given after the keywords replaces what they set.
        let consumer = built(|b| b.queue("a").durable(false).queue_spec(QueueSpec::new("b"))).await;
        assert_eq!(consumer.queue_spec(), &QueueSpec::new("b"));
    }
}
