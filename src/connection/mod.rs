//! `BrokerConnection`: opens the backend a URL names, and keeps it: retry, failover and
//! recovery settings, state and events.

mod builder;
mod delete;

use std::fmt;
use std::sync::{Arc, RwLock};

use crate::backend::memory::MemoryConnection;
use crate::backend::{Channel, Closings, QueueInfo, Transport};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::serialization::{Registry, Serializer};
use crate::table::FieldTable;
use crate::url::BrokerUrl;

use crate::options::{ConnectionOptions, Timeouts};
use crate::status::{ConnectionEvents, ConnectionState, StatusHub};
pub use builder::ConnectionBuilder;
pub use delete::{DeleteExchangeOptions, DeleteQueueOptions};

/// The environment variable [`BrokerConnection::from_env`] reads.
pub const BROKER_URL_ENV: &str = "CARROT_BROKER_URL";

/// A connection to a broker. Cheap to clone: clones share the connection, which closes when
/// the last clone is dropped or [`close`](BrokerConnection::close) is called.
///
/// On RabbitMQ a lost connection is recovered (see [`ConnectionBuilder`]): carrot reconnects
/// under the [`RetryPolicy`], moving through the failover URLs, declares again what the
/// connection had declared and resumes every consumer; [`state`](Self::state) and
/// [`events`](Self::events) tell what happens.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use carrot::{BrokerConnection, ConnectionState};
/// let conn = BrokerConnection::connect("memory://").await?;
/// assert_eq!(conn.url().scheme(), "memory");
/// assert_eq!(conn.state(), ConnectionState::Connected);
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct BrokerConnection {
    inner: Arc<Inner>,
}

struct Inner {
    urls: Vec<BrokerUrl>,
    transport: Box<dyn Transport>,
    registry: RwLock<Registry>,
    /// The channel of the administrative helpers (`declare_queue`, `purge`, ...), opened on
    /// first use and kept: a channel per call would cost a round trip to open and one to close
    /// (and on RabbitMQ a close still in flight races the connection's close).
    admin: tokio::sync::Mutex<Option<Arc<dyn Channel>>>,
    hub: Arc<StatusHub>,
    options: ConnectionOptions,
}

impl fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("url", &self.current_url().to_string())
            .field("state", &self.state())
            .finish()
    }
}

impl BrokerConnection {
    /// Connects to the broker a URL names: `memory://`, `memory://NAME`, `amqp://...`,
    /// `amqps://...` or `sqlite://PATH`; or to the first of several RabbitMQ URLs separated by
    /// `;` that answers (failover). Each URL is tried once; see
    /// [`ConnectionBuilder::retry_on_connect`] to retry under the policy.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::establish(
            crate::url::parse_failover(url)?,
            ConnectionOptions::default(),
        )
        .await
    }

    /// Connects to the URL in `CARROT_BROKER_URL`, or to `memory://` when it is not set.
    pub async fn from_env() -> Result<Self> {
        match std::env::var(BROKER_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::connect(&url).await,
            _ => Self::connect("memory://").await,
        }
    }

    /// Builds a connection: the seed's keywords (hostname, userid, password, ...), failover
    /// URLs, retry policy, recovery, timeouts, heartbeats.
    pub fn builder() -> ConnectionBuilder {
        ConnectionBuilder::default()
    }

    /// Connects with a [`ConnectionBuilder`] (the same as [`ConnectionBuilder::connect`]; the
    /// blocking API has the same, as `carrot::blocking::BrokerConnection::connect_with`).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let builder = carrot::BrokerConnection::builder().url("memory://connect-with-doc");
    /// let conn = carrot::BrokerConnection::connect_with(builder).await?;
    /// assert_eq!(conn.url().scheme(), "memory");
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn connect_with(builder: ConnectionBuilder) -> Result<Self> {
        builder.connect().await
    }

    /// Connects to an already parsed URL.
    pub async fn open(url: BrokerUrl) -> Result<Self> {
        Self::establish(vec![url], ConnectionOptions::default()).await
    }

    /// Connects to the first URL (of several failover URLs) that answers, with these options.
    pub(crate) async fn establish(
        urls: Vec<BrokerUrl>,
        options: ConnectionOptions,
    ) -> Result<Self> {
        let Some(first) = urls.first().cloned() else {
            return Err(Error::InvalidArgument("no broker URL given".into()));
        };
        let hub = Arc::new(StatusHub::new(options.on_event.clone()));
        let transport: Box<dyn Transport> = match &first {
            BrokerUrl::Memory { name } => Box::new(MemoryConnection::open(name)),
            #[cfg(feature = "amqp")]
            BrokerUrl::Amqp(_) => Box::new(
                crate::backend::amqp::AmqpConnection::open(&urls, &options, hub.clone()).await?,
            ),
            #[cfg(not(feature = "amqp"))]
            BrokerUrl::Amqp(_) => {
                return Err(Error::BackendUnavailable {
                    scheme: first.scheme().to_string(),
                    hint: "carrot was built without the `amqp` feature; enable it in Cargo.toml"
                        .into(),
                })
            }
            #[cfg(feature = "sqlite")]
            BrokerUrl::Sqlite { path } => {
                Box::new(crate::backend::sqlite::SqliteConnection::open(path).await?)
            }
            #[cfg(feature = "redis")]
            BrokerUrl::Redis(settings) => Box::new(
                crate::backend::redis::RedisConnection::open(
                    &first,
                    settings,
                    &options,
                    hub.clone(),
                )
                .await?,
            ),
            #[cfg(not(feature = "redis"))]
            BrokerUrl::Redis(_) => {
                return Err(Error::BackendUnavailable {
                    scheme: first.scheme().to_string(),
                    hint: "carrot was built without the `redis` feature; enable it in Cargo.toml"
                        .into(),
                })
            }
            #[cfg(not(feature = "sqlite"))]
            BrokerUrl::Sqlite { .. } => {
                return Err(Error::BackendUnavailable {
                    scheme: first.scheme().to_string(),
                    hint: "carrot was built without the `sqlite` feature; enable it in Cargo.toml"
                        .into(),
                })
            }
        };
        let conn = BrokerConnection {
            inner: Arc::new(Inner {
                urls,
                transport,
                registry: RwLock::new(Registry::default()),
                admin: tokio::sync::Mutex::new(None),
                hub,
                options,
            }),
        };
        tracing::debug!(url = %conn.current_url(), "connected");
        Ok(conn)
    }

    /// The broker URL (the first one, with failover URLs; its `Display` hides the password).
    pub fn url(&self) -> &BrokerUrl {
        &self.inner.urls[0]
    }

    /// Every URL the connection may use, the failover alternatives after the first.
    pub fn urls(&self) -> &[BrokerUrl] {
        &self.inner.urls
    }

    /// The URL connected to now (with failover, the one the last (re)connection reached).
    pub fn current_url(&self) -> &BrokerUrl {
        let i = self.inner.transport.current_url();
        self.inner.urls.get(i).unwrap_or(&self.inner.urls[0])
    }

    /// What the connection is doing now: connected, blocked by the broker, recovering, failed
    /// or closed.
    pub fn state(&self) -> ConnectionState {
        self.inner.hub.state()
    }

    /// The events of this connection from now on: lost, recovered, recovery failed, blocked,
    /// unblocked (also logged with tracing, and given to
    /// [`ConnectionBuilder::on_event`]).
    pub fn events(&self) -> ConnectionEvents {
        self.inner.hub.subscribe()
    }

    /// The retry policy of recoveries, sends and declarations.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.options.policy
    }

    /// The timeouts of every wait on the broker.
    pub fn timeouts(&self) -> Timeouts {
        self.inner.options.timeouts
    }

    /// The largest message body a publisher on this connection sends.
    pub fn max_message_size(&self) -> usize {
        self.inner.options.max_message_size
    }

    /// Every queue of an embedded broker with its counts (`carrot serve --metrics`).
    #[cfg(feature = "serve")]
    pub(crate) async fn queue_stats(&self) -> Result<Vec<crate::backend::QueueStats>> {
        self.inner.transport.queue_stats().await
    }

    /// Every exchange, queue and binding of an embedded broker (the management API).
    #[cfg(feature = "serve")]
    pub(crate) async fn topology(&self) -> Result<crate::backend::Topology> {
        self.inner.transport.topology().await
    }

    /// Whether publishers confirm by default (the URL's `confirm_publish` option).
    pub fn confirm_publish_default(&self) -> bool {
        matches!(self.url(), BrokerUrl::Amqp(s) if s.confirm_publish)
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
    /// their queues and exclusive queues declared on it are deleted. A recovery under way
    /// stops. Bounded by the operation timeout.
    pub async fn close(&self) -> Result<()> {
        if let Some(admin) = self.inner.admin.lock().await.take() {
            // Closed first and waited for, so that the connection closes cleanly.
            let _ = admin.close().await;
        }
        let result = self.inner.transport.close().await;
        self.inner.hub.set(ConnectionState::Closed);
        result
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

    /// The closes that drops on this connection left running (see [`Closings`]).
    pub(crate) fn closings(&self) -> Closings {
        self.inner.transport.closings()
    }

    pub(crate) async fn channel(&self) -> Result<Arc<dyn Channel>> {
        self.inner.transport.channel().await
    }

    /// Declares an exchange; redeclaring with other settings is [`Error::PreconditionFailed`].
    pub async fn declare_exchange(&self, spec: &ExchangeSpec) -> Result<()> {
        crate::limits::check_exchange(spec)?;
        let (_held, c) = self.admin().await?;
        c.declare_exchange(spec, false).await
    }

    /// Checks that an exchange exists ([`Error::NotFound`] otherwise).
    pub async fn exchange_exists(&self, name: &str) -> Result<()> {
        crate::limits::check_name("exchange name", name)?;
        let spec = ExchangeSpec::new(name, crate::ExchangeType::Direct);
        let (_held, c) = self.admin().await?;
        c.declare_exchange(&spec, true).await
    }

    /// Deletes an exchange and its bindings; with
    /// [`if_unused`](DeleteExchangeOptions::if_unused), only if no queue is bound to it. An
    /// exchange that does not exist is deleted already (`Ok`, as on RabbitMQ); the default and
    /// `amq.` exchanges are [`Error::AccessRefused`].
    pub async fn delete_exchange(&self, name: &str, options: DeleteExchangeOptions) -> Result<()> {
        crate::limits::check_name("exchange name", name)?;
        let (_held, c) = self.admin().await?;
        c.delete_exchange(name, options.if_unused).await
    }

    /// Declares a queue; redeclaring with other settings is [`Error::PreconditionFailed`].
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<QueueInfo> {
        crate::limits::check_queue(spec)?;
        let (_held, c) = self.admin().await?;
        c.declare_queue(spec, false).await
    }

    /// The queue's message and consumer counts ([`Error::NotFound`] if it does not exist).
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        crate::limits::check_name("queue name", name)?;
        let spec = QueueSpec::new(name);
        let (_held, c) = self.admin().await?;
        c.declare_queue(&spec, true).await
    }

    /// Deletes a queue; returns how many messages it held. With
    /// [`if_unused`](DeleteQueueOptions::if_unused) or [`if_empty`](DeleteQueueOptions::if_empty),
    /// only if it has no consumer or no message. A queue that does not exist is deleted already
    /// (`Ok(0)`, as on RabbitMQ); another connection's exclusive queue is
    /// [`Error::ResourceLocked`].
    pub async fn delete_queue(&self, name: &str, options: DeleteQueueOptions) -> Result<u32> {
        crate::limits::check_name("queue name", name)?;
        let (_held, c) = self.admin().await?;
        c.delete_queue(name, options.if_unused, options.if_empty)
            .await
    }

    /// Binds a queue to an exchange.
    pub async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        crate::limits::check_binding(queue, exchange, routing_key, arguments)?;
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
        crate::limits::check_binding(queue, exchange, routing_key, arguments)?;
        let (_held, c) = self.admin().await?;
        c.unbind(queue, exchange, routing_key, arguments).await
    }

    /// Binds the exchange `destination` to the exchange `source` (RabbitMQ's
    /// exchange-to-exchange bindings, kombu's `Exchange.bind_to`): what `source` routes with a
    /// matching key (or, for a headers exchange, matching `arguments`) goes on to
    /// `destination`, which routes it with the same key and headers. A queue that several paths
    /// lead to gets one copy of a message, and a cycle of bindings ends. Every broker does
    /// it, RabbitMQ included; [`Error::NotFound`] if either exchange is missing,
    /// [`Error::AccessRefused`] for the default exchange.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use carrot::{BrokerConnection, ExchangeSpec, ExchangeType, FieldTable, QueueSpec};
    /// let conn = BrokerConnection::connect("memory://bind-exchange-doc").await?;
    /// conn.declare_exchange(&ExchangeSpec::new("events", ExchangeType::Topic)).await?;
    /// conn.declare_exchange(&ExchangeSpec::new("audit", ExchangeType::Fanout).internal(true)).await?;
    /// conn.bind_exchange("audit", "events", "user.#", &FieldTable::new()).await?;
    /// conn.declare_queue(&QueueSpec::new("audit-log")).await?;
    /// conn.bind("audit-log", "audit", "", &FieldTable::new()).await?;
    /// let publisher = carrot::Publisher::builder(&conn).exchange("events")
    ///     .exchange_type(ExchangeType::Topic).routing_key("user.login").build().await?;
    /// publisher.send(&"alice").await?;
    /// assert_eq!(conn.queue_info("audit-log").await?.message_count, 1);
    /// # Ok::<(), carrot::Error>(()) }).unwrap();
    /// ```
    pub async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        crate::limits::check_exchange_binding(destination, source, routing_key, arguments)?;
        let (_held, c) = self.admin().await?;
        c.bind_exchange(destination, source, routing_key, arguments)
            .await
    }

    /// Removes an exchange-to-exchange binding made with the same key and arguments (one that
    /// does not exist is not an error); an auto-delete source goes with its last binding.
    pub async fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        crate::limits::check_exchange_binding(destination, source, routing_key, arguments)?;
        let (_held, c) = self.admin().await?;
        c.unbind_exchange(destination, source, routing_key, arguments)
            .await
    }

    /// Drops every waiting message of a queue; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u32> {
        crate::limits::check_name("queue name", queue)?;
        let (_held, c) = self.admin().await?;
        c.purge(queue).await
    }
}
