//! The state the engine thread keeps for one broker file: the SQLite connection, caches of what
//! rarely changes (exchanges with their bindings, queues), and this process's channels and
//! consumers. Operations live in `entities.rs`, `messages.rs`, `consumers.rs` and
//! `lifecycle.rs`; this file holds the transaction around them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tokio::sync::mpsc;

use super::engine::{Reply, Work};
use super::liveness::Identity;
use super::schema::{storage_error, Checkpointer};
use super::wakeup::{self, Wakeup};
use crate::backend::arguments::{limits, Limits};
use crate::backend::rules;
use crate::backend::Delivery;
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::routing::Bindings;

/// How often each process checks for dead processes and for expiries others scheduled.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Commits between two checkpoint requests (a commit writes a few pages to the log).
const CHECKPOINT_EVERY: u32 = 200;
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

/// A delivery not yet settled.
#[derive(Debug)]
pub(super) struct Unacked {
    pub(super) id: i64,
    pub(super) queue: Arc<str>,
    pub(super) consumer: Option<Arc<str>>,
}

/// A channel of a connection of this process.
#[derive(Debug)]
pub(super) struct ChannelState {
    pub(super) connection: i64,
    pub(super) flow: bool,
    pub(super) consumer_prefetch: u16,
    pub(super) channel_prefetch: u16,
    pub(super) next_tag: u64,
    pub(super) unacked: std::collections::BTreeMap<u64, Unacked>,
    pub(super) consumer_tags: u64,
}

/// A consumer in this process.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) tag: Arc<str>,
    pub(super) channel: u64,
    pub(super) no_ack: bool,
    pub(super) prefetch: u16,
    pub(super) unacked: u32,
    pub(super) tx: mpsc::UnboundedSender<crate::error::Result<Delivery>>,
}

/// The consumers of one queue in this process, served round robin.
#[derive(Debug, Default)]
pub(super) struct Subscribers {
    pub(super) list: Vec<Subscriber>,
    pub(super) next: usize,
}

pub(super) struct Broker {
    pub(super) db: Connection,
    pub(super) path: PathBuf,
    pub(super) me: Identity,
    /// This process's row in `processes`.
    pub(super) process: i64,
    pub(super) wakeup: Option<Wakeup>,
    pub(super) checkpointer: Option<Checkpointer>,
    /// Commits since the last checkpoint request.
    commits: u32,
    /// `meta.generation` when the caches were filled; any change to exchanges, queues,
    /// bindings or processes bumps it.
    generation: i64,
    exchanges: HashMap<String, Option<Arc<ExchangeEntry>>>,
    queues: HashMap<String, Option<Arc<QueueEntry>>>,
    peers: Option<Vec<String>>,
    /// Connections of this process that are open.
    pub(super) connections: HashSet<i64>,
    pub(super) channels: HashMap<u64, ChannelState>,
    pub(super) next_channel: u64,
    pub(super) subscribers: HashMap<Arc<str>, Subscribers>,
    /// Queues whose local consumers may have messages to take.
    pub(super) dirty: HashSet<Arc<str>>,
    /// Messages acknowledged in this transaction, by connection (see `flush_acks`).
    pub(super) acked: Vec<(i64, i64)>,
    /// Deliveries to hand out once the transaction commits.
    pub(super) outbox: Vec<(
        mpsc::UnboundedSender<crate::error::Result<Delivery>>,
        Delivery,
    )>,
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

/// Why a transaction failed, as the operations in it report it (`Error::Storage` of this).
fn reason(e: &Error) -> String {
    match e {
        Error::Storage { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
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
            generation: -1,
            exchanges: HashMap::default(),
            queues: HashMap::default(),
            peers: None,
            connections: HashSet::default(),
            channels: HashMap::default(),
            next_channel: 0,
            subscribers: HashMap::default(),
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

    /// Runs waiting operations in one transaction, hands out messages, commits, answers.
    pub(super) fn batch(&mut self, works: &mut Vec<Work>, wake: bool) {
        let mut replies: Vec<Reply> = Vec::with_capacity(works.len());
        let failure = match self.begin() {
            Err(e) => Some(reason(&e)),
            Ok(()) => {
                if wake {
                    self.dirty.extend(self.subscribers.keys().cloned());
                }
                let mut failure = self.housekeeping().err().map(|e| reason(&e));
                if failure.is_none() {
                    // No savepoint per operation (SQLite copies every page a savepoint
                    // touches): an operation checks everything before its first write, so a
                    // failed one has changed nothing. If one ever did, the whole transaction
                    // is rolled back rather than kept half-done.
                    for work in works.drain(..) {
                        let before = self.db.total_changes();
                        let (ok, reply) = work(Some(self));
                        if !ok {
                            self.forget_cached();
                            if self.db.total_changes() != before {
                                failure = Some(
                                    "an operation failed after writing; its transaction was rolled back"
                                        .into(),
                                );
                            }
                        }
                        replies.push(reply);
                    }
                    if let Err(e) = self.flush_acks().and_then(|()| self.dispatch_dirty()) {
                        failure = Some(reason(&e));
                    }
                }
                match failure {
                    None => self.exec("COMMIT", []).err().map(|e| reason(&e)),
                    some => some,
                }
            }
        };
        self.acked.clear();
        if let Some(reason) = &failure {
            tracing::error!(path = %self.path.display(), reason, "sqlite: a transaction failed; its operations report the error");
            let _ = self.db.execute_batch("ROLLBACK");
            self.forget_cached();
            self.undo_outbox();
            for reply in replies {
                reply(Some(reason));
            }
            // Work not run (the transaction could not start) still gets an answer.
            for work in works.drain(..) {
                let (_, reply) = work(None);
                reply(Some(reason));
            }
            return;
        }
        for (tx, delivery) in self.outbox.drain(..) {
            let _ = tx.send(Ok(delivery));
        }
        self.commits += 1;
        if self.commits >= CHECKPOINT_EVERY {
            self.commits = 0;
            if self.checkpointer.is_none() {
                self.checkpointer = Checkpointer::start(&self.path)
                    .map_err(|e| tracing::warn!(error = %e, "sqlite: no checkpoint thread; the log grows until the last process leaves"))
                    .ok();
            }
            if let Some(c) = &self.checkpointer {
                c.request();
            }
        }
        if std::mem::take(&mut self.wake_peers) {
            if let Ok(peers) = self.peers() {
                wakeup::notify(&peers);
            }
        }
        for reply in replies {
            reply(None);
        }
    }

    fn begin(&mut self) -> Result<()> {
        self.exec("BEGIN IMMEDIATE", [])?;
        let generation: i64 = self
            .one("SELECT value FROM meta WHERE key = 'generation'", [])?
            .unwrap_or(0);
        if generation != self.generation {
            self.forget_cached();
            self.generation = generation;
        }
        Ok(())
    }

    /// Periodic work, inside the transaction: dead processes, expiries.
    fn housekeeping(&mut self) -> Result<()> {
        let now = Instant::now();
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            self.bury_dead_processes()?;
            self.next_expiry = Some(now_ms());
            // In case a wake-up datagram was lost: look for work once a second anyway.
            self.dirty.extend(self.subscribers.keys().cloned());
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
    fn peers(&mut self) -> Result<Vec<String>> {
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
        let row: Option<(String, bool, bool, String)> = self.row_of(
            "SELECT kind, durable, auto_delete, arguments FROM exchanges WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let entry = match row {
            None => None,
            Some((kind, durable, auto_delete, arguments)) => {
                let kind = kind.parse().map_err(|_| {
                    Error::storage(format!(
                        "exchange '{name}' has an unknown type {kind:?} in the database"
                    ))
                })?;
                let mut spec = ExchangeSpec::new(name, kind)
                    .durable(durable)
                    .auto_delete(auto_delete);
                spec.arguments = super::codec::decode_table(&arguments)?;
                let mut bindings = Bindings::new(kind);
                let rows: Vec<(String, String, String)> = self.rows_of(
                    "SELECT queue, key, arguments FROM bindings WHERE exchange = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                for (queue, key, arguments) in rows {
                    let arguments = super::codec::decode_table(&arguments)?;
                    bindings.bind(&Arc::from(queue.as_str()), &key, &arguments);
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

    /// The connection a channel belongs to, if the channel is open.
    pub(super) fn connection_of(&self, channel: u64) -> Result<i64> {
        self.channels
            .get(&channel)
            .map(|c| c.connection)
            .ok_or_else(|| {
                Error::channel_closed("the channel was closed (by close(), or by a broker restart)")
            })
    }
}
