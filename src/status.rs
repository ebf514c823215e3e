//! What a connection is doing now ([`ConnectionState`]) and what happened to it
//! ([`ConnectionEvent`]): lost, recovered, blocked by the broker, ...
//!
//! Every event is also a tracing record (warnings for losses and alarms, info for
//! recoveries), so a program that only logs sees them too.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

/// The state of a [`BrokerConnection`](crate::BrokerConnection), from
/// [`state`](crate::BrokerConnection::state).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected and usable.
    Connected,
    /// Connected, but the broker blocks publishing (RabbitMQ's `connection.blocked`, raised
    /// by a memory or disk alarm): sends wait, at most their timeout.
    Blocked {
        /// The broker's reason, such as `low on memory`.
        reason: String,
    },
    /// The connection was lost; carrot is reconnecting under the retry policy. Calls wait for
    /// the outcome.
    Recovering {
        /// Why the connection was lost.
        cause: String,
    },
    /// The connection was lost and could not be recovered (or recovery is off): every call
    /// fails. Open a new connection.
    Failed {
        /// Why.
        cause: String,
    },
    /// Closed by the application.
    Closed,
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connected => f.write_str("connected"),
            ConnectionState::Blocked { reason } => write!(f, "blocked by the broker ({reason})"),
            ConnectionState::Recovering { cause } => write!(f, "recovering ({cause})"),
            ConnectionState::Failed { cause } => write!(f, "failed ({cause})"),
            ConnectionState::Closed => f.write_str("closed"),
        }
    }
}

/// Something that happened to a connection, from
/// [`BrokerConnection::events`](crate::BrokerConnection::events) or the callback given to
/// [`ConnectionBuilder::on_event`](crate::ConnectionBuilder::on_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection to `url` was lost (the broker closed it, the network failed, or
    /// heartbeats stopped).
    Lost {
        /// The URL (password hidden).
        url: String,
        /// Why.
        cause: String,
    },
    /// The connection was recovered: reconnected to `url` (maybe another failover URL),
    /// entities redeclared, channels, qos and consumers restored.
    Recovered {
        /// The URL now connected (password hidden).
        url: String,
        /// Connection attempts it took.
        attempts: u32,
        /// Time from the loss to the recovery.
        downtime: Duration,
    },
    /// Recovery gave up (or is off): the connection is dead.
    RecoveryFailed {
        /// The last error.
        cause: String,
    },
    /// The broker blocks publishing (a memory or disk alarm).
    Blocked {
        /// The broker's reason.
        reason: String,
    },
    /// The broker resumed publishing.
    Unblocked,
    /// A queue named by the broker (declared with an empty name) could not keep its name
    /// across a recovery: it was declared again under a new one. Its messages were lost with
    /// the old connection (such queues are exclusive to their connection).
    QueueRenamed {
        /// The name before the loss.
        old: String,
        /// The new name; carrot's consumers and bindings use it from now on.
        new: String,
    },
    /// An entity the connection had declared could not be declared again during a recovery
    /// (for example it was redeclared meanwhile with other settings): it is no longer
    /// restored.
    NotRestored {
        /// What it was, such as `queue "orders"`.
        entity: String,
        /// The broker's answer.
        cause: String,
    },
}

/// A function called with each event of a connection.
pub(crate) type EventCallback = Arc<dyn Fn(&ConnectionEvent) + Send + Sync>;

/// Events of one connection: `recv().await` the next one.
#[derive(Debug)]
pub struct ConnectionEvents {
    receiver: broadcast::Receiver<ConnectionEvent>,
}

impl ConnectionEvents {
    /// The next event; `None` once the connection is gone. Events a slow receiver missed are
    /// skipped (the state is always at [`BrokerConnection::state`](crate::BrokerConnection::state)).
    pub async fn recv(&mut self) -> Option<ConnectionEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Where a connection publishes its state and events.
pub(crate) struct StatusHub {
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<ConnectionEvent>,
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    callback: Option<EventCallback>,
}

impl fmt::Debug for StatusHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusHub")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl StatusHub {
    pub(crate) fn new(callback: Option<EventCallback>) -> Self {
        StatusHub {
            state: watch::Sender::new(ConnectionState::Connected),
            events: broadcast::Sender::new(64),
            callback,
        }
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    pub(crate) fn set(&self, state: ConnectionState) {
        self.state.send_replace(state);
    }

    pub(crate) fn subscribe(&self) -> ConnectionEvents {
        ConnectionEvents {
            receiver: self.events.subscribe(),
        }
    }

    /// Logs an event, calls the callback and tells the subscribers.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) fn emit(&self, event: ConnectionEvent) {
        match &event {
            ConnectionEvent::Lost { url, cause } => {
                tracing::warn!(%url, %cause, "connection lost")
            }
            ConnectionEvent::Recovered {
                url,
                attempts,
                downtime,
            } => tracing::info!(%url, attempts, ?downtime, "connection recovered"),
            ConnectionEvent::RecoveryFailed { cause } => {
                tracing::error!(%cause, "connection recovery gave up")
            }
            ConnectionEvent::Blocked { reason } => {
                tracing::warn!(%reason, "the broker blocks publishing")
            }
            ConnectionEvent::Unblocked => tracing::info!("the broker resumed publishing"),
            ConnectionEvent::QueueRenamed { old, new } => tracing::warn!(
                %old, %new,
                "a server-named queue of the lost connection was declared again under a new name; its messages were lost with the connection"
            ),
            ConnectionEvent::NotRestored { entity, cause } => {
                tracing::warn!(%entity, %cause, "not restored after the recovery")
            }
        }
        if let Some(callback) = &self.callback {
            callback(&event);
        }
        let _ = self.events.send(event);
    }
}
