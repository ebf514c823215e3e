//! Exchanges, queues and bindings as plain data, shared by every backend.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::table::{FieldTable, FieldValue};

/// How an exchange routes messages to the queues bound to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeType {
    /// The routing key equals the binding key.
    #[default]
    Direct,
    /// Every bound queue, whatever the key.
    Fanout,
    /// Dot-separated words; `*` matches one word, `#` zero or more.
    Topic,
    /// The message headers match the binding arguments (`x-match` = `all` or `any`).
    Headers,
}

impl ExchangeType {
    /// The AMQP name: `direct`, `fanout`, `topic` or `headers`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

impl fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExchangeType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "direct" => Ok(ExchangeType::Direct),
            "fanout" => Ok(ExchangeType::Fanout),
            "topic" => Ok(ExchangeType::Topic),
            "headers" | "match" => Ok(ExchangeType::Headers),
            _ => Err(Error::InvalidArgument(format!(
                "unknown exchange type {s:?}: use direct, fanout, topic or headers"
            ))),
        }
    }
}

/// Whether a message survives a broker restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// 1: kept in memory only, lost when the broker restarts.
    Transient,
    /// 2 (the default): written to disk on durable queues, kept across restarts.
    #[default]
    Persistent,
}

impl DeliveryMode {
    /// The AMQP value: 1 or 2.
    pub fn as_u8(self) -> u8 {
        match self {
            DeliveryMode::Transient => 1,
            DeliveryMode::Persistent => 2,
        }
    }

    /// From the AMQP value; anything but 2 is transient, as brokers treat it.
    pub fn from_u8(v: u8) -> Self {
        if v == 2 {
            DeliveryMode::Persistent
        } else {
            DeliveryMode::Transient
        }
    }
}

impl FromStr for DeliveryMode {
    type Err = Error;
    /// Accepts the seed's spellings: `1`, `transient`, `2`, `persistent`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "1" | "transient" => Ok(DeliveryMode::Transient),
            "2" | "persistent" => Ok(DeliveryMode::Persistent),
            _ => Err(Error::InvalidArgument(format!(
                "unknown delivery mode {s:?}: use 1/transient or 2/persistent"
            ))),
        }
    }
}

/// RabbitMQ's kinds of queue (`x-queue-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueType {
    /// The classic queue (the default).
    #[default]
    Classic,
    /// A replicated Raft queue: durable and not exclusive.
    Quorum,
    /// An append-only log, read with offsets (RabbitMQ only).
    Stream,
}

impl QueueType {
    /// The `x-queue-type` value: `classic`, `quorum` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }
}

/// An exchange declaration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExchangeSpec {
    /// The exchange's name.
    pub name: String,
    /// Its routing algorithm.
    pub kind: ExchangeType,
    /// Survives a broker restart (default true, as in the seed).
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Takes messages only from other exchanges bound to it, never from a publisher (which
    /// is refused with [`Error::AccessRefused`](crate::Error::AccessRefused), 403, as on
    /// RabbitMQ).
    pub internal: bool,
    /// Extra arguments (`alternate-exchange`, ...).
    pub arguments: FieldTable,
}

impl ExchangeSpec {
    /// A durable exchange of this name and type.
    pub fn new(name: impl Into<String>, kind: ExchangeType) -> Self {
        ExchangeSpec {
            name: name.into(),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        }
    }

    /// Sets `durable`.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Sets `auto_delete`.
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.auto_delete = auto_delete;
        self
    }

    /// Sets `internal`: the exchange takes messages only from other exchanges bound to it
    /// ([`BrokerConnection::bind_exchange`](crate::BrokerConnection::bind_exchange)).
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }

    /// Sets an argument.
    pub fn argument(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.arguments.insert(key.into(), value.into());
        self
    }
}

/// A queue declaration.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct QueueSpec {
    /// The queue's name.
    pub name: String,
    /// Survives a broker restart (default true). An exclusive queue never does, whatever this
    /// says (RabbitMQ ignores `durable` for it, and so redeclaring it with another `durable`
    /// is not refused).
    pub durable: bool,
    /// Only the declaring connection may use it; deleted when that connection closes.
    /// Redeclaring a queue with another `exclusive` than it has is refused with 405
    /// ([`Error::ResourceLocked`]).
    pub exclusive: bool,
    /// Deleted when its last consumer is cancelled.
    pub auto_delete: bool,
    /// Queue arguments (`x-max-priority`, `x-message-ttl`, ...).
    pub arguments: FieldTable,
}

impl QueueSpec {
    /// A durable queue of this name.
    pub fn new(name: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        }
    }

    /// Sets `durable`.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Sets `exclusive`.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Sets `auto_delete`.
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.auto_delete = auto_delete;
        self
    }

    /// Sets an argument.
    pub fn argument(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.arguments.insert(key.into(), value.into());
        self
    }

    /// Priorities 0..=`max` are honoured, higher first (`x-max-priority`, at most 255).
    pub fn max_priority(self, max: u8) -> Self {
        self.argument("x-max-priority", max)
    }

    /// Messages expire after this long in the queue (`x-message-ttl`).
    pub fn message_ttl(self, ttl: Duration) -> Self {
        self.argument(
            "x-message-ttl",
            ttl.as_millis().min(i64::MAX as u128) as i64,
        )
    }

    /// The queue holds at most this many messages (`x-max-length`).
    pub fn max_length(self, max: u32) -> Self {
        self.argument("x-max-length", max)
    }

    /// The queue is deleted after being unused this long (`x-expires`).
    pub fn expires(self, after: Duration) -> Self {
        self.argument("x-expires", after.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Dead letters go to this exchange (`x-dead-letter-exchange`).
    pub fn dead_letter_exchange(self, exchange: impl Into<String>) -> Self {
        self.argument("x-dead-letter-exchange", exchange.into())
    }

    /// Dead letters get this routing key (`x-dead-letter-routing-key`).
    pub fn dead_letter_routing_key(self, key: impl Into<String>) -> Self {
        self.argument("x-dead-letter-routing-key", key.into())
    }

    /// The kind of queue (`x-queue-type`); quorum and stream queues must be durable and not
    /// exclusive.
    pub fn queue_type(self, kind: QueueType) -> Self {
        self.argument("x-queue-type", kind.as_str())
    }

    /// The declared `x-max-priority`, validated.
    pub(crate) fn max_priority_value(&self) -> Result<Option<u8>> {
        match self.arguments.get("x-max-priority") {
            None => Ok(None),
            Some(FieldValue::Int(n)) if (0..=255).contains(n) => Ok(Some(*n as u8)),
            Some(other) => Err(Error::PreconditionFailed(format!(
                "invalid arg 'x-max-priority' for queue '{}': {other:?} is not an integer from 0 to 255",
                self.name
            ))),
        }
    }
}

/// One more binding of a consumer's queue (kombu's `binding(exchange, routing_key,
/// arguments)` in `Queue(bindings=[...])`): the exchange is declared and the queue bound to it
/// with the key and arguments, along with the consumer's own exchange, and again after a
/// recovery.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Binding {
    /// The exchange, declared as given.
    pub exchange: ExchangeSpec,
    /// The binding key.
    pub routing_key: String,
    /// The binding arguments (a headers exchange's `x-match` and headers, ...).
    pub arguments: FieldTable,
}

impl Binding {
    /// A binding to this exchange with this key and no arguments.
    pub fn new(exchange: ExchangeSpec, routing_key: impl Into<String>) -> Self {
        Binding {
            exchange,
            routing_key: routing_key.into(),
            arguments: FieldTable::new(),
        }
    }

    /// Sets the binding arguments.
    pub fn arguments(mut self, arguments: FieldTable) -> Self {
        self.arguments = arguments;
        self
    }
}

/// A name unique to this call, as kombu makes them: `PREFIX.` and a random UUID (version 4).
pub(crate) fn unique_name(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4())
}
