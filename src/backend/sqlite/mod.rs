//! The durable embedded broker behind `sqlite://PATH`: exchanges, queues, bindings and messages
//! in one SQLite file that several processes may share, routed by the engine memory:// uses.
//!
//! # Layout
//! - `schema.rs`: opening a file, durability level (WAL, `synchronous = NORMAL`: see there).
//! - `engine.rs`: one thread per process and file runs every operation; overlapping callers
//!   share one transaction and one commit.
//! - `transaction.rs`: the transaction around each batch of operations; `outcome.rs` what its
//!   callers are told.
//! - `broker.rs`: the engine's state and caches; `entities.rs`, `messages.rs`, `consumers.rs`
//!   its operations (channels and consumers are the shared layer of `backend::embedded`);
//!   `lifecycle.rs` processes joining, leaving and dying.
//! - `liveness.rs`: how a dead process is recognised (pid and start time, no heartbeats).
//! - `wakeup.rs`: how a commit in one process wakes consumers in the others (a datagram).
//! - `codec.rs`: headers and rare properties as stored.

mod broker;
mod codec;
mod consumers;
mod engine;
mod entities;
mod lifecycle;
mod liveness;
mod messages;
mod outcome;
mod schema;
mod transaction;
mod wakeup;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;

use crate::backend::embedded::{Settlement, Transaction};
use crate::backend::{
    Channel, Confirmation, Delivery, DeliveryStream, PublishFlags, Published, QueueInfo, Transport,
};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::table::FieldTable;

use broker::Broker;
use engine::Engine;

/// The engines of this process, one per file (by canonical path).
fn engines() -> &'static Mutex<HashMap<PathBuf, Weak<Engine>>> {
    static ENGINES: OnceLock<Mutex<HashMap<PathBuf, Weak<Engine>>>> = OnceLock::new();
    ENGINES.get_or_init(Default::default)
}

/// The engine of a file, started (and the file opened or created) if needed.
fn engine(path: &Path) -> Result<Arc<Engine>> {
    let mut engines = engines().lock().unwrap_or_else(|p| p.into_inner());
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(engine) = engines.get(&key).and_then(Weak::upgrade) {
        return Ok(engine);
    }
    let db = schema::open(path)?;
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut broker = Broker::new(db, key.clone(), wakeup::Wakeup::bind());
    broker.join()?;
    let engine = Engine::start(broker)?;
    engines.retain(|_, e| e.strong_count() > 0);
    engines.insert(key, Arc::downgrade(&engine));
    Ok(engine)
}

/// A handle on the sqlite broker of one file, for what applications do not do through a
/// connection.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::{BrokerConnection, SqliteBroker};
/// let path = std::env::temp_dir().join(format!("carrot-doc-{}.db", std::process::id()));
/// let conn = BrokerConnection::connect(&format!("sqlite://{}", path.display())).await?;
/// conn.declare_queue(&carrot::QueueSpec::new("jobs")).await?;
/// SqliteBroker::open(&path)?.restart();
/// # conn.close().await.ok();
/// # drop(conn);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), carrot::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteBroker {
    engine: Arc<Engine>,
}

impl SqliteBroker {
    /// Opens the broker of a file (creating it if needed).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteBroker> {
        Ok(SqliteBroker {
            engine: engine(path.as_ref())?,
        })
    }

    /// Simulates a broker restart, as far as this process can: every connection it has to the
    /// file is closed (their deliveries go back to their queues), and if no other process uses
    /// the file, transient exchanges, queues and messages are deleted. Clients must reconnect.
    pub fn restart(&self) {
        if let Err(e) = self.engine.call_blocking(|b| b.restart()) {
            tracing::warn!(error = %e, "sqlite: restart failed");
        }
    }
}

/// A connection to a sqlite broker.
#[derive(Debug)]
pub(crate) struct SqliteConnection {
    engine: Arc<Engine>,
    id: i64,
    /// Closed by `close`: `Drop` must not close it again, since SQLite may have given its id
    /// to a connection opened since (row ids of deleted rows are reused), which a second
    /// close would end.
    closed: std::sync::atomic::AtomicBool,
}

impl SqliteConnection {
    pub(crate) async fn open(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        // Opening reads and maybe creates the file: not on the async worker.
        let engine = tokio::task::spawn_blocking(move || engine(&path))
            .await
            .map_err(|e| Error::task_failed("opening the sqlite broker file", e))??;
        let id = engine.call(|b| b.open_connection()).await?;
        Ok(SqliteConnection {
            engine,
            id,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Drop for SqliteConnection {
    fn drop(&mut self) {
        if self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let id = self.id;
        self.engine.detach(move |b| b.close_connection(id));
    }
}

#[async_trait]
impl Transport for SqliteConnection {
    async fn channel(&self) -> Result<Arc<dyn Channel>> {
        let connection = self.id;
        let id = self
            .engine
            .call(move |b| b.open_channel(connection))
            .await?;
        Ok(Arc::new(SqliteChannel {
            engine: self.engine.clone(),
            id,
            tx: parking_lot::Mutex::new(Transaction::default()),
        }))
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let id = self.id;
        self.engine.call(move |b| b.close_connection(id)).await
    }

    #[cfg(feature = "serve")]
    async fn queue_stats(&self) -> Result<Vec<crate::backend::QueueStats>> {
        self.engine.call(|b| b.queue_stats()).await
    }

    #[cfg(feature = "serve")]
    async fn topology(&self) -> Result<crate::backend::Topology> {
        self.engine.call(|b| b.topology()).await
    }
}

#[derive(Debug)]
struct SqliteChannel {
    engine: Arc<Engine>,
    id: u64,
    /// `tx.select` and what the transaction holds.
    tx: parking_lot::Mutex<Transaction>,
}

impl SqliteChannel {
    /// In a transaction, holds the settlement of `tag` (checked now) instead of applying it;
    /// `false` outside one.
    fn held(&self, tag: u64, multiple: bool, how: Settlement) -> Result<bool> {
        let mut tx = self.tx.lock();
        if !tx.is_selected() {
            return Ok(false);
        }
        let id = self.id;
        let outstanding = self
            .engine
            .call_blocking(move |b| b.layer.outstanding(id, tag, multiple))?;
        tx.hold_settlement(tag, multiple, outstanding, how)?;
        Ok(true)
    }
}

impl Drop for SqliteChannel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[async_trait]
impl Channel for SqliteChannel {
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()> {
        let (id, spec) = (self.id, spec.clone());
        self.engine
            .call(move |b| b.declare_exchange(id, &spec, passive))
            .await
    }
    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        let (id, name) = (self.id, name.to_string());
        self.engine
            .call(move |b| b.delete_exchange(id, &name, if_unused))
            .await
    }
    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo> {
        let (id, spec) = (self.id, spec.clone());
        self.engine
            .call(move |b| b.declare_queue(id, &spec, passive))
            .await
    }
    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32> {
        let (id, name) = (self.id, name.to_string());
        self.engine
            .call(move |b| b.delete_queue(id, &name, if_unused, if_empty))
            .await
    }
    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let id = self.id;
        let (queue, exchange, key, arguments) = (
            queue.to_string(),
            exchange.to_string(),
            key.to_string(),
            arguments.clone(),
        );
        self.engine
            .call(move |b| b.bind(id, &queue, &exchange, &key, &arguments))
            .await
    }
    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let id = self.id;
        let (queue, exchange, key, arguments) = (
            queue.to_string(),
            exchange.to_string(),
            key.to_string(),
            arguments.clone(),
        );
        self.engine
            .call(move |b| b.unbind(id, &queue, &exchange, &key, &arguments))
            .await
    }
    async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let id = self.id;
        let (destination, source, key, arguments) = (
            destination.to_string(),
            source.to_string(),
            key.to_string(),
            arguments.clone(),
        );
        self.engine
            .call(move |b| b.bind_exchange(id, &destination, &source, &key, &arguments))
            .await
    }
    async fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let id = self.id;
        let (destination, source, key, arguments) = (
            destination.to_string(),
            source.to_string(),
            key.to_string(),
            arguments.clone(),
        );
        self.engine
            .call(move |b| b.unbind_exchange(id, &destination, &source, &key, &arguments))
            .await
    }
    async fn publish(&self, message: Arc<Published>, flags: PublishFlags) -> Result<Confirmation> {
        let id = self.id;
        if self.tx.lock().is_selected() {
            let checked = message.clone();
            self.engine
                .call(move |b| b.check_publishable(id, &checked))
                .await?;
            self.tx.lock().hold_publish(message, flags);
            return Ok(Confirmation::Done);
        }
        // Every publish waits for its commit, with or without `confirm`: a send that returned
        // is stored. With `confirm`, the wait is the caller's (`send` at once, `begin_send`
        // later), so that one publisher can keep many commits in flight, sharing them.
        let committed = self
            .engine
            .begin_call(move |b| b.publish(id, &message, flags))?;
        if flags.confirm {
            Ok(Confirmation::Pending(Box::pin(committed)))
        } else {
            committed.await.map(|()| Confirmation::Done)
        }
    }
    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        let (id, queue) = (self.id, queue.to_string());
        self.engine.call(move |b| b.get(id, &queue, no_ack)).await
    }
    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let (id, queue, tag) = (self.id, queue.to_string(), consumer_tag.to_string());
        let engine = Arc::downgrade(&self.engine);
        let replenish: crate::backend::Replenish = Arc::new(move |queue: Arc<str>| {
            if let Some(engine) = engine.upgrade() {
                engine.detach(move |b| {
                    b.dirty.insert(queue);
                    Ok(())
                });
            }
        });
        self.engine
            .call(move |b| b.consume(id, &queue, &tag, (no_ack, exclusive, priority), replenish))
            .await
    }
    async fn cancel(&self, consumer_tag: &str) -> Result<()> {
        let (id, tag) = (self.id, consumer_tag.to_string());
        self.engine.call(move |b| b.cancel(id, &tag)).await
    }
    fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        if self.held(delivery_tag, multiple, Settlement::Ack)? {
            return Ok(());
        }
        let id = self.id;
        self.engine
            .call_blocking(move |b| b.ack(id, delivery_tag, multiple))
    }
    fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        if self.held(delivery_tag, false, Settlement::Reject { requeue })? {
            return Ok(());
        }
        let id = self.id;
        self.engine
            .call_blocking(move |b| b.reject(id, delivery_tag, requeue))
    }
    #[cfg(feature = "serve")]
    fn ack_pipelined(&self, delivery_tag: u64, multiple: bool) -> Result<Confirmation> {
        if self.held(delivery_tag, multiple, Settlement::Ack)? {
            return Ok(Confirmation::Done);
        }
        let id = self.id;
        let committed = self
            .engine
            .begin_call(move |b| b.ack(id, delivery_tag, multiple))?;
        Ok(Confirmation::Pending(Box::pin(committed)))
    }
    #[cfg(feature = "serve")]
    fn reject_pipelined(&self, delivery_tag: u64, requeue: bool) -> Result<Confirmation> {
        if self.held(delivery_tag, false, Settlement::Reject { requeue })? {
            return Ok(Confirmation::Done);
        }
        let id = self.id;
        let committed = self
            .engine
            .begin_call(move |b| b.reject(id, delivery_tag, requeue))?;
        Ok(Confirmation::Pending(Box::pin(committed)))
    }
    async fn qos(&self, prefetch_size: u32, prefetch_count: u16, global: bool) -> Result<()> {
        let id = self.id;
        self.engine
            .call(move |b| b.qos(id, prefetch_size, prefetch_count, global))
            .await
    }
    async fn flow(&self, active: bool) -> Result<()> {
        let id = self.id;
        self.engine.call(move |b| b.flow(id, active)).await
    }
    async fn purge(&self, queue: &str) -> Result<u32> {
        let (id, queue) = (self.id, queue.to_string());
        self.engine.call(move |b| b.purge(id, &queue)).await
    }
    async fn tx_select(&self) -> Result<()> {
        let id = self.id;
        self.engine
            .call(move |b| b.layer.connection_of(id).map(|_| ()))
            .await?;
        self.tx.lock().select();
        Ok(())
    }
    async fn tx_commit(&self) -> Result<Vec<(Arc<Published>, crate::Error)>> {
        let held = self.tx.lock().commit()?;
        let id = self.id;
        // One job: one SQLite transaction, one commit, all of it or nothing.
        self.engine.call(move |b| b.apply(id, held)).await
    }
    async fn tx_rollback(&self) -> Result<()> {
        self.tx.lock().rollback()
    }
    async fn close(&self) -> Result<()> {
        let id = self.id;
        self.engine.call(move |b| b.close_channel(id)).await
    }
    fn shutdown(&self) {
        let id = self.id;
        self.engine.detach(move |b| b.close_channel(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transaction_of_100_publishes_is_one_commit() {
        let dir = std::env::temp_dir().join(format!("carrot-tx-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder");
        let path = dir.join("broker.db");
        // The backend itself, below the connection layer (which must not be used from here).
        let conn = SqliteConnection::open(&path).await.expect("a broker");
        let channel = conn.channel().await.expect("a channel");
        channel
            .declare_queue(&QueueSpec::new("q"), false)
            .await
            .expect("a queue");
        channel.tx_select().await.expect("tx.select");
        let message = Arc::new(Published {
            body: b"m".to_vec().into_boxed_slice(),
            properties: Default::default(),
            exchange: "".into(),
            routing_key: "q".into(),
        });
        for _ in 0..100 {
            channel
                .publish(message.clone(), PublishFlags::default())
                .await
                .expect("held");
        }
        let broker = SqliteBroker::open(&path).expect("the same broker");
        let before = broker
            .engine
            .call(|b| Ok(b.committed))
            .await
            .expect("commits");
        channel.tx_commit().await.expect("committed");
        let after = broker
            .engine
            .call(|b| Ok(b.committed))
            .await
            .expect("commits");
        // The commit's own transaction, the first read's (which writes nothing), and at most
        // one housekeeping tick (once a second) meanwhile: not a commit per message.
        assert!((2..=3).contains(&(after - before)), "{before} then {after}");
        assert_eq!(
            channel
                .declare_queue(&QueueSpec::new("q"), true)
                .await
                .expect("the queue")
                .message_count,
            100
        );
        drop(channel);
        conn.close().await.expect("closed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
