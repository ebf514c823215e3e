//! `carrot bench`: publishers and consumers at once on one fresh queue of the `--url` broker.
//!
//! Each body carries its send time in its first 8 bytes, so consumers measure the latency from
//! `send` to delivery (hdrhistogram, microseconds). Throughput is N over the time from the start
//! until the last message was published (resp. consumed and acknowledged). Progress bars go to
//! stderr when it is a terminal, and nowhere when it is not.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use carrot::{
    BrokerConnection, Consumer, DeliveryMode, OutgoingMessage, PendingConfirm, Properties,
    Publisher, QueueSpec, SendOptions,
};

use crate::failure::Failure;

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Messages to send in all.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Body size in bytes (at least 8: the send time travels in the body).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publishing tasks, each with its own publisher (channel); they share the messages.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Consuming tasks, each with its own consumer (channel), competing on the queue.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Persistent messages on a durable queue (instead of transient on a transient queue).
    #[arg(long)]
    persistent: bool,
    /// Publisher confirms: a message counts as published once the broker confirms it.
    #[arg(long)]
    confirm: bool,
    /// With --confirm, how many confirms each producer keeps in flight (1: each send waits
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

/// What one run measured.
struct Outcome {
    published: Duration,
    consumed: Duration,
    latency: Histogram<u64>,
}

pub(crate) async fn run(conn: &BrokerConnection, args: BenchArgs) -> Result<(), Failure> {
    if args.size < 8 {
        return Err(Failure::Usage(
            "--size must be at least 8 bytes: each body carries its send time".into(),
        ));
    }
    if args.producers == 0 || args.consumers == 0 {
        return Err(Failure::Usage(
            "--producers and --consumers must be at least 1".into(),
        ));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let queue = format!("carrot-bench-{}-{nanos:x}", std::process::id());
    conn.declare_queue(&QueueSpec::new(&queue).durable(args.persistent))
        .await?;
    let outcome = measure(conn, &queue, &args).await;
    // The queue goes whatever happened, so that a failed run leaves nothing behind.
    let deleted = conn
        .delete_queue(&queue, carrot::DeleteQueueOptions::new())
        .await;
    let outcome = outcome?;
    deleted?;
    report(conn, &args, &outcome);
    Ok(())
}

async fn measure(
    conn: &BrokerConnection,
    queue: &str,
    args: &BenchArgs,
) -> Result<Outcome, Failure> {
    let published = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);

    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let mut consumer = Consumer::builder(conn)
            .queue(queue)
            .auto_declare(false)
            .build()
            .await?;
        consumer
            .qos(carrot::Qos::new().prefetch_count(args.prefetch))
            .await?;
        consumer.consume().await?;
        consumers.push(consumer);
    }
    let mut publishers = Vec::new();
    for _ in 0..args.producers {
        let publisher = Publisher::builder(conn)
            .routing_key(queue)
            .serializer("raw")
            .confirm_publish(args.confirm)
            .build()
            .await?;
        publishers.push(publisher);
    }
    let progress = Progress::new(args.messages, published.clone(), consumed.clone());

    let origin = Instant::now();
    let mut consumer_tasks = Vec::new();
    for mut consumer in consumers {
        let consumed = consumed.clone();
        let done_tx = done_tx.clone();
        let mut done_rx = done_rx.clone();
        let total = args.messages;
        consumer_tasks.push(tokio::spawn(async move {
            let mut latency = new_histogram();
            let mut last = origin;
            loop {
                let message = tokio::select! {
                    biased;
                    _ = done_rx.wait_for(|done| *done) => break,
                    message = consumer.next_message() => message?,
                };
                let Some(message) = message else {
                    return Err(carrot::Error::ChannelClosed {
                        reply_code: None,
                        reply_text:
                            "the broker ended the bench's consumer before every message arrived"
                                .into(),
                        source: None,
                    });
                };
                if let Some(sent) = message.body().get(..8).and_then(|b| b.try_into().ok()) {
                    let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                    let waited = origin.elapsed().saturating_sub(sent);
                    let _ = latency.record(waited.as_micros().max(1) as u64);
                }
                message.ack()?;
                last = Instant::now();
                if consumed.fetch_add(1, Ordering::Relaxed) + 1 >= total {
                    done_tx.send_replace(true);
                }
            }
            consumer.close().await?;
            Ok::<_, carrot::Error>((latency, last))
        }));
    }
    let mut producer_tasks = Vec::new();
    let properties = Properties::default()
        .with_content_type("application/data")
        .with_content_encoding("binary")
        .with_delivery_mode(if args.persistent {
            DeliveryMode::Persistent
        } else {
            DeliveryMode::Transient
        });
    let share = args.messages / u64::from(args.producers);
    let extra = args.messages % u64::from(args.producers);
    for (i, publisher) in publishers.into_iter().enumerate() {
        let count = share + u64::from((i as u64) < extra);
        let published = published.clone();
        let properties = properties.clone();
        let size = args.size;
        let window = args.confirm_window as usize;
        producer_tasks.push(tokio::spawn(async move {
            let options = SendOptions::new();
            let mut body = vec![b'x'; size];
            let mut in_flight = VecDeque::with_capacity(window);
            for _ in 0..count {
                if in_flight.len() >= window {
                    if let Some(oldest) = in_flight.pop_front() {
                        PendingConfirm::wait(oldest).await?;
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let sent = origin.elapsed().as_nanos() as u64;
                body[..8].copy_from_slice(&sent.to_le_bytes());
                if window <= 1 {
                    // Each confirm awaited: what `send` does.
                    publisher
                        .publish(
                            OutgoingMessage::new(body.clone(), properties.clone()),
                            &options,
                        )
                        .await?;
                    published.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let pending = publisher
                    .begin_publish(
                        OutgoingMessage::new(body.clone(), properties.clone()),
                        &options,
                    )
                    .await?;
                in_flight.push_back(pending);
            }
            for pending in in_flight {
                pending.await?;
                published.fetch_add(1, Ordering::Relaxed);
            }
            let finished = Instant::now();
            publisher.close().await?;
            Ok::<_, carrot::Error>(finished)
        }));
    }
    if args.messages == 0 {
        done_tx.send_replace(true);
    }

    let mut last_published = origin;
    for task in producer_tasks {
        let finished = joined(task.await)?;
        last_published = last_published.max(finished);
    }
    let mut latency = new_histogram();
    let mut last_consumed = origin;
    for task in consumer_tasks {
        let (histogram, last) = joined(task.await)?;
        latency
            .add(histogram)
            .map_err(|e| Failure::Io(std::io::Error::other(format!("latency histogram: {e}"))))?;
        last_consumed = last_consumed.max(last);
    }
    progress.finish();
    Ok(Outcome {
        published: last_published - origin,
        consumed: last_consumed - origin,
        latency,
    })
}

/// A task's result, or its panic as an error.
fn joined<T>(
    result: Result<Result<T, carrot::Error>, tokio::task::JoinError>,
) -> Result<T, Failure> {
    match result {
        Ok(inner) => Ok(inner?),
        Err(e) => Err(Failure::Io(std::io::Error::other(format!(
            "a bench task failed: {e}"
        )))),
    }
}

/// Latencies in microseconds, 3 significant digits, growing as needed.
fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
    h.auto(true);
    h
}

fn report(conn: &BrokerConnection, args: &BenchArgs, outcome: &Outcome) {
    let rate = |d: Duration| args.messages as f64 / d.as_secs_f64().max(1e-9);
    let ms = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1000.0;
    let max = outcome.latency.max() as f64 / 1000.0;
    let peak = peak_rss_mb();
    if args.json {
        let line = serde_json::json!({
            "url": conn.url().to_string(),
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
    println!("broker       {}", conn.url());
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

/// Peak resident set size (VmHWM) in MB, where /proc exists.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Two progress bars (published, consumed), redrawn from the counters ten times a second.
struct Progress {
    bars: Option<(MultiProgress, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    fn new(total: u64, published: Arc<AtomicU64>, consumed: Arc<AtomicU64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>9} [{bar:40}] {pos:>10}/{len} {per_sec:>14} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = |name: &'static str| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style.clone());
            bar.set_prefix(name);
            bar
        };
        let (sent, received) = (bar("published"), bar("consumed"));
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                sent.set_position(published.load(Ordering::Relaxed));
                received.set_position(consumed.load(Ordering::Relaxed));
            }
        });
        Progress {
            bars: Some((multi, ticker)),
        }
    }

    fn finish(self) {
        if let Some((multi, ticker)) = self.bars {
            ticker.abort();
            let _ = multi.clear();
        }
    }
}
