//! Opening a broker file: checks that it is one (or empty), sets the durability level, creates
//! the tables.
//!
//! Durability: WAL journal with `synchronous = NORMAL`. A transaction is in the WAL file (in
//! the operating system's cache) when its commit returns, so a process killed at any moment
//! (SIGKILL included) loses nothing that a `send` or `ack` returned for: the next process to
//! open the file replays the WAL. Only a power failure or kernel crash can lose the last
//! commits (never corrupting the file); `synchronous = FULL` would close that gap at the price
//! of an fsync per commit (about 20 times fewer messages per second on a common SSD), which is
//! what RabbitMQ itself does not do per message either.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of a carrot broker file ("Crrt").
const APPLICATION_ID: i64 = 0x4372_7274;
/// The layout version this code reads and writes: the first layout ([`TABLES`]) and each
/// migration after it. A file of an older version is migrated when it is opened, in the same
/// transaction as the check (its messages kept); a newer one is refused, never touched.
const VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// From each version to the next: `MIGRATIONS[0]` takes version 1 to 2, and so on.
const MIGRATIONS: &[&str] = &[
    // 2: internal exchanges and exchange-to-exchange bindings.
    "
ALTER TABLE exchanges ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
CREATE TABLE exchange_bindings(
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    arguments TEXT NOT NULL,
    PRIMARY KEY (source, destination, key, arguments)
) WITHOUT ROWID;
CREATE INDEX exchange_bindings_by_destination ON exchange_bindings(destination);
",
    // 3: `carrot serve`'s virtual hosts, users (salted hashes) and permissions; tags are JSON
    // arrays. The entities of vhosts other than `/` live in files of their own.
    "
CREATE TABLE access_vhosts(
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    tags TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_users(
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    hashing_algorithm TEXT NOT NULL,
    tags TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_permissions(
    user TEXT NOT NULL,
    vhost TEXT NOT NULL,
    configure TEXT NOT NULL,
    write TEXT NOT NULL,
    read TEXT NOT NULL,
    PRIMARY KEY (user, vhost)
) WITHOUT ROWID;
",
];

// `messages` has one index besides its rowid: every index costs a b-tree update per write,
// and a message is written three times (stored, delivered, acknowledged). Deliveries of a
// connection are found queue by queue through `messages_ready`; messages with a TTL are also
// listed in `expiring`, so that messages without one pay nothing for expiry. No partial indexes:
// matching a statement's `?` parameters against a partial index's condition makes SQLite
// re-plan that statement at every execution.
const TABLES: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('generation', 0);
CREATE TABLE processes(
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    started INTEGER NOT NULL,
    boot TEXT NOT NULL,
    wakeup TEXT
);
CREATE TABLE connections(id INTEGER PRIMARY KEY, process INTEGER NOT NULL);
CREATE TABLE exchanges(
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    durable INTEGER NOT NULL,
    auto_delete INTEGER NOT NULL,
    arguments TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE queues(
    name TEXT PRIMARY KEY,
    durable INTEGER NOT NULL,
    exclusive INTEGER NOT NULL,
    auto_delete INTEGER NOT NULL,
    arguments TEXT NOT NULL,
    owner INTEGER,
    had_consumer INTEGER NOT NULL DEFAULT 0,
    last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE bindings(
    exchange TEXT NOT NULL,
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    arguments TEXT NOT NULL,
    PRIMARY KEY (exchange, queue, key, arguments)
) WITHOUT ROWID;
CREATE INDEX bindings_by_queue ON bindings(queue);
CREATE TABLE consumers(
    connection INTEGER NOT NULL,
    channel INTEGER NOT NULL,
    tag TEXT NOT NULL,
    queue TEXT NOT NULL,
    exclusive INTEGER NOT NULL,
    PRIMARY KEY (connection, channel, tag)
) WITHOUT ROWID;
CREATE INDEX consumers_by_queue ON consumers(queue);
CREATE TABLE messages(
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    rank INTEGER NOT NULL,
    owner INTEGER,
    redelivered INTEGER NOT NULL,
    persistent INTEGER NOT NULL,
    expires_at INTEGER,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    content_type TEXT,
    content_encoding TEXT,
    delivery_mode INTEGER,
    priority INTEGER,
    extra TEXT,
    body BLOB NOT NULL
);
CREATE INDEX messages_ready ON messages(queue, owner, rank DESC, id);
CREATE TABLE expiring(
    expires_at INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (expires_at, id)
) WITHOUT ROWID;
";

/// A storage error about the file at `path`, with what to do about it; the SQLite error is
/// kept as its source.
pub(super) fn storage_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    let shown = path.display();
    let hint = match e.sqlite_error_code() {
        Some(NotADatabase) => format!("{shown} is not a SQLite database: point sqlite:// at a carrot broker file or a new path"),
        Some(DatabaseCorrupt) => format!("{shown} is corrupt: restore it from a backup, or move it away to start an empty broker"),
        Some(ReadOnly) => format!("{shown} is read-only: the broker must write to it (check its permissions and those of its folder, which holds the -wal and -shm files)"),
        Some(CannotOpen) | Some(PermissionDenied) => format!("cannot open {shown}: check that its folder exists and is writable"),
        Some(DatabaseBusy) | Some(DatabaseLocked) => format!("{shown} stayed locked by another program for too long: is something other than carrot holding a transaction open?"),
        Some(DiskFull) => format!("the disk of {shown} is full"),
        _ => format!("{shown}"),
    };
    Error::storage_caused(format!("{hint} ({e})"), e)
}

/// Opens (creating if needed) a broker file.
pub(super) fn open(path: &Path) -> Result<Connection> {
    let fail = |e: rusqlite::Error| storage_error(path, e);
    if path.is_dir() {
        return Err(Error::storage(format!(
            "{} is a folder: sqlite:// needs the path of a file",
            path.display()
        )));
    }
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    // Other processes hold the write lock for one short batch at a time.
    db.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(fail)?;
    // 4 KiB pages for new files, whatever the SQLite build's default (page_size only applies
    // before the first table: existing files keep theirs).
    db.execute_batch("PRAGMA page_size = 4096").map_err(fail)?;
    let mode: String = db
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::storage(format!(
            "{} cannot use a write-ahead log (journal mode stayed {mode:?}): sqlite:// needs a local file system",
            path.display()
        )));
    }
    // Checkpoints (copying the log into the file, with an fsync) mostly run on a thread of
    // their own (see `Checkpointer`), not in the middle of a commit. But the log only starts
    // over when a checkpoint has caught up with the last commit, which a background one never
    // does while commits keep coming: so past 4,000 pages the engine's own commit finishes the
    // job (little is left to copy by then) and the log restarts instead of growing without
    // bound. A 32 MiB page cache and reads through mmap spare most read system calls.
    db.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 4000; PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;",
    )
    .map_err(fail)?;
    db.set_prepared_statement_cache_capacity(64);
    check_or_create(&db, path).map_err(|e| match e {
        Error::Storage { .. } => e,
        other => other,
    })?;
    Ok(db)
}

/// Takes a file of layout `version` to [`VERSION`] (inside the caller's transaction).
fn migrate(db: &Connection, version: i64) -> rusqlite::Result<()> {
    for (from, migration) in (1..).zip(MIGRATIONS) {
        if from >= version {
            db.execute_batch(migration)?;
        }
    }
    db.execute_batch(&format!("PRAGMA user_version = {VERSION};"))
}

/// Accepts an empty file (creating the tables), a carrot broker of this version, or one of an
/// older version (migrating it).
fn check_or_create(db: &Connection, path: &Path) -> Result<()> {
    let fail = |e: rusqlite::Error| storage_error(path, e);
    db.execute_batch("BEGIN IMMEDIATE").map_err(fail)?;
    let result = (|| {
        let app: i64 = db
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(fail)?;
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        let tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(fail)?;
        match (app, tables) {
            (0, 0) => {
                db.execute_batch(TABLES).map_err(fail)?;
                migrate(db, 1).map_err(fail)?;
                db.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
                    .map_err(fail)?;
                Ok(())
            }
            (APPLICATION_ID, _) if version == VERSION => Ok(()),
            (APPLICATION_ID, _) if (1..VERSION).contains(&version) => {
                tracing::info!(path = %path.display(), from = version, to = VERSION, "sqlite: migrating the broker file");
                migrate(db, version).map_err(fail)
            }
            (APPLICATION_ID, _) => Err(Error::storage(format!(
                "{} holds a carrot broker of layout version {version}; this carrot reads version {VERSION}: use the matching carrot version",
                path.display()
            ))),
            _ => Err(Error::storage(format!(
                "{} is a SQLite database of another application (application_id {app:#x}, {tables} schema objects): carrot will not write into it; use a new path",
                path.display()
            ))),
        }
    })();
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    db.execute_batch(end).map_err(fail)?;
    result
}

/// Copies the write-ahead log back into the file, on its own thread and SQLite connection, when
/// the engine says enough was committed; the engine never waits for it (checkpoints in WAL
/// mode do not block writers).
#[derive(Debug)]
pub(super) struct Checkpointer {
    due: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| storage_error(path, e))?;
        db.busy_timeout(std::time::Duration::from_millis(100))
            .map_err(|e| storage_error(path, e))?;
        let (due, requests) = std::sync::mpsc::sync_channel::<()>(1);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("carrot-sqlite-checkpoint".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    if let Err(e) = db.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::debug!(path = %shown, error = %e, "sqlite: checkpoint skipped");
                    }
                }
            })?;
        Ok(Checkpointer {
            due: Some(due),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint (one pending request is enough).
    pub(super) fn request(&self) {
        if let Some(due) = &self.due {
            let _ = due.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Waits for a checkpoint in progress, so that the last one (truncating the log) can run.
    fn drop(&mut self) {
        drop(self.due.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
