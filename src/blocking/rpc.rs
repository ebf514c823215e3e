//! The blocking [`RpcClient`] and [`RpcServer`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{BrokerConnection, Consumer, Rt};
use crate::error::{BoxError, Result};
use crate::{CancellationToken, Message, SendOptions};

/// A blocking [`crate::RpcClient`]: calls from several threads share it (`&self`), each
/// waiting for its own reply.
///
/// ```
/// use std::time::Duration;
/// use carrot::blocking::{BrokerConnection, RpcClient, RpcServer};
/// use carrot::CancellationToken;
///
/// let conn = BrokerConnection::connect("memory://blocking-rpc-doc")?;
/// let mut server = RpcServer::new(&conn, "double")?;
/// let stop = CancellationToken::new();
/// let serving = std::thread::spawn({
///     let stop = stop.clone();
///     move || server.serve(|request| Ok(request.decode::<i64>()? * 2), stop)
/// });
/// let client = RpcClient::new(&conn)?;
/// assert_eq!(client.call("double", &21, Duration::from_secs(5))?.decode::<i64>()?, 42);
/// stop.cancel();
/// assert_eq!(serving.join().expect("the server thread")?, 1);
/// # Ok::<(), carrot::Error>(())
/// ```
#[derive(Debug)]
pub struct RpcClient {
    inner: crate::RpcClient,
    rt: Rt,
}

impl RpcClient {
    /// See [`crate::RpcClient::new`].
    pub fn new(connection: &BrokerConnection) -> Result<Self> {
        let inner = connection
            .rt
            .block_on(crate::RpcClient::new(&connection.inner))?;
        Ok(RpcClient {
            inner,
            rt: connection.rt.clone(),
        })
    }

    /// The async client underneath.
    pub fn as_async(&self) -> &crate::RpcClient {
        &self.inner
    }

    getters! {
        reply_to -> &str;
        in_flight -> usize;
    }

    /// See [`crate::RpcClient::call`].
    pub fn call<T: Serialize + ?Sized>(
        &self,
        routing_key: &str,
        request: &T,
        timeout: Duration,
    ) -> Result<Message> {
        self.rt
            .block_on(self.inner.call(routing_key, request, timeout))
    }

    /// See [`crate::RpcClient::call_with`].
    pub fn call_with<T: Serialize + ?Sized>(
        &self,
        request: &T,
        options: SendOptions,
        timeout: Duration,
    ) -> Result<Message> {
        self.rt
            .block_on(self.inner.call_with(request, options, timeout))
    }

    /// See [`crate::RpcClient::close`].
    pub fn close(&self) -> Result<()> {
        self.rt.block_on(self.inner.close())
    }
}

/// A blocking [`crate::RpcServer`]: its handler is a plain function.
#[derive(Debug)]
pub struct RpcServer {
    inner: crate::RpcServer,
    rt: Rt,
}

impl RpcServer {
    /// See [`crate::RpcServer::new`].
    pub fn new(connection: &BrokerConnection, queue: &str) -> Result<Self> {
        let inner = connection
            .rt
            .block_on(crate::RpcServer::new(&connection.inner, queue))?;
        Ok(RpcServer {
            inner,
            rt: connection.rt.clone(),
        })
    }

    /// See [`crate::RpcServer::from_consumer`].
    pub fn from_consumer(consumer: Consumer) -> Result<Self> {
        let Consumer { inner, rt } = consumer;
        let inner = rt.block_on(crate::RpcServer::from_consumer(inner))?;
        Ok(RpcServer { inner, rt })
    }

    /// The consumer of the requests (async: its settings and qos).
    pub fn consumer(&mut self) -> &mut crate::Consumer {
        self.inner.consumer()
    }

    /// See [`crate::RpcServer::serve`]: answers requests with `handler`'s replies until
    /// `shutdown` is cancelled.
    pub fn serve<F, R>(&mut self, mut handler: F, shutdown: CancellationToken) -> Result<u64>
    where
        F: FnMut(Arc<Message>) -> std::result::Result<R, BoxError>,
        R: Serialize,
    {
        let rt = self.rt.clone();
        rt.block_on(
            self.inner
                .serve(|request| std::future::ready(handler(request)), shutdown),
        )
    }
}
