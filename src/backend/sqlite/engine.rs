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
use crate::error::{Error, Result};

/// What a finished operation does once the transaction is over: `None` if it committed, the
/// reason otherwise.
pub(super) type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// An operation: runs on the broker, says whether it succeeded, and gives its reply. Given no broker (the transaction could not start), it does not
/// run and its reply reports the failure.
pub(super) type Work = Box<dyn FnOnce(Option<&mut Broker>) -> (bool, Reply) + Send>;

pub(super) enum Job {
    Work(Work),
    /// Another process made messages ready.
    Wake,
    /// The last handle is gone.
    Shutdown,
}

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
                    let reason = failed.unwrap_or("the transaction could not start");
                    reply(Err(Error::storage(reason)))
                });
                return (false, reply);
            };
            let result = op(broker);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |failed| {
                reply(match failed {
                    None => result,
                    Some(reason) => Err(Error::storage(reason)),
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(op, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| stopped())?
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
        match rx.recv_timeout(timeout) {
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
