//! `carrot serve`: the embedded broker of --url on the AMQP 0-9-1 wire.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use carrot::server::{Metrics, Server, ServerConfig, Tls, Users};

use crate::failure::Failure;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:5672")]
    listen: SocketAddr,
    /// A user NAME:PASSWORD (repeatable); without it, guest/guest from loopback only, as
    /// RabbitMQ does.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = Users::parse_one)]
    users: Vec<(String, String)>,
    /// A file of users, one NAME:PASSWORD per line (`#` starts a comment), added to those of
    /// --user.
    #[arg(long, value_name = "FILE")]
    users_file: Option<PathBuf>,
    /// Speak TLS (clients connect with amqps://) with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a client may leave the server's frames unread before it is disconnected (what
    /// it held goes back to its queues).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: u64,
    /// Threads that serve clients. One (the default) was measured best: the broker behind
    /// is one lock (memory://) or one writer thread (sqlite://), so more threads mostly add
    /// hand-offs between them; more can help many TLS clients.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Every this many seconds, print to stderr the connections, channels, publish and
    /// deliver rates, and each queue with its ready and unacknowledged messages and consumers.
    #[arg(long, value_name = "SECONDS")]
    metrics: Option<u64>,
    /// RabbitMQ definitions (JSON, as `rabbitmqctl export_definitions` writes them) to
    /// import at start: users, vhosts, permissions, exchanges, queues, bindings.
    #[arg(long, value_name = "FILE")]
    definitions: Option<PathBuf>,
    /// Serve RabbitMQ's management HTTP API, Prometheus `/metrics` and a dashboard on this
    /// address (RabbitMQ's is 127.0.0.1:15672).
    #[arg(long, value_name = "ADDRESS")]
    management: Option<SocketAddr>,
}

impl ServeArgs {
    /// The runtime's worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads.map_or(1, usize::from)
    }
}

pub(crate) async fn run(url: &str, args: ServeArgs) -> Result<(), Failure> {
    let mut config = ServerConfig::new(url, args.listen);
    config.write_timeout = Duration::from_secs(args.write_timeout);
    config.definitions = args.definitions;
    config.management = args.management;
    let mut users = args.users;
    if let Some(file) = &args.users_file {
        users.extend(Users::from_file(file)?);
    }
    if !users.is_empty() {
        config.users = Users::new(users);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(Tls { cert, key });
    }
    let server = Server::bind(config).await?;
    let address = server.local_addr()?;
    let scheme = if server.is_tls() { "amqps" } else { "amqp" };
    eprintln!("carrot: serving {url} on {scheme}://{address}");
    if let Some(seconds) = args.metrics {
        tokio::spawn(report(
            server.metrics(),
            Duration::from_secs(seconds.max(1)),
        ));
    }
    server.run(stopped()).await;
    eprintln!("carrot: stopped");
    Ok(())
}

/// Every `period`, one line on stderr: connections, channels, publish and deliver rates over
/// the period; then one line per queue with its ready and unacknowledged messages and its
/// consumers.
async fn report(metrics: Arc<Metrics>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    let (mut published, mut delivered) = (metrics.published_total(), metrics.delivered_total());
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        let (p, d) = (metrics.published_total(), metrics.delivered_total());
        let elapsed = last.elapsed().as_secs_f64().max(1e-3);
        last = Instant::now();
        eprintln!(
            "carrot: connections {} channels {} publish {:.1}/s deliver {:.1}/s (total published {p}, delivered {d})",
            metrics.connections(),
            metrics.channels(),
            (p - published) as f64 / elapsed,
            (d - delivered) as f64 / elapsed,
        );
        (published, delivered) = (p, d);
        match metrics.queues().await {
            Ok(queues) => {
                for q in queues {
                    eprintln!(
                        "carrot:   queue {:?} ready {} unacked {} consumers {}",
                        q.name, q.ready, q.unacked, q.consumers
                    );
                }
            }
            Err(e) => eprintln!("carrot:   queues: {e}"),
        }
    }
}

/// SIGINT or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
