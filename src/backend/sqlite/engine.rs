//! One thread per process and broker file owns the SQLite connection and runs every operation.
//!
//! Callers hand it closures; it runs all that are waiting in one write transaction (an
//! operation checks everything before it writes, so one that fails leaves the others intact),
//! hands messages to local consumers in the same transaction, commits once, and only then
//! answers the callers and delivers. Callers that overlap therefore share one commit: that is what makes
//! persistent messaging fast without weakening "a `send` that returned is stored".

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::broker::Broker;
use super::outcome::{Failure, Reply};
use super::transaction::Work;
use crate::error::{Error, Result};

pub(super) enum Job {
    Work(Work),
    /// Another process made messages ready.
    Wake,
    /// The last handle is gone.
    Shutdown,
}

/// How long the engine thread polls for the next operation before it sleeps: the callers
/// answered by the last commit usually send their next within tens of microseconds, and
/// sleeping and being woken costs about as much. (Callers do not poll for their answer in
/// turn: with many of them, that polling took the cores the engine needs.)
const QUICK_COMMIT: std::time::Duration = std::time::Duration::from_micros(100);

/// At most this many operations share one transaction, so that none waits too long.
const BATCH: usize = 512;

/// The handle callers hold; the thread ends when the last handle goes.
#[derive(Debug)]
pub(super) struct Engine {
    jobs: mpsc::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn stopped() -> Error {
    Error::connection_closed("the sqlite broker of this file has stopped")
}

impl Engine {
    /// Starts the thread for a broker already opened and registered.
    pub(super) fn start(broker: Broker) -> Result<Arc<Engine>> {
        let (jobs, rx) = mpsc::channel();
        if let Some(wakeup) = &broker.wakeup {
            let jobs = jobs.clone();
            wakeup.listen(move || {
                let _ = jobs.send(Job::Wake);
            })?;
        }
        let thread = std::thread::Builder::new()
            .name("carrot-sqlite".into())
            .spawn(move || run(broker, rx))?;
        Ok(Arc::new(Engine {
            jobs,
            thread: Mutex::new(Some(thread)),
        }))
    }

    fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Broker) -> Result<T> + Send + 'static,
        reply: impl FnOnce(Result<T>) + Send + 'static,
    ) -> Result<()> {
        let work: Work = Box::new(move |broker| {
            let Some(broker) = broker else {
                let reply: Reply = Box::new(move |failed| {
                    reply(Err(failed.map_or_else(
                        || Error::storage("the transaction could not start"),
                        Failure::error,
                    )))
                });
                return (false, reply);
            };
            let result = op(broker);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |failed| {
                reply(match failed {
                    None => result,
                    Some(failure) => Err(failure.error()),
                })
            });
            (ok, reply)
        });
        self.jobs.send(Job::Work(work)).map_err(|_| stopped())
    }

    /// Runs an operation and waits for its commit.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Broker) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.begin_call(op)?.await
    }

    /// Hands an operation to the engine now (operations run in the order they are handed
    /// over) and returns what resolves with its outcome once its transaction has committed:
    /// the caller may hand over more meanwhile, and they share commits.
    pub(super) fn begin_call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Broker) -> Result<T> + Send + 'static,
    ) -> Result<impl std::future::Future<Output = Result<T>> + Send + 'static> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(op, move |r| {
            let _ = tx.send(r);
        })?;
        Ok(async move { rx.await.map_err(|_| stopped())? })
    }

    /// Runs an operation and blocks the calling thread until its commit (for the synchronous
    /// `ack` and `reject`: an acknowledgement that returned is stored).
    pub(super) fn call_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Broker) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(op, move |r| {
            let _ = tx.send(r);
        })?;
        // On a multi-threaded tokio runtime, let its other tasks move to another worker while
        // this one waits for the commit (otherwise a few consumers acknowledging at once would
        // stall every task of the runtime).
        let wait = || rx.recv().map_err(|_| stopped());
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait)?,
            _ => wait()?,
        }
    }

    /// Runs an operation without waiting (for `Drop`).
    pub(super) fn detach(&self, op: impl FnOnce(&mut Broker) -> Result<()> + Send + 'static) {
        let _ = self.submit(op, |r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "sqlite: background operation failed");
            }
        });
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The thread shuts the broker down (see `Broker::shut_down`) and exits; wait for it,
        // so that a process that closes its last connection and exits has released the file
        // cleanly.
        let _ = self.jobs.send(Job::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn run(mut broker: Broker, rx: mpsc::Receiver<Job>) {
    let mut works = Vec::with_capacity(BATCH);
    loop {
        let timeout = broker
            .next_timer()
            .saturating_duration_since(Instant::now());
        let mut wake = false;
        let mut stop = false;
        let mut take = |job: Job, works: &mut Vec<Work>| match job {
            Job::Work(w) => works.push(w),
            Job::Wake => wake = true,
            Job::Shutdown => stop = true,
        };
        let first = match poll_briefly(&rx) {
            Some(job) => Ok(job),
            None => rx.recv_timeout(timeout),
        };
        match first {
            Ok(job) => take(job, &mut works),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => take(Job::Shutdown, &mut works),
        }
        // Group commit: whatever arrived while the last transaction ran shares this one.
        // (Waiting for the callers of the last commit to come back was measured: it idles this
        // thread more than it saves.)
        while works.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => take(job, &mut works),
                Err(_) => break,
            }
        }
        broker.batch(&mut works, wake);
        if stop {
            break;
        }
    }
    broker.shut_down();
}

/// Waits up to [`QUICK_COMMIT`] for a job without sleeping.
fn poll_briefly(rx: &mpsc::Receiver<Job>) -> Option<Job> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if start.elapsed() >= QUICK_COMMIT => return None,
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}
