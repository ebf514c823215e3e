//! An AMQP channel on RabbitMQ, behind carrot's channel interface.
//!
//! carrot's publishers and consumers outlive the lapin channel under them. RabbitMQ closes a
//! channel on any channel-level error (a missing exchange, a redeclare with other settings,
//! ...), and every channel goes with a lost connection: the next operation opens a new channel
//! transparently (on the recovered connection, waiting for the recovery if needed), with the
//! same confirm mode and qos, and consumers subscribe again ([`subscription`]).
//! Deliveries of a replaced channel were requeued by the broker; their tags carry the old
//! channel's generation, so acking them is a clear error instead of acking something else.
//!
//! Every call on the broker is bounded by the operation timeout; one that meets a lost
//! connection waits for the recovery and is tried again, under the retry policy.
//!
//! This module keeps the lapin channel of the moment and reopens it; [`methods`] maps each
//! operation of carrot's channel interface onto AMQP methods.

mod methods;
mod subscription;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use lapin::options::{BasicQosOptions, ConfirmSelectOptions};
use lapin::ExchangeKind;
use tokio::sync::watch;

use super::convert::{self, GENERATION_SHIFT};
use super::link::Link;
use crate::entity::ExchangeType;
use crate::error::{Cause, Error, Result};
use subscription::Subscription;

/// The current lapin channel and what must be restored when it is reopened.
struct Current {
    /// Behind an `Arc`: every publish and ack takes a handle, and cloning a `lapin::Channel`
    /// itself costs a dozen reference counts.
    channel: Option<Arc<lapin::Channel>>,
    /// Bumped at each reopening; delivery tags carry it.
    generation: u64,
    /// The link epoch (connection) the channel belongs to.
    epoch: u64,
    confirms: bool,
    /// `tx.select` was said: a new channel says it again. The generation the open
    /// transaction began on: a commit on a later one finds its transaction lost.
    transaction: Option<u64>,
    /// basic.qos settings, reapplied on a new channel: (per consumer, per channel).
    prefetch: (Option<u16>, Option<u16>),
}

/// The channel to use now.
pub(super) struct Handle {
    pub(super) channel: Arc<lapin::Channel>,
    pub(super) generation: u64,
    pub(super) epoch: u64,
}

pub(super) struct AmqpChannel {
    pub(super) link: Arc<Link>,
    pub(super) me: Weak<AmqpChannel>,
    current: Mutex<Current>,
    /// Serializes reopening, so that two operations do not open two channels.
    reopening: tokio::sync::Mutex<()>,
    /// Publishes hold it shared while they send; a mandatory one holds it alone until its
    /// confirm is in (see `publish_mandatory`).
    pub(super) fence: tokio::sync::RwLock<()>,
    pub(super) flow: watch::Sender<bool>,
    /// Active consumers, by tag.
    pub(super) subscriptions: Mutex<HashMap<Arc<str>, Arc<Subscription>>>,
    /// Closed by the application (not by the broker): never reopened.
    closed: AtomicBool,
}

impl std::fmt::Debug for AmqpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.lock();
        f.debug_struct("AmqpChannel")
            .field("id", &current.channel.as_ref().map(|c| c.id()))
            .field("generation", &current.generation)
            .finish()
    }
}

/// An ack, reject or requeue of a delivery that can no longer be settled: its channel was
/// closed by the broker or its connection was lost (before the call, or while it was being
/// sent), so the broker requeued it. One kind whichever way the loss was noticed, so that a
/// consumer can tell "this delivery comes again" from any other failure.
pub(super) fn stale_delivery(source: Option<Cause>) -> Error {
    Error::ChannelClosed {
        reply_code: None,
        reply_text: "the message was delivered before its channel was closed by the broker or its connection was lost; the broker requeued it and will deliver it again (acknowledge that delivery instead)".into(),
        source,
    }
}

pub(super) fn closed_by_application() -> Error {
    Error::channel_closed("the publisher or consumer was closed; build a new one")
}

pub(super) fn kind(kind: ExchangeType) -> ExchangeKind {
    match kind {
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Headers => ExchangeKind::Headers,
    }
}

impl AmqpChannel {
    /// A channel on the link, opened now so that a broker that cannot open one says so.
    pub(super) async fn open(link: Arc<Link>) -> Result<Arc<Self>> {
        let channel = Arc::new_cyclic(|me| AmqpChannel {
            link,
            me: me.clone(),
            current: Mutex::new(Current {
                channel: None,
                generation: 0,
                epoch: 0,
                confirms: false,
                transaction: None,
                prefetch: (None, None),
            }),
            reopening: tokio::sync::Mutex::new(()),
            fence: tokio::sync::RwLock::new(()),
            flow: watch::Sender::new(true),
            subscriptions: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        channel.channel().await?;
        Ok(channel)
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the channel is in confirm mode (and any channel that replaces it will be).
    pub(super) fn confirms_selected(&self) -> bool {
        self.lock().confirms
    }

    /// The current channel, if it is open on the current connection.
    pub(super) fn usable(&self) -> Option<Handle> {
        let current = self.lock();
        let channel = current.channel.as_ref()?;
        (channel.status().connected() && self.link.epoch() == Some(current.epoch)).then(|| Handle {
            channel: channel.clone(),
            generation: current.generation,
            epoch: current.epoch,
        })
    }

    /// The channel to use now: the current one, or a new one if the broker closed it or the
    /// connection was recovered (waiting for the recovery if it runs).
    pub(super) async fn channel(&self) -> Result<Handle> {
        loop {
            if self.is_closed() {
                return Err(closed_by_application());
            }
            if let Some(handle) = self.usable() {
                return Ok(handle);
            }
            let _guard = self.reopening.lock().await;
            if let Some(handle) = self.usable() {
                return Ok(handle);
            }
            let (connection, epoch) = self.link.connection().await?;
            if let Some(handle) = self.reopen(&connection, epoch).await? {
                return Ok(handle);
            }
        }
    }

    /// Opens a channel on `connection` with the confirm mode and qos of the one it replaces;
    /// `None` when the connection was lost meanwhile (then try again after the recovery).
    async fn reopen(&self, connection: &lapin::Connection, epoch: u64) -> Result<Option<Handle>> {
        let (confirms, transactional, prefetch, first) = {
            let current = self.lock();
            (
                current.confirms,
                current.transaction.is_some(),
                current.prefetch,
                current.channel.is_none(),
            )
        };
        if !first {
            tracing::debug!(
                "reopening an AMQP channel (closed by the broker, or on a recovered connection)"
            );
        }
        let Some(channel) = self
            .attempt("channel.open", epoch, connection.create_channel())
            .await?
        else {
            return Ok(None);
        };
        if confirms
            && self
                .attempt(
                    "confirm.select",
                    epoch,
                    channel.confirm_select(ConfirmSelectOptions::default()),
                )
                .await?
                .is_none()
        {
            return Ok(None);
        }
        if transactional
            && self
                .attempt("tx.select", epoch, channel.tx_select())
                .await?
                .is_none()
        {
            return Ok(None);
        }
        for (count, global) in [(prefetch.0, false), (prefetch.1, true)] {
            if let Some(count) = count {
                let qos = channel.basic_qos(count, BasicQosOptions { global });
                if self.attempt("basic.qos", epoch, qos).await?.is_none() {
                    return Ok(None);
                }
            }
        }
        let mut current = self.lock();
        current.channel = Some(Arc::new(channel));
        current.generation += 1;
        current.epoch = epoch;
        Ok(Some(Handle {
            channel: current.channel.clone().expect("just set"),
            generation: current.generation,
            epoch,
        }))
    }

    /// One lapin call within the operation timeout: `Some(value)`, `None` when it met a lost
    /// connection (try again after the recovery), or the error.
    pub(super) async fn attempt<T>(
        &self,
        what: &str,
        epoch: u64,
        future: impl Future<Output = lapin::Result<T>>,
    ) -> Result<Option<T>> {
        let limit = self.link.options().timeouts.get_operation();
        match tokio::time::timeout(limit, future).await {
            Err(_) => Err(Error::Timeout {
                operation: what.to_string(),
                after: limit,
            }),
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(e)) if self.link.lost(&e, epoch) => {
                tracing::debug!(%what, error = %e, "the connection was lost; retrying after the recovery");
                Ok(None)
            }
            Ok(Err(e)) => Err(convert::error(e)),
        }
    }

    /// Runs an operation on the current channel; one that meets a lost connection is tried
    /// again once it is recovered, under the retry policy.
    pub(super) async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T>
    where
        F: Fn(Arc<lapin::Channel>) -> Fut,
        Fut: Future<Output = lapin::Result<T>>,
    {
        self.run_counted(what, op).await.map(|(value, _)| value)
    }

    /// [`run`](Self::run), with the generation of the channel it ran on (for the delivery
    /// tags of what it received).
    pub(super) async fn run_counted<T, F, Fut>(&self, what: &'static str, op: F) -> Result<(T, u64)>
    where
        F: Fn(Arc<lapin::Channel>) -> Fut,
        Fut: Future<Output = lapin::Result<T>>,
    {
        let mut attempts = self.link.options().policy.start_quiet(what);
        loop {
            let handle = self.channel().await?;
            match self.attempt(what, handle.epoch, op(handle.channel)).await? {
                Some(value) => return Ok((value, handle.generation)),
                None => {
                    attempts.failed(
                        Error::connection_closed(format!("{what}: the connection was lost")),
                        false,
                    )?;
                }
            }
        }
    }

    /// Puts the channel in confirm mode once (publisher confirms): `Some(true)` when it is,
    /// `Some(false)` when the channel was replaced meanwhile (take the new one), `None` when
    /// the connection was lost.
    pub(super) async fn ensure_confirms(&self, handle: &Handle) -> Result<Option<bool>> {
        if self.lock().confirms {
            return Ok(Some(true));
        }
        let select = handle
            .channel
            .confirm_select(ConfirmSelectOptions::default());
        if self
            .attempt("confirm.select", handle.epoch, select)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let mut current = self.lock();
        if current.generation == handle.generation {
            current.confirms = true;
        }
        Ok(Some(current.confirms))
    }

    /// `tx.select` on the current channel (and on every channel that replaces it).
    pub(super) async fn select_transactions(&self) -> Result<()> {
        let ((), generation) = self
            .run_counted("tx.select", |ch| async move { ch.tx_select().await })
            .await?;
        self.lock().transaction = Some(generation);
        Ok(())
    }

    /// `tx.commit` or `tx.rollback` (`commit`: which) of the open transaction. One begun on a
    /// channel since replaced (the broker closed it, or the connection was lost) was lost
    /// with it: a commit is then an error (nothing of it was applied), a rollback has nothing
    /// left to do; the next transaction begins on the current channel either way.
    pub(super) async fn end_transaction(&self, commit: bool) -> Result<()> {
        let began = self.lock().transaction;
        let Some(began) = began else {
            return Err(Error::PreconditionFailed(
                "channel is not transactional".into(),
            ));
        };
        let handle = self.channel().await?;
        if handle.generation != began {
            self.lock().transaction = Some(handle.generation);
            if !commit {
                return Ok(());
            }
            return Err(Error::ChannelClosed {
                reply_code: None,
                reply_text: "the transaction was lost with its channel (closed by the broker, or lost with the connection): nothing of it was applied; do it again and commit".into(),
                source: None,
            });
        }
        let (what, ended) = match commit {
            true => (
                "tx.commit",
                self.attempt("tx.commit", handle.epoch, handle.channel.tx_commit())
                    .await?,
            ),
            false => (
                "tx.rollback",
                self.attempt("tx.rollback", handle.epoch, handle.channel.tx_rollback())
                    .await?,
            ),
        };
        match ended {
            Some(()) => Ok(()),
            None => Err(Error::ChannelClosed {
                reply_code: None,
                reply_text: format!("{what}: the connection was lost before the broker answered; the transaction may or may not have been applied"),
                source: None,
            }),
        }
    }

    /// The channel a delivery tag belongs to, and the tag lapin knows; refused when the
    /// delivery came from a channel that is gone.
    fn settling(&self, tag: u64) -> Result<(Arc<lapin::Channel>, u64)> {
        if self.is_closed() {
            return Err(closed_by_application());
        }
        let current = self.lock();
        let usable = current
            .channel
            .as_ref()
            .filter(|c| c.status().connected() && self.link.epoch() == Some(current.epoch));
        match usable {
            Some(channel) if tag >> GENERATION_SHIFT == current.generation => {
                Ok((channel.clone(), tag & ((1 << GENERATION_SHIFT) - 1)))
            }
            _ => Err(stale_delivery(None)),
        }
    }

    /// Marks every consumer of the channel as ended by the application.
    fn end_subscriptions(&self) {
        let subscriptions: Vec<_> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        let mut topology = self.link.topology();
        for s in subscriptions {
            if s.end() {
                topology.consumer_ended(&s.queue());
            }
        }
    }
}
