//! The embedded in-process broker behind `memory://`.
//!
//! Brokers are named (`memory://NAME`, the default one has the empty name) and live as long as
//! the process, like a server would: every connection to the same name shares its exchanges,
//! queues and messages. Routing follows AMQP 0-9-1 exactly (see `crate::routing`).

mod queue;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::MutexGuard;

use crate::backend::embedded::{Settlement, Transaction};
use crate::backend::{
    Channel, Confirmation, Delivery, DeliveryStream, PublishFlags, Published, QueueInfo, Transport,
};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::table::FieldTable;

use state::State;

#[derive(Debug)]
struct Broker {
    state: parking_lot::Mutex<State>,
    /// Whether the thread that expires messages and queues runs.
    sweeper_started: AtomicBool,
}

impl Broker {
    fn lock(&self) -> MutexGuard<'_, State> {
        // parking_lot's lock is not poisoned by a panic: a panic while holding it cannot leave
        // the state half-updated in a way that matters more than stopping every client.
        self.state.lock()
    }

    /// Starts the expiry thread the first time a queue or message has a TTL.
    fn start_sweeper_if_needed(self: &Arc<Self>, needed: bool) {
        // A plain load first: publishing to a TTL queue must not pay an atomic write each time.
        if !needed
            || self.sweeper_started.load(Ordering::Acquire)
            || self.sweeper_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let broker = self.clone();
        let spawned = std::thread::Builder::new()
            .name("carrot-memory-expiry".into())
            .spawn(move || broker.sweep_forever());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the memory broker's expiry thread; TTLs will apply only when queues are read");
            self.sweeper_started.store(false, Ordering::Release);
        }
    }

    /// Sleeps until the next deadline (or until woken by an earlier one), then expires.
    fn sweep_forever(&self) {
        let mut state = self.lock();
        let wake = state.sweeper.clone();
        loop {
            let now = state.now();
            let next = state.sweep(now);
            state.sweeper_wake = next;
            match next {
                Some(at) => {
                    let pause = Duration::from_millis(at.saturating_sub(now).max(1));
                    wake.wait_for(&mut state, pause);
                }
                None => wake.wait(&mut state),
            }
        }
    }
}

fn broker(name: &str) -> Arc<Broker> {
    static BROKERS: OnceLock<Mutex<HashMap<String, Arc<Broker>>>> = OnceLock::new();
    let brokers = BROKERS.get_or_init(Default::default);
    let mut brokers = brokers.lock().unwrap_or_else(|p| p.into_inner());
    brokers
        .entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(Broker {
                state: parking_lot::Mutex::new(State::new()),
                sweeper_started: AtomicBool::new(false),
            })
        })
        .clone()
}

/// A handle on a named embedded broker (`memory://NAME`), for what a server operator would do.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::{BrokerConnection, MemoryBroker, QueueSpec};
/// let conn = BrokerConnection::connect("memory://restart-doc").await?;
/// conn.declare_queue(&QueueSpec::new("kept")).await?;
/// conn.declare_queue(&QueueSpec::new("gone").durable(false)).await?;
/// MemoryBroker::named("restart-doc").restart();
/// let conn = BrokerConnection::connect("memory://restart-doc").await?; // reconnect
/// assert!(conn.queue_info("kept").await.is_ok());
/// assert!(conn.queue_info("gone").await.is_err());
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryBroker {
    broker: Arc<Broker>,
}

impl MemoryBroker {
    /// The broker that `memory://NAME` connects to (`""` for `memory://`).
    pub fn named(name: &str) -> Self {
        MemoryBroker {
            broker: broker(name),
        }
    }

    /// Simulates a broker restart: every connection is closed (their unacknowledged messages
    /// requeued), transient exchanges and queues are deleted, and durable queues keep only
    /// their persistent messages. Clients must reconnect, as after a real restart.
    pub fn restart(&self) {
        self.broker.lock().restart();
    }
}

/// A connection to an embedded broker.
#[derive(Debug)]
pub(crate) struct MemoryConnection {
    broker: Arc<Broker>,
    id: u64,
}

impl MemoryConnection {
    pub(crate) fn open(name: &str) -> Self {
        let broker = broker(name);
        let id = broker.lock().open_connection();
        MemoryConnection { broker, id }
    }
}

impl Drop for MemoryConnection {
    fn drop(&mut self) {
        self.broker.lock().close_connection(self.id);
    }
}

#[async_trait]
impl Transport for MemoryConnection {
    async fn channel(&self) -> Result<Arc<dyn Channel>> {
        let id = self.broker.lock().open_channel(self.id)?;
        Ok(Arc::new(MemoryChannel {
            broker: self.broker.clone(),
            id,
            tx: parking_lot::Mutex::new(Transaction::default()),
        }))
    }

    async fn close(&self) -> Result<()> {
        self.broker.lock().close_connection(self.id);
        Ok(())
    }

    #[cfg(feature = "serve")]
    async fn queue_stats(&self) -> Result<Vec<crate::backend::QueueStats>> {
        Ok(self.broker.lock().queue_stats())
    }

    #[cfg(feature = "serve")]
    async fn topology(&self) -> Result<crate::backend::Topology> {
        Ok(self.broker.lock().topology())
    }
}

#[derive(Debug)]
struct MemoryChannel {
    broker: Arc<Broker>,
    id: u64,
    /// `tx.select` and what the transaction holds.
    tx: parking_lot::Mutex<Transaction>,
}

impl MemoryChannel {
    /// In a transaction, holds the settlement of `tag` (checked now) instead of applying it;
    /// `false` outside one.
    fn held(&self, tag: u64, multiple: bool, how: Settlement) -> Result<bool> {
        let mut tx = self.tx.lock();
        if !tx.is_selected() {
            return Ok(false);
        }
        let outstanding = self.broker.lock().outstanding(self.id, tag, multiple)?;
        tx.hold_settlement(tag, multiple, outstanding, how)?;
        Ok(true)
    }
}

impl Drop for MemoryChannel {
    fn drop(&mut self) {
        self.broker.lock().close_channel(self.id);
    }
}

#[async_trait]
impl Channel for MemoryChannel {
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()> {
        self.broker.lock().declare_exchange(self.id, spec, passive)
    }
    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        self.broker.lock().delete_exchange(self.id, name, if_unused)
    }
    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo> {
        let (result, needed) = {
            let mut state = self.broker.lock();
            (
                state.declare_queue(self.id, spec, passive),
                state.sweeper_needed,
            )
        };
        self.broker.start_sweeper_if_needed(needed);
        result
    }
    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32> {
        self.broker
            .lock()
            .delete_queue(self.id, name, if_unused, if_empty)
    }
    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.broker
            .lock()
            .bind(self.id, queue, exchange, key, arguments)
    }
    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.broker
            .lock()
            .unbind(self.id, queue, exchange, key, arguments)
    }
    async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.broker
            .lock()
            .bind_exchange(self.id, destination, source, key, arguments)
    }
    async fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.broker
            .lock()
            .unbind_exchange(self.id, destination, source, key, arguments)
    }
    async fn publish(&self, message: Arc<Published>, flags: PublishFlags) -> Result<Confirmation> {
        {
            let mut tx = self.tx.lock();
            if tx.is_selected() {
                self.broker.lock().check_publishable(self.id, &message)?;
                tx.hold_publish(message, flags);
                return Ok(Confirmation::Done);
            }
        }
        let (result, needed) = {
            let mut state = self.broker.lock();
            (state.publish(self.id, message, flags), state.sweeper_needed)
        };
        self.broker.start_sweeper_if_needed(needed);
        // A publishing loop never waits on I/O here: give the consumer task sharing this
        // worker its turn, or it sees nothing until the loop ends.
        tokio::task::coop::consume_budget().await;
        result.map(|()| Confirmation::Done)
    }
    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        let result = self.broker.lock().get(self.id, queue, no_ack);
        tokio::task::coop::consume_budget().await;
        result
    }
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let broker = Arc::downgrade(&self.broker);
        let replenish: crate::backend::Replenish = Arc::new(move |queue: Arc<str>| {
            if let Some(broker) = broker.upgrade() {
                broker.lock().replenish(&queue);
            }
        });
        self.broker.lock().consume(
            self.id,
            queue,
            consumer_tag,
            (no_ack, exclusive, priority),
            replenish,
        )
    }
    async fn cancel(&self, consumer_tag: &str) -> Result<()> {
        self.broker.lock().cancel(self.id, consumer_tag)
    }
    fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        if self.held(delivery_tag, multiple, Settlement::Ack)? {
            return Ok(());
        }
        self.broker.lock().ack(self.id, delivery_tag, multiple)
    }
    fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        if self.held(delivery_tag, false, Settlement::Reject { requeue })? {
            return Ok(());
        }
        self.broker.lock().reject(self.id, delivery_tag, requeue)
    }
    async fn qos(&self, prefetch_size: u32, prefetch_count: u16, global: bool) -> Result<()> {
        self.broker
            .lock()
            .qos(self.id, prefetch_size, prefetch_count, global)
    }
    async fn flow(&self, active: bool) -> Result<()> {
        self.broker.lock().flow(self.id, active)
    }
    async fn purge(&self, queue: &str) -> Result<u32> {
        self.broker.lock().purge(self.id, queue)
    }
    async fn tx_select(&self) -> Result<()> {
        self.broker.lock().check_channel(self.id)?;
        self.tx.lock().select();
        Ok(())
    }
    async fn tx_commit(&self) -> Result<Vec<(Arc<Published>, crate::Error)>> {
        let held = self.tx.lock().commit()?;
        let (result, needed) = {
            let mut state = self.broker.lock();
            (state.apply(self.id, held), state.sweeper_needed)
        };
        self.broker.start_sweeper_if_needed(needed);
        result
    }
    async fn tx_rollback(&self) -> Result<()> {
        self.tx.lock().rollback()
    }
    async fn close(&self) -> Result<()> {
        self.broker.lock().close_channel(self.id);
        Ok(())
    }
    fn shutdown(&self) {
        self.broker.lock().close_channel(self.id);
    }
}
