//! `BrokerConnection`: opens the backend a URL names.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::backend::memory::MemoryConnection;
use crate::backend::{Channel, QueueInfo, Transport};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::serialization::{Registry, Serializer};
use crate::table::FieldTable;
use crate::url::{AmqpSettings, BrokerUrl, Password};

/// The environment variable [`BrokerConnection::from_env`] reads.
pub const BROKER_URL_ENV: &str = "CARROT_BROKER_URL";

/// A connection to a broker. Cheap to clone: clones share the connection, which closes when
/// the last clone is dropped or [`close`](BrokerConnection::close) is called.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::BrokerConnection;
/// let conn = BrokerConnection::connect("memory://").await?;
/// assert_eq!(conn.url().scheme(), "memory");
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct BrokerConnection {
    inner: Arc<Inner>,
}

struct Inner {
    url: BrokerUrl,
    transport: Box<dyn Transport>,
    registry: RwLock<Registry>,
    /// The channel of the administrative helpers (`declare_queue`, `purge`, ...), opened on
    /// first use and kept: a channel per call would cost a round trip to open and one to close
    /// (and on RabbitMQ a close still in flight races the connection's close).
    admin: tokio::sync::Mutex<Option<Arc<dyn Channel>>>,
}

impl fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("url", &self.inner.url.to_string())
            .finish()
    }
}

impl BrokerConnection {
    /// Connects to the broker a URL names: `memory://`, `memory://NAME`, `amqp://...`,
    /// `amqps://...` or `sqlite://PATH`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(BrokerUrl::parse(url)?).await
    }

    /// Connects to the URL in `CARROT_BROKER_URL`, or to `memory://` when it is not set.
    pub async fn from_env() -> Result<Self> {
        match std::env::var(BROKER_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::connect(&url).await,
            _ => Self::connect("memory://").await,
        }
    }

    /// Builds a connection from the seed's keywords (hostname, userid, password, ...).
    pub fn builder() -> ConnectionBuilder {
        ConnectionBuilder::default()
    }

    /// Connects to an already parsed URL.
    pub async fn open(url: BrokerUrl) -> Result<Self> {
        let transport: Box<dyn Transport> = match &url {
            BrokerUrl::Memory { name } => Box::new(MemoryConnection::open(name)),
            #[cfg(feature = "amqp")]
            BrokerUrl::Amqp(settings) => Box::new(
                crate::backend::amqp::AmqpConnection::open(settings, url.to_string()).await?,
            ),
            #[cfg(not(feature = "amqp"))]
            BrokerUrl::Amqp(_) => {
                return Err(Error::BackendUnavailable {
                    scheme: url.scheme().to_string(),
                    hint: "carrot was built without the `amqp` feature; enable it in Cargo.toml"
                        .into(),
                })
            }
            #[cfg(feature = "sqlite")]
            BrokerUrl::Sqlite { path } => {
                Box::new(crate::backend::sqlite::SqliteConnection::open(path).await?)
            }
            #[cfg(not(feature = "sqlite"))]
            BrokerUrl::Sqlite { .. } => {
                return Err(Error::BackendUnavailable {
                    scheme: url.scheme().to_string(),
                    hint: "carrot was built without the `sqlite` feature; enable it in Cargo.toml"
                        .into(),
                })
            }
        };
        tracing::debug!(url = %url, "connected");
        Ok(BrokerConnection {
            inner: Arc::new(Inner {
                url,
                transport,
                registry: RwLock::new(Registry::default()),
                admin: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The broker URL (its `Display` hides the password).
    pub fn url(&self) -> &BrokerUrl {
        &self.inner.url
    }

    /// Whether publishers confirm by default (the URL's `confirm_publish` option).
    pub fn confirm_publish_default(&self) -> bool {
        matches!(&self.inner.url, BrokerUrl::Amqp(s) if s.confirm_publish)
    }

    /// A snapshot of the serializers publishers and consumers built from now on will use.
    pub fn registry(&self) -> Registry {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Registers a serializer for the publishers and consumers built from now on.
    pub fn register_serializer(
        &self,
        name: &str,
        content_type: &str,
        content_encoding: &str,
        serializer: impl Serializer,
    ) {
        self.inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, content_type, content_encoding, serializer);
    }

    /// Closes the connection: every channel on it closes, unacknowledged messages go back to
    /// their queues and exclusive queues declared on it are deleted.
    pub async fn close(&self) -> Result<()> {
        if let Some(admin) = self.inner.admin.lock().await.take() {
            // Closed first and waited for, so that the connection closes cleanly.
            let _ = admin.close().await;
        }
        self.inner.transport.close().await
    }

    /// The connection's admin channel, held (one administrative operation at a time) while the
    /// guard lives.
    async fn admin(
        &self,
    ) -> Result<(
        tokio::sync::MutexGuard<'_, Option<Arc<dyn Channel>>>,
        Arc<dyn Channel>,
    )> {
        let mut admin = self.inner.admin.lock().await;
        let channel = match &*admin {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.channel().await?;
                *admin = Some(channel.clone());
                channel
            }
        };
        Ok((admin, channel))
    }

    pub(crate) async fn channel(&self) -> Result<Arc<dyn Channel>> {
        self.inner.transport.channel().await
    }

    /// Declares an exchange; redeclaring with other settings is [`Error::PreconditionFailed`].
    pub async fn declare_exchange(&self, spec: &ExchangeSpec) -> Result<()> {
        let (_held, c) = self.admin().await?;
        c.declare_exchange(spec, false).await
    }

    /// Checks that an exchange exists ([`Error::NotFound`] otherwise).
    pub async fn exchange_exists(&self, name: &str) -> Result<()> {
        let spec = ExchangeSpec::new(name, crate::ExchangeType::Direct);
        let (_held, c) = self.admin().await?;
        c.declare_exchange(&spec, true).await
    }

    /// Deletes an exchange; with `if_unused`, only if no queue is bound to it.
    pub async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        let (_held, c) = self.admin().await?;
        c.delete_exchange(name, if_unused).await
    }

    /// Declares a queue; redeclaring with other settings is [`Error::PreconditionFailed`].
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<QueueInfo> {
        let (_held, c) = self.admin().await?;
        c.declare_queue(spec, false).await
    }

    /// The queue's message and consumer counts ([`Error::NotFound`] if it does not exist).
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        let spec = QueueSpec::new(name);
        let (_held, c) = self.admin().await?;
        c.declare_queue(&spec, true).await
    }

    /// Deletes a queue; returns how many messages it held.
    pub async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32> {
        let (_held, c) = self.admin().await?;
        c.delete_queue(name, if_unused, if_empty).await
    }

    /// Binds a queue to an exchange.
    pub async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let (_held, c) = self.admin().await?;
        c.bind(queue, exchange, routing_key, arguments).await
    }

    /// Removes a binding; an auto-delete exchange goes with its last binding.
    pub async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let (_held, c) = self.admin().await?;
        c.unbind(queue, exchange, routing_key, arguments).await
    }

    /// Drops every waiting message of a queue; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u32> {
        let (_held, c) = self.admin().await?;
        c.purge(queue).await
    }
}

/// Builds a [`BrokerConnection`] from the seed's keyword arguments.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let conn = carrot::BrokerConnection::builder().backend("memory").virtual_host("tests").connect().await?;
/// assert_eq!(conn.url().to_string(), "memory://tests");
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConnectionBuilder {
    backend: Option<String>,
    hostname: Option<String>,
    port: Option<u16>,
    userid: Option<String>,
    password: Option<Password>,
    virtual_host: Option<String>,
    connect_timeout: Option<Duration>,
    ssl: bool,
    insist: bool,
}

impl ConnectionBuilder {
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
    /// How long to wait for the broker.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
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

    /// The URL these settings describe.
    pub fn build_url(self) -> Result<BrokerUrl> {
        let backend = self.backend.clone().unwrap_or_else(|| {
            if self.hostname.is_some() {
                "amqp".into()
            } else {
                "memory".into()
            }
        });
        match backend.as_str() {
            "memory" => Ok(BrokerUrl::Memory {
                name: self.virtual_host.unwrap_or_default(),
            }),
            "sqlite" => match self.hostname {
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
                if let Some(h) = self.hostname {
                    s.host = h;
                }
                if let Some(p) = self.port {
                    s.port = p;
                }
                if let Some(u) = self.userid {
                    s.userid = u;
                }
                if let Some(p) = self.password {
                    s.password = p;
                }
                if let Some(v) = self.virtual_host {
                    s.virtual_host = v;
                }
                s.connection_timeout = self.connect_timeout;
                Ok(BrokerUrl::Amqp(s))
            }
            other => Err(Error::InvalidArgument(format!(
                "unknown backend {other:?}: use memory, amqp or sqlite"
            ))),
        }
    }

    /// Connects.
    pub async fn connect(self) -> Result<BrokerConnection> {
        BrokerConnection::open(self.build_url()?).await
    }
}
