//! `ConsumerSet`: receives from several queues at once, cycling over them fairly.

use std::future::poll_fn;
use std::task::Poll;

use serde::Deserialize;

use crate::connection::BrokerConnection;
use crate::consumer::{Consumer, ConsumerSettings, Handlers, Qos};
use crate::entity::ExchangeType;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::serialization::Payload;
use crate::table::FieldTable;

/// One consumer's settings as a dictionary gives them (the seed's `from_dict` entries).
///
/// Unknown keys are an error, so that a misspelt setting is not silently ignored.
///
/// ```
/// let options: carrot::ConsumerOptions = serde_json::from_value(serde_json::json!({
///     "exchange": "link_exchange", "exchange_type": "topic",
///     "binding_key": "links.*", "default_routing_key": "links.retrieve", "auto_delete": true,
/// })).unwrap();
/// assert_eq!(options.routing_key.as_deref(), Some("links.*"));
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// The queue (a dictionary's key gives it when absent).
    pub queue: Option<String>,
    /// The exchange to bind to.
    pub exchange: Option<String>,
    /// `direct`, `fanout`, `topic` or `headers`.
    pub exchange_type: Option<String>,
    /// The binding key (`binding_key` is accepted too).
    #[serde(alias = "binding_key")]
    pub routing_key: Option<String>,
    /// The publishers' routing key; accepted for compatibility, not used by consumers.
    pub default_routing_key: Option<String>,
    /// Durable queue (default true).
    pub durable: Option<bool>,
    /// Auto-delete queue (default false).
    pub auto_delete: Option<bool>,
    /// Durable exchange (default true).
    pub exchange_durable: Option<bool>,
    /// Auto-delete exchange (default false).
    pub exchange_auto_delete: Option<bool>,
    /// Exclusive queue (default false); an exclusive queue is also auto-delete.
    pub exclusive: Option<bool>,
    /// Ack on receipt (default: the set's auto_ack).
    pub auto_ack: Option<bool>,
    /// Broker-side no-ack (default false).
    pub no_ack: Option<bool>,
    /// Warn when the queue exists (default false).
    pub warn_if_exists: Option<bool>,
    /// Queue arguments.
    pub queue_arguments: Option<FieldTable>,
    /// Exchange arguments (`alternate-exchange`, ...).
    pub exchange_arguments: Option<FieldTable>,
    /// Binding arguments (headers exchanges).
    pub binding_arguments: Option<FieldTable>,
}

impl ConsumerOptions {
    fn into_settings(self, queue: &str, default_auto_ack: bool) -> Result<ConsumerSettings> {
        let mut s = ConsumerSettings::default();
        s.queue.name = self.queue.unwrap_or_else(|| queue.to_string());
        if let Some(e) = self.exchange {
            s.exchange.name = e;
        }
        if let Some(t) = self.exchange_type {
            s.exchange.kind = t.parse::<ExchangeType>()?;
        }
        s.routing_key = self.routing_key.unwrap_or_default();
        // Queue and exchange settings are separate (as in kombu): the seed applied a
        // consumer's auto_delete to the shared exchange too, so its own example redeclared
        // `link_exchange` with other settings.
        if let Some(d) = self.durable {
            s.queue.durable = d;
        }
        if let Some(a) = self.auto_delete {
            s.queue.auto_delete = a;
        }
        if let Some(d) = self.exchange_durable {
            s.exchange.durable = d;
        }
        if let Some(a) = self.exchange_auto_delete {
            s.exchange.auto_delete = a;
        }
        // An exclusive queue is also auto-delete: the consumer's rule, applied when it is built.
        s.queue.exclusive = self.exclusive.unwrap_or(false);
        s.auto_ack = self.auto_ack.unwrap_or(default_auto_ack);
        s.no_ack = self.no_ack.unwrap_or(false);
        s.warn_if_exists = self.warn_if_exists.unwrap_or(false);
        if let Some(a) = self.queue_arguments {
            s.queue.arguments = a;
        }
        if let Some(a) = self.exchange_arguments {
            s.exchange.arguments = a;
        }
        if let Some(a) = self.binding_arguments {
            s.binding_arguments = a;
        }
        Ok(s)
    }
}

/// Receives messages from several consumers, passing each to the set's callbacks.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::{BrokerConnection, ConsumerSet, Publisher, ExchangeType, SendOptions};
/// let conn = BrokerConnection::connect("memory://set-doc").await?;
/// let mut set = ConsumerSet::new(&conn);
/// set.from_dict(&serde_json::json!({
///     "webshot": {"exchange": "link_exchange", "exchange_type": "topic", "binding_key": "links.webshot"},
///     "retrieve": {"exchange": "link_exchange", "exchange_type": "topic", "binding_key": "links.*"},
/// })).await?;
/// set.register_callback(|payload, message| { message.ack() });
/// let publisher = Publisher::builder(&conn).exchange("link_exchange")
///     .exchange_type(ExchangeType::Topic).routing_key("links.webshot").build().await?;
/// publisher.send("https://example.org").await?;
/// assert_eq!(set.wait(Some(2)).await?, 2); // one copy per queue
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
pub struct ConsumerSet {
    connection: BrokerConnection,
    consumers: Vec<Consumer>,
    handlers: Handlers,
    auto_ack: bool,
    next: usize,
}

impl std::fmt::Debug for ConsumerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSet")
            .field("consumers", &self.consumers)
            .field("callbacks", &self.handlers.len())
            .field("auto_ack", &self.auto_ack)
            .finish()
    }
}

impl ConsumerSet {
    /// An empty set on this connection.
    pub fn new(connection: &BrokerConnection) -> Self {
        ConsumerSet {
            connection: connection.clone(),
            consumers: Vec::new(),
            handlers: Handlers::default(),
            auto_ack: false,
            next: 0,
        }
    }

    /// The default `auto_ack` of consumers added from dictionaries (set it before adding them).
    pub fn set_auto_ack(&mut self, auto_ack: bool) {
        self.auto_ack = auto_ack;
    }

    /// The default `auto_ack` of consumers added from dictionaries.
    pub fn auto_ack(&self) -> bool {
        self.auto_ack
    }

    /// Sets the handler called with a message that cannot be decoded and the error.
    pub fn set_on_decode_error(&mut self, handler: impl FnMut(&Message, &Error) + Send + 'static) {
        self.handlers.set_on_decode_error(Box::new(handler));
    }

    /// Adds consumers from a dictionary of queue name to settings (see [`ConsumerOptions`]).
    pub async fn from_dict(&mut self, config: &serde_json::Value) -> Result<()> {
        let Some(map) = config.as_object() else {
            return Err(Error::InvalidArgument(
                "ConsumerSet::from_dict expects an object of queue name to settings".into(),
            ));
        };
        for (queue, options) in map {
            self.add_consumer_from_dict(queue, options).await?;
        }
        Ok(())
    }

    /// Adds one consumer from dictionary settings; declares its queue, exchange and binding.
    pub async fn add_consumer_from_dict(
        &mut self,
        queue: &str,
        options: &serde_json::Value,
    ) -> Result<()> {
        let options: ConsumerOptions = serde_json::from_value(options.clone())
            .map_err(|e| Error::InvalidArgument(format!("settings of consumer {queue:?}: {e}")))?;
        let settings = options.into_settings(queue, self.auto_ack)?;
        let consumer = Consumer::from_settings(&self.connection, settings)
            .build()
            .await?;
        self.consumers.push(consumer);
        Ok(())
    }

    /// Adds a consumer built elsewhere (on the same broker).
    pub fn add_consumer(&mut self, consumer: Consumer) {
        self.consumers.push(consumer);
    }

    /// The consumers of the set.
    pub fn consumers(&self) -> &[Consumer] {
        &self.consumers
    }

    /// Registers a callback for messages of every queue.
    pub fn register_callback(
        &mut self,
        callback: impl FnMut(&Payload, &Message) -> Result<()> + Send + 'static,
    ) {
        self.handlers.add(Box::new(callback));
    }

    /// Declares every consumer's queue, exchange and binding.
    pub async fn declare(&mut self) -> Result<()> {
        for c in &mut self.consumers {
            c.declare().await?;
        }
        Ok(())
    }

    /// Passes a message to the set's callbacks; [`Error::NoCallbacks`] when there is none.
    pub fn receive(&mut self, message: &Message) -> Result<()> {
        self.handlers.receive(message)
    }

    /// Starts consuming (basic.consume) from every queue, if not already.
    pub async fn consume(&mut self) -> Result<()> {
        for c in &mut self.consumers {
            c.consume().await?;
        }
        Ok(())
    }

    /// The next message from any queue, taking queues in turn so that a busy queue cannot
    /// starve the others; an error when one of the consumers was ended by something else than
    /// the application (see [`Consumer::next_message`]).
    async fn next_message(&mut self) -> Result<Option<Message>> {
        self.consume().await?;
        loop {
            let start = self.next;
            let consumers = &mut self.consumers;
            let got = poll_fn(|cx| {
                let n = consumers.len();
                let mut open = 0;
                for k in 0..n {
                    let i = (start + k) % n;
                    let Some(stream) = consumers[i].subscription_mut() else {
                        continue;
                    };
                    match stream.poll_recv(cx) {
                        Poll::Ready(item) => return Poll::Ready(Some((i, item))),
                        Poll::Pending => open += 1,
                    }
                }
                if open == 0 {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            })
            .await;
            let Some((i, item)) = got else {
                return Ok(None);
            };
            self.next = i + 1;
            if let Some(taken) = self.consumers[i].take(item) {
                return taken.map(Some);
            }
        }
    }

    /// Consumes from every queue with the set's callbacks, yielding each message after them;
    /// stops after `limit` messages.
    pub fn iterconsume(&mut self, limit: Option<usize>) -> SetIterConsume<'_> {
        SetIterConsume {
            set: self,
            remaining: limit,
        }
    }

    /// Consumes until `limit` messages were processed (forever without one); returns how many.
    pub async fn wait(&mut self, limit: Option<usize>) -> Result<usize> {
        let mut it = self.iterconsume(limit);
        let mut n = 0;
        while let Some(m) = it.next().await {
            m?;
            n += 1;
        }
        Ok(n)
    }

    /// Drops every waiting message of every queue; returns how many (no filter, as in the seed).
    pub async fn discard_all(&mut self) -> Result<usize> {
        let mut n = 0;
        for c in &mut self.consumers {
            n += c.discard_all().await?;
        }
        Ok(n)
    }

    /// Sets quality of service on every consumer (see [`Consumer::qos`]).
    pub async fn qos(&mut self, qos: Qos) -> Result<()> {
        for c in &mut self.consumers {
            c.qos(qos).await?;
        }
        Ok(())
    }

    /// Pauses or resumes deliveries on every consumer.
    pub async fn flow(&mut self, active: bool) -> Result<()> {
        for c in &mut self.consumers {
            c.flow(active).await?;
        }
        Ok(())
    }

    /// Cancels every consumer.
    pub async fn cancel(&mut self) -> Result<()> {
        for c in &mut self.consumers {
            c.cancel().await?;
        }
        Ok(())
    }

    /// Closes every consumer.
    pub async fn close(&mut self) -> Result<()> {
        for c in &mut self.consumers {
            c.close().await?;
        }
        Ok(())
    }
}

/// The iterator of [`ConsumerSet::iterconsume`]: call `next().await`.
#[derive(Debug)]
pub struct SetIterConsume<'a> {
    set: &'a mut ConsumerSet,
    remaining: Option<usize>,
}

impl SetIterConsume<'_> {
    /// The next message, after the set's callbacks ran on it.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        if self.remaining == Some(0) {
            return None;
        }
        if self.set.handlers.is_empty() {
            self.remaining = Some(0);
            return Some(Err(Error::NoCallbacks));
        }
        let message = match self.set.next_message().await {
            Ok(Some(message)) => message,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
        Some(self.set.receive(&message).map(|()| message))
    }
}
