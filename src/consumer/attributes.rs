//! The seed's consumer attributes, read back from what the builder was given.

use super::Consumer;
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::table::FieldTable;

/// The seed's attributes (`queue`, `exchange`, `routing_key`, `durable`, ...).
impl Consumer {
    /// The queue's name (chosen by the broker if it was declared without one).
    pub fn queue(&self) -> &str {
        &self.settings.queue.name
    }

    /// The queue's declaration (with the broker's name for it once declared).
    pub fn queue_spec(&self) -> &QueueSpec {
        &self.settings.queue
    }

    /// The name of the exchange the queue is bound to (empty: the default exchange).
    pub fn exchange(&self) -> &str {
        &self.settings.exchange.name
    }

    /// The exchange's declaration.
    pub fn exchange_spec(&self) -> &ExchangeSpec {
        &self.settings.exchange
    }

    /// The exchange's type.
    pub fn exchange_type(&self) -> ExchangeType {
        self.settings.exchange.kind
    }

    /// The binding key.
    pub fn routing_key(&self) -> &str {
        &self.settings.routing_key
    }

    /// The queue's bindings besides the one to [`exchange`](Self::exchange).
    pub fn bindings(&self) -> &[crate::entity::Binding] {
        &self.settings.bindings
    }

    /// The binding arguments.
    pub fn binding_arguments(&self) -> &FieldTable {
        &self.settings.binding_arguments
    }

    /// Whether the **queue** is durable (the exchange's: [`exchange_spec`](Self::exchange_spec)).
    pub fn durable(&self) -> bool {
        self.settings.queue.durable
    }

    /// Whether the **queue** is auto-delete (always true for an exclusive queue).
    pub fn auto_delete(&self) -> bool {
        self.settings.queue.auto_delete
    }

    /// Whether the queue is exclusive to this connection.
    pub fn exclusive(&self) -> bool {
        self.settings.queue.exclusive
    }

    /// Whether the broker forgets messages as it sends them.
    pub fn no_ack(&self) -> bool {
        self.settings.no_ack
    }

    /// Whether each message is acknowledged as it is received.
    pub fn auto_ack(&self) -> bool {
        self.settings.auto_ack
    }

    /// Whether an existing queue is reported with a warning.
    pub fn warn_if_exists(&self) -> bool {
        self.settings.warn_if_exists
    }

    /// Whether `build` declared the queue, exchange and binding.
    pub fn auto_declare(&self) -> bool {
        self.settings.auto_declare
    }

    /// The accept list given to the builder (`None`: the default, json, raw and text; see
    /// [`ConsumerBuilder::accept`](crate::ConsumerBuilder::accept)).
    pub fn accept(&self) -> Option<&[String]> {
        self.settings.accept.as_deref()
    }

    /// The consumer tag while consuming.
    pub fn consumer_tag(&self) -> Option<&str> {
        self.subscription.as_ref().map(|(tag, _)| &**tag)
    }
}
