//! The `carrot` command-line tool: publish, consume, discard, declare, delete and bench against
//! any broker URL (`--url`, env `CARROT_URL`, default `memory://`).
//!
//! Exit status (stable, scripts rely on it): 0 on success, 2 on a usage error (bad arguments,
//! a malformed URL, invalid JSON, an unknown serializer), 1 on a broker or I/O error. Errors
//! are one line on stderr, prefixed with `carrot: `.
//!
//! On RabbitMQ a lost connection is recovered under the retry policy (`--max-retries`,
//! `--interval-*`, `--retry-timeout`, failover URLs): `carrot consume` goes on consuming
//! through a broker restart and `carrot publish` sends again; they exit with status 1 only
//! when the policy gives up (or at once with `--no-recovery`).

#![forbid(unsafe_code)]

#[cfg(feature = "serve")]
mod admin;
mod args;
mod bench;
mod connect;
mod consume;
mod declare;
mod failure;
mod publish;
mod render;
#[cfg(feature = "serve")]
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::failure::Failure;

#[derive(Parser, Debug)]
#[command(
    name = "carrot",
    version,
    about = "AMQP-style messaging from the command line: memory://, sqlite://PATH, amqp(s)://"
)]
struct Cli {
    #[command(flatten)]
    connect: connect::ConnectArgs,
    /// Log what carrot does on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a message (BODY), or one message per line of stdin.
    Publish(Box<publish::PublishArgs>),
    /// Receive messages from a queue and print them, one per line.
    Consume(consume::ConsumeArgs),
    /// Drop every message waiting in a queue; prints how many.
    Discard(consume::DiscardArgs),
    /// Declare an exchange, a queue or a binding.
    #[command(subcommand)]
    Declare(declare::Declare),
    /// Delete an exchange, a queue or a binding.
    #[command(subcommand)]
    Delete(declare::Delete),
    /// Publish and consume concurrently; report throughput, latency and peak memory.
    Bench(bench::BenchArgs),
    /// Serve the embedded broker of --url (memory:// or sqlite://PATH) on the AMQP 0-9-1
    /// wire, for any client (kombu, pika, lapin, Celery), until SIGINT or SIGTERM.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Export or import RabbitMQ's definitions (users, vhosts, permissions, exchanges,
    /// queues, bindings) of a sqlite:// broker file, as `carrot serve` serves it.
    #[cfg(feature = "serve")]
    #[command(subcommand)]
    Definitions(admin::DefinitionsCommand),
    /// List, add or delete the virtual hosts of a sqlite:// broker file.
    #[cfg(feature = "serve")]
    #[command(subcommand)]
    Vhost(admin::VhostCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let threads = match &cli.command {
        #[cfg(feature = "serve")]
        Command::Serve(args) => args.threads(),
        _ => 2,
    };
    let built = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => return Failure::Io(e).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    #[cfg(feature = "serve")]
    match cli.command {
        Command::Serve(args) => return serve::run(cli.connect.url(), args).await,
        Command::Definitions(command) => {
            return admin::definitions(cli.connect.url(), command).await
        }
        Command::Vhost(command) => return admin::vhost(cli.connect.url(), command).await,
        _ => {}
    }
    let conn = cli.connect.connect().await?;
    if matches!(cli.command, Command::Publish(_) | Command::Declare(_))
        && matches!(conn.url(), carrot::url::BrokerUrl::Memory { .. })
    {
        eprintln!(
            "carrot: note: memory:// lives only as long as this process; use sqlite://PATH or amqp:// to keep messages"
        );
    }
    if let (Command::Publish(args), carrot::url::BrokerUrl::Sqlite { .. }) =
        (&cli.command, conn.url())
    {
        if args.is_transient() {
            eprintln!(
                "carrot: note: sqlite:// keeps transient messages only while some process has the file open"
            );
        }
    }
    let result = match cli.command {
        Command::Publish(args) => publish::run(&conn, *args).await,
        Command::Consume(args) => consume::run(&conn, args).await,
        Command::Discard(args) => consume::discard(&conn, args).await,
        Command::Declare(what) => declare::declare(&conn, what).await,
        Command::Delete(what) => declare::delete(&conn, what).await,
        Command::Bench(args) => bench::run(&conn, args).await,
        #[cfg(feature = "serve")]
        Command::Serve(_) | Command::Definitions(_) | Command::Vhost(_) => Ok(()),
    };
    // Close even after a failure, so that unacknowledged messages go back at once; the first
    // error is the one to report.
    let closed = conn.close().await;
    result?;
    closed?;
    Ok(())
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => return,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
