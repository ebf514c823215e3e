//! The link to RabbitMQ behind one `BrokerConnection`: the lapin connection of the moment, and
//! the supervisor that notices when it is lost and makes a new one.
//!
//! A loss is noticed from lapin's events (an I/O error, missed heartbeats, the broker closing
//! the connection), from an operation that fails on it, or from a check every second. Then,
//! with recovery on, the supervisor reconnects under the retry policy, moving through the
//! failover URLs and sleeping only after a full pass; declares again what the connection had
//! declared ([`super::topology`]); and publishes the new connection under a new epoch.
//! Channels notice the new epoch and reopen themselves (confirm mode, qos), consumers
//! subscribe again. Callers waiting meanwhile get the new connection, or the error the
//! policy gave up with.

mod failover;
mod supervisor;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lapin::Connection;
use tokio::sync::{watch, Notify};

use super::connect::{self, Endpoint, Events};
use super::convert;
use super::topology::{self, Topology};
use crate::backend::Closings;
use crate::error::{Cause, Error, Result};
use crate::options::ConnectionOptions;
use crate::retry::{self, RetryPolicy};
use crate::status::{ConnectionEvent, ConnectionState, StatusHub};
use failover::Order;
use supervisor::supervise;

/// Where the link stands.
#[derive(Clone)]
enum Up {
    Connected {
        connection: Arc<Connection>,
        epoch: u64,
    },
    Recovering,
    Failed(Arc<Error>),
    Closed,
}

pub(super) struct Link {
    endpoints: Vec<Endpoint>,
    options: ConnectionOptions,
    hub: Arc<StatusHub>,
    runtime: tokio::runtime::Handle,
    up: watch::Sender<Up>,
    /// The endpoint of the current (or last) connection.
    current: AtomicUsize,
    /// `Some(reason)` while the broker blocks publishing on the current connection.
    blocked: watch::Sender<Option<String>>,
    topology: Mutex<Topology>,
    /// The cause of the loss being recovered from, for the events.
    cause: Mutex<String>,
    /// Operations that met a lost connection wake the supervisor.
    lost: Notify,
    closed: AtomicBool,
    closing: Notify,
    /// The closes that drops left running (see [`Closings`]).
    closings: Closings,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.endpoints[self.current_url()].shown)
            .field("state", &self.hub.state())
            .finish()
    }
}

impl Link {
    /// Connects (each URL once, or under the policy with `retry_on_connect`) and starts the
    /// supervisor.
    pub(super) async fn open(
        endpoints: Vec<Endpoint>,
        options: ConnectionOptions,
        hub: Arc<StatusHub>,
    ) -> Result<Arc<Link>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Unsupported(
                "the amqp backend runs on tokio: connect from inside a tokio runtime, or use carrot::blocking".into(),
            )
        })?;
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no amqp:// URL given".into()));
        }
        let policy = if options.retry_on_connect {
            options.policy.clone()
        } else {
            let once = endpoints.len().saturating_sub(1) as u32;
            RetryPolicy::never().max_retries(Some(once))
        };
        let n = endpoints.len();
        let what = format!("connecting to {}", shown(&endpoints));
        let order = Order::new(options.failover, n, 0);
        let (connection, events, index) = retry::retry(&policy, what, n, |attempt| {
            let i = order.pick(attempt);
            let endpoint = &endpoints[i];
            let options = &options;
            async move {
                let (c, e) = connect::open(endpoint, options).await?;
                Ok((c, e, i))
            }
        })
        .await?;
        let (up, _) = watch::channel(Up::Connected {
            connection: connection.clone(),
            epoch: 0,
        });
        let link = Arc::new(Link {
            endpoints,
            options,
            hub,
            runtime: runtime.clone(),
            up,
            current: AtomicUsize::new(index),
            blocked: watch::Sender::new(None),
            topology: Mutex::new(Topology::default()),
            cause: Mutex::new(String::new()),
            lost: Notify::new(),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            closings: Closings::default(),
        });
        runtime.spawn(supervise(Arc::downgrade(&link), connection, events, 0));
        Ok(link)
    }

    pub(super) fn options(&self) -> &ConnectionOptions {
        &self.options
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub(super) fn closings(&self) -> &Closings {
        &self.closings
    }

    pub(super) fn current_url(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    pub(super) fn topology(&self) -> MutexGuard<'_, Topology> {
        self.topology.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name a queue has now (a server-named queue gets a new one in a recovery).
    pub(super) fn resolve(&self, queue: &str) -> String {
        self.topology()
            .resolve(queue)
            .unwrap_or_else(|| queue.to_string())
    }

    /// The connection to use and its epoch; while a recovery runs, waits for its outcome
    /// (bounded by the retry policy).
    pub(super) async fn connection(&self) -> Result<(Arc<Connection>, u64)> {
        let mut up = self.up.subscribe();
        loop {
            let state = up.borrow_and_update().clone();
            match state {
                Up::Connected { connection, epoch } => return Ok((connection, epoch)),
                Up::Failed(cause) => return Err(failed(&cause)),
                Up::Closed => {
                    return Err(Error::connection_closed(
                        "the connection was closed by the application; open a new BrokerConnection",
                    ))
                }
                Up::Recovering => {}
            }
            if up.changed().await.is_err() {
                return Err(Error::connection_closed("the connection is gone"));
            }
        }
    }

    /// The epoch of the current connection (`None` while there is none).
    pub(super) fn epoch(&self) -> Option<u64> {
        match &*self.up.borrow() {
            Up::Connected { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// Whether an operation that failed with `error` on the connection of `epoch` met a lost
    /// connection and may be tried again once it is recovered. A loss is reported to the
    /// supervisor whatever the answer.
    pub(super) fn lost(&self, error: &lapin::Error, epoch: u64) -> bool {
        let down = match &*self.up.borrow() {
            Up::Connected {
                connection,
                epoch: e,
            } if *e == epoch => !connection.status().connected(),
            _ => true,
        };
        let loss = down || convert::is_connection_loss(error);
        if loss {
            self.report_lost(epoch, error.to_string(), Some(Cause::new(error.clone())));
        }
        loss && self.options.recovery && !convert::is_client_fault(error)
    }

    /// Marks the connection of `epoch` lost (once) and wakes the supervisor; with recovery
    /// off, `source` is the cause of the error every later call gets.
    fn report_lost(&self, epoch: u64, cause: String, source: Option<Cause>) {
        let marked = self.up.send_if_modified(|up| match up {
            Up::Connected { epoch: e, .. } if *e == epoch => {
                *up = if self.options.recovery {
                    Up::Recovering
                } else {
                    Up::Failed(Arc::new(Error::ConnectionClosed {
                        reply_code: None,
                        reply_text: format!(
                            "{cause}: the connection to RabbitMQ was lost and recovery is off; open a new BrokerConnection"
                        ),
                        source: source.clone(),
                    }))
                };
                true
            }
            _ => false,
        });
        if marked {
            *self.cause.lock().unwrap_or_else(|p| p.into_inner()) = cause.clone();
            self.hub.emit(ConnectionEvent::Lost {
                url: self.endpoints[self.current_url()].shown.clone(),
                cause: cause.clone(),
            });
            self.publish_state();
            if !self.options.recovery {
                self.hub.emit(ConnectionEvent::RecoveryFailed {
                    cause: format!("{cause} (recovery is off)"),
                });
            }
        }
        self.lost.notify_one();
    }

    /// Waits until the broker no longer blocks publishing, at most `limit`; the reason
    /// otherwise.
    pub(super) async fn unblocked(&self, limit: Duration) -> std::result::Result<(), String> {
        if self.blocked.borrow().is_none() {
            return Ok(());
        }
        let mut blocked = self.blocked.subscribe();
        let wait = async move { blocked.wait_for(Option::is_none).await.is_ok() };
        match tokio::time::timeout(limit, wait).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.blocked_reason().unwrap_or_default()),
        }
    }

    /// Why the broker blocks publishing, if it does.
    pub(super) fn blocked_reason(&self) -> Option<String> {
        self.blocked.borrow().clone()
    }

    fn set_blocked(&self, reason: Option<String>) {
        let changed = self.blocked.send_if_modified(|b| {
            if *b == reason {
                false
            } else {
                *b = reason.clone();
                true
            }
        });
        if changed {
            self.hub.emit(match reason {
                Some(reason) => ConnectionEvent::Blocked { reason },
                None => ConnectionEvent::Unblocked,
            });
            self.publish_state();
        }
    }

    /// The public state, from the link's and the alarm's.
    fn publish_state(&self) {
        let state = match &*self.up.borrow() {
            Up::Connected { .. } => match self.blocked_reason() {
                Some(reason) => ConnectionState::Blocked { reason },
                None => ConnectionState::Connected,
            },
            Up::Recovering => ConnectionState::Recovering {
                cause: self.cause.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            },
            Up::Failed(cause) => ConnectionState::Failed {
                cause: cause.to_string(),
            },
            Up::Closed => ConnectionState::Closed,
        };
        self.hub.set(state);
    }

    /// Closes the link: no more recovery; the connection closes within the operation
    /// timeout.
    pub(super) async fn close(&self) -> Result<()> {
        let connection = self.shut();
        let Some(connection) = connection else {
            return Ok(());
        };
        if !connection.status().connected() {
            return Ok(());
        }
        let limit = self.options.timeouts.get_operation();
        match tokio::time::timeout(limit, connection.close(200, "OK".into())).await {
            Err(_) => Err(Error::Timeout {
                operation: "connection.close".into(),
                after: limit,
            }),
            Ok(Ok(())) => Ok(()),
            // A channel dropped just before (its close still in flight) makes lapin report
            // that channel's state; the connection is closing all the same.
            Ok(Err(e)) if !connection.status().connected() => {
                tracing::debug!(error = %e, "ignored while closing the connection");
                Ok(())
            }
            Ok(Err(e)) => Err(convert::error(e)),
        }
    }

    /// Marks the link closed and stops the supervisor; the connection to close, if any.
    pub(super) fn shut(&self) -> Option<Arc<Connection>> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return None;
        }
        let previous = self.up.send_replace(Up::Closed);
        self.closing.notify_waiters();
        self.lost.notify_one();
        self.publish_state();
        match previous {
            Up::Connected { connection, .. } => Some(connection),
            _ => None,
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Reconnects under the policy and declares the topology again; the new connection, its
    /// events, the endpoint and the attempts it took.
    async fn reconnect(&self) -> Result<(Arc<Connection>, Events, usize, u32)> {
        let n = self.endpoints.len();
        // A reconnect moves on to the next URL first (the lost one is tried last in the
        // pass), as kombu does: a node that went silent costs no connect timeout up front.
        let order = Order::new(
            self.options.failover,
            n,
            (self.current_url() + 1) % n.max(1),
        );
        let what = format!("recovering the connection to {}", shown(&self.endpoints));
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = retry::retry(&self.options.policy, what, n, |attempt| {
            attempts.store(attempt + 1, Ordering::Relaxed);
            let i = order.pick(attempt);
            async move {
                if self.is_closed() {
                    return Err(Error::InvalidArgument("closed by the application".into()));
                }
                let (connection, events) = connect::open(&self.endpoints[i], &self.options).await?;
                let snapshot = self.topology().clone();
                let timeout = self.options.timeouts.get_operation();
                match topology::replay(snapshot, &connection, &self.hub, timeout).await {
                    Ok(replayed) => {
                        self.topology().learn(&replayed);
                        Ok((connection, events, i))
                    }
                    Err(e) => {
                        let _ =
                            tokio::time::timeout(timeout, connection.close(200, "OK".into())).await;
                        Err(e)
                    }
                }
            }
        })
        .await;
        result.map(|(c, e, i)| (c, e, i, attempts.load(Ordering::Relaxed)))
    }
}

/// The connection a failed recovery leaves: every call fails with the policy's error.
fn failed(cause: &Arc<Error>) -> Error {
    let same = matches!(
        **cause,
        Error::RetriesExhausted { .. } | Error::ConnectionClosed { .. }
    );
    match cause.duplicate() {
        Some(error) if same => error,
        _ => Error::ConnectionClosed {
            reply_code: None,
            reply_text: format!(
                "the connection to RabbitMQ was lost and could not be recovered: {cause}"
            ),
            source: Some(Cause::new(cause.clone())),
        },
    }
}

fn shown(endpoints: &[Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| e.shown.as_str())
        .collect::<Vec<_>>()
        .join(";")
}
