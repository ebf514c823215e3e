//! The connections to Redis: one multiplexed connection that every command of a carrot
//! connection shares (pipelined), a dedicated one per waiting consumer (blocking commands hold
//! a connection), the master found through Sentinel, and recovery under the retry policy when
//! Redis goes away (a restart, a failover).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo, ServerErrorKind,
};

use crate::error::{Cause, Error, Result};
use crate::options::ConnectionOptions;
use crate::status::{ConnectionEvent, ConnectionState, StatusHub};
use crate::url::{BrokerUrl, RedisAddress, RedisSettings};

/// A carrot connection's way to Redis.
pub(crate) struct Link {
    pub(crate) settings: RedisSettings,
    url: String,
    options: ConnectionOptions,
    hub: Arc<StatusHub>,
    /// The shared connection, with a number that changes with each new one (so that one loss
    /// seen by many commands is reported once).
    current: parking_lot::Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: std::sync::atomic::AtomicU64,
    reconnecting: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("url", &self.url).finish()
    }
}

/// Whether an error of Redis means the connection (or the master) is gone, so that the
/// operation is worth repeating on a new connection.
pub(crate) fn is_lost(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
            ) | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
        )
}

impl Link {
    /// Connects (under the retry policy if `retry_on_connect`).
    pub(crate) async fn open(
        url: &BrokerUrl,
        settings: &RedisSettings,
        options: &ConnectionOptions,
        hub: Arc<StatusHub>,
    ) -> Result<Arc<Link>> {
        let link = Arc::new(Link {
            settings: settings.clone(),
            url: url.to_string(),
            options: options.clone(),
            hub,
            current: parking_lot::Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            reconnecting: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        let mut attempts = options.policy.start(format!("connecting to {}", link.url));
        loop {
            match link.dial(false).await {
                Ok(conn) => {
                    link.install(conn);
                    return Ok(link);
                }
                Err(e) if options.retry_on_connect && e.is_connection_error() => {
                    let sleep = attempts.failed(e, true)?;
                    tokio::time::sleep(sleep).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How long one command may take.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.settings
            .socket_timeout
            .unwrap_or_else(|| self.options.timeouts.get_operation())
    }

    fn refused(&self, reason: impl Into<String>, source: Option<redis::RedisError>) -> Error {
        Error::ConnectFailed {
            url: self.url.clone(),
            reason: reason.into(),
            source: source.map(Cause::new),
        }
    }

    /// The address of the server to talk to: the URL's, or the master the sentinels name.
    async fn address(&self) -> Result<ConnectionAddr> {
        let tls = |host: String, port: u16| {
            if self.settings.tls {
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: !self.settings.verify,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host, port)
            }
        };
        match &self.settings.address {
            RedisAddress::Tcp { host, port } => Ok(tls(host.clone(), *port)),
            RedisAddress::Unix(path) => Ok(ConnectionAddr::Unix(path.clone())),
            RedisAddress::Sentinel {
                sentinels,
                master_name,
            } => {
                let mut last = None;
                for (host, port) in sentinels {
                    match self.ask_sentinel(host, *port, master_name).await {
                        Ok(Some((h, p))) => return Ok(tls(h, p)),
                        Ok(None) => {
                            last = Some(format!(
                            "sentinel {host}:{port} does not know a master named {master_name:?}"
                        ))
                        }
                        Err(e) => last = Some(format!("sentinel {host}:{port}: {e}")),
                    }
                }
                Err(self.refused(
                    format!(
                        "no sentinel named the master {master_name:?} ({}); check the sentinels' addresses and the master_name option",
                        last.unwrap_or_default()
                    ),
                    None,
                ))
            }
        }
    }

    async fn ask_sentinel(
        &self,
        host: &str,
        port: u16,
        master: &str,
    ) -> redis::RedisResult<Option<(String, u16)>> {
        let client = redis::Client::open(ConnectionAddr::Tcp(host.to_string(), port))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.timeouts.get_connect()))
            .set_response_timeout(Some(self.options.timeouts.get_connect()));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let found: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn)
            .await?;
        Ok(found)
    }

    /// A new connection; `blocking` ones have no response timeout (their commands wait on
    /// purpose, with a timeout of their own).
    pub(crate) async fn dial(&self, blocking: bool) -> Result<MultiplexedConnection> {
        let (client, connect) = self.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(if blocking {
                None
            } else {
                Some(self.operation_timeout())
            });
        let mut conn = match tokio::time::timeout(
            connect,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.dial_error(e)),
            Err(_) => return Err(self.refused(format!("no answer within {connect:?}"), None)),
        };
        if matches!(self.settings.address, RedisAddress::Sentinel { .. }) {
            // A sentinel's answer may be stale during a failover: talk only to a master.
            let role: redis::Value = redis::cmd("ROLE")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.refused("ROLE failed", Some(e)))?;
            let is_master = matches!(&role, redis::Value::Array(items)
                if matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master"));
            if !is_master {
                return Err(self.refused(
                    "the server the sentinels named is not a master (a failover is under way)",
                    None,
                ));
            }
        }
        Ok(conn)
    }

    /// A client of the current master, and the connect timeout.
    async fn client(&self) -> Result<(redis::Client, Duration)> {
        let connect = self
            .settings
            .socket_connect_timeout
            .unwrap_or_else(|| self.options.timeouts.get_connect());
        let addr = self.address().await?;
        let mut redis_info =
            redis::RedisConnectionInfo::default().set_db(i64::from(self.settings.db));
        if let Some(user) = &self.settings.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = &self.settings.password {
            redis_info = redis_info.set_password(password.expose());
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| self.refused("invalid address", Some(e)))?
            .set_redis_settings(redis_info);
        let client =
            redis::Client::open(info).map_err(|e| self.refused("invalid address", Some(e)))?;
        Ok((client, connect))
    }

    fn dial_error(&self, e: redis::RedisError) -> Error {
        if e.kind() == ErrorKind::AuthenticationFailed {
            return Error::AccessRefused(format!(
                "Redis at {} refused the credentials: check the user name and password of the URL ({e})",
                self.url
            ));
        }
        self.refused(
            format!("{e}; check that Redis runs there and that the URL is right"),
            Some(e),
        )
    }

    /// A new Pub/Sub connection (for kombu's fanout messages).
    pub(crate) async fn subscriber(&self) -> Result<redis::aio::PubSub> {
        let (client, connect) = self.client().await?;
        match tokio::time::timeout(connect, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(e)) => Err(self.dial_error(e)),
            Err(_) => Err(self.refused(format!("no answer within {connect:?}"), None)),
        }
    }

    fn install(&self, conn: MultiplexedConnection) -> (u64, MultiplexedConnection) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *self.current.lock() = Some((generation, conn.clone()));
        (generation, conn)
    }

    /// The shared connection, reconnected first if it was lost.
    async fn conn(&self) -> Result<(u64, MultiplexedConnection)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(crate::backend::rules::connection_closed());
        }
        if let Some(current) = self.current.lock().clone() {
            return Ok(current);
        }
        self.recover().await
    }

    /// Runs `op` on the shared connection; if the connection is lost, reconnects under the
    /// retry policy (reporting the loss and the recovery) and runs it again.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let mut attempts = self.options.policy.start_quiet(what.to_string());
        loop {
            let (generation, conn) = self.conn().await?;
            match op(conn).await {
                Ok(value) => return Ok(value),
                Err(e) if is_lost(&e) && self.options.recovery => {
                    let error = self.lost_error(what, e);
                    if self.forget(generation) {
                        self.hub.emit(ConnectionEvent::Lost {
                            url: self.url.clone(),
                            cause: error.to_string(),
                        });
                    }
                    attempts.failed(error, false)?;
                }
                Err(e) if is_lost(&e) => {
                    self.forget(generation);
                    return Err(self.lost_error(what, e));
                }
                Err(e) => return Err(self.command_error(what, e)),
            }
        }
    }

    /// Forgets the shared connection `generation`, so that the next command reconnects;
    /// whether it was still the current one (the first to see the loss).
    fn forget(&self, generation: u64) -> bool {
        let mut current = self.current.lock();
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
            return true;
        }
        false
    }

    /// Reconnects under the retry policy (one recovery at a time), telling the status hub.
    async fn recover(&self) -> Result<(u64, MultiplexedConnection)> {
        let _one = self.reconnecting.lock().await;
        if let Some(current) = self.current.lock().clone() {
            return Ok(current);
        }
        let started = Instant::now();
        self.hub.set(ConnectionState::Recovering {
            cause: "the connection to Redis was lost".into(),
        });
        let mut attempts = self
            .options
            .policy
            .start(format!("reconnecting to {}", self.url));
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(crate::backend::rules::connection_closed());
            }
            match self.dial(false).await {
                Ok(conn) => {
                    let current = self.install(conn);
                    self.hub.set(ConnectionState::Connected);
                    self.hub.emit(ConnectionEvent::Recovered {
                        url: self.url.clone(),
                        attempts: attempts.count() + 1,
                        downtime: started.elapsed(),
                    });
                    return Ok(current);
                }
                Err(e) => match attempts.failed(e, true) {
                    Ok(sleep) => tokio::time::sleep(sleep).await,
                    Err(e) => {
                        self.hub.set(ConnectionState::Failed {
                            cause: e.to_string(),
                        });
                        self.hub.emit(ConnectionEvent::RecoveryFailed {
                            cause: e.to_string(),
                        });
                        return Err(e);
                    }
                },
            }
        }
    }

    /// Closes: every later command fails with `ConnectionClosed`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        *self.current.lock() = None;
        self.hub.set(ConnectionState::Closed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lost_error(&self, what: &str, e: redis::RedisError) -> Error {
        Error::ConnectionClosed {
            reply_code: None,
            reply_text: format!(
                "{what}: the connection to Redis at {} was lost ({e})",
                self.url
            ),
            source: Some(Cause::new(e)),
        }
    }

    /// An error Redis answered to a command: a script's refusal carries carrot's own error
    /// (see `scripts`), anything else is the broker's storage failing.
    pub(crate) fn command_error(&self, what: &str, e: redis::RedisError) -> Error {
        if let Some(refusal) = super::scripts::refusal(&e) {
            return refusal;
        }
        if e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) {
            return Error::AccessRefused(format!("{what}: Redis refused it ({e})"));
        }
        Error::storage_caused(format!("{what} failed on Redis at {}: {e}", self.url), e)
    }
}

impl Link {
    /// Runs a script (its keys and arguments given again on each attempt).
    pub(crate) async fn script<T: redis::FromRedisValue>(
        &self,
        what: &str,
        script: &'static redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T> {
        self.run(what, |mut conn| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
    }

    /// Runs a command or a pipeline.
    pub(crate) async fn query<T: redis::FromRedisValue + Send>(
        &self,
        what: &str,
        query: impl Into<Query>,
    ) -> Result<T> {
        let query = query.into();
        self.run(what, |mut conn| {
            let query = query.clone();
            async move {
                match query {
                    Query::Cmd(cmd) => cmd.query_async(&mut conn).await,
                    Query::Pipe(pipe) => pipe.query_async(&mut conn).await,
                }
            }
        })
        .await
    }
}

/// A command or a pipeline, for [`Link::query`].
#[derive(Clone)]
pub(crate) enum Query {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

impl From<redis::Cmd> for Query {
    fn from(cmd: redis::Cmd) -> Self {
        Query::Cmd(cmd)
    }
}

impl From<redis::Pipeline> for Query {
    fn from(pipe: redis::Pipeline) -> Self {
        Query::Pipe(pipe)
    }
}
