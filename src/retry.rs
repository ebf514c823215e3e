//! Retrying under a policy: kombu's `ensure_connection` / `ensure` / `retry_policy`.
//!
//! One [`RetryPolicy`] per connection says how long carrot keeps trying when the broker is
//! unreachable: when it recovers a lost connection, and when a `send`, a declaration or a
//! `fetch` meets a lost connection (they wait for the recovery, then try again). The first
//! connect tries each URL once unless
//! [`ConnectionBuilder::retry_on_connect`](crate::ConnectionBuilder::retry_on_connect) asks for
//! the policy there too.

// Only the amqp backend retries (the embedded brokers never lose their connection): without
// it, the attempt counting below is compiled but unused.
#![cfg_attr(not(feature = "amqp"), allow(dead_code))]

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Called before each retry with the error of the failed attempt and the time carrot will
/// sleep before the next one (zero when it moves on to the next failover URL).
pub type RetryCallback = Arc<dyn Fn(&Error, Duration) + Send + Sync>;

/// How long and how often carrot retries when the broker cannot be reached.
///
/// It retries the errors that say the connection was lost or could not be made and that a
/// retry can cure ([`Error::is_connection_error`] and [`Error::is_retryable`]); any other error
/// is returned at once.
///
/// The sleep before retry *n* (from 0) is `interval_start + n * interval_step`, at most
/// `interval_max`. With several failover URLs, carrot tries the next URL at once and sleeps
/// only after a full pass over them, as kombu does; each URL tried counts as an attempt.
///
/// | setting | default | kombu's default (`ensure_connection`) |
/// | --- | --- | --- |
/// | `max_retries` | `None`: no limit on the number | `None` |
/// | `interval_start` | 2 s | 2 s |
/// | `interval_step` | 2 s | 2 s |
/// | `interval_max` | 30 s | 30 s |
/// | `timeout` | 60 s in all | none: kombu retries forever, so a call can hang on a dead broker (kombu #1024) |
///
/// A broker restart (a few seconds) or a cluster failover is ridden out; a broker down for
/// more than a minute is reported as [`Error::RetriesExhausted`], with the number of attempts
/// and the last cause. Set `timeout(None)` to retry forever.
///
/// ```
/// use std::time::Duration;
/// use carrot::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .max_retries(Some(5))
///     .interval_start(Duration::from_millis(100))
///     .interval_step(Duration::from_millis(200))
///     .interval_max(Duration::from_secs(1))
///     .on_retry(|error, next| eprintln!("{error}; retrying in {next:?}"));
/// assert_eq!(policy.interval(0), Duration::from_millis(100));
/// assert_eq!(policy.interval(3), Duration::from_millis(700));
/// assert_eq!(policy.interval(9), Duration::from_secs(1));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_retries: Option<u32>,
    interval_start: Duration,
    interval_step: Duration,
    interval_max: Duration,
    timeout: Option<Duration>,
    on_retry: Option<RetryCallback>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: None,
            interval_start: Duration::from_secs(2),
            interval_step: Duration::from_secs(2),
            interval_max: Duration::from_secs(30),
            timeout: Some(Duration::from_secs(60)),
            on_retry: None,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_retries", &self.max_retries)
            .field("interval_start", &self.interval_start)
            .field("interval_step", &self.interval_step)
            .field("interval_max", &self.interval_max)
            .field("timeout", &self.timeout)
            .field("on_retry", &self.on_retry.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl RetryPolicy {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// No retry at all: one attempt per URL, then the error.
    pub fn never() -> Self {
        RetryPolicy {
            max_retries: Some(0),
            ..Self::default()
        }
    }

    /// How many times to retry after the first attempt; `None` for no limit (then only
    /// `timeout` bounds the retries).
    pub fn max_retries(mut self, max_retries: Option<u32>) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The sleep before the first retry.
    pub fn interval_start(mut self, interval: Duration) -> Self {
        self.interval_start = interval;
        self
    }

    /// How much longer each following sleep is.
    pub fn interval_step(mut self, step: Duration) -> Self {
        self.interval_step = step;
        self
    }

    /// The longest sleep between two retries.
    pub fn interval_max(mut self, max: Duration) -> Self {
        self.interval_max = max;
        self
    }

    /// The most time spent retrying in all, sleeps included; `None` for no limit. carrot does
    /// not start a sleep that would end past it.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// A function told of each failed attempt before the retry: the error and the sleep
    /// before the next attempt (for logging; carrot also logs a warning).
    pub fn on_retry(mut self, callback: impl Fn(&Error, Duration) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(callback));
        self
    }

    /// The retry limit (`None`: none).
    pub fn get_max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// The total time limit (`None`: none).
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The sleep before retry `n` (counting from 0): `interval_start + n * interval_step`,
    /// at most `interval_max`.
    pub fn interval(&self, n: u32) -> Duration {
        self.interval_step
            .checked_mul(n)
            .and_then(|d| d.checked_add(self.interval_start))
            .map_or(self.interval_max, |d| d.min(self.interval_max))
    }

    /// Starts counting the attempts of one retried operation; each retry is logged and
    /// told to the `on_retry` callback.
    pub(crate) fn start(&self, what: impl Into<String>) -> Attempts {
        Attempts {
            policy: self.clone(),
            what: what.into(),
            started: Instant::now(),
            attempts: 0,
            pauses: 0,
            quiet: false,
        }
    }

    /// Starts counting the attempts of an operation that waits for a connection being
    /// recovered: its retries are bounded by the policy but not reported (the recovery's
    /// connection attempts are).
    pub(crate) fn start_quiet(&self, what: impl Into<String>) -> Attempts {
        Attempts {
            quiet: true,
            ..self.start(what)
        }
    }
}

/// The attempts of one retried operation under a policy.
#[derive(Debug)]
pub(crate) struct Attempts {
    policy: RetryPolicy,
    what: String,
    started: Instant,
    attempts: u32,
    pauses: u32,
    quiet: bool,
}

impl Attempts {
    /// How many attempts failed so far.
    pub(crate) fn count(&self) -> u32 {
        self.attempts
    }

    /// Records a failed attempt. Returns how long to sleep before the next one (zero when
    /// `pause` is false: the next failover URL is tried at once), or the error to report
    /// when the policy gives up.
    pub(crate) fn failed(&mut self, error: Error, pause: bool) -> Result<Duration> {
        self.attempts += 1;
        let retries_left = self
            .policy
            .max_retries
            .is_none_or(|max| self.attempts <= max);
        let sleep = if pause {
            let sleep = self.policy.interval(self.pauses);
            self.pauses += 1;
            sleep
        } else {
            Duration::ZERO
        };
        let in_time = self
            .policy
            .timeout
            .is_none_or(|limit| self.started.elapsed() + sleep < limit);
        if !(retries_left && in_time) {
            return Err(self.give_up(error));
        }
        if self.quiet {
            tracing::debug!(what = %self.what, attempt = self.attempts, error = %error, "trying again");
            return Ok(sleep);
        }
        tracing::warn!(what = %self.what, attempt = self.attempts, error = %error, retry_in = ?sleep, "retrying");
        if let Some(callback) = &self.policy.on_retry {
            callback(&error, sleep);
        }
        Ok(sleep)
    }

    /// The error once the policy gave up; a single attempt keeps its own error.
    pub(crate) fn give_up(&self, error: Error) -> Error {
        if self.attempts <= 1 {
            return error;
        }
        Error::RetriesExhausted {
            what: self.what.clone(),
            attempts: self.attempts,
            elapsed: self.started.elapsed(),
            last: Arc::new(error),
        }
    }
}

/// Whether a policy retries after `error`: the connection was lost or could not be made, and
/// trying again can help ([`Error::is_connection_error`] and [`Error::is_retryable`]; a broker
/// that closed the connection because of what the client sent is not retried).
pub(crate) fn retries(error: &Error) -> bool {
    error.is_connection_error() && error.is_retryable()
}

/// Runs `attempt` until it succeeds, fails with an error the policy does not retry
/// ([`retries`]), or the policy gives up; `cycle` attempts make a full pass (over failover
/// URLs), after which it sleeps.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: impl Into<String>,
    cycle: usize,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempts = policy.start(what);
    loop {
        let error = match attempt(attempts.count()).await {
            Ok(value) => return Ok(value),
            Err(error) if !retries(&error) => return Err(error),
            Err(error) => error,
        };
        let pause = (attempts.count() as usize + 1).is_multiple_of(cycle.max(1));
        let sleep = attempts.failed(error, pause)?;
        if !sleep.is_zero() {
            tokio::time::sleep(sleep).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy::default()
            .interval_start(Duration::from_millis(1))
            .interval_step(Duration::from_millis(1))
            .interval_max(Duration::from_millis(2))
    }

    fn lost() -> Error {
        Error::connection_closed("lost")
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_with_the_count_and_the_last_cause() {
        let told = Arc::new(AtomicU32::new(0));
        let seen = told.clone();
        let policy = fast().max_retries(Some(3)).on_retry(move |_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry(&policy, "connecting", 1, |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(lost()) }
        })
        .await;
        assert_eq!(
            calls.load(Ordering::Relaxed),
            4,
            "one attempt and three retries"
        );
        assert_eq!(
            told.load(Ordering::Relaxed),
            3,
            "the callback hears of each retry"
        );
        match result {
            Err(Error::RetriesExhausted {
                attempts,
                last,
                what,
                ..
            }) => {
                assert_eq!(attempts, 4);
                assert_eq!(what, "connecting");
                assert!(matches!(*last, Error::ConnectionClosed { .. }));
                assert!(last.is_retryable(), "a lost connection may come back");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_error_that_is_not_retryable_ends_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry(&fast(), "x", 1, |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(Error::NotFound("q".into())) }
        })
        .await;
        assert!(matches!(result, Err(Error::NotFound(_))));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_for_what_the_client_sent_is_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry(&fast(), "x", 1, |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async {
                Err(Error::ConnectionClosed {
                    reply_code: Some(503),
                    reply_text: "COMMAND_INVALID".into(),
                    source: None,
                })
            }
        })
        .await;
        assert!(
            matches!(
                result,
                Err(Error::ConnectionClosed {
                    reply_code: Some(503),
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn sleeps_only_after_a_full_pass_over_the_urls() {
        let sleeps = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sleeps.clone();
        let policy = RetryPolicy::default()
            .interval_start(Duration::from_millis(5))
            .interval_step(Duration::from_millis(5))
            .max_retries(Some(5))
            .on_retry(move |_, d| seen.lock().unwrap().push(d));
        let result = retry(&policy, "x", 3, |n| async move {
            if n == 5 {
                Ok(n)
            } else {
                Err(lost())
            }
        })
        .await;
        assert_eq!(result.unwrap(), 5);
        let ms: Vec<u128> = sleeps
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, vec![0, 0, 5, 0, 0]);
    }

    #[tokio::test]
    async fn the_timeout_bounds_the_whole_retry() {
        let policy = RetryPolicy::default()
            .interval_start(Duration::from_millis(40))
            .interval_step(Duration::ZERO)
            .timeout(Some(Duration::from_millis(100)));
        let started = Instant::now();
        let result: Result<()> = retry(&policy, "x", 1, |_| async { Err(lost()) }).await;
        assert!(
            matches!(result, Err(Error::RetriesExhausted { .. })),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn intervals_grow_by_step_up_to_the_max() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (0..17).map(|n| p.interval(n).as_secs()).collect();
        assert_eq!(&secs[..4], &[2, 4, 6, 8]);
        assert_eq!(secs[16], 30);
        assert_eq!(p.interval(u32::MAX), Duration::from_secs(30));
    }
}
