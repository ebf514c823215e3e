//! What the `carrot` CLI tests share: the backends, a scope of unique names per test that is
//! cleaned up afterwards (even when the test fails), and helpers to run the binary and read
//! what it printed.
//!
//! A scenario that needs the broker to outlive one `carrot` process (publish in one, consume in
//! the next) runs on every backend of [`durable_backends`]; one that fits in a single process
//! runs on [`all_backends`], which adds the embedded `memory://` broker.

#![allow(dead_code)] // each test uses its part

use std::future::Future;
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use serde_json::Value;

/// How long a consumer waits for a message that must come (`--timeout`), in seconds.
pub const WAIT: &str = "5";

/// How long any single `carrot` run may take before the test fails (the process is killed).
pub const PROCESS_LIMIT: Duration = Duration::from_secs(30);

/// A broker the tests run against.
#[derive(Clone, Copy)]
pub struct Backend {
    /// Shown in test output and part of the scope.
    pub name: &'static str,
    /// The broker URL for a test's scope; `None` when the backend is not configured, which
    /// skips it.
    pub url: fn(&str) -> Option<String>,
    /// redis://, in kombu's format: some scenarios assert what it does differently (see
    /// src/backend/redis/mod.rs).
    pub redis: bool,
}

/// Brokers that outlive one `carrot` process, one line each; every cross-process scenario runs
/// on all of them.
///
/// SQLite: a file `sqlite:///tmp/<scope>.db` per test, removed
/// with the scope (see [`Scope`]'s `Drop`).
#[rustfmt::skip]
pub fn durable_backends() -> Vec<Backend> {
    vec![
        Backend { name: "amqp", url: |_| amqp_url(), redis: false },
        Backend { name: "sqlite", url: |scope| Some(format!("sqlite://{}/{scope}.db", std::env::temp_dir().display())), redis: false },
        Backend { name: "serve-memory", url: |_| Some(crate::serve_support::served("memory://carrot-cli-serve")), redis: false },
        Backend { name: "serve-sqlite", url: |_| Some(crate::serve_support::served(&format!("sqlite://{}", crate::serve_support::sqlite_file("cli").display()))), redis: false },
        Backend { name: "redis", url: |_| redis_url(), redis: true },
    ]
}

/// The embedded broker (one per process: good for single-command scenarios) and the durable
/// ones.
pub fn all_backends() -> Vec<Backend> {
    let mut all = vec![Backend {
        name: "memory",
        url: |scope| Some(format!("memory://{scope}")),
        redis: false,
    }];
    all.extend(durable_backends());
    all
}

/// Whether the tests run under CI, where a backend that cannot run is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// RabbitMQ from `CARROT_TEST_AMQP_URL`; under `CI=true` a missing broker fails the test.
fn amqp_url() -> Option<String> {
    match std::env::var("CARROT_TEST_AMQP_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if under_ci() => panic!(
            "CI=true but CARROT_TEST_AMQP_URL is not set: .ci/run starts RabbitMQ and sets it"
        ),
        _ => None,
    }
}

/// Redis from `CARROT_TEST_REDIS_URL`; under `CI=true` a missing Redis fails the test.
fn redis_url() -> Option<String> {
    match std::env::var("CARROT_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if under_ci() => {
            panic!("CI=true but CARROT_TEST_REDIS_URL is not set: .ci/run starts Redis and sets it")
        }
        _ => None,
    }
}

/// One test on one backend: a URL and names of its own, deleted when it is dropped.
pub struct Scope {
    /// The backend it runs on.
    pub backend: Backend,
    /// `carrot-cli.TEST.BACKEND.PID.TIME`: unique per test, backend and run.
    pub prefix: String,
    url: String,
    queues: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<String>>,
}

impl Scope {
    fn new(backend: Backend, test: &str) -> Option<Scope> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let prefix = format!(
            "carrot-cli.{test}.{}.{}.{nanos:x}",
            backend.name,
            std::process::id()
        );
        let url = (backend.url)(&prefix)?;
        Some(Scope {
            backend,
            prefix,
            url,
            queues: Mutex::new(Vec::new()),
            exchanges: Mutex::new(Vec::new()),
        })
    }

    /// The broker URL of this scope.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A queue name of this scope, deleted at the end.
    pub fn queue(&self, local: &str) -> String {
        let name = format!("{}.q.{local}", self.prefix);
        lock(&self.queues).push(name.clone());
        name
    }

    /// An exchange name of this scope, deleted at the end.
    pub fn exchange(&self, local: &str) -> String {
        let name = format!("{}.x.{local}", self.prefix);
        lock(&self.exchanges).push(name.clone());
        name
    }

    /// `carrot --url URL` (CARROT_URL cleared), killed after [`PROCESS_LIMIT`].
    pub fn carrot(&self) -> Command {
        let mut cmd = carrot();
        cmd.arg("--url").arg(&self.url);
        cmd
    }

    /// `carrot --url URL ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.carrot().args(args))
    }

    /// `carrot --url URL ARGS`, which must exit with `code`; its stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        fails(code, self.carrot().args(args))
    }

    /// `consume --queue Q --output json ARGS`: every message printed, as JSON.
    pub fn consume_json(&self, queue: &str, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["consume", "--queue", queue, "--output", "json"];
        all.extend(args);
        json_lines(&self.ok(&all))
    }

    /// `consume --queue Q ARGS`: every body printed, one per line.
    pub fn consume_bodies(&self, queue: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec!["consume", "--queue", queue];
        all.extend(args);
        lines(&self.ok(&all))
    }

    /// The next `n` messages of a queue, as JSON (fewer if none comes for [`WAIT`]); the
    /// queue must be empty afterwards.
    pub fn drain_json(&self, queue: &str, n: usize) -> Vec<Value> {
        let limit = n.to_string();
        let got = self.consume_json(queue, &["--limit", &limit, "--timeout", WAIT]);
        assert_eq!(
            self.message_count(queue),
            0,
            "left in {queue} after {got:?}"
        );
        got
    }

    /// Takes the next messages of a queue, which must have these bodies, and then be empty.
    pub fn expect_bodies(&self, queue: &str, expected: &[&str]) {
        let limit = expected.len().to_string();
        let got = self.consume_bodies(queue, &["--limit", &limit, "--timeout", WAIT]);
        assert_eq!(got, expected, "bodies from {queue}");
        assert_eq!(
            self.message_count(queue),
            0,
            "left in {queue} after {got:?}"
        );
    }

    /// The number of ready messages in a queue, asked through the library (passive declare).
    pub fn message_count(&self, queue: &str) -> u32 {
        let url = self.url.clone();
        block_on(async {
            let conn = carrot::BrokerConnection::connect(&url).await?;
            let info = conn.queue_info(queue).await;
            let _ = conn.close().await;
            info.map(|i| i.message_count)
        })
        .unwrap_or_else(|e| panic!("queue_info({queue:?}) failed: {e}"))
    }

    /// Deletes what the scope declared; errors are ignored (some entities are gone already).
    fn clean_up(&self) {
        let queues = std::mem::take(&mut *lock(&self.queues));
        let exchanges = std::mem::take(&mut *lock(&self.exchanges));
        if self.backend.name != "memory" && !(queues.is_empty() && exchanges.is_empty()) {
            let url = self.url.clone();
            block_on(async move {
                let Ok(conn) = carrot::BrokerConnection::connect(&url).await else {
                    return;
                };
                for queue in queues {
                    let _ = conn
                        .delete_queue(&queue, carrot::DeleteQueueOptions::new())
                        .await;
                }
                for exchange in exchanges {
                    let _ = conn
                        .delete_exchange(&exchange, carrot::DeleteExchangeOptions::new())
                        .await;
                }
                let _ = conn.close().await;
            });
        }
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.clean_up();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a scenario on each configured backend, each with its own scope.
pub fn run_on(backends: Vec<Backend>, test: &str, scenario: impl Fn(&Scope)) {
    for backend in backends {
        let Some(scope) = Scope::new(backend, test) else {
            eprintln!(
                "skipped on {}: not configured (set CARROT_TEST_AMQP_URL)",
                backend.name
            );
            continue;
        };
        eprintln!("{test} on {} ({})", backend.name, scope.prefix);
        scenario(&scope);
    }
}

/// A scenario across processes, run on every durable backend:
/// `durable!(name, |s| { ... });`.
macro_rules! durable {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            $crate::cli_support::run_on(
                $crate::cli_support::durable_backends(),
                stringify!($name),
                $scenario,
            );
        }
    };
}

/// A scenario within one process, run on memory:// and every durable backend.
macro_rules! everywhere {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            $crate::cli_support::run_on(
                $crate::cli_support::all_backends(),
                stringify!($name),
                $scenario,
            );
        }
    };
}

/// The `carrot` binary with CARROT_URL cleared (so the default is memory://), killed after
/// [`PROCESS_LIMIT`].
pub fn carrot() -> Command {
    let mut cmd = Command::cargo_bin("carrot").expect("the carrot binary is built by cargo test");
    cmd.env_remove("CARROT_URL").timeout(PROCESS_LIMIT);
    cmd
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a command that must exit 0; its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let output = cmd.output().expect("cannot run carrot");
    assert!(
        output.status.success(),
        "expected success from {cmd:?}: {}",
        describe(&output)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// Runs a command that must exit with `code`, saying why on stderr: for carrot's own errors
/// (status 1, or a status 2 that is not clap's), every line starts with `carrot: `. Returns
/// stderr.
pub fn fails(code: i32, cmd: &mut Command) -> String {
    let output = cmd.output().expect("cannot run carrot");
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit status {code} from {cmd:?}: {}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !stderr.trim().is_empty(),
        "exit {code} without a word on stderr"
    );
    if code == 1 || stderr.starts_with("carrot: ") {
        for line in stderr.lines() {
            assert!(
                line.starts_with("carrot: "),
                "stderr line {line:?} does not start with `carrot: `: {}",
                describe(&output)
            );
        }
    }
    stderr
}

/// The last line of a text (carrot's error line comes last, after any note).
pub fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// The lines of an output.
pub fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// Each line of an output parsed as JSON.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

/// The `body` of each JSON line.
pub fn bodies(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["body"].clone()).collect()
}

/// Runs a future on a throwaway runtime (the tests themselves are synchronous).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}
