//! Options of deleting a queue or an exchange ([`BrokerConnection::delete_queue`],
//! [`BrokerConnection::delete_exchange`]).
//!
//! [`BrokerConnection::delete_queue`]: crate::BrokerConnection::delete_queue
//! [`BrokerConnection::delete_exchange`]: crate::BrokerConnection::delete_exchange

/// Options of [`BrokerConnection::delete_queue`](crate::BrokerConnection::delete_queue)
/// (`queue.delete`); the default deletes the queue whatever it holds.
///
/// ```
/// use carrot::DeleteQueueOptions;
/// let options = DeleteQueueOptions::new().if_unused(true).if_empty(true);
/// assert!(options.if_unused && options.if_empty);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteQueueOptions {
    /// Only if the queue has no consumer ([`Error::PreconditionFailed`](crate::Error::PreconditionFailed) otherwise).
    pub if_unused: bool,
    /// Only if the queue holds no message ([`Error::PreconditionFailed`](crate::Error::PreconditionFailed) otherwise).
    pub if_empty: bool,
}

impl DeleteQueueOptions {
    /// Deletes whatever the queue holds, whoever consumes from it.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `if_unused`.
    pub fn if_unused(mut self, if_unused: bool) -> Self {
        self.if_unused = if_unused;
        self
    }
    /// Sets `if_empty`.
    pub fn if_empty(mut self, if_empty: bool) -> Self {
        self.if_empty = if_empty;
        self
    }
}

/// Options of [`BrokerConnection::delete_exchange`](crate::BrokerConnection::delete_exchange)
/// (`exchange.delete`); the default deletes the exchange and its bindings.
///
/// ```
/// use carrot::DeleteExchangeOptions;
/// assert!(DeleteExchangeOptions::new().if_unused(true).if_unused);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteExchangeOptions {
    /// Only if no queue is bound to it ([`Error::PreconditionFailed`](crate::Error::PreconditionFailed) otherwise).
    pub if_unused: bool,
}

impl DeleteExchangeOptions {
    /// Deletes the exchange whatever is bound to it.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `if_unused`.
    pub fn if_unused(mut self, if_unused: bool) -> Self {
        self.if_unused = if_unused;
        self
    }
}
