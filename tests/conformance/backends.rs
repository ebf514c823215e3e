//! The brokers every scenario runs on, shared by the conformance suite and its blocking twin:
//! one line each in [`backends`]; a new broker or transport is one more line.

#![allow(dead_code)] // each test crate that includes it uses its part

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A broker the suite runs against.
#[derive(Clone, Copy)]
pub struct Backend {
    /// Shown in test output.
    pub name: &'static str,
    /// The URL of the broker for a scenario's scope; `None` when the backend is not configured
    /// (for example RabbitMQ without `CARROT_TEST_AMQP_URL`), which skips it.
    pub url: fn(&str) -> Option<String>,
    /// Restarts the broker of a scope (what a server restart does); `None` if the backend
    /// cannot, which skips the scenarios that need it.
    pub restart: Option<fn(&str)>,
    /// Whether `immediate` is implemented; if not, publishing with it must be
    /// `Error::Unsupported` (RabbitMQ 3 and later; sqlite, whose consumers may be in other
    /// processes).
    pub immediate: bool,
    /// kombu's Redis transport (redis://): what it cannot do (headers exchanges,
    /// exchange-to-exchange bindings, message expiry, length limits, dead-lettering, other
    /// queue types) must be `Error::Unsupported`, and it follows kombu where kombu differs
    /// from AMQP (a lower priority number is served first); a requeued message goes to the head
    /// of its queue (RabbitMQ puts each back in its original place).
    pub redis: bool,
    /// Whether the broker has virtual hosts, users and permissions, with those of
    /// `tests/fixtures/access-definitions.json` (RabbitMQ imports them on first use, `carrot
    /// serve` at start); the access scenarios skip the others.
    pub access: bool,
}

/// A sqlite broker file per scope, in the temporary folder (deleted after the scenario).
pub fn sqlite_path(scope: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("carrot-{scope}.db"))
}

/// Every backend, one line each. Each scenario runs on all of them.
#[rustfmt::skip]
pub fn backends() -> Vec<Backend> {
    vec![
        Backend { name: "memory", url: |scope| Some(format!("memory://{scope}")), restart: Some(|scope| carrot::MemoryBroker::named(scope).restart()), immediate: true, redis: false, access: false },
        Backend { name: "sqlite", url: |scope| Some(format!("sqlite://{}", sqlite_path(scope).display())), restart: Some(|scope| carrot::SqliteBroker::open(sqlite_path(scope)).expect("the scenario's sqlite broker opens").restart()), immediate: false, redis: false, access: false },
        Backend { name: "amqp", url: |_| amqp_url(), restart: amqp_restart(), immediate: false, redis: false, access: true },
        Backend { name: "serve-memory", url: |_| served("memory://carrot-serve-conformance"), restart: None, immediate: false, redis: false, access: true },
        Backend { name: "serve-sqlite", url: |_| served(&format!("sqlite://{}", crate::serve_support::sqlite_file("conformance").display())), restart: None, immediate: false, redis: false, access: true },
        Backend { name: "redis", url: |_| redis_url(), restart: redis_restart(), immediate: false, redis: true, access: false },
    ]
    .into_iter()
    .filter(chosen)
    .collect()
}

/// `CARROT_TEST_BACKENDS=redis,memory` runs only those backends (for development; CI runs
/// every one).
fn chosen(backend: &Backend) -> bool {
    match std::env::var("CARROT_TEST_BACKENDS") {
        Ok(list) if !list.is_empty() => list.split(',').any(|name| name.trim() == backend.name),
        _ => true,
    }
}

/// Redis from `CARROT_TEST_REDIS_URL` (`.ci/run` starts one on 127.0.0.1). Under `CI=true` a
/// missing Redis is a failure, never a skip.
fn redis_url() -> Option<String> {
    match std::env::var("CARROT_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but CARROT_TEST_REDIS_URL is not set: .ci/run starts Redis and sets it")
        }
        _ => None,
    }
}

/// Restarts Redis with the command in `CARROT_TEST_REDIS_RESTART` (`.ci/run` sets it).
fn redis_restart() -> Option<fn(&str)> {
    match std::env::var("CARROT_TEST_REDIS_RESTART") {
        Ok(command) if !command.is_empty() => Some(|_| {
            let command = std::env::var("CARROT_TEST_REDIS_RESTART").unwrap_or_default();
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .status()
                .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
            assert!(status.success(), "{command:?} failed: {status}");
        }),
        _ => None,
    }
}

/// `carrot serve` of `broker`, reached through the amqp backend (lapin) with publisher
/// confirms, as RabbitMQ is.
fn served(broker: &str) -> Option<String> {
    Some(format!(
        "{}?confirm_publish=true",
        crate::serve_support::served(broker)
    ))
}

/// Restarts RabbitMQ with the command in `CARROT_TEST_AMQP_RESTART` (`.ci/run` sets it); the
/// scenarios that use it run alone (see [`run_all_exclusive`]).
fn amqp_restart() -> Option<fn(&str)> {
    match std::env::var("CARROT_TEST_AMQP_RESTART") {
        Ok(command) if !command.is_empty() => Some(|_| {
            let command = std::env::var("CARROT_TEST_AMQP_RESTART").unwrap_or_default();
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .status()
                .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
            assert!(status.success(), "{command:?} failed: {status}");
        }),
        _ if std::env::var("CARROT_TEST_AMQP_URL").is_ok_and(|u| !u.is_empty())
            && std::env::var("CI").is_ok_and(|v| v == "true") =>
        {
            panic!("CI=true with RabbitMQ but CARROT_TEST_AMQP_RESTART is not set: .ci/run sets it")
        }
        _ => None,
    }
}

/// RabbitMQ from `CARROT_TEST_AMQP_URL`, with publisher confirms so that a `send` has been
/// routed when it returns. Under `CI=true` a missing broker is a failure, never a skip.
fn amqp_url() -> Option<String> {
    match std::env::var("CARROT_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => {
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{sep}confirm_publish=true");
            amqp_access_definitions(&url);
            Some(url)
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but CARROT_TEST_AMQP_URL is not set: .ci/run starts RabbitMQ and sets it"
            )
        }
        _ => None,
    }
}

/// `url` with another login and virtual host: `amqp://USER:PASSWORD@HOST:PORT/VHOST?QUERY`
/// (the vhost percent-encoded, `/` as `%2F`).
pub fn with_login(url: &str, user: &str, password: &str, vhost: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let vhost: String = vhost
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{user}:{password}@{host}/{vhost}{query}")
}

/// Gives RabbitMQ (at `url`, as guest) the users, vhost and permissions of
/// `tests/fixtures/access-definitions.json`, which every `carrot serve` of the suites loads at
/// start: once per test process, the first time the amqp backend is used, with
/// `$CARROT_TEST_AMQP_CTL import_definitions FILE` (`.ci/rabbitmq.sh` sets it), then waits
/// (the import is asynchronous) until `carrot-limited` may open `/` and guest
/// `carrot-test-vhost`. Under `CI=true` a failure is a panic, never a skip; elsewhere it is
/// said, and the access scenarios fail on amqp unless the broker has the users already.
fn amqp_access_definitions(url: &str) {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let file = crate::serve_support::access_definitions();
        let ctl = match std::env::var("CARROT_TEST_AMQP_CTL") {
            Ok(ctl) if !ctl.is_empty() => ctl,
            _ if ci => panic!(
                "CI=true with RabbitMQ but CARROT_TEST_AMQP_CTL is not set: .ci/run sets it (the access scenarios need the users of {})",
                file.display()
            ),
            _ => {
                eprintln!(
                    "CARROT_TEST_AMQP_CTL is not set: {} is not imported into RabbitMQ; the access scenarios fail on amqp unless it has those users already",
                    file.display()
                );
                return;
            }
        };
        let command = format!("{ctl} import_definitions '{}'", file.display());
        let imported = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .map_err(|e| format!("cannot run {command:?}: {e}"))
            .and_then(|output| match output.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{command:?} failed ({}): {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )),
            })
            .and_then(|()| {
                let ready = [
                    with_login(url, "carrot-limited", "carrot-limited-pw", "/"),
                    with_login(url, "guest", "guest", "carrot-test-vhost"),
                ];
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let refused = ready.iter().find_map(|url| {
                        carrot::blocking::BrokerConnection::connect(url)
                            .and_then(|conn| conn.close())
                            .err()
                    });
                    match refused {
                        None => return Ok(()),
                        Some(e) if Instant::now() >= deadline => {
                            return Err(format!(
                                "{command:?} ran, but 30 s later the users are not there yet: {e}"
                            ))
                        }
                        Some(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            });
        match imported {
            Ok(()) => {}
            Err(e) if ci => panic!("{e}"),
            Err(e) => eprintln!("{e}: the access scenarios fail on amqp"),
        }
    });
}

/// An identifier of this test run, so that scopes on a shared broker (RabbitMQ) do not meet
/// entities left by an earlier run.
pub fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()))
    })
}
