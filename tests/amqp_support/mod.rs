//! What the RabbitMQ tests share: their settings from the environment, names of their own on a
//! shared broker, bounded waits, and clean-up that runs even when a test fails.
//!
//! The settings come from `.ci/run`, or from `eval "$(sudo bash .ci/rabbitmq.sh start)"`. When
//! one is missing a test says `skipped: set X` and passes, except under `CI=true`, where a test
//! that cannot run is a failure.

#![allow(dead_code)] // each test file uses its part

pub mod proxy;
pub mod stream;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carrot::{BrokerConnection, ConnectionBuilder, RetryPolicy};

/// How to get the settings, for the skip and failure messages.
pub const HOW: &str =
    "run the tests through `bash .ci/run`, or start a broker with `eval \"$(sudo bash .ci/rabbitmq.sh start)\"`";

/// Whether the tests run under CI, where a test that cannot run fails instead of skipping.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Says why a test cannot run: under CI a failure, elsewhere `skipped: ...` on stderr.
pub fn skip_or_fail(reason: &str) {
    if under_ci() {
        panic!("CI=true and this test cannot run: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// An environment variable a test needs; `None` (after [`skip_or_fail`]) when it is not set.
pub fn setting(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            skip_or_fail(&format!("set {var} ({what}); {HOW}"));
            None
        }
    }
}

/// A queue or exchange name of this test alone: tests of every run share one broker.
pub fn unique(test: &str, local: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "carrot-test.{test}.{}.{nanos:x}.{}.{local}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits for something that must happen within `limit`.
pub async fn bounded<F: Future>(what: &str, limit: Duration, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Connects, failing the test with the URL (password hidden by carrot's error) if it cannot.
pub async fn connect(url: &str) -> BrokerConnection {
    match bounded(
        "connect",
        Duration::from_secs(30),
        BrokerConnection::connect(url),
    )
    .await
    {
        Ok(conn) => conn,
        Err(e) => panic!("cannot connect to the test broker: {e}"),
    }
}

/// Connects, retrying for up to `limit` (while a broker restarts).
pub async fn connect_retrying(url: &str, limit: Duration) -> BrokerConnection {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(left, BrokerConnection::connect(url)).await {
            Ok(Ok(conn)) => return conn,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_string(),
        };
        if Instant::now() >= deadline {
            panic!("no connection to the broker within {limit:?}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The URL with one query option set (added, or replacing its value).
pub fn with_query_option(url: &str, key: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(key))
        .map(str::to_string)
        .collect();
    pairs.push(format!("{key}={value}"));
    format!("{base}?{}", pairs.join("&"))
}

/// Runs a test body (at most `limit`), then deletes its queues whatever happened, then fails
/// the way the body failed, if it did.
pub async fn run_then_delete_queues<F>(url: &str, queues: &[String], limit: Duration, body: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut task = tokio::spawn(body);
    let outcome = tokio::time::timeout(limit, &mut task).await;
    if outcome.is_err() {
        task.abort();
    }
    delete_queues(url, queues).await;
    match outcome {
        Err(_) => panic!("the test did not finish within {limit:?}"),
        Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Ok(Err(join)) => panic!("the test task failed: {join}"),
        Ok(Ok(())) => {}
    }
}

/// Deletes queues, best effort (they may be gone already).
pub async fn delete_queues(url: &str, queues: &[String]) {
    let cleanup = async {
        let Ok(conn) = BrokerConnection::connect(url).await else {
            return;
        };
        for queue in queues {
            let _ = conn
                .delete_queue(queue, carrot::DeleteQueueOptions::new())
                .await;
        }
        let _ = conn.close().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), cleanup).await;
}

/// Runs a shell command the CI broker script gave (a restart, a `rabbitmqctl` call), at most
/// `limit`; fails the test if it fails.
pub async fn shell(command: &str, limit: Duration) {
    let mut child = tokio::process::Command::new("sh");
    child.arg("-c").arg(command).kill_on_drop(true);
    let status = bounded(command, limit, child.status())
        .await
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    assert!(status.success(), "{command} failed: {status}");
}

/// A retry policy for tests: the broker is back (or failed over) within seconds, so retry
/// every 0.1 s to 1 s, for at most a minute.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .interval_start(Duration::from_millis(100))
        .interval_step(Duration::from_millis(200))
        .interval_max(Duration::from_secs(1))
        .timeout(Some(Duration::from_secs(60)))
}

/// Connects as `builder` says, failing the test (with carrot's error) if it cannot within 30 s.
pub async fn connect_with(builder: ConnectionBuilder) -> BrokerConnection {
    match bounded("connect", Duration::from_secs(30), builder.connect()).await {
        Ok(conn) => conn,
        Err(e) => panic!("cannot connect to the test broker: {e}"),
    }
}

/// [`connect_with`] the URL(s) and [`quick_retries`].
pub async fn connect_quick(url: &str) -> BrokerConnection {
    connect_with(
        BrokerConnection::builder()
            .url(url)
            .retry_policy(quick_retries()),
    )
    .await
}

/// The Python interpreter (`CARROT_TEST_PYTHON`, `python3` by default) when it can run
/// `imports` (such as `import kombu, redis`); `None` after [`skip_or_fail`] otherwise, which
/// says to `pip install {packages}`.
pub fn python_with(imports: &str, packages: &str) -> Option<String> {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python)
        .args(["-c", imports])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            skip_or_fail(&format!(
                "{python} cannot run {imports:?} ({}): pip install {packages}",
                why.lines().last().unwrap_or("").trim()
            ));
            None
        }
        Err(e) => {
            skip_or_fail(&format!("cannot run {python}: {e}"));
            None
        }
    }
}

/// An example binary (`target/<profile>/examples/NAME`), which `cargo test` builds beside the
/// tests.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let binary = profile.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} is missing: cargo test builds the examples",
        binary.display()
    );
    binary
}
