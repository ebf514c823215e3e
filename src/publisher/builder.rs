//! [`PublisherBuilder`]: the exchange a publisher sends to, and its defaults.

use super::Publisher;
use crate::connection::BrokerConnection;
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType};
use crate::error::Result;
use crate::table::FieldTable;

/// Builds a [`Publisher`]; every setting of the seed, with its default.
#[derive(Debug)]
#[must_use = "call build().await to create the publisher"]
pub struct PublisherBuilder {
    pub(super) connection: BrokerConnection,
    pub(super) exchange: ExchangeSpec,
    pub(super) routing_key: String,
    pub(super) delivery_mode: DeliveryMode,
    pub(super) auto_declare: bool,
    pub(super) serializer: String,
    pub(super) compression: Option<String>,
    pub(super) confirm_publish: bool,
    /// Whether `confirm_publish` was set here (not taken from the URL).
    pub(super) confirm_set: bool,
    pub(super) transactional: bool,
}

impl PublisherBuilder {
    /// The whole exchange declaration: name, type, durable, auto_delete and arguments
    /// (replaces what earlier exchange keywords set; keywords called after it change it).
    pub fn exchange_spec(mut self, spec: ExchangeSpec) -> Self {
        self.exchange = spec;
        self
    }
    /// **Exchange**: the name of the exchange to send to (default: the default exchange
    /// `""`, which routes by queue name).
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange.name = name.into();
        self
    }
    /// **Exchange**: its type (default direct).
    pub fn exchange_type(mut self, kind: ExchangeType) -> Self {
        self.exchange.kind = kind;
        self
    }
    /// The default routing key of the messages sent.
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = key.into();
        self
    }
    /// The default delivery mode (default persistent).
    pub fn delivery_mode(mut self, mode: DeliveryMode) -> Self {
        self.delivery_mode = mode;
        self
    }
    /// **Exchange**: whether it survives a broker restart (default true). A publisher
    /// declares no queue, so the seed's `durable` is the exchange's here (the durability of
    /// messages is [`delivery_mode`](Self::delivery_mode)).
    pub fn durable(mut self, durable: bool) -> Self {
        self.exchange.durable = durable;
        self
    }
    /// **Exchange**: whether it is deleted when its last queue unbinds (default false).
    pub fn auto_delete(mut self, auto_delete: bool) -> Self {
        self.exchange.auto_delete = auto_delete;
        self
    }
    /// **Exchange**: its arguments (`alternate-exchange`, ...), replacing earlier ones.
    pub fn exchange_arguments(mut self, arguments: FieldTable) -> Self {
        self.exchange.arguments = arguments;
        self
    }
    /// Whether `build` declares the exchange (default true).
    pub fn auto_declare(mut self, auto_declare: bool) -> Self {
        self.auto_declare = auto_declare;
        self
    }
    /// The default serializer (default `json`).
    pub fn serializer(mut self, name: impl Into<String>) -> Self {
        self.serializer = name.into();
        self
    }
    /// The default compression of bodies, by kombu's names or content types: `gzip` (also
    /// `zlib`), `bzip2`, `lzma` (also `xz`), `brotli`, `zstd` (see
    /// [`Compression`](crate::Compression)); default none. An unknown name fails `build`.
    pub fn compression(mut self, name: impl Into<String>) -> Self {
        self.compression = Some(name.into());
        self
    }
    /// Publisher confirms: `send` returns only once the broker has taken responsibility for
    /// the message (default: the URL's `confirm_publish` option, else false). Mandatory
    /// messages are always confirmed, so that an unroutable one is an error.
    pub fn confirm_publish(mut self, confirm: bool) -> Self {
        self.confirm_publish = confirm;
        self.confirm_set = true;
        self
    }
    /// Transactions on the publisher's channel (AMQP's `tx.select`): messages sent are held
    /// until [`Publisher::commit`], then routed together (over sqlite:// in one SQLite
    /// transaction: all of them or none, even through a crash), or dropped by
    /// [`Publisher::rollback`]. The commit is the confirmation: a transactional publisher has
    /// no publisher confirms (RabbitMQ refuses both on one channel), and refuses `mandatory`
    /// (RabbitMQ would return such a message after the commit, apart from its send). Default
    /// false.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Opens a channel and, with auto_declare, declares the exchange.
    pub async fn build(self) -> Result<Publisher> {
        self.build_on(None).await
    }

    /// Builds the publisher on `channel` (shared with a consumer: RabbitMQ's direct reply-to
    /// wants requests sent on the channel that consumes the replies), or on a channel of its
    /// own.
    pub(crate) async fn build_on(
        self,
        channel: Option<std::sync::Arc<dyn crate::backend::Channel>>,
    ) -> Result<Publisher> {
        let registry = self.connection.registry();
        registry.check(&self.serializer)?;
        let compression = self
            .compression
            .as_deref()
            .map(super::compose::compression)
            .transpose()?;
        if self.transactional && self.confirm_set && self.confirm_publish {
            return Err(crate::Error::InvalidArgument(
                "a transactional publisher has no publisher confirms (RabbitMQ refuses confirm mode on a transactional channel): its commit is the confirmation".into(),
            ));
        }
        let channel = match channel {
            Some(channel) => channel,
            None => self.connection.channel().await?,
        };
        if self.transactional {
            channel.tx_select().await?;
        }
        let publisher = Publisher {
            _connection: self.connection.clone(),
            channel,
            exchange_name: self.exchange.name.as_str().into(),
            exchange: self.exchange,
            routing_key: self.routing_key.into(),
            delivery_mode: self.delivery_mode,
            serializer: self.serializer,
            compression,
            registry,
            confirm_publish: self.confirm_publish && !self.transactional,
            transactional: self.transactional,
            auto_declare: self.auto_declare,
            max_message_size: self.connection.max_message_size(),
        };
        if self.auto_declare {
            publisher.declare().await?;
        }
        Ok(publisher)
    }
}
