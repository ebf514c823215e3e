//! A process joining and leaving a broker file, and what happens to the processes that died.
//!
//! The broker "restarts" when its last process closes the file, or, after a crash, when the
//! next process opens it: transient exchanges, queues and messages go, deliveries not settled
//! are ready again (marked redelivered). A process that dies while others still use the file
//! is found by the others within a second (see `liveness.rs`): its deliveries go back to their
//! queues, marked redelivered, its consumers and exclusive queues go.

use rusqlite::params;

use super::broker::Broker;
use super::liveness::Identity;
use crate::error::Result;

impl Broker {
    /// Registers this process; starts the broker if no other process is using the file.
    pub(super) fn join(&mut self) -> Result<()> {
        self.exec("BEGIN IMMEDIATE", [])?;
        let result = (|| {
            let others = self.bury_dead_processes()?;
            if others == 0 {
                self.reset_transient()?;
            }
            self.predeclare()?;
            self.exec(
                "INSERT INTO processes (pid, started, boot, wakeup) VALUES (?1, ?2, ?3, ?4)",
                params![
                    self.me.pid,
                    self.me.started,
                    self.me.boot,
                    self.wakeup.as_ref().map(|w| w.name().to_string())
                ],
            )?;
            self.process = self.db.last_insert_rowid();
            self.bump()
        })();
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.exec(end, [])?;
        result
    }

    /// Releases what dead processes held; returns how many other processes are alive.
    pub(super) fn bury_dead_processes(&mut self) -> Result<usize> {
        let rows: Vec<(i64, i64, i64, String)> = self.rows_of(
            "SELECT id, pid, started, boot FROM processes WHERE id != ?1",
            [self.process],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let mut alive = 0;
        for (id, pid, started, boot) in rows {
            let other = Identity { pid, started, boot };
            if self.me.sees_alive(&other) {
                alive += 1;
                continue;
            }
            tracing::info!(path = %self.path.display(), pid, "sqlite: a process using the broker died; releasing what it held");
            let connections: Vec<i64> =
                self.column("SELECT id FROM connections WHERE process = ?1", [id])?;
            for connection in connections {
                self.release_connection(connection)?;
            }
            self.exec("DELETE FROM processes WHERE id = ?1", [id])?;
            self.bump()?;
        }
        Ok(alive)
    }

    /// What a broker restart leaves: durable exchanges and queues, persistent messages, every
    /// delivery ready again.
    pub(super) fn reset_transient(&mut self) -> Result<()> {
        self.flush_acks()?;
        self.exec(
            "INSERT OR IGNORE INTO expiring SELECT expires_at, id FROM messages
             WHERE owner IS NOT NULL AND expires_at IS NOT NULL",
            [],
        )?;
        self.exec(
            "UPDATE messages SET owner = NULL, redelivered = 1 WHERE owner IS NOT NULL",
            [],
        )?;
        self.exec(
            "DELETE FROM expiring WHERE id NOT IN (SELECT id FROM messages)",
            [],
        )?;
        self.exec("DELETE FROM consumers", [])?;
        self.exec(
            "DELETE FROM connections WHERE process NOT IN (SELECT id FROM processes)",
            [],
        )?;
        let transient: Vec<String> =
            self.column("SELECT name FROM queues WHERE NOT durable", [])?;
        for queue in transient {
            self.remove_queue(&queue)?;
        }
        self.exec("DELETE FROM exchanges WHERE NOT durable", [])?;
        self.exec(
            "DELETE FROM bindings WHERE exchange NOT IN (SELECT name FROM exchanges)",
            [],
        )?;
        self.exec("DELETE FROM messages WHERE NOT persistent", [])?;
        self.exec("UPDATE queues SET had_consumer = 0", [])?;
        self.bump()
    }

    /// Closes every connection of this process; if no other process uses the file, does what
    /// a broker restart does. Connections must be reopened.
    pub(super) fn restart(&mut self) -> Result<()> {
        let connections: Vec<i64> = self.layer.connections();
        for connection in connections {
            self.close_connection(connection)?;
        }
        if self.bury_dead_processes()? == 0 {
            self.reset_transient()?;
        }
        Ok(())
    }

    /// The last connection of this process to the file is gone: leave, and stop the broker if
    /// no other process uses it.
    pub(super) fn shut_down(&mut self) {
        let result = (|| {
            self.exec("BEGIN IMMEDIATE", [])?;
            let connections: Vec<i64> = self.layer.connections();
            for connection in connections {
                self.close_connection(connection)?;
            }
            self.exec("DELETE FROM processes WHERE id = ?1", [self.process])?;
            if self.bury_dead_processes()? == 0 {
                self.reset_transient()?;
            }
            self.bump()?;
            self.exec("COMMIT", [])?;
            // Fold the write-ahead log back into the file (and empty it) once the background
            // checkpoint is done.
            self.checkpointer = None;
            let _ = self.db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
            Ok::<(), crate::Error>(())
        })();
        if let Err(e) = result {
            let _ = self.db.execute_batch("ROLLBACK");
            tracing::warn!(path = %self.path.display(), error = %e, "sqlite: leaving the broker file failed; the next process to open it cleans up");
        }
        for (_, _, delivery) in std::mem::take(&mut self.outbox) {
            drop(delivery);
        }
        if let Some(wakeup) = &self.wakeup {
            wakeup.stop();
        }
    }
}
