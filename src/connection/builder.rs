//! `ConnectionBuilder`: the seed's keywords, failover URLs, and how the connection rides out
//! a broker that goes away.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::BrokerConnection;
use crate::error::{Error, Result};
use crate::options::{ConnectionOptions, FailoverStrategy, Timeouts};
use crate::retry::RetryPolicy;
use crate::status::ConnectionEvent;
use crate::url::{AmqpSettings, BrokerUrl, Password};

/// Builds a [`BrokerConnection`]: from a URL (or several failover URLs), or from the seed's
/// keyword arguments, with the retry policy, recovery, timeouts and heartbeats.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let conn = carrot::BrokerConnection::builder().backend("memory").virtual_host("tests").connect().await?;
/// assert_eq!(conn.url().to_string(), "memory://tests");
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
///
/// RabbitMQ with two nodes, retrying for up to five minutes, told of every event:
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use carrot::{BrokerConnection, RetryPolicy, Timeouts};
///
/// let conn = BrokerConnection::builder()
///     .url("amqp://guest:guest@node1:5672//;amqp://guest:guest@node2:5672//")
///     .retry_policy(RetryPolicy::default().timeout(Some(Duration::from_secs(300))))
///     .retry_on_connect(true)
///     .timeouts(Timeouts::default().send(Duration::from_secs(10)))
///     .heartbeat(Duration::from_secs(30))
///     .on_event(|event| eprintln!("broker: {event:?}"))
///     .connect()
///     .await?;
/// # Ok::<(), carrot::Error>(()) });
/// ```
#[derive(Clone, Default)]
pub struct ConnectionBuilder {
    urls: Vec<String>,
    backend: Option<String>,
    hostname: Option<String>,
    port: Option<u16>,
    userid: Option<String>,
    password: Option<Password>,
    virtual_host: Option<String>,
    connect_timeout: Option<Duration>,
    ssl: bool,
    insist: bool,
    options: ConnectionOptions,
}

impl fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| crate::redact::redact(u)).collect();
        f.debug_struct("ConnectionBuilder")
            .field("urls", &urls)
            .field("backend", &self.backend)
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("userid", &self.userid)
            .field("password", &self.password)
            .field("virtual_host", &self.virtual_host)
            .field("ssl", &self.ssl)
            .field("connect_timeout", &self.connect_timeout)
            .field("insist", &self.insist)
            .field("options", &self.options)
            .finish()
    }
}

impl ConnectionBuilder {
    /// A broker URL, or several RabbitMQ URLs separated by `;` (failover alternatives, as
    /// kombu writes them); may be called again to add more. URLs take precedence over the
    /// seed's keywords.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }
    /// Several failover URLs (each may itself hold several separated by `;`).
    pub fn urls<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }
    /// The order in which failover URLs are tried (default round-robin).
    pub fn failover_strategy(mut self, strategy: FailoverStrategy) -> Self {
        self.options.failover = strategy;
        self
    }
    /// How long and how often to retry when the broker cannot be reached: recoveries, sends,
    /// declarations (default [`RetryPolicy::default`]: up to 60 s).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.options.policy = policy;
        self
    }
    /// Whether the first connect retries under the policy too (kombu's `ensure_connection`),
    /// instead of trying each URL once (kombu's `connect`). Default false, so that a wrong
    /// URL fails at once.
    pub fn retry_on_connect(mut self, retry: bool) -> Self {
        self.options.retry_on_connect = retry;
        self
    }
    /// Whether a lost RabbitMQ connection is recovered automatically (default true). Without
    /// recovery, a lost connection fails every call with [`Error::ConnectionClosed`] and ends
    /// every consumer with that error.
    pub fn recovery(mut self, recovery: bool) -> Self {
        self.options.recovery = recovery;
        self
    }
    /// The timeouts of every wait on the broker (see [`Timeouts`]).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.options.timeouts = timeouts;
        self
    }
    /// The heartbeat interval asked of RabbitMQ (default 60 s, RabbitMQ's own; the URL option
    /// `heartbeat` sets it too). A broker that stops answering (suspended, or a connection
    /// black-holed by the network) is found within two intervals and handled as a lost
    /// connection. Whole seconds, at least one.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.options.heartbeat = Some(interval);
        self
    }
    /// The largest message body publishers send (default 128 MiB, as RabbitMQ); a larger one
    /// is [`Error::MessageTooLarge`] on every broker.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.max_message_size = bytes;
        self
    }
    /// A function told of every [`ConnectionEvent`] (lost, recovered, blocked, ...). It runs
    /// on carrot's tasks: keep it short and never block in it.
    pub fn on_event(mut self, callback: impl Fn(&ConnectionEvent) + Send + Sync + 'static) -> Self {
        self.options.on_event = Some(Arc::new(callback));
        self
    }
    /// `memory`, `amqp` (the default when a hostname is given) or `sqlite`.
    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }
    /// Broker host (for sqlite, the database path).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }
    /// Broker port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// User name.
    pub fn userid(mut self, userid: impl Into<String>) -> Self {
        self.userid = Some(userid.into());
        self
    }
    /// Password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Password::new(password));
        self
    }
    /// Virtual host (for memory, the broker's name).
    pub fn virtual_host(mut self, virtual_host: impl Into<String>) -> Self {
        self.virtual_host = Some(virtual_host.into());
        self
    }
    /// How long one connection attempt may take (the seed's keyword; the same as
    /// [`Timeouts::connect`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self.options.timeouts = self.options.timeouts.connect(timeout);
        self
    }
    /// Use TLS.
    pub fn ssl(mut self, ssl: bool) -> Self {
        self.ssl = ssl;
        self
    }
    /// Accepted for compatibility with the seed; AMQP 0-9-1 brokers ignore it.
    pub fn insist(mut self, insist: bool) -> Self {
        self.insist = insist;
        self
    }

    /// The URL these settings describe (the first one, with failover URLs).
    pub fn build_url(self) -> Result<BrokerUrl> {
        let mut urls = self.build_urls()?;
        Ok(urls.swap_remove(0))
    }

    /// Every URL these settings describe: those given with [`url`](Self::url), else the one
    /// the seed's keywords make.
    pub fn build_urls(&self) -> Result<Vec<BrokerUrl>> {
        if !self.urls.is_empty() {
            let mut all = Vec::new();
            for url in &self.urls {
                all.extend(crate::url::parse_failover(url)?);
            }
            if all.len() > 1 && !all.iter().all(|u| matches!(u, BrokerUrl::Amqp(_))) {
                return Err(Error::InvalidArgument(
                    "several URLs are failover alternatives between RabbitMQ nodes: each must be amqp:// or amqps://".into(),
                ));
            }
            return Ok(all);
        }
        self.keyword_url().map(|url| vec![url])
    }

    fn keyword_url(&self) -> Result<BrokerUrl> {
        let backend = self.backend.clone().unwrap_or_else(|| {
            if self.hostname.is_some() {
                "amqp".into()
            } else {
                "memory".into()
            }
        });
        match backend.as_str() {
            "memory" => Ok(BrokerUrl::Memory {
                name: self.virtual_host.clone().unwrap_or_default(),
            }),
            "sqlite" => match &self.hostname {
                Some(path) => Ok(BrokerUrl::Sqlite { path: path.into() }),
                None => Err(Error::InvalidArgument(
                    "the sqlite backend needs hostname(PATH): the database file".into(),
                )),
            },
            "amqp" | "pyamqp" => {
                let mut s = AmqpSettings {
                    tls: self.ssl,
                    port: if self.ssl { 5671 } else { 5672 },
                    ..AmqpSettings::default()
                };
                if let Some(h) = &self.hostname {
                    s.host = h.clone();
                }
                if let Some(p) = self.port {
                    s.port = p;
                }
                if let Some(u) = &self.userid {
                    s.userid = u.clone();
                }
                if let Some(p) = &self.password {
                    s.password = p.clone();
                }
                if let Some(v) = &self.virtual_host {
                    s.virtual_host = v.clone();
                }
                s.connection_timeout = self.connect_timeout;
                Ok(BrokerUrl::Amqp(s))
            }
            other => Err(Error::InvalidArgument(format!(
                "unknown backend {other:?}: use memory, amqp or sqlite"
            ))),
        }
    }

    /// Connects (to the first failover URL that answers).
    pub async fn connect(self) -> Result<BrokerConnection> {
        if let Some(heartbeat) = self.options.heartbeat {
            if heartbeat < Duration::from_secs(1) || heartbeat.as_secs() > u64::from(u16::MAX) {
                return Err(Error::InvalidArgument(format!(
                    "heartbeat {heartbeat:?}: AMQP heartbeats are whole seconds from 1 to 65535"
                )));
            }
        }
        let urls = self.build_urls()?;
        BrokerConnection::establish(urls, self.options).await
    }
}
