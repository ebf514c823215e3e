//! `carrot serve`: the embedded brokers (memory://, sqlite://) on the AMQP 0-9-1 wire, so
//! that any client (kombu, pika, lapin, Celery) can use them.
//!
//! Frames are parsed and written by amq-protocol, the codec lapin uses. Each client
//! connection is a connection to the embedded broker and each AMQP channel one of its
//! channels, so every guarantee of the embedded brokers holds through the wire: a message
//! published with confirms on sqlite:// is confirmed after its commit; a client that goes
//! away has its unacknowledged messages requeued, marked redelivered; exclusive and
//! auto-delete queues follow their connection. Errors close the channel or the connection
//! with RabbitMQ's reply codes and texts.
//!
//! Operated as RabbitMQ is: virtual hosts (each its own exchanges and queues), users with
//! salted password hashes and per-vhost permissions checked on every method ([`access`]),
//! kept in the sqlite:// file; RabbitMQ's definitions imported at start and exported
//! ([`definitions`], [`Admin`]); and with [`ServerConfig::management`], RabbitMQ's
//! management HTTP API, Prometheus `/metrics` and a dashboard page on one listener.
//!
//! ```no_run
//! # async fn run() -> carrot::Result<()> {
//! let server = carrot::server::Server::bind(carrot::server::ServerConfig::new(
//!     "sqlite:///var/lib/carrot/broker.db",
//!     "127.0.0.1:5672".parse().unwrap(),
//! ))
//! .await?;
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! With vhosts, users and the management API:
//!
//! ```no_run
//! # async fn run() -> carrot::Result<()> {
//! use carrot::server::{Permission, Server, ServerConfig, Vhost};
//! let mut config = ServerConfig::new("memory://ops", "127.0.0.1:5672".parse().unwrap());
//! config.management = Some("127.0.0.1:15672".parse().unwrap());
//! let server = Server::bind(config).await?;
//! let access = server.access();
//! access.put_vhost(Vhost { name: "prod".into(), description: String::new(), tags: vec![] })?;
//! access.put_user(carrot::server::User::with_password("app", "s3cret", &[]))?;
//! access.set_permission(Permission {
//!     user: "app".into(),
//!     vhost: "prod".into(),
//!     configure: "^app\\.".into(),
//!     write: ".*".into(),
//!     read: ".*".into(),
//! })?;
//! // amqp://app:s3cret@127.0.0.1:5672/prod may now declare app.* queues there.
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod access;
mod admin;
mod auth;
mod channel;
mod clients;
mod connection;
pub mod definitions;
mod frames;
mod guard;
mod management;
mod metrics;
mod output;
mod reply;
mod tls;
mod vhosts;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::backend::{BindingEntry, QueueEntry, QueueStats, Topology};
pub use access::{Access, Permission, User, Vhost};
pub use admin::Admin;
pub use auth::Users;
pub use clients::{ChannelInfo, ClientInfo, ConsumerInfo};
pub use definitions::Definitions;
pub use metrics::Metrics;
pub use tls::Tls;

use crate::error::{Error, Result};

/// The RabbitMQ version carrot serve presents itself as (to tools that check it: its
/// management API, definitions exports).
pub const RABBITMQ_VERSION: &str = "3.12.0";

/// What a server serves, where, and to whom.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The embedded broker: `memory://NAME` or `sqlite://PATH`.
    pub url: String,
    /// The address to listen on (default 127.0.0.1:5672).
    pub listen: SocketAddr,
    /// Users given on the command line (default: none, so a new registry gets guest/guest,
    /// from loopback only); see [`Access`].
    pub users: Users,
    /// TLS (clients connect with amqps://); plain AMQP when `None` (the default).
    pub tls: Option<Tls>,
    /// How long a client may leave the server's frames unread before it is disconnected
    /// (what it held goes back to its queues); 60 s by default.
    pub write_timeout: Duration,
    /// RabbitMQ definitions (JSON) to import at start: users, vhosts, permissions,
    /// exchanges, queues, bindings (see [`definitions`]).
    pub definitions: Option<std::path::PathBuf>,
    /// Where to serve the management HTTP API, `/metrics` and the dashboard (RabbitMQ's
    /// port is 15672); none by default.
    pub management: Option<SocketAddr>,
}

impl ServerConfig {
    /// A server of `url` on `listen`, for guest/guest from loopback.
    pub fn new(url: impl Into<String>, listen: SocketAddr) -> Self {
        ServerConfig {
            url: url.into(),
            listen,
            users: Users::default(),
            tls: None,
            write_timeout: Duration::from_secs(60),
            definitions: None,
            management: None,
        }
    }
}

/// What every connection of a server shares.
#[derive(Debug)]
struct Shared {
    write_timeout: Duration,
    access: Arc<Access>,
    vhosts: Arc<vhosts::Vhosts>,
    clients: Arc<clients::Clients>,
    /// The address clients connect to.
    listen: SocketAddr,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// A new connection to the broker of `vhost`, for a client that opened it.
    async fn vhost_broker(&self, vhost: &str) -> Result<crate::BrokerConnection> {
        self.vhosts.connect(vhost).await
    }
}

/// An error about the definitions file `file`.
fn in_file(file: &std::path::Path, error: Error) -> Error {
    Error::InvalidArgument(format!("definitions file {}: {error}", file.display()))
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The management API's listener, if asked for.
    management: Option<TcpListener>,
    /// Keeps a memory:// broker alive while the server runs, and checks the URL at bind time.
    _broker: crate::BrokerConnection,
}

impl Server {
    /// Checks the broker URL (memory:// or sqlite:// only) and the TLS files, and binds the
    /// address.
    pub async fn bind(config: ServerConfig) -> Result<Server> {
        let url = crate::url::BrokerUrl::parse(&config.url)?;
        if matches!(url, crate::url::BrokerUrl::Amqp(_)) {
            return Err(Error::InvalidArgument(
                "carrot serve puts an embedded broker (memory:// or sqlite://PATH) on the wire; an amqp:// URL is a broker already".into(),
            ));
        }
        let tls = config.tls.as_ref().map(Tls::config).transpose()?;
        let broker = crate::BrokerConnection::connect(&config.url).await?;
        let access = Arc::new(match &url {
            #[cfg(feature = "sqlite")]
            crate::url::BrokerUrl::Sqlite { path } => Access::stored(path, config.users.list())?,
            _ => Access::new(config.users.list()),
        });
        let vhosts = Arc::new(vhosts::Vhosts::new(url, access.clone()));
        if let Some(file) = &config.definitions {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::InvalidArgument(format!(
                    "cannot read the definitions file {}: {e}",
                    file.display()
                ))
            })?;
            definitions::Definitions::parse(&text)
                .map_err(|e| in_file(file, e))?
                .import(&vhosts)
                .await
                .map_err(|e| in_file(file, e))?;
        }
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            Error::InvalidArgument(format!("cannot listen on {}: {e}", config.listen))
        })?;
        let listen = listener.local_addr().unwrap_or(config.listen);
        let management = match config.management {
            Some(address) => Some(management::bind(address).await?),
            None => None,
        };
        let (stop, shutdown) = watch::channel(false);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                write_timeout: config.write_timeout,
                access,
                vhosts: vhosts.clone(),
                clients: Arc::default(),
                listen,
                shutdown,
                metrics: Arc::new(Metrics::new(vhosts)),
            }),
            stop,
            tls,
            management,
            _broker: broker,
        })
    }

    /// The address it listens on (the port chosen by the system for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::InvalidArgument(format!("the listening socket: {e}")))
    }

    /// The address of the management API, `/metrics` and the dashboard, if it serves them.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether clients connect with TLS (amqps://).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Its counters (connections, channels, messages published and delivered) and its
    /// broker's queues.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Its vhosts, users and permissions.
    pub fn access(&self) -> Arc<Access> {
        self.shared.access.clone()
    }

    /// Accepts clients until `shutdown` completes; then closes every connection with 320
    /// CONNECTION_FORCED (as RabbitMQ does when it stops) and waits for them, a few seconds
    /// at most.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tasks = tokio::task::JoinSet::new();
        let management = self.management.take().map(|listener| {
            let http = listener
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
            let api = Arc::new(management::Api {
                vhosts: self.shared.vhosts.clone(),
                clients: self.shared.clients.clone(),
                metrics: self.shared.metrics.clone(),
                amqp: self.shared.listen,
                http,
                started: std::time::Instant::now(),
                rates: Default::default(),
            });
            tokio::spawn(management::serve(
                listener,
                api,
                self.shared.shutdown.clone(),
            ))
        });
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let shared = self.shared.clone();
                        match self.tls.clone() {
                            None => {
                                tasks.spawn(connection::serve(stream, peer, false, shared));
                            }
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                tasks.spawn(async move {
                                    let accepted = tokio::time::timeout(
                                        connection::HANDSHAKE,
                                        acceptor.accept(stream),
                                    )
                                    .await;
                                    match accepted {
                                        Ok(Ok(stream)) => connection::serve(stream, peer, true, shared).await,
                                        Ok(Err(e)) => tracing::info!(client = %peer, error = %e, "TLS handshake failed"),
                                        Err(_) => tracing::info!(client = %peer, "TLS handshake timed out"),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = &mut shutdown => break,
            }
        }
        let _ = self.stop.send(true);
        if let Some(management) = management {
            let _ = tokio::time::timeout(Duration::from_secs(5), management).await;
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}
