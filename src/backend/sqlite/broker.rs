//! The state the engine thread keeps for one broker file: the SQLite connection, caches of what
//! rarely changes (exchanges with their bindings, queues), and this process's channels and
//! consumers (the shared channel layer). Operations live in `entities.rs`, `messages.rs`,
//! `consumers.rs` and `lifecycle.rs`; `transaction.rs` holds the transaction around them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::liveness::Identity;
use super::schema::{storage_error, Checkpointer};
use super::wakeup::Wakeup;
use crate::backend::arguments::{limits, Limits};
use crate::backend::embedded::{ChannelLayer, Refill};
use crate::backend::rules;
use crate::backend::Delivery;
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::routing::{Bindings, Destination};

/// How often each process checks for dead processes and for expiries others scheduled.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// At most this many messages are handed out per queue and transaction.
pub(super) const DISPATCH_CHUNK: usize = 1024;

/// How errors name this backend.
pub(super) const BACKEND: &str = "the sqlite broker";

/// An exchange as cached: its declaration and bindings.
#[derive(Debug)]
pub(super) struct ExchangeEntry {
    pub(super) spec: ExchangeSpec,
    pub(super) bindings: Bindings,
}

/// A queue as cached.
#[derive(Debug)]
pub(super) struct QueueEntry {
    pub(super) name: Arc<str>,
    pub(super) spec: QueueSpec,
    pub(super) limits: Limits,
    /// The connection of an exclusive queue.
    pub(super) owner: Option<i64>,
}

/// The channel layer of this process's connections: a delivery's handle is its row id.
pub(super) type Layer = ChannelLayer<i64, i64>;

/// A delivery to hand out once its transaction commits: (channel, consumer stream, delivery).
pub(super) type Outgoing = (u64, crate::backend::Feed, Delivery);

pub(super) struct Broker {
    pub(super) db: Connection,
    pub(super) path: PathBuf,
    pub(super) me: Identity,
    /// This process's row in `processes`.
    pub(super) process: i64,
    pub(super) wakeup: Option<Wakeup>,
    pub(super) checkpointer: Option<Checkpointer>,
    /// Commits since the last checkpoint request.
    pub(super) commits: u32,
    /// Commits since the broker opened (what a test of "one commit" reads).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) committed: u64,
    /// `meta.generation` when the caches were filled; any change to exchanges, queues,
    /// bindings or processes bumps it.
    pub(super) generation: i64,
    exchanges: HashMap<String, Option<Arc<ExchangeEntry>>>,
    queues: HashMap<String, Option<Arc<QueueEntry>>>,
    peers: Option<Vec<String>>,
    /// Connections, channels and consumers of this process.
    pub(super) layer: Layer,
    /// Queues whose local consumers may have messages to take.
    pub(super) dirty: HashSet<Arc<str>>,
    /// Messages acknowledged in this transaction, by connection (see `flush_acks`).
    pub(super) acked: Vec<(i64, i64)>,
    /// Deliveries to hand out once the transaction commits.
    pub(super) outbox: Vec<Outgoing>,
    /// Whether the transaction made messages ready that other processes may want.
    pub(super) wake_peers: bool,
    next_check: Instant,
    /// The next expiry known to this process (milliseconds since the Unix epoch).
    pub(super) next_expiry: Option<i64>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("path", &self.path)
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch: the clock every process sharing a file agrees on.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Broker {
    pub(super) fn new(db: Connection, path: PathBuf, wakeup: Option<Wakeup>) -> Broker {
        Broker {
            db,
            path,
            me: Identity::current(),
            process: 0,
            wakeup,
            checkpointer: None,
            commits: 0,
            committed: 0,
            generation: -1,
            exchanges: HashMap::default(),
            queues: HashMap::default(),
            peers: None,
            layer: Layer::new(Refill::HalfWindow),
            dirty: HashSet::default(),
            acked: Vec::new(),
            outbox: Vec::new(),
            wake_peers: false,
            next_check: Instant::now(),
            next_expiry: None,
        }
    }

    /// A SQLite failure as a carrot error.
    pub(super) fn fail(&self, e: rusqlite::Error) -> Error {
        storage_error(&self.path, e)
    }

    /// Runs a statement (cached) and returns the number of rows it changed.
    pub(super) fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
        self.db
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params))
            .map_err(|e| self.fail(e))
    }

    /// Runs a query (cached) and maps every row.
    pub(super) fn rows_of<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.db
            .prepare_cached(sql)
            .and_then(|mut s| s.query_map(params, map).and_then(|rows| rows.collect()))
            .map_err(|e| self.fail(e))
    }

    /// Runs a query (cached) and returns its first column.
    pub(super) fn column<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<T>> {
        self.rows_of(sql, params, |r| r.get(0))
    }

    /// Runs a query (cached) that returns at most one value.
    pub(super) fn one<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<T>> {
        self.row_of(sql, params, |r| r.get(0))
    }

    /// Runs a query (cached) that returns at most one row, and maps it.
    pub(super) fn row_of<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        use rusqlite::OptionalExtension;
        self.db
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(params, map).optional())
            .map_err(|e| self.fail(e))
    }

    /// When the engine must run even without work: the periodic check or the next expiry.
    pub(super) fn next_timer(&self) -> Instant {
        if !self.dirty.is_empty() {
            return Instant::now();
        }
        let mut at = self.next_check;
        if let Some(expiry) = self.next_expiry {
            let wait = Duration::from_millis((expiry - now_ms()).max(0) as u64);
            at = at.min(Instant::now() + wait);
        }
        at
    }

    /// Periodic work, inside the transaction: dead processes, expiries.
    pub(super) fn housekeeping(&mut self) -> Result<()> {
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            self.bury_dead_processes()?;
            self.next_expiry = Some(now_ms());
            // In case a wake-up datagram was lost: look for work once a second anyway.
            self.dirty.extend(self.layer.consumed_queues());
        }
        if self.next_expiry.is_some_and(|at| at <= now_ms()) {
            self.next_expiry = self.expire(now_ms())?;
        }
        Ok(())
    }

    /// Records a change to exchanges, queues, bindings or processes, so that every process
    /// refreshes its caches.
    pub(super) fn bump(&mut self) -> Result<()> {
        self.exec(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
            [],
        )?;
        self.forget_cached();
        self.generation = self
            .one("SELECT value FROM meta WHERE key = 'generation'", [])?
            .unwrap_or(0);
        Ok(())
    }

    pub(super) fn forget_cached(&mut self) {
        self.exchanges.clear();
        self.queues.clear();
        self.peers = None;
        self.generation = -1;
    }

    /// The other processes' wake-up names.
    pub(super) fn peers(&mut self) -> Result<Vec<String>> {
        if let Some(peers) = &self.peers {
            return Ok(peers.clone());
        }
        let peers: Vec<String> = self.column(
            "SELECT wakeup FROM processes WHERE id != ?1 AND wakeup IS NOT NULL",
            [self.process],
        )?;
        self.peers = Some(peers.clone());
        Ok(peers)
    }

    /// An exchange, from the cache or the database.
    pub(super) fn exchange(&mut self, name: &str) -> Result<Option<Arc<ExchangeEntry>>> {
        if let Some(entry) = self.exchanges.get(name) {
            return Ok(entry.clone());
        }
        let row: Option<(String, bool, bool, String, bool)> = self.row_of(
            "SELECT kind, durable, auto_delete, arguments, internal FROM exchanges WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let entry = match row {
            None => None,
            Some((kind, durable, auto_delete, arguments, internal)) => {
                let kind = kind.parse().map_err(|_| {
                    Error::storage(format!(
                        "exchange '{name}' has an unknown type {kind:?} in the database"
                    ))
                })?;
                let mut spec = ExchangeSpec::new(name, kind)
                    .durable(durable)
                    .auto_delete(auto_delete)
                    .internal(internal);
                spec.arguments = super::codec::decode_table(&arguments)?;
                let mut bindings = Bindings::new(kind);
                let rows: Vec<(String, String, String)> = self.rows_of(
                    "SELECT queue, key, arguments FROM bindings WHERE exchange = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                for (queue, key, arguments) in rows {
                    let arguments = super::codec::decode_table(&arguments)?;
                    bindings.bind(&Destination::Queue(queue.as_str().into()), &key, &arguments);
                }
                let rows: Vec<(String, String, String)> = self.rows_of(
                    "SELECT destination, key, arguments FROM exchange_bindings WHERE source = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                for (exchange, key, arguments) in rows {
                    let arguments = super::codec::decode_table(&arguments)?;
                    let destination = Destination::Exchange(exchange.as_str().into());
                    bindings.bind(&destination, &key, &arguments);
                }
                Some(Arc::new(ExchangeEntry { spec, bindings }))
            }
        };
        self.exchanges.insert(name.to_string(), entry.clone());
        Ok(entry)
    }

    /// A queue, from the cache or the database.
    pub(super) fn queue(&mut self, name: &str) -> Result<Option<Arc<QueueEntry>>> {
        if let Some(entry) = self.queues.get(name) {
            return Ok(entry.clone());
        }
        let row: Option<(bool, bool, bool, String, Option<i64>)> = self.row_of(
            "SELECT durable, exclusive, auto_delete, arguments, owner FROM queues WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let entry = match row {
            None => None,
            Some((durable, exclusive, auto_delete, arguments, owner)) => {
                let mut spec = QueueSpec::new(name)
                    .durable(durable)
                    .exclusive(exclusive)
                    .auto_delete(auto_delete);
                spec.arguments = super::codec::decode_table(&arguments)?;
                let limits = limits(&spec, BACKEND)?;
                Some(Arc::new(QueueEntry {
                    name: name.into(),
                    spec,
                    limits,
                    owner,
                }))
            }
        };
        self.queues.insert(name.to_string(), entry.clone());
        Ok(entry)
    }

    /// A queue this connection may use: [`Error::NotFound`] or [`Error::ResourceLocked`]
    /// otherwise.
    pub(super) fn usable_queue(&mut self, connection: i64, name: &str) -> Result<Arc<QueueEntry>> {
        let queue = self.queue(name)?.ok_or_else(|| rules::no_queue(name))?;
        rules::check_owner(name, queue.owner, connection)?;
        Ok(queue)
    }
}
