//! [`ConnectionPool`] and [`PublisherPool`]: kombu's `connections[...]` and `producers[...]`,
//! bounded pools shared by tasks and threads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connection::{BrokerConnection, ConnectionBuilder};
use crate::error::{Error, Result};
use crate::publisher::{Publisher, PublisherBuilder};
use crate::status::ConnectionState;

/// At most `limit` connections to one broker, opened when first needed and reused:
/// [`acquire`](Self::acquire) lends one, and dropping the [`PooledConnection`] gives it back.
///
/// The pool is a cheap handle (clone it into tasks and threads). A connection that failed or
/// was closed is not given back: the next acquire opens a new one. Dropping the last handle
/// of the pool (and the last lent connection) closes its connections; [`close`](Self::close)
/// closes the idle ones at once.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// let pool = carrot::ConnectionPool::new("memory://pool-doc", 4)?;
/// let conn = pool.acquire(Duration::from_secs(5)).await?;
/// conn.declare_queue(&carrot::QueueSpec::new("jobs")).await?;
/// assert_eq!(pool.in_use(), 1);
/// drop(conn);
/// assert_eq!((pool.in_use(), pool.idle()), (0, 1));
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionPool {
    shared: Arc<Shared<BrokerConnection>>,
    builder: ConnectionBuilder,
}

/// What both pools share: the permits of the limit and the idle resources.
#[derive(Debug)]
struct Shared<T> {
    what: &'static str,
    limit: usize,
    permits: Arc<Semaphore>,
    idle: parking_lot::Mutex<Vec<T>>,
}

impl<T> Shared<T> {
    fn new(what: &'static str, limit: usize) -> Result<Arc<Self>> {
        if limit == 0 || limit > Semaphore::MAX_PERMITS {
            return Err(Error::InvalidArgument(format!(
                "a pool of {what} needs a limit from 1 to {}, not {limit}",
                Semaphore::MAX_PERMITS
            )));
        }
        Ok(Arc::new(Shared {
            what,
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            idle: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// A permit, waiting at most `timeout` for one.
    async fn permit(&self, timeout: Duration) -> Result<OwnedSemaphorePermit> {
        let exhausted = || Error::PoolExhausted {
            what: self.what.to_string(),
            limit: self.limit,
            waited: timeout,
        };
        match tokio::time::timeout(timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Error::InvalidArgument(format!(
                "the pool of {} was closed",
                self.what
            ))),
            Err(_) => Err(exhausted()),
        }
    }

    fn in_use(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// The most recently given back idle resource that is still `usable`; those that are
    /// not are dropped.
    fn reuse(&self, usable: impl Fn(&T) -> bool) -> Option<T> {
        let mut idle = self.idle.lock();
        while let Some(resource) = idle.pop() {
            if usable(&resource) {
                return Some(resource);
            }
        }
        None
    }

    /// Every idle resource, taken out of the pool (to be closed).
    fn take_idle(&self) -> Vec<T> {
        std::mem::take(&mut *self.idle.lock())
    }
}

/// Whether a connection can be lent again.
fn usable(connection: &BrokerConnection) -> bool {
    !matches!(
        connection.state(),
        ConnectionState::Failed { .. } | ConnectionState::Closed
    )
}

impl ConnectionPool {
    /// A pool of at most `limit` connections to `url` (checked now; connections open at
    /// their first acquire).
    pub fn new(url: &str, limit: usize) -> Result<Self> {
        let builder = BrokerConnection::builder().url(url);
        builder.build_urls()?;
        Self::with_builder(builder, limit)
    }

    /// A pool of at most `limit` connections made by `builder` (failover URLs, retry policy,
    /// timeouts, ...).
    pub fn with_builder(builder: ConnectionBuilder, limit: usize) -> Result<Self> {
        Ok(ConnectionPool {
            shared: Shared::new("connections", limit)?,
            builder,
        })
    }

    /// Lends a connection: an idle one, or a new one while fewer than the limit are open.
    /// [`Error::PoolExhausted`] when all stay lent for `timeout`; the connect's own errors
    /// otherwise (its time is bounded by the builder's retry policy and timeouts, not by
    /// `timeout`).
    pub async fn acquire(&self, timeout: Duration) -> Result<PooledConnection> {
        let permit = self.shared.permit(timeout).await?;
        let connection = match self.shared.reuse(usable) {
            Some(connection) => connection,
            None => self.builder.clone().connect().await?,
        };
        Ok(PooledConnection {
            connection: Some(connection),
            shared: self.shared.clone(),
            _permit: permit,
        })
    }

    /// The most connections the pool opens.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// How many connections are lent now.
    pub fn in_use(&self) -> usize {
        self.shared.in_use()
    }

    /// How many open connections wait to be lent.
    pub fn idle(&self) -> usize {
        self.shared.idle.lock().len()
    }

    /// Closes the idle connections (lent ones close when given back after this, if the pool
    /// is gone by then, or stay for the next acquire).
    pub async fn close(&self) -> Result<()> {
        let mut outcome = Ok(());
        for connection in self.shared.take_idle() {
            if let Err(e) = connection.close().await {
                outcome = Err(e);
            }
        }
        outcome
    }
}

/// A connection lent by a [`ConnectionPool`]; use it as a [`BrokerConnection`] (it derefs to
/// one) and drop it to give it back.
#[derive(Debug)]
pub struct PooledConnection {
    connection: Option<BrokerConnection>,
    shared: Arc<Shared<BrokerConnection>>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledConnection {
    type Target = BrokerConnection;
    fn deref(&self) -> &BrokerConnection {
        // Taken only by `drop`.
        self.connection
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lent connection is there until dropped"))
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            if usable(&connection) {
                self.shared.idle.lock().push(connection);
            }
        }
    }
}

type Configure = Arc<dyn Fn(PublisherBuilder) -> PublisherBuilder + Send + Sync>;

/// At most `limit` publishers, each with its channel, built when first needed on connections
/// of a [`ConnectionPool`] and reused (kombu's `producers[connection]`): a service sends from
/// many tasks without a channel per message or a publisher per task.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use carrot::{ConnectionPool, PublisherPool};
/// let connections = ConnectionPool::new("memory://publisher-pool-doc", 2)?;
/// let publishers = PublisherPool::new(connections, 8, |b| b.routing_key("jobs"))?;
/// let publisher = publishers.acquire(Duration::from_secs(5)).await?;
/// publisher.send(&"hello").await?;
/// # Ok::<(), carrot::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct PublisherPool {
    shared: Arc<Shared<Publisher>>,
    connections: ConnectionPool,
    configure: Configure,
}

impl std::fmt::Debug for PublisherPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherPool")
            .field("limit", &self.shared.limit)
            .field("in_use", &self.shared.in_use())
            .finish_non_exhaustive()
    }
}

impl PublisherPool {
    /// A pool of at most `limit` publishers on `connections`, each built by `configure` from
    /// a fresh [`PublisherBuilder`] (exchange, routing key, serializer, confirms, ...).
    pub fn new(
        connections: ConnectionPool,
        limit: usize,
        configure: impl Fn(PublisherBuilder) -> PublisherBuilder + Send + Sync + 'static,
    ) -> Result<Self> {
        Ok(PublisherPool {
            shared: Shared::new("publishers", limit)?,
            connections,
            configure: Arc::new(configure),
        })
    }

    /// Lends a publisher: an idle one, or a new one (on a connection of the pool, which it
    /// shares with others) while fewer than the limit exist. [`Error::PoolExhausted`] when all
    /// stay lent for `timeout`, or when no connection could be had within it.
    pub async fn acquire(&self, timeout: Duration) -> Result<PooledPublisher> {
        let started = tokio::time::Instant::now();
        let permit = self.shared.permit(timeout).await?;
        let publisher = match self.shared.reuse(|p: &Publisher| usable(p.connection())) {
            Some(publisher) => publisher,
            None => {
                let left = timeout.saturating_sub(started.elapsed());
                let connection = self.connections.acquire(left).await?;
                // The publisher keeps (a handle of) the connection; the lease goes back at
                // once, so that publishers share the pool's connections.
                (self.configure)(Publisher::builder(&connection))
                    .build()
                    .await?
            }
        };
        Ok(PooledPublisher {
            publisher: Some(publisher),
            shared: self.shared.clone(),
            _permit: permit,
        })
    }

    /// The most publishers the pool builds.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// How many publishers are lent now.
    pub fn in_use(&self) -> usize {
        self.shared.in_use()
    }

    /// How many built publishers wait to be lent.
    pub fn idle(&self) -> usize {
        self.shared.idle.lock().len()
    }

    /// The connections the publishers are built on.
    pub fn connections(&self) -> &ConnectionPool {
        &self.connections
    }

    /// Closes the idle publishers (their channels).
    pub async fn close(&self) -> Result<()> {
        let mut outcome = Ok(());
        for publisher in self.shared.take_idle() {
            if let Err(e) = publisher.close().await {
                outcome = Err(e);
            }
        }
        outcome
    }
}

/// A publisher lent by a [`PublisherPool`]; use it as a [`Publisher`] (it derefs to one) and
/// drop it to give it back.
#[derive(Debug)]
pub struct PooledPublisher {
    publisher: Option<Publisher>,
    shared: Arc<Shared<Publisher>>,
    _permit: OwnedSemaphorePermit,
}

impl PooledPublisher {
    /// The lent publisher (also what the `PooledPublisher` derefs to).
    pub fn publisher(&self) -> &Publisher {
        self
    }
}

impl std::ops::Deref for PooledPublisher {
    type Target = Publisher;
    fn deref(&self) -> &Publisher {
        self.publisher
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lent publisher is there until dropped"))
    }
}

impl Drop for PooledPublisher {
    fn drop(&mut self) {
        if let Some(publisher) = self.publisher.take() {
            if usable(publisher.connection()) {
                self.shared.idle.lock().push(publisher);
            }
        }
    }
}
