//! How the async suite runs scenarios and waits: the runner and macros, bounded waits for
//! deliveries and spawned tasks. The blocking twin (`tests/blocking_conformance/support.rs`)
//! has the same functions, blocking.
//!
//! Scenarios assume what every backend must give: a `send` returns once the broker has routed
//! the message (RabbitMQ: publisher confirms), so a `fetch` or `queue_info` right after it sees
//! the message. Deliveries to consumers are asynchronous: wait for them with [`next`] (at most
//! [`ARRIVES`]) and check their absence with [`assert_quiet`] (for [`QUIET`]).

use std::future::Future;
use std::time::Duration;

use crate::backends::{backends, run_id};
pub use crate::scenario::*;
use carrot::{BrokerConnection, Consumer, Message};

/// Scenarios share the brokers; one that restarts a broker must run alone (a restart closes
/// every connection to it), so it holds this lock for writing and the others for reading.
static BROKER_IN_USE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Runs a scenario on every configured backend, each with its own scope.
pub async fn run_all<F, Fut>(test: &str, scenario: F)
where
    F: Fn(Scenario) -> Fut,
    Fut: Future<Output = TestResult>,
{
    let _shared = BROKER_IN_USE.read().await;
    run_each(test, scenario).await;
}

/// Runs a scenario that restarts brokers, while no other scenario runs.
pub async fn run_all_exclusive<F, Fut>(test: &str, scenario: F)
where
    F: Fn(Scenario) -> Fut,
    Fut: Future<Output = TestResult>,
{
    let _alone = BROKER_IN_USE.write().await;
    run_each(test, scenario).await;
}

async fn run_each<F, Fut>(test: &str, scenario: F)
where
    F: Fn(Scenario) -> Fut,
    Fut: Future<Output = TestResult>,
{
    for backend in backends() {
        let scope = format!("ct-{test}-{}-{}", backend.name, run_id());
        let Some(url) = (backend.url)(&scope) else {
            eprintln!("skipped on {}: not configured", backend.name);
            continue;
        };
        eprintln!("{test} on {} ({url})", backend.name);
        let name = backend.name;
        let t = Scenario::new(backend, scope, url);
        let result = scenario(t.clone()).await;
        t.clean_up().await;
        if let Err(error) = result {
            panic!("{test} on {name}: {error} ({error:?})");
        }
    }
}

/// A scenario, run on every backend: `conformance!(name, |t| async move { ...; Ok(()) });`
macro_rules! conformance {
    ($name:ident, $scenario:expr) => {
        #[tokio::test]
        async fn $name() {
            $crate::support::run_all(stringify!($name), $scenario).await;
        }
    };
}

/// A scenario that restarts the broker: it runs on every backend that can restart, while no
/// other scenario runs.
macro_rules! conformance_restart {
    ($name:ident, $scenario:expr) => {
        #[tokio::test]
        async fn $name() {
            $crate::support::run_all_exclusive(stringify!($name), $scenario).await;
        }
    };
}

/// Waits for something that must happen, at most [`ARRIVES`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(ARRIVES, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: nothing within {ARRIVES:?}"),
    }
}

/// Waits until a queue no longer exists, at most [`ARRIVES`]. Deleting an auto-delete queue
/// after its consumer's channel closes, or an exclusive queue after its connection closes, is
/// asynchronous on RabbitMQ (the queue's own process does it, once it sees its consumer or
/// owner go), so a check right after can still see it, still locked to its old owner.
pub async fn queue_gone(conn: &BrokerConnection, queue: &str) {
    within(&format!("queue {queue} deleted"), async {
        loop {
            match conn.queue_info(queue).await {
                Err(carrot::Error::NotFound(_)) => return,
                Ok(_) | Err(carrot::Error::ResourceLocked(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("queue_info({queue}) failed: {e}"),
            }
        }
    })
    .await
}

/// The consumer's next delivery, which must arrive within [`ARRIVES`].
pub async fn next(consumer: &mut Consumer) -> Message {
    match within("next_message", consumer.next_message()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("the consumer's deliveries ended"),
        Err(error) => panic!("next_message failed: {error}"),
    }
}

/// Asserts that the consumer receives nothing for [`QUIET`].
pub async fn assert_quiet(consumer: &mut Consumer) {
    if let Ok(got) = tokio::time::timeout(QUIET, consumer.next_message()).await {
        panic!("expected no delivery within {QUIET:?}, got {got:?}");
    }
}

/// Sleeps for `duration` (the twin: the thread sleeps).
pub async fn pause(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Runs `work` beside the scenario, as a task (the twin: a thread, `spawn(move || ...)` with
/// the same body): `spawn(move || async move { ... })`, then [`Spawned::join`].
pub fn spawn<F, Fut>(work: F) -> Spawned<Fut::Output>
where
    F: FnOnce() -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    Spawned(tokio::spawn(work()))
}

/// Work started by [`spawn`].
pub struct Spawned<T>(tokio::task::JoinHandle<T>);

impl<T> Spawned<T> {
    /// What the work returned, which must come within [`ARRIVES`]; an error if it panicked.
    pub async fn join(self) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
        Ok(within("the spawned work", self.0).await?)
    }
}
