//! `carrot serve`: the embedded broker of --url on the AMQP 0-9-1 wire.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use carrot::server::{Server, ServerConfig, Users};

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
    /// Print the server's counters (connections, channels, messages published) to stderr
    /// every this many seconds.
    #[arg(long, value_name = "SECONDS")]
    metrics: Option<u64>,
}

pub(crate) async fn run(url: &str, args: ServeArgs) -> Result<(), Failure> {
    let mut config = ServerConfig::new(url, args.listen);
    if !args.users.is_empty() {
        config.users = Users::new(args.users);
    }
    let server = Server::bind(config).await?;
    let address = server.local_addr()?;
    eprintln!("carrot: serving {url} on amqp://{address}");
    if let Some(seconds) = args.metrics {
        let metrics = server.metrics();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(seconds.max(1)));
            loop {
                tick.tick().await;
                eprintln!(
                    "carrot: connections {} channels {} published {}",
                    metrics.connections(),
                    metrics.channels(),
                    metrics.published_total()
                );
            }
        });
    }
    server.run(stopped()).await;
    eprintln!("carrot: stopped");
    Ok(())
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
