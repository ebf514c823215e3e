//! The runtime of the blocking API: how a blocking call waits on any thread, and how a
//! connection's last drop lets its closes reach the broker.
//!
//! Every blocking connection runs its background work (heartbeats, recovery, moving
//! deliveries, the closes that drops start) on one tokio runtime shared by the process, with
//! one worker thread, started with the first blocking connection and never stopped: a
//! runtime stopped under a connection would cancel lapin's own tasks (its io thread then
//! panics while it waits for one, during a reconnection), and one runtime per connection
//! would cost a thread per connection.
//!
//! A blocking call runs its async twin on the calling thread:
//! - on a thread of no runtime (the usual case), with the runtime's `block_on`;
//! - on a thread of a multi-thread tokio runtime (an async task, `spawn_blocking`, the main
//!   thread of `#[tokio::main]`), inside `block_in_place`, so that the other tasks of that
//!   runtime move to another worker while the call waits;
//! - on a thread of a current-thread runtime, polled on that thread in the shared runtime's
//!   context (its worker thread drives the timers and sockets): that runtime's other tasks
//!   wait for the call, as they would for any blocking call, but nothing panics.
//!
//! When the last handle of a connection goes, the closes its drops started (channels, the
//! connection: see `Closings`) are waited for, at most [`CLOSE_GRACE`], so that a program
//! that drops its connection and exits has closed it cleanly. In an async context, where
//! waiting would block a runtime, they finish in the background.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::backend::Closings;
use crate::error::Result;

/// How long the last drop of a blocking connection waits for the closes its drops started
/// (a `channel.close` and a `connection.close` answered by the broker: a round trip each).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The runtime shared by every blocking connection of the process.
fn shared() -> Result<Handle> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("carrot-blocking")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| runtime).handle().clone())
}

/// The shared runtime, as one blocking connection and everything built on it hold it.
#[derive(Debug, Clone)]
pub(crate) struct Rt {
    handle: Handle,
    connection: Arc<Held>,
}

/// What the last handle of a connection waits for when it goes.
#[derive(Debug)]
struct Held {
    handle: Handle,
    closings: OnceLock<Closings>,
}

impl Rt {
    /// Connects on the shared runtime: the connection and the runtime it runs on.
    pub(super) fn connect<F>(connect: F) -> Result<(crate::BrokerConnection, Rt)>
    where
        F: Future<Output = Result<crate::BrokerConnection>>,
    {
        let handle = shared()?;
        let rt = Rt {
            connection: Arc::new(Held {
                handle: handle.clone(),
                closings: OnceLock::new(),
            }),
            handle,
        };
        let connection = rt.block_on(connect)?;
        let _ = rt.connection.closings.set(connection.closings());
        Ok((connection, rt))
    }

    /// The shared runtime, for what holds no connection of its own (a pool).
    pub(super) fn shared() -> Result<Rt> {
        let handle = shared()?;
        Ok(Rt {
            connection: Arc::new(Held {
                handle: handle.clone(),
                closings: OnceLock::new(),
            }),
            handle,
        })
    }

    /// The runtime of a connection opened on the shared runtime by async code of carrot's
    /// (a pool's): a blocking handle of its own, that waits for its closes as `connect`'s.
    pub(super) fn adopt(connection: &crate::BrokerConnection) -> Result<Rt> {
        let handle = shared()?;
        let closings = OnceLock::new();
        let _ = closings.set(connection.closings());
        Ok(Rt {
            connection: Arc::new(Held {
                handle: handle.clone(),
                closings,
            }),
            handle,
        })
    }

    /// Runs `future` to completion on the calling thread, whatever thread it is (see the
    /// module documentation).
    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        block_on(&self.handle, future)
    }
}

fn block_on<F: Future>(handle: &Handle, future: F) -> F::Output {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => handle.block_on(future),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| handle.block_on(future)),
        Ok(_) => {
            let _context = handle.enter();
            // Outside tokio's cooperative budget: the calling thread is inside a task of the
            // current-thread runtime, whose budget this call would otherwise spend, and once
            // it is spent tokio defers every wake to that runtime's next turn, which never
            // comes while the call waits (the call then waited for ever).
            futures_lite::future::block_on(tokio::task::unconstrained(future))
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(closings) = self.closings.take() else {
            return;
        };
        if Handle::try_current().is_ok() {
            return; // an async context: the closes finish in the background
        }
        let settled = block_on(&self.handle, async {
            tokio::time::timeout(CLOSE_GRACE, closings.idle()).await
        });
        if settled.is_err() {
            tracing::debug!(
                "closes of a blocking connection still unanswered after {CLOSE_GRACE:?}"
            );
        }
    }
}
