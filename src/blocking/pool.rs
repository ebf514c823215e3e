//! The blocking [`ConnectionPool`] and [`PublisherPool`].

use std::time::Duration;

use super::{BrokerConnection, PublisherBuilder, Rt};
use crate::error::Result;
use crate::ConnectionBuilder;

/// A blocking [`crate::ConnectionPool`]: at most `limit` connections, lent by `acquire`,
/// given back on drop; share it between threads by cloning.
///
/// ```
/// use std::time::Duration;
/// let pool = carrot::blocking::ConnectionPool::new("memory://blocking-pool-doc", 2)?;
/// let conn = pool.acquire(Duration::from_secs(5))?;
/// conn.declare_queue(&carrot::QueueSpec::new("jobs"))?;
/// # Ok::<(), carrot::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionPool {
    inner: crate::ConnectionPool,
    rt: Rt,
}

/// A connection lent by a blocking [`ConnectionPool`]; it derefs to a [`BrokerConnection`].
#[derive(Debug)]
pub struct PooledConnection {
    connection: BrokerConnection,
    _lease: crate::PooledConnection,
}

impl std::ops::Deref for PooledConnection {
    type Target = BrokerConnection;
    fn deref(&self) -> &BrokerConnection {
        &self.connection
    }
}

impl ConnectionPool {
    /// See [`crate::ConnectionPool::new`].
    pub fn new(url: &str, limit: usize) -> Result<Self> {
        Ok(ConnectionPool {
            inner: crate::ConnectionPool::new(url, limit)?,
            rt: Rt::shared()?,
        })
    }

    /// See [`crate::ConnectionPool::with_builder`].
    pub fn with_builder(builder: ConnectionBuilder, limit: usize) -> Result<Self> {
        Ok(ConnectionPool {
            inner: crate::ConnectionPool::with_builder(builder, limit)?,
            rt: Rt::shared()?,
        })
    }

    /// The async pool underneath.
    pub fn as_async(&self) -> &crate::ConnectionPool {
        &self.inner
    }

    getters! {
        limit -> usize;
        in_use -> usize;
        idle -> usize;
    }

    /// See [`crate::ConnectionPool::acquire`].
    pub fn acquire(&self, timeout: Duration) -> Result<PooledConnection> {
        let lease = self.rt.block_on(self.inner.acquire(timeout))?;
        let connection = BrokerConnection {
            inner: (*lease).clone(),
            rt: Rt::adopt(&lease)?,
        };
        Ok(PooledConnection {
            connection,
            _lease: lease,
        })
    }

    /// See [`crate::ConnectionPool::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}

/// A blocking [`crate::PublisherPool`].
///
/// ```
/// use std::time::Duration;
/// use carrot::blocking::{ConnectionPool, PublisherPool};
/// let connections = ConnectionPool::new("memory://blocking-publisher-pool-doc", 2)?;
/// let publishers = PublisherPool::new(connections, 4, |b| b.routing_key("jobs"))?;
/// publishers.acquire(Duration::from_secs(5))?.send(&"hello")?;
/// # Ok::<(), carrot::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PublisherPool {
    inner: crate::PublisherPool,
    connections: ConnectionPool,
}

/// A publisher lent by a blocking [`PublisherPool`]: send with it, drop it to give it back.
#[derive(Debug)]
pub struct PooledPublisher {
    lease: crate::PooledPublisher,
    rt: Rt,
}

impl PooledPublisher {
    /// The async publisher underneath (its settings).
    pub fn as_async(&self) -> &crate::Publisher {
        &self.lease
    }

    /// See [`crate::PooledPublisher::publisher`]: the async publisher lent.
    pub fn publisher(&self) -> &crate::Publisher {
        &self.lease
    }

    /// See [`crate::Publisher::send`].
    pub fn send<T: serde::Serialize + ?Sized>(&self, data: &T) -> Result<()> {
        self.rt.block_on(self.lease.send(data))
    }

    /// See [`crate::Publisher::send_with`].
    pub fn send_with<T: serde::Serialize + ?Sized>(
        &self,
        data: &T,
        options: crate::SendOptions,
    ) -> Result<()> {
        self.rt.block_on(self.lease.send_with(data, options))
    }

    /// See [`crate::Publisher::publish`].
    pub fn publish(
        &self,
        message: crate::OutgoingMessage,
        options: &crate::SendOptions,
    ) -> Result<()> {
        self.rt.block_on(self.lease.publish(message, options))
    }
}

impl PublisherPool {
    /// See [`crate::PublisherPool::new`]; `configure` sets up a blocking
    /// [`PublisherBuilder`].
    pub fn new(
        connections: ConnectionPool,
        limit: usize,
        configure: impl Fn(PublisherBuilder) -> PublisherBuilder + Send + Sync + 'static,
    ) -> Result<Self> {
        let rt = connections.rt.clone();
        let inner = crate::PublisherPool::new(connections.inner.clone(), limit, move |b| {
            configure(PublisherBuilder::wrap(b, rt.clone())).into_inner()
        })?;
        Ok(PublisherPool { inner, connections })
    }

    /// The async pool underneath.
    pub fn as_async(&self) -> &crate::PublisherPool {
        &self.inner
    }

    getters! {
        limit -> usize;
        in_use -> usize;
        idle -> usize;
    }

    /// See [`crate::PublisherPool::connections`].
    pub fn connections(&self) -> &ConnectionPool {
        &self.connections
    }

    /// See [`crate::PublisherPool::acquire`].
    pub fn acquire(&self, timeout: Duration) -> Result<PooledPublisher> {
        let lease = self.connections.rt.block_on(self.inner.acquire(timeout))?;
        Ok(PooledPublisher {
            lease,
            rt: self.connections.rt.clone(),
        })
    }

    /// See [`crate::PublisherPool::close`].
    pub fn close(&self) -> Result<()> {
        self.connections.rt.block_on(self.inner.close())
    }
}
