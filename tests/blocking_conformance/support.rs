//! How the blocking twin runs scenarios and waits: the same functions as the async suite's
//! `support.rs`, blocking. Every wait is bounded (a message that must come, a spawned thread,
//! a whole scenario), so that a blocking call that hangs fails its test instead of the run.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::api::{BrokerConnection, Consumer, Message};
use crate::backends::{backends, run_id};
pub use crate::scenario::*;

/// How long one scenario may take on one backend before the twin reports it as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

/// Scenarios share the brokers; one that restarts a broker must run alone (a restart closes
/// every connection to it), so it holds this lock for writing and the others for reading.
static BROKER_IN_USE: RwLock<()> = RwLock::new(());

/// Runs a scenario on every configured backend, each with its own scope.
pub fn run_all<F>(test: &str, scenario: F)
where
    F: Fn(Scenario) -> TestResult + Send + Sync + 'static,
{
    let _shared = BROKER_IN_USE.read().unwrap_or_else(|p| p.into_inner());
    run_each(test, scenario);
}

/// Runs a scenario that restarts brokers, while no other scenario runs.
pub fn run_all_exclusive<F>(test: &str, scenario: F)
where
    F: Fn(Scenario) -> TestResult + Send + Sync + 'static,
{
    let _alone = BROKER_IN_USE.write().unwrap_or_else(|p| p.into_inner());
    run_each(test, scenario);
}

/// Each backend's run on a thread of its own (no runtime there, as in a blocking program),
/// watched: one that does not end within [`SCENARIO_LIMIT`] fails the test.
fn run_each<F>(test: &str, scenario: F)
where
    F: Fn(Scenario) -> TestResult + Send + Sync + 'static,
{
    let scenario = Arc::new(scenario);
    for backend in backends() {
        let scope = format!("bt-{test}-{}-{}", backend.name, run_id());
        let Some(url) = (backend.url)(&scope) else {
            eprintln!("skipped on {}: not configured", backend.name);
            continue;
        };
        eprintln!("{test} (blocking) on {} ({url})", backend.name);
        let t = Scenario::new(backend, scope, url);
        let (done, outcome) = std::sync::mpsc::channel();
        let (run, twin) = (scenario.clone(), t.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{test}-{}", backend.name))
            .spawn(move || {
                let result = run(twin).map_err(|e| format!("{e} ({e:?})"));
                let _ = done.send(result);
            })
            .expect("a thread for the scenario");
        let result = match outcome.recv_timeout(SCENARIO_LIMIT) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                "{test} (blocking) on {}: did not end within {SCENARIO_LIMIT:?}: a blocking call hangs",
                backend.name
            ),
            // The thread ended without a result: it panicked; its message is above.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                panic!("{test} (blocking) on {} panicked", backend.name);
            }
        };
        t.clean_up();
        if let Err(error) = result {
            panic!("{test} (blocking) on {}: {error}", backend.name);
        }
    }
}

/// A scenario, run on every backend: `conformance!(name, |t| { ...; Ok(()) });` (the twin of
/// the async suite's `|t| async move { ... }`).
macro_rules! conformance {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            $crate::support::run_all(stringify!($name), $scenario);
        }
    };
}

/// A scenario that restarts the broker: it runs on every backend that can restart, while no
/// other scenario runs.
macro_rules! conformance_restart {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            $crate::support::run_all_exclusive(stringify!($name), $scenario);
        }
    };
}

/// The twin of the async `within(what, future).await`: the blocking call already happened
/// (bounded by carrot's own timeouts, and the whole scenario by the twin's watch).
pub fn within<T>(_what: &str, value: T) -> T {
    value
}

/// Waits until a queue no longer exists, at most [`ARRIVES`] (see the async suite's).
pub fn queue_gone(conn: &BrokerConnection, queue: &str) {
    let deadline = Instant::now() + ARRIVES;
    loop {
        match conn.queue_info(queue) {
            Err(crate::api::Error::NotFound(_)) => return,
            Ok(_) | Err(crate::api::Error::ResourceLocked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(_) | Err(crate::api::Error::ResourceLocked(_)) => {
                panic!("queue {queue} deleted: not within {ARRIVES:?}")
            }
            Err(e) => panic!("queue_info({queue}) failed: {e}"),
        }
    }
}

/// The consumer's next delivery, which must arrive within [`ARRIVES`].
pub fn next(consumer: &mut Consumer) -> Message {
    match consumer.next_message_timeout(ARRIVES) {
        Ok(Some(message)) => message,
        Ok(None) => panic!("next_message: nothing within {ARRIVES:?}"),
        Err(error) => panic!("next_message failed: {error}"),
    }
}

/// Asserts that the consumer receives nothing for [`QUIET`].
pub fn assert_quiet(consumer: &mut Consumer) {
    match consumer.next_message_timeout(QUIET) {
        Ok(None) => {}
        got => panic!("expected no delivery within {QUIET:?}, got {got:?}"),
    }
}

/// Sleeps for `duration`.
pub fn pause(duration: Duration) {
    std::thread::sleep(duration)
}

/// Runs `work` beside the scenario, on a thread: `spawn(move || { ... })`, then
/// [`Spawned::join`].
pub fn spawn<F, T>(work: F) -> Spawned<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Spawned(std::thread::spawn(work))
}

/// Work started by [`spawn`].
pub struct Spawned<T>(std::thread::JoinHandle<T>);

impl<T> Spawned<T> {
    /// What the work returned, which must come within [`ARRIVES`]; an error if it panicked.
    pub fn join(self) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
        let deadline = Instant::now() + ARRIVES;
        while !self.0.is_finished() {
            if Instant::now() >= deadline {
                panic!("the spawned work: not ended within {ARRIVES:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.0
            .join()
            .map_err(|_| "the spawned work panicked".into())
    }
}
