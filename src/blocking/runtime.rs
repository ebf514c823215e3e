//! The runtime of a blocking connection: how a blocking call waits on any thread, and how the
//! runtime ends when the last handle on it is dropped, wherever that happens.
//!
//! A blocking call runs its async twin on the calling thread:
//! - on a thread of no runtime (the usual case), with the runtime's `block_on`;
//! - on a thread of a multi-thread tokio runtime (an async task, `spawn_blocking`, the main
//!   thread of `#[tokio::main]`), inside `block_in_place`, so that the other tasks of that
//!   runtime move to another worker while the call waits;
//! - on a thread of a current-thread runtime, polled on that thread in this runtime's
//!   context (the carrot worker thread drives its timers and sockets): that runtime's other
//!   tasks wait for the call, as they would for any blocking call, but nothing panics.
//!
//! When the last handle goes, the runtime first lets the closes that the drops started
//! (channels, the connection: see `Closings`) reach the broker and be answered, at most
//! [`CLOSE_GRACE`], then stops. In an async context, where a runtime can be neither waited
//! for nor dropped, a short-lived thread does that instead.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::backend::Closings;
use crate::error::Result;

/// How long the last drop of a blocking connection waits for the closes its drops started
/// (a `channel.close` and a `connection.close` answered by the broker: a round trip each).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A runtime shared by a blocking connection and everything built on it.
#[derive(Debug, Clone)]
pub(crate) struct Rt {
    handle: Handle,
    owned: Arc<Owned>,
}

/// The runtime itself, stopped when the last [`Rt`] goes, and the closes to let finish first.
#[derive(Debug)]
struct Owned {
    runtime: Option<Runtime>,
    closings: OnceLock<Closings>,
}

impl Rt {
    /// One worker thread: carrot's background work (heartbeats, recovering a lost connection,
    /// resuming consumers) goes on between the application's calls.
    pub(super) fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("carrot-blocking")
            .enable_all()
            .build()?;
        Ok(Rt {
            handle: runtime.handle().clone(),
            owned: Arc::new(Owned {
                runtime: Some(runtime),
                closings: OnceLock::new(),
            }),
        })
    }

    /// Connects on a new runtime: the connection and the runtime it runs on.
    pub(super) fn connect<F>(connect: F) -> Result<(crate::BrokerConnection, Rt)>
    where
        F: Future<Output = Result<crate::BrokerConnection>>,
    {
        let rt = Rt::new()?;
        let connection = rt.block_on(connect)?;
        let _ = rt.owned.closings.set(connection.closings());
        Ok((connection, rt))
    }

    /// Runs `future` to completion on the calling thread, whatever thread it is (see the
    /// module documentation).
    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Err(_) => self.handle.block_on(future),
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.handle.block_on(future))
            }
            Ok(_) => {
                let _context = self.handle.enter();
                futures_lite::future::block_on(future)
            }
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let mut stopping = Stopping {
            runtime: Some(runtime),
            closings: self.closings.take(),
        };
        if Handle::try_current().is_err() {
            stopping.settle();
            return;
        }
        // In an async context a runtime can neither be waited for nor dropped (tokio panics):
        // a thread of its own settles it. Should no thread start, `Stopping` stops the runtime
        // without waiting.
        let spawned = std::thread::Builder::new()
            .name("carrot-blocking-close".into())
            .spawn(move || stopping.settle());
        if let Err(error) = spawned {
            tracing::debug!(%error, "no thread to close a blocking connection cleanly");
        }
    }
}

/// A runtime being stopped; dropped unsettled (no thread could take it), it stops without
/// waiting for anything.
struct Stopping {
    runtime: Option<Runtime>,
    closings: Option<Closings>,
}

impl Stopping {
    /// Lets the closes under way finish, at most [`CLOSE_GRACE`], then stops the runtime (its
    /// other tasks, such as heartbeat timers of closed connections, are dropped).
    fn settle(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if let Some(closings) = self.closings.take() {
            let settled = runtime
                .block_on(async { tokio::time::timeout(CLOSE_GRACE, closings.idle()).await });
            if settled.is_err() {
                tracing::debug!(
                    "closes of a blocking connection still unanswered after {CLOSE_GRACE:?}"
                );
            }
        }
        runtime.shutdown_timeout(CLOSE_GRACE);
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
