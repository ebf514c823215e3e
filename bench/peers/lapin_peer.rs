//! The raw-lapin peer of `carrot bench`: the same workload, options and JSON, written directly on
//! lapin 4 (the client carrot's `amqp://` backend is built on), as fast as lapin allows with
//! carrot's semantics.
//!
//! ```sh
//! cargo build --release --example lapin_peer
//! target/release/examples/lapin_peer --url amqp://guest:guest@127.0.0.1:5672/%2F \
//!     --messages 100000 --producers 2 --consumers 2 --json
//! ```
//!
//! What it does, as `carrot bench` (src/bin/carrot/bench.rs) does:
//! - one connection; one fresh queue (`durable` with `--persistent`), deleted at the end;
//! - C consumers, each on a channel of its own: `basic.qos(prefetch, global = false)`,
//!   `basic.consume` (manual acks), each delivery acked. The ack frame is handed to lapin
//!   without waiting for it to be written (acks pipelined, as carrot's `Message::ack` and
//!   benches/amqp.rs do: awaiting each one costs two thirds of the consume rate);
//! - P producers, each on a channel of its own (`confirm.select` with `--confirm`), sharing the
//!   N messages: `basic_publish(..).await` for each message and, with `--confirm`, up to
//!   `--confirm-window` W of their `PublisherConfirm`s in flight (a queue: when W are pending,
//!   the oldest is awaited before the next publish; a message counts as published when its
//!   confirm arrives, a nack is an error), as carrot's bench keeps W `PendingConfirm`s of
//!   `Publisher::begin_publish`; W = 1 (the default) awaits each confirm before the next
//!   publish, as carrot's `send` does. Default exchange, routing key = the queue; the same
//!   properties on the wire as carrot (`application/data`, `binary`, delivery mode 1 or 2 with
//!   `--persistent`);
//! - each body carries its send time (u64 LE, nanoseconds since the start) in its first 8
//!   bytes; consumers record the latency in an hdrhistogram (microseconds);
//! - published/s = N / time until the last publish returned; consumed/s = N / time until the
//!   last ack; peak RSS = `VmHWM`. A 2-worker tokio runtime, as the `carrot` binary has.
//!
//! The JSON has exactly the keys of `carrot bench --json`.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_core::Stream;
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, PublisherConfirm};
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";

/// The options of `carrot bench`, with the same names and defaults.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "lapin_peer",
    about = "carrot bench's workload on raw lapin (the peer of `carrot bench`)"
)]
struct Args {
    /// RabbitMQ URL (amqp:// only).
    #[arg(long, env = "CARROT_URL", default_value = DEFAULT_URL)]
    url: String,
    /// Messages to send in all.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Body size in bytes (at least 8: the send time travels in the body).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publishing tasks, each with its own channel; they share the messages.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Consuming tasks, each with its own channel, competing on the queue.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Persistent messages on a durable queue (instead of transient on a transient queue).
    #[arg(long)]
    persistent: bool,
    /// Publisher confirms: a message counts as published once the broker confirms it.
    #[arg(long)]
    confirm: bool,
    /// With --confirm, how many confirms each producer keeps in flight (1: each publish waits
    /// for its own confirm).
    #[arg(long, default_value_t = 1, requires = "confirm", value_parser = clap::value_parser!(u32).range(1..))]
    confirm_window: u32,
    /// Unacknowledged deliveries in flight per consumer (0: no limit).
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

struct Outcome {
    published: Duration,
    consumed: Duration,
    latency: Histogram<u64>,
}

/// Polls a lapin future once and drops it: lapin queues the frame of `basic.ack` on that first
/// poll, in call order, and the rest of the future only waits for the write (what carrot's
/// `Message::ack` does too).
fn queue_frame<F: Future<Output = lapin::Result<()>>>(future: F) -> lapin::Result<()> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Waits for a message's confirm; a nack is an error.
async fn confirmed(pending: PublisherConfirm) -> Res<()> {
    if pending.await?.is_nack() {
        return Err("RabbitMQ refused a message (basic.nack)".into());
    }
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).expect("3 significant digits is valid");
    h.auto(true);
    h
}

async fn run(args: &Args) -> Res<()> {
    if !args.url.starts_with("amqp://") {
        return Err(format!("{}: the lapin peer speaks amqp:// only", redact(&args.url)).into());
    }
    let conn = Connection::connect(
        &args.url,
        ConnectionProperties::default().with_connection_name("lapin_peer".into()),
    )
    .await?;
    let admin = conn.create_channel().await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let queue = format!("carrot-bench-lapin-{}-{nanos:x}", std::process::id());
    admin
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: args.persistent,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let outcome = measure(&conn, &queue, args).await;
    // The queue goes whatever happened, so that a failed run leaves nothing behind.
    let deleted = admin
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let outcome = outcome?;
    deleted?;
    admin.close(200, "OK".into()).await?;
    conn.close(200, "OK".into()).await?;
    report(args, &outcome);
    Ok(())
}

async fn measure(conn: &Connection, queue: &str, args: &Args) -> Res<Outcome> {
    let consumed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);

    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let channel = conn.create_channel().await?;
        channel
            .basic_qos(args.prefetch, BasicQosOptions { global: false })
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        consumers.push((channel, consumer));
    }
    let mut publishers = Vec::new();
    for _ in 0..args.producers {
        let channel = conn.create_channel().await?;
        if args.confirm {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        publishers.push(channel);
    }

    let origin = Instant::now();
    let mut consumer_tasks = Vec::new();
    for (channel, mut consumer) in consumers {
        let consumed = consumed.clone();
        let done_tx = done_tx.clone();
        let mut done_rx = done_rx.clone();
        let total = args.messages;
        consumer_tasks.push(tokio::spawn(async move {
            let mut latency = new_histogram();
            let mut last = origin;
            loop {
                let next = tokio::select! {
                    biased;
                    _ = done_rx.wait_for(|done| *done) => break,
                    next = poll_fn(|cx| std::pin::Pin::new(&mut consumer).poll_next(cx)) => next,
                };
                let delivery = match next {
                    Some(delivery) => delivery?,
                    None => {
                        return Err::<_, BoxError>(
                            "the broker ended the consumer before every message arrived".into(),
                        )
                    }
                };
                if let Some(sent) = delivery.data.get(..8).and_then(|b| b.try_into().ok()) {
                    let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                    let waited = origin.elapsed().saturating_sub(sent);
                    // `record`, not `saturating_record`: an auto-resizing histogram grows on
                    // `record`, while `saturating_record` clamps anything above its current
                    // top (2,047 us for a new one) to the *declared* highest value, 2 us.
                    latency.record(waited.as_micros().max(1) as u64)?;
                }
                queue_frame(channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()))?;
                last = Instant::now();
                if consumed.fetch_add(1, Ordering::Relaxed) + 1 >= total {
                    done_tx.send_replace(true);
                }
            }
            channel.close(200, "OK".into()).await?;
            Ok((latency, last))
        }));
    }
    let properties = BasicProperties::default()
        .with_content_type("application/data".into())
        .with_content_encoding("binary".into())
        .with_delivery_mode(if args.persistent { 2 } else { 1 });
    let share = args.messages / u64::from(args.producers);
    let extra = args.messages % u64::from(args.producers);
    let mut producer_tasks = Vec::new();
    for (i, channel) in publishers.into_iter().enumerate() {
        let count = share + u64::from((i as u64) < extra);
        let properties = properties.clone();
        let queue: Arc<str> = queue.into();
        let (size, confirm) = (args.size, args.confirm);
        let window = args.confirm_window as usize;
        producer_tasks.push(tokio::spawn(async move {
            let mut body = vec![b'x'; size];
            let mut in_flight = VecDeque::with_capacity(window);
            for _ in 0..count {
                if in_flight.len() >= window {
                    if let Some(oldest) = in_flight.pop_front() {
                        confirmed(oldest).await?;
                    }
                }
                let sent = origin.elapsed().as_nanos() as u64;
                body[..8].copy_from_slice(&sent.to_le_bytes());
                let pending = channel
                    .basic_publish(
                        "".into(),
                        queue.as_ref().into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties.clone(),
                    )
                    .await?;
                if confirm {
                    in_flight.push_back(pending);
                }
            }
            for pending in in_flight {
                confirmed(pending).await?;
            }
            let finished = Instant::now();
            channel.close(200, "OK".into()).await?;
            Ok::<_, BoxError>(finished)
        }));
    }
    if args.messages == 0 {
        done_tx.send_replace(true);
    }

    let mut last_published = origin;
    for task in producer_tasks {
        last_published = last_published.max(task.await??);
    }
    let mut latency = new_histogram();
    let mut last_consumed = origin;
    for task in consumer_tasks {
        let (histogram, last) = task.await??;
        latency.add(histogram)?;
        last_consumed = last_consumed.max(last);
    }
    Ok(Outcome {
        published: last_published - origin,
        consumed: last_consumed - origin,
        latency,
    })
}

fn report(args: &Args, outcome: &Outcome) {
    let rate = |d: Duration| args.messages as f64 / d.as_secs_f64().max(1e-9);
    let ms = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1000.0;
    let max = outcome.latency.max() as f64 / 1000.0;
    let peak = peak_rss_mb();
    if args.json {
        let line = serde_json::json!({
            "url": redact(&args.url),
            "messages": args.messages,
            "size": args.size,
            "producers": args.producers,
            "consumers": args.consumers,
            "persistent": args.persistent,
            "confirm": args.confirm,
            "confirm_window": args.confirm_window,
            "prefetch": args.prefetch,
            "published_per_s": rate(outcome.published).round(),
            "consumed_per_s": rate(outcome.consumed).round(),
            "elapsed_s": outcome.consumed.as_secs_f64(),
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": max},
            "peak_rss_mb": peak,
        });
        println!("{line}");
        return;
    }
    println!("broker       {} (raw lapin)", redact(&args.url));
    println!(
        "workload     {} x {} bytes, {} producer(s), {} consumer(s), prefetch {}, {}{}",
        args.messages,
        args.size,
        args.producers,
        args.consumers,
        args.prefetch,
        if args.persistent {
            "persistent"
        } else {
            "transient"
        },
        if args.confirm {
            format!(", confirms (window {})", args.confirm_window)
        } else {
            String::new()
        },
    );
    println!(
        "published    {:>12.0} msg/s  ({:.2} s)",
        rate(outcome.published),
        outcome.published.as_secs_f64()
    );
    println!(
        "consumed     {:>12.0} msg/s  ({:.2} s, acknowledged)",
        rate(outcome.consumed),
        outcome.consumed.as_secs_f64()
    );
    println!(
        "latency      p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        ms(0.5),
        ms(0.99),
        max
    );
    match peak {
        Some(p) => println!("peak RSS     {p:>12.1} MB"),
        None => println!("peak RSS     unknown (no /proc/self/status)"),
    }
}

/// Peak resident set size (VmHWM) in MB, where /proc exists (as `carrot bench` reports it).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The URL with its password shown as `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.size < 8 {
        eprintln!("lapin_peer: --size must be at least 8 bytes: each body carries its send time");
        return std::process::ExitCode::from(2);
    }
    if args.producers == 0 || args.consumers == 0 {
        eprintln!("lapin_peer: --producers and --consumers must be at least 1");
        return std::process::ExitCode::from(2);
    }
    // Two workers, as the `carrot` binary; the driver runs on the main thread, as carrot's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lapin_peer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
