//! The transaction around a batch of operations: they run in one write transaction, messages
//! are handed to local consumers in it, it commits once, and only then are the callers answered
//! and the deliveries sent (see `engine.rs` for who submits the batches).

use super::broker::Broker;
use super::outcome::{Failure, Reply};
use super::schema::Checkpointer;
use super::wakeup;
use crate::error::Result;

/// An operation: runs on the broker, says whether it succeeded, and gives its reply. Given no
/// broker (the transaction could not start), it does not run and its reply reports the failure.
pub(super) type Work = Box<dyn FnOnce(Option<&mut Broker>) -> (bool, Reply) + Send>;

/// Commits between two checkpoint requests (a commit writes a few pages to the log).
const CHECKPOINT_EVERY: u32 = 200;

impl Broker {
    /// Runs waiting operations in one transaction, hands out messages, commits, answers.
    pub(super) fn batch(&mut self, works: &mut Vec<Work>, wake: bool) {
        let mut replies: Vec<Reply> = Vec::with_capacity(works.len());
        let failure = match self.begin() {
            Err(e) => Some(Failure::of(&e)),
            Ok(()) => {
                if wake {
                    self.dirty.extend(self.layer.consumed_queues());
                }
                let mut failure = self.housekeeping().err().map(|e| Failure::of(&e));
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
                                failure = Some(Failure::new(
                                    "an operation failed after writing; its transaction was rolled back",
                                ));
                            }
                        }
                        replies.push(reply);
                    }
                    if let Err(e) = self.flush_acks().and_then(|()| self.dispatch_dirty()) {
                        failure = Some(Failure::of(&e));
                    }
                }
                match failure {
                    None => {
                        let committed = self.exec("COMMIT", []);
                        self.committed += u64::from(committed.is_ok());
                        committed.err().map(|e| Failure::of(&e))
                    }
                    some => some,
                }
            }
        };
        self.acked.clear();
        if let Some(failure) = &failure {
            tracing::error!(path = %self.path.display(), reason = %failure.reason, "sqlite: a transaction failed; its operations report the error");
            let _ = self.db.execute_batch("ROLLBACK");
            self.forget_cached();
            self.undo_outbox();
            for reply in replies {
                reply(Some(failure));
            }
            // Work not run (the transaction could not start) still gets an answer.
            for work in works.drain(..) {
                let (_, reply) = work(None);
                reply(Some(failure));
            }
            return;
        }
        for (_, feed, delivery) in self.outbox.drain(..) {
            feed.send_reserved(delivery);
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
}
