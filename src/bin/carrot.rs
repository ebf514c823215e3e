//! The `carrot` command-line tool.
//!
//! `carrot bench` measures publish+consume throughput and peak memory against `--url`
//! (default `memory://`). More subcommands (publish, consume, discard, declare) come with the
//! broker backends that outlive one process.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use carrot::{BrokerConnection, Consumer, OutgoingMessage, Properties, Publisher, SendOptions};

#[derive(Parser, Debug)]
#[command(
    name = "carrot",
    version,
    about = "AMQP-style messaging from the command line"
)]
struct Cli {
    /// Broker URL: memory://, memory://NAME (amqp:// and sqlite:// come with their backends).
    #[arg(long, env = "CARROT_URL", default_value = "memory://", global = true)]
    url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish and consume messages concurrently; report throughput and peak memory.
    Bench {
        /// Messages to send.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Unacknowledged deliveries allowed in flight (0: no limit).
        #[arg(long, default_value_t = 1000)]
        prefetch: u16,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("carrot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bench {
                messages,
                size,
                prefetch,
                json,
            } => bench(&cli.url, messages, size, prefetch, json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carrot: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(
    url: &str,
    messages: u64,
    size: usize,
    prefetch: u16,
    json: bool,
) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let queue = format!("carrot-bench-{}", std::process::id());
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .durable(false)
        .auto_delete(true)
        .build()
        .await?;
    consumer.qos(0, prefetch, false).await?;
    consumer.consume().await?;
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .serializer("raw")
        .build()
        .await?;
    let properties = Properties::default()
        .with_content_type("application/data")
        .with_content_encoding("binary");
    let body = vec![b'x'; size];
    let started = Instant::now();
    let producer = tokio::spawn(async move {
        let options = SendOptions::new();
        for _ in 0..messages {
            publisher
                .publish(
                    OutgoingMessage::new(body.clone(), properties.clone()),
                    &options,
                )
                .await?;
        }
        Ok::<Duration, carrot::Error>(started.elapsed())
    });
    let mut received = 0u64;
    while received < messages {
        match consumer.next_message().await? {
            Some(message) => {
                message.ack()?;
                received += 1;
            }
            None => break,
        }
    }
    let consumed = started.elapsed();
    let published = producer
        .await
        .map_err(|e| carrot::Error::Io(std::io::Error::other(e.to_string())))??;
    let rate = |d: Duration| messages as f64 / d.as_secs_f64().max(1e-9);
    let peak = peak_rss_mb();
    if json {
        println!(
            "{{\"url\":{:?},\"messages\":{messages},\"size\":{size},\"publish_per_s\":{:.0},\"consume_per_s\":{:.0},\"peak_rss_mb\":{}}}",
            conn.url().to_string(),
            rate(published),
            rate(consumed),
            peak.map_or("null".into(), |p| format!("{p:.1}"))
        );
    } else {
        println!("broker      {}", conn.url());
        println!("messages    {messages} x {size} bytes, prefetch {prefetch}");
        println!("published   {:>12.0} msg/s", rate(published));
        println!(
            "consumed    {:>12.0} msg/s (publish+consume, {:.2} s)",
            rate(consumed),
            consumed.as_secs_f64()
        );
        match peak {
            Some(p) => println!("peak RSS    {p:>12.1} MB"),
            None => println!("peak RSS    unknown (no /proc/self/status)"),
        }
    }
    consumer.close().await?;
    Ok(())
}

/// Peak resident set size (VmHWM) in MB, where /proc exists.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
