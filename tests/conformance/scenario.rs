//! A scenario's scope and what scenarios share besides waiting: written once against the async
//! API, and compiled a second time against `carrot::blocking` for the blocking twin
//! (`tests/blocking_conformance`), as every scenario file is. Waiting (for a message, for a
//! spawned task) differs between the two and lives in each one's `support.rs`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backends::Backend;
use crate::support::pause;
use carrot::{
    BrokerConnection, Consumer, ConsumerBuilder, ExchangeType, Message, Publisher, PublisherBuilder,
};

/// What a scenario returns: `?` works on carrot's and serde's errors alike.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// How long a message that must arrive may take.
pub const ARRIVES: Duration = Duration::from_secs(5);
/// How long to watch for a message that must not arrive.
pub const QUIET: Duration = Duration::from_millis(200);

/// One scenario on one backend: its scope names its broker (memory://SCOPE) and prefixes its
/// exchanges and queues, so that scenarios running in parallel never share them. Clones share
/// the names handed out.
#[derive(Clone)]
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
    /// The scenario of scope `scope` on `backend`, whose broker is at `url`.
    pub fn new(backend: Backend, scope: String, url: String) -> Self {
        Scenario {
            backend,
            scope,
            url,
            names: Arc::default(),
        }
    }

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

    /// An exchange or queue name that belongs to this scenario, after `prefix` (for a user
    /// whose permissions cover the names that start with it): `PREFIX.SCOPE.LOCAL`, deleted
    /// afterwards as [`name`](Self::name)'s are.
    pub fn name_after(&self, prefix: &str, local: &str) -> String {
        let name = format!("{prefix}.{}.{local}", self.scope);
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        name
    }

    /// Whether the backend has vhosts, users and permissions (those of
    /// `tests/fixtures/access-definitions.json`); says so when it has not (the caller skips).
    pub fn has_access_control(&self) -> bool {
        if !self.backend.access {
            eprintln!(
                "skipped on {}: the backend has no virtual hosts, users or permissions",
                self.backend.name
            );
        }
        self.backend.access
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
    /// Deletes what the scenario declared, so that a shared broker (RabbitMQ) does not fill up
    /// with durable queues across runs and restarts stay quick; removes its sqlite file.
    pub async fn clean_up(&self) {
        let names: Vec<String> = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if let Ok(conn) = BrokerConnection::connect(&self.url).await {
            for name in names {
                // Names also serve as routing keys: what is neither a queue nor an exchange is
                // NotFound.
                let _ = conn
                    .delete_queue(&name, carrot::DeleteQueueOptions::new())
                    .await;
                let _ = conn
                    .delete_exchange(&name, carrot::DeleteExchangeOptions::new())
                    .await;
            }
            let _ = conn.close().await;
        }
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

/// A bounded wait for a condition: [`tick`](Self::tick) pauses a little, and fails the
/// scenario once [`ARRIVES`] has passed.
///
/// ```text
/// let mut deadline = Deadline::new("the queue empties");
/// while count(...).await? > 0 {
///     deadline.tick().await;
/// }
/// ```
pub struct Deadline {
    what: String,
    until: std::time::Instant,
}

impl Deadline {
    /// A deadline [`ARRIVES`] from now for `what`.
    pub fn new(what: &str) -> Self {
        Deadline {
            what: what.to_string(),
            until: std::time::Instant::now() + ARRIVES,
        }
    }

    /// Pauses 10 ms; panics once the deadline has passed.
    pub async fn tick(&mut self) {
        assert!(
            std::time::Instant::now() < self.until,
            "{}: not within {ARRIVES:?}",
            self.what
        );
        pause(Duration::from_millis(10)).await
    }
}

/// Waits (bounded) until `queue` holds `count` ready messages.
pub async fn until_count(conn: &BrokerConnection, queue: &str, count: u32) {
    let mut deadline = Deadline::new(&format!("{count} messages in {queue}"));
    while conn.queue_info(queue).await.map(|i| i.message_count).ok() != Some(count) {
        deadline.tick().await;
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
