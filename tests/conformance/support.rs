//! What every scenario shares: the backends, a unique scope per scenario, bounded waits.
//!
//! Scenarios assume what every backend must give: a `send` returns once the broker has routed
//! the message (RabbitMQ: publisher confirms), so a `fetch` or `queue_info` right after it sees
//! the message. Deliveries to consumers are asynchronous: wait for them with [`next`] (at most
//! [`ARRIVES`]) and check their absence with [`assert_quiet`] (for [`QUIET`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carrot::{
    BrokerConnection, Consumer, ConsumerBuilder, ExchangeType, Message, Publisher, PublisherBuilder,
};

/// What a scenario returns: `?` works on carrot's and serde's errors alike.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How long a message that must arrive may take.
pub const ARRIVES: Duration = Duration::from_secs(5);
/// How long to watch for a message that must not arrive.
pub const QUIET: Duration = Duration::from_millis(200);

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
}

/// Every backend, one line each. Each scenario runs on all of them.
///
/// A sqlite broker file per scope, in the temporary folder (deleted after the scenario).
fn sqlite_path(scope: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("carrot-{scope}.db"))
}

#[rustfmt::skip]
pub fn backends() -> Vec<Backend> {
    vec![
        Backend { name: "memory", url: |scope| Some(format!("memory://{scope}")), restart: Some(|scope| carrot::MemoryBroker::named(scope).restart()), immediate: true },
        Backend { name: "sqlite", url: |scope| Some(format!("sqlite://{}", sqlite_path(scope).display())), restart: Some(|scope| carrot::SqliteBroker::open(sqlite_path(scope)).expect("the scenario's sqlite broker opens").restart()), immediate: false },
        Backend { name: "amqp", url: |_| amqp_url(), restart: amqp_restart(), immediate: false },
        Backend { name: "serve-memory", url: |_| served("memory://carrot-serve-conformance"), restart: None, immediate: false },
        Backend { name: "serve-sqlite", url: |_| served(&format!("sqlite://{}", crate::serve_support::sqlite_file("conformance").display())), restart: None, immediate: false },
    ]
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
            Some(format!("{url}{sep}confirm_publish=true"))
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but CARROT_TEST_AMQP_URL is not set: .ci/run starts RabbitMQ and sets it"
            )
        }
        _ => None,
    }
}

/// An identifier of this test run, so that scopes on a shared broker (RabbitMQ) do not meet
/// entities left by an earlier run.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()))
    })
}

/// One scenario on one backend: its scope names its broker (memory://SCOPE) and prefixes its
/// exchanges and queues, so that scenarios running in parallel never share them.
pub struct Scenario {
    /// The backend it runs on.
    pub backend: Backend,
    /// Unique for this scenario, backend and run.
    pub scope: String,
    url: String,
    /// Every name handed out by [`Scenario::name`], deleted as queue and exchange afterwards.
    names: Arc<Mutex<BTreeSet<String>>>,
}

impl Scenario {
    /// The broker URL of this scenario.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to the scenario's broker.
    pub async fn connect(&self) -> carrot::Result<BrokerConnection> {
        BrokerConnection::connect(&self.url).await
    }

    /// An exchange or queue name that belongs to this scenario.
    pub fn name(&self, local: &str) -> String {
        let name = format!("{}.{local}", self.scope);
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        name
    }

    /// Whether the backend can restart its broker; says so when it cannot (the caller skips).
    pub fn can_restart(&self) -> bool {
        if self.backend.restart.is_none() {
            eprintln!(
                "skipped on {}: the backend cannot restart its broker",
                self.backend.name
            );
        }
        self.backend.restart.is_some()
    }

    /// Restarts the scenario's broker: every connection is closed and must be reopened.
    pub fn restart(&self) {
        let restart = self
            .backend
            .restart
            .expect("check can_restart() before restarting");
        restart(&self.scope);
    }

    /// A publisher on the scenario's direct exchange `ex` with routing key `k`.
    pub fn publisher(&self, conn: &BrokerConnection) -> PublisherBuilder {
        Publisher::builder(conn)
            .exchange(self.name("ex"))
            .exchange_type(ExchangeType::Direct)
            .routing_key("k")
    }

    /// A consumer of the scenario's queue `q`, bound to `ex` with `k`.
    pub fn consumer(&self, conn: &BrokerConnection) -> ConsumerBuilder {
        Consumer::builder(conn)
            .queue(self.name("q"))
            .exchange(self.name("ex"))
            .exchange_type(ExchangeType::Direct)
            .routing_key("k")
    }

    /// Another consumer of the queue `q`, which it does not redeclare.
    pub fn reader(&self, conn: &BrokerConnection) -> ConsumerBuilder {
        Consumer::builder(conn)
            .queue(self.name("q"))
            .auto_declare(false)
    }
}

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
        let names = Arc::new(Mutex::new(BTreeSet::new()));
        let result = scenario(Scenario {
            backend,
            scope,
            url: url.clone(),
            names: names.clone(),
        })
        .await;
        clean_up(&url, &names).await;
        if let Some(path) = url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
        if let Err(error) = result {
            panic!("{test} on {name}: {error} ({error:?})");
        }
    }
}

/// Deletes what a scenario declared, so that a shared broker (RabbitMQ) does not fill up with
/// durable queues across runs and restarts stay quick.
async fn clean_up(url: &str, names: &Mutex<BTreeSet<String>>) {
    let names: Vec<String> = names
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    let Ok(conn) = BrokerConnection::connect(url).await else {
        return;
    };
    for name in names {
        // Names also serve as routing keys: what is neither a queue nor an exchange is NotFound.
        let _ = conn
            .delete_queue(&name, carrot::DeleteQueueOptions::new())
            .await;
        let _ = conn
            .delete_exchange(&name, carrot::DeleteExchangeOptions::new())
            .await;
    }
    let _ = conn.close().await;
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

/// Asserts that a result is an error matching a pattern: `assert_err!(r, Error::NotFound(_))`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {:?}",
                stringify!($pattern),
                other
            ),
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
/// after its consumer's channel closes is asynchronous on RabbitMQ (the queue's own process
/// does it, after the channel's), so a check right after dropping a consumer can still see it.
pub async fn queue_gone(conn: &BrokerConnection, queue: &str) {
    within(&format!("queue {queue} deleted"), async {
        loop {
            match conn.queue_info(queue).await {
                Err(carrot::Error::NotFound(_)) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
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

/// A message's body decoded as a json number.
pub fn num(message: &Message) -> i64 {
    message
        .decode::<i64>()
        .unwrap_or_else(|e| panic!("{message:?} is not a number: {e}"))
}

/// A message's body decoded as a string.
pub fn text(message: &Message) -> String {
    message
        .decode::<String>()
        .unwrap_or_else(|e| panic!("{message:?} is not a string: {e}"))
}

/// Fetches every waiting message (basic.get) without acknowledging them.
pub async fn fetch_all(consumer: &mut Consumer) -> carrot::Result<Vec<Message>> {
    let mut all = Vec::new();
    while let Some(message) = consumer.fetch().await? {
        all.push(message);
    }
    Ok(all)
}

/// Fetches and acknowledges every waiting message; returns them as json numbers.
pub async fn drain_numbers(consumer: &mut Consumer) -> carrot::Result<Vec<i64>> {
    let mut all = Vec::new();
    while let Some(message) = consumer.fetch().await? {
        all.push(num(&message));
        message.ack()?;
    }
    Ok(all)
}

/// Fetches and acknowledges every waiting message; returns them as strings.
pub async fn drain_texts(consumer: &mut Consumer) -> carrot::Result<Vec<String>> {
    let mut all = Vec::new();
    while let Some(message) = consumer.fetch().await? {
        all.push(text(&message));
        message.ack()?;
    }
    Ok(all)
}
