//! Throughput of carrot's `amqp://` backend against raw lapin (the client carrot runs on), in
//! one process, on one RabbitMQ: 100-byte bodies, one publisher, one consumer.
//!
//! Implementations alternate within each round, and each round starts with the next one
//! (round 1: carrot, lapin, ...; round 2: lapin, ..., carrot); 3 rounds by default after an
//! untimed warm-up, and the JSON gives each run and the medians. Every run uses queues of its
//! own, deleted afterwards; a consume workload checks that the deleted queue held nothing (every
//! message consumed and acknowledged) and a publish workload that all N reached the queue.
//!
//! | workload | what is timed (N = `--messages`, M = `--confirm-messages`) |
//! | --- | --- |
//! | `publish` | publish N transient bodies to a fresh non-durable queue, no confirms |
//! | `consume` | consume those N (prefetch 1000), ack each; ends at the last ack |
//! | `publish_consume` | a publisher task and a consumer task at once on a fresh queue: N / time until the last message is consumed and acked |
//! | `confirm_publish` | publish M persistent bodies to a fresh durable queue, publisher confirms |
//! | `confirm_consume` | consume those M persistent messages (prefetch 1000), ack each |
//! | `confirm_publish_consume` | `publish_consume` with confirms, persistent bodies, durable queue, M messages |
//!
//! The implementations:
//! - `carrot`: `Publisher::send` of a raw body (`serializer("raw")`; `confirm_publish(true)`
//!   for the confirm workloads: `send` awaits each confirm); `Consumer::qos(Qos::new().prefetch_count(1000))`,
//!   `Consumer::next_message` + `Message::ack` (which does not wait for the broker).
//! - `lapin`: raw lapin with carrot's semantics, written as fast as lapin allows:
//!   `basic_publish(..).await` for each message (and its `PublisherConfirm` awaited for each
//!   message in the confirm workloads); consuming from the `Consumer` stream, each ack handed
//!   to lapin without waiting for it to be written (acks pipelined: awaiting each one costs lapin about two thirds of its consume rate).
//!   Same properties on the wire as carrot's (`application/data`, `binary`, delivery mode).
//! - `lapin_pipelined` (extra, labelled): publishes not awaited one by one (every frame queued
//!   at once; the last one awaited), confirms not awaited one by one (at most 1000 in flight).
//!   No consume workload of its own (it would be `lapin`'s).
//! - `carrot_pipelined` (extra, labelled): what carrot's API allows for the same: 100 tasks
//!   sending at once on one `Arc<Publisher>`, so up to 100 publishes / confirms in flight.
//!
//! Each run also records the CPU time of this process (client side only, not RabbitMQ's) per
//! message, from `/proc/self/stat`; RabbitMQ shares the same cores, so a client that burns
//! more CPU per message leaves less for the broker.
//!
//! `--messages N` (or `CARROT_BENCH_MESSAGES`, default 100,000), `--confirm-messages M`
//! (`CARROT_BENCH_CONFIRM_MESSAGES`, default 10,000), `--rounds R` (`CARROT_BENCH_ROUNDS`, 3),
//! `--url URL` (`CARROT_BENCH_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5682/%2F`),
//! `--only carrot,lapin`, `--workloads publish,consume`. Prints one JSON document on stdout and
//! a line per run on stderr. `bench/amqp_run.sh` runs it with the Python peers and writes
//! BENCHMARKS.md.
//!
//! `CARROT_BENCH_LAPIN_ACK` picks how raw lapin acks: `queue` (default and fastest:
//! `Channel::basic_ack` polled once, which queues the frame, then dropped), `spawn` (a task per
//! `Acker::ack`, all awaited before the workload ends) or `await` (each ack awaited: the slow
//! way, about a third of the consume rate).

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use carrot::{BrokerConnection, Consumer, DeliveryMode, Publisher};
use futures_core::Stream;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::{Serialize, Serializer};
use serde_json::json;

type BoxError = Box<dyn StdError + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5682/%2F";
const BODY_LEN: usize = 100;
const PREFETCH: u16 = 1000;
/// Confirms in flight at most, for `lapin_pipelined`.
const CONFIRM_WINDOW: usize = 1000;
/// Concurrent `send`s (tasks sharing one publisher), for `carrot_pipelined`.
const CARROT_SENDERS: usize = 100;

const IMPLS: [&str; 4] = ["carrot", "lapin", "carrot_pipelined", "lapin_pipelined"];
const WORKLOADS: [&str; 6] = [
    "publish",
    "consume",
    "publish_consume",
    "confirm_publish",
    "confirm_consume",
    "confirm_publish_consume",
];

/// A byte string serialized with `serialize_bytes`: the raw serializer sends it as it is, as
/// `application/data`, `binary`.
struct Body<'a>(&'a [u8]);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum LapinAck {
    Queue,
    Spawn,
    Await,
}

#[derive(Clone, Debug)]
struct Config {
    url: String,
    messages: usize,
    confirm_messages: usize,
    rounds: usize,
    impls: Vec<String>,
    workloads: Vec<String>,
    lapin_ack: LapinAck,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
}

fn config() -> Res<Config> {
    let mut c = Config {
        url: std::env::var("CARROT_BENCH_AMQP_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.into()),
        messages: env_usize("CARROT_BENCH_MESSAGES").unwrap_or(100_000),
        confirm_messages: env_usize("CARROT_BENCH_CONFIRM_MESSAGES").unwrap_or(10_000),
        rounds: env_usize("CARROT_BENCH_ROUNDS").unwrap_or(3),
        impls: IMPLS.iter().map(|s| s.to_string()).collect(),
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        lapin_ack: match std::env::var("CARROT_BENCH_LAPIN_ACK").as_deref() {
            Ok("spawn") => LapinAck::Spawn,
            Ok("await") => LapinAck::Await,
            _ => LapinAck::Queue,
        },
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Res<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{what} needs a value").into())
        };
        let number = |v: String| -> Res<usize> {
            v.replace('_', "")
                .parse()
                .map_err(|e| format!("{v}: {e}").into())
        };
        match key.as_str() {
            "--messages" => c.messages = number(value("--messages")?)?,
            "--confirm-messages" => c.confirm_messages = number(value("--confirm-messages")?)?,
            "--rounds" => c.rounds = number(value("--rounds")?)?,
            "--url" => c.url = value("--url")?,
            "--only" => {
                c.impls = value("--only")?.split(',').map(str::to_string).collect();
                if let Some(bad) = c.impls.iter().find(|i| !IMPLS.contains(&i.as_str())) {
                    return Err(format!("unknown implementation {bad}; known: {IMPLS:?}").into());
                }
            }
            "--workloads" => {
                c.workloads = value("--workloads")?
                    .split(',')
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = c
                    .workloads
                    .iter()
                    .find(|w| !WORKLOADS.contains(&w.as_str()))
                {
                    return Err(format!("unknown workload {bad}; known: {WORKLOADS:?}").into());
                }
            }
            // cargo bench passes --bench to harness = false benches.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if c.messages == 0 || c.confirm_messages == 0 || c.rounds == 0 {
        return Err("--messages, --confirm-messages and --rounds must be at least 1".into());
    }
    Ok(c)
}

/// Polls a lapin future once and drops it. lapin's `basic_ack` and `basic_publish` queue their
/// frames synchronously on the first poll and then only wait for the frames to be written, so
/// the frames go out, in order, without anyone waiting for them one by one.
fn queue_frame<F: Future>(future: F) {
    let mut future = pin!(future);
    let _ = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
}

fn properties(mode: DeliveryMode) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/data".into())
        .with_content_encoding("binary".into())
        .with_delivery_mode(match mode {
            DeliveryMode::Transient => 1,
            _ => 2,
        })
}

fn mode(confirm: bool) -> DeliveryMode {
    if confirm {
        DeliveryMode::Persistent
    } else {
        DeliveryMode::Transient
    }
}

/// Queue administration for every implementation alike, on a channel of its own.
struct Admin {
    channel: lapin::Channel,
}

impl Admin {
    async fn declare(&self, name: &str, durable: bool) -> Res<()> {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    async fn ready(&self, name: &str) -> Res<u32> {
        let q = self
            .channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    /// Waits (untimed) until the broker has queued all `n` published messages.
    async fn wait_ready(&self, name: &str, n: usize) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.ready(name).await? as usize;
            if ready == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("queue {name}: {ready} messages ready, expected {n}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deletes the queue; its consumers are gone, so a non-zero count means messages were not
    /// all consumed and acknowledged.
    async fn delete(&self, name: &str) -> Res<u32> {
        Ok(self
            .channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await?)
    }
}

// ---------------------------------------------------------------------------------------------
// carrot

async fn carrot_publisher(conn: &BrokerConnection, queue: &str, confirm: bool) -> Res<Publisher> {
    Ok(Publisher::builder(conn)
        .routing_key(queue)
        .serializer("raw")
        .delivery_mode(mode(confirm))
        .confirm_publish(confirm)
        .build()
        .await?)
}

async fn carrot_consumer(conn: &BrokerConnection, queue: &str, durable: bool) -> Res<Consumer> {
    let mut consumer = Consumer::builder(conn)
        .queue(queue)
        .durable(durable)
        .build()
        .await?;
    consumer
        .qos(carrot::Qos::new().prefetch_count(PREFETCH))
        .await?;
    Ok(consumer)
}

async fn carrot_send_all(publisher: &Arc<Publisher>, n: usize, pipelining: Pipelining) -> Res<()> {
    let body = body();
    if pipelining == Pipelining::Awaited {
        for _ in 0..n {
            publisher.send(&Body(&body)).await?;
        }
        return Ok(());
    }
    // What carrot's API allows today: several tasks sending at once on one publisher, each
    // awaiting its own sends (and confirms), so that up to CARROT_SENDERS are in flight.
    let senders: Vec<_> = (0..CARROT_SENDERS)
        .map(|i| {
            let publisher = publisher.clone();
            let body = body.clone();
            let share = n / CARROT_SENDERS + usize::from(i < n % CARROT_SENDERS);
            tokio::spawn(async move {
                for _ in 0..share {
                    publisher.send(&Body(&body)).await?;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    Ok(())
}

async fn carrot_consume_all(consumer: &mut Consumer, n: usize) -> Res<()> {
    for _ in 0..n {
        let message = consumer
            .next_message()
            .await?
            .ok_or("the subscription ended early")?;
        black_box(message.body().len());
        message.ack()?;
    }
    Ok(())
}

async fn carrot_publish(
    conn: &BrokerConnection,
    queue: &str,
    n: usize,
    confirm: bool,
    pipelining: Pipelining,
) -> Res<Duration> {
    let publisher = Arc::new(carrot_publisher(conn, queue, confirm).await?);
    let start = Instant::now();
    carrot_send_all(&publisher, n, pipelining).await?;
    let elapsed = start.elapsed();
    publisher.close().await?;
    Ok(elapsed)
}

async fn carrot_consume(
    conn: &BrokerConnection,
    queue: &str,
    n: usize,
    durable: bool,
) -> Res<Duration> {
    let mut consumer = carrot_consumer(conn, queue, durable).await?;
    let start = Instant::now();
    carrot_consume_all(&mut consumer, n).await?;
    let elapsed = start.elapsed();
    consumer.close().await?;
    Ok(elapsed)
}

async fn carrot_publish_consume(
    conn: &BrokerConnection,
    queue: &str,
    n: usize,
    confirm: bool,
    pipelining: Pipelining,
) -> Res<Duration> {
    let mut consumer = carrot_consumer(conn, queue, confirm).await?;
    consumer.consume().await?;
    let publisher = Arc::new(carrot_publisher(conn, queue, confirm).await?);
    let start = Instant::now();
    let publishing = tokio::spawn(async move {
        carrot_send_all(&publisher, n, pipelining).await?;
        Ok::<_, BoxError>(publisher)
    });
    let consuming = tokio::spawn(async move {
        carrot_consume_all(&mut consumer, n).await?;
        Ok::<_, BoxError>((consumer, Instant::now()))
    });
    let (mut consumer, end) = consuming.await??;
    let publisher = publishing.await??;
    consumer.close().await?;
    publisher.close().await?;
    Ok(end - start)
}

// ---------------------------------------------------------------------------------------------
// raw lapin

#[derive(Clone, Copy, PartialEq)]
enum Pipelining {
    /// Each publish (and each confirm) awaited, as carrot's `send` does.
    Awaited,
    /// Publishes and confirms not awaited one by one.
    Pipelined,
}

async fn lapin_publisher(conn: &Connection, confirm: bool) -> Res<lapin::Channel> {
    let channel = conn.create_channel().await?;
    if confirm {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    Ok(channel)
}

async fn lapin_send_all(
    channel: &lapin::Channel,
    queue: &str,
    n: usize,
    confirm: bool,
    pipelining: Pipelining,
) -> Res<()> {
    let body = body();
    let props = properties(mode(confirm));
    let publish = |props: BasicProperties| {
        channel.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body,
            props,
        )
    };
    match (confirm, pipelining) {
        (false, Pipelining::Awaited) => {
            for _ in 0..n {
                publish(props.clone()).await?;
            }
        }
        (true, Pipelining::Awaited) => {
            for _ in 0..n {
                let confirmation = publish(props.clone()).await?.await?;
                if !confirmation.is_ack() {
                    return Err("basic.nack".into());
                }
            }
        }
        (false, Pipelining::Pipelined) => {
            // Queue every frame at once; they are written in order, so once the last one is
            // written all are.
            for _ in 1..n {
                queue_frame(publish(props.clone()));
            }
            publish(props).await?;
        }
        (true, Pipelining::Pipelined) => {
            let mut pending = VecDeque::with_capacity(CONFIRM_WINDOW + 1);
            for _ in 0..n {
                pending.push_back(publish(props.clone()).await?);
                if pending.len() > CONFIRM_WINDOW {
                    let oldest = pending.pop_front().expect("pending confirm");
                    if !oldest.await?.is_ack() {
                        return Err("basic.nack".into());
                    }
                }
            }
            for confirm in pending {
                if !confirm.await?.is_ack() {
                    return Err("basic.nack".into());
                }
            }
        }
    }
    Ok(())
}

async fn lapin_consumer(conn: &Connection, queue: &str) -> Res<(lapin::Channel, lapin::Consumer)> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

async fn lapin_consume_all(
    channel: &lapin::Channel,
    consumer: &mut lapin::Consumer,
    n: usize,
    ack: LapinAck,
) -> Res<()> {
    let mut spawned = Vec::new();
    for _ in 0..n {
        let delivery = poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx))
            .await
            .ok_or("the consumer ended early")??;
        black_box(delivery.data.len());
        match ack {
            LapinAck::Queue => {
                queue_frame(channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()))
            }
            LapinAck::Spawn => spawned.push(tokio::spawn(async move {
                delivery.acker.ack(BasicAckOptions::default()).await
            })),
            LapinAck::Await => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
        }
    }
    // Spawned acks may still be on their way: the channel must not close before them.
    for ack in spawned {
        ack.await??;
    }
    Ok(())
}

async fn lapin_publish(
    conn: &Connection,
    queue: &str,
    n: usize,
    confirm: bool,
    pipelining: Pipelining,
) -> Res<Duration> {
    let channel = lapin_publisher(conn, confirm).await?;
    let start = Instant::now();
    lapin_send_all(&channel, queue, n, confirm, pipelining).await?;
    let elapsed = start.elapsed();
    channel.close(200, "OK".into()).await?;
    Ok(elapsed)
}

async fn lapin_consume(conn: &Connection, queue: &str, n: usize, ack: LapinAck) -> Res<Duration> {
    let start = Instant::now();
    let (channel, mut consumer) = lapin_consumer(conn, queue).await?;
    lapin_consume_all(&channel, &mut consumer, n, ack).await?;
    let elapsed = start.elapsed();
    channel.close(200, "OK".into()).await?;
    Ok(elapsed)
}

async fn lapin_publish_consume(
    conn: &Connection,
    queue: &str,
    n: usize,
    confirm: bool,
    pipelining: Pipelining,
    ack: LapinAck,
) -> Res<Duration> {
    let (consumer_channel, mut consumer) = lapin_consumer(conn, queue).await?;
    let publisher = lapin_publisher(conn, confirm).await?;
    let queue_name: Arc<str> = queue.into();
    let start = Instant::now();
    let publishing = tokio::spawn(async move {
        lapin_send_all(&publisher, &queue_name, n, confirm, pipelining).await?;
        Ok::<_, BoxError>(publisher)
    });
    let consuming = tokio::spawn(async move {
        lapin_consume_all(&consumer_channel, &mut consumer, n, ack).await?;
        Ok::<_, BoxError>((consumer_channel, Instant::now()))
    });
    let (consumer_channel, end) = consuming.await??;
    let publisher = publishing.await??;
    consumer_channel.close(200, "OK".into()).await?;
    publisher.close(200, "OK".into()).await?;
    Ok(end - start)
}

// ---------------------------------------------------------------------------------------------
// driver

struct Clients {
    carrot: BrokerConnection,
    lapin: Connection,
    admin: Admin,
}

/// One run of one workload by one implementation: its rate, or `None` when it does not apply.
async fn run(
    clients: &Clients,
    config: &Config,
    imp: &str,
    workload: &str,
    queue: &str,
) -> Res<Option<(usize, Duration)>> {
    let confirm = workload.starts_with("confirm_");
    let n = if confirm {
        config.confirm_messages
    } else {
        config.messages
    };
    let admin = &clients.admin;
    let pipelining = if imp.ends_with("_pipelined") {
        Pipelining::Pipelined
    } else {
        Pipelining::Awaited
    };
    let ack = config.lapin_ack;
    let elapsed = match workload {
        "publish" | "confirm_publish" => {
            admin.declare(queue, confirm).await?;
            let elapsed = match imp {
                "carrot" | "carrot_pipelined" => {
                    carrot_publish(&clients.carrot, queue, n, confirm, pipelining).await?
                }
                _ => lapin_publish(&clients.lapin, queue, n, confirm, pipelining).await?,
            };
            admin.wait_ready(queue, n).await?;
            elapsed
        }
        "consume" | "confirm_consume" => {
            if imp.ends_with("_pipelined") {
                return Ok(None);
            }
            // The queue the publish workload of this round filled (same name).
            let elapsed = match imp {
                "carrot" => carrot_consume(&clients.carrot, queue, n, confirm).await?,
                _ => lapin_consume(&clients.lapin, queue, n, ack).await?,
            };
            let left = admin.delete(queue).await?;
            if left != 0 {
                return Err(format!("{queue}: {left} messages left after consuming").into());
            }
            elapsed
        }
        _ => {
            admin.declare(queue, confirm).await?;
            let elapsed = match imp {
                "carrot" | "carrot_pipelined" => {
                    carrot_publish_consume(&clients.carrot, queue, n, confirm, pipelining).await?
                }
                _ => {
                    lapin_publish_consume(&clients.lapin, queue, n, confirm, pipelining, ack)
                        .await?
                }
            };
            let left = admin.delete(queue).await?;
            if left != 0 {
                return Err(format!("{queue}: {left} messages left after consuming").into());
            }
            elapsed
        }
    };
    Ok(Some((n, elapsed)))
}

fn queue_name(round: usize, imp: &str, workload: &str) -> String {
    // A consume workload reads the queue its publish workload filled: one name for both.
    let queue = match workload {
        "publish" | "consume" => "transient",
        "confirm_publish" | "confirm_consume" => "persistent",
        other => other,
    };
    format!("carrot-bench-{}-r{round}-{imp}-{queue}", std::process::id())
}

/// The measured runs of one workload by one implementation.
#[derive(Default)]
struct Runs {
    imp: String,
    workload: &'static str,
    /// msgs/s of each round.
    rates: Vec<f64>,
    seconds: Vec<f64>,
    /// Client CPU (this process, user + system) per message, in microseconds.
    cpu_us: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

async fn bench(config: Config) -> Res<serde_json::Value> {
    let carrot = BrokerConnection::connect(&config.url).await?;
    let lapin = Connection::connect(&config.url, ConnectionProperties::default()).await?;
    let admin = Admin {
        channel: lapin.create_channel().await?,
    };
    let clients = Clients {
        carrot,
        lapin,
        admin,
    };
    // A publish workload must run for its consume workload to have messages.
    for (consume, publish) in [
        ("consume", "publish"),
        ("confirm_consume", "confirm_publish"),
    ] {
        if config.workloads.iter().any(|w| w == consume)
            && !config.workloads.iter().any(|w| w == publish)
        {
            return Err(format!("{consume} needs {publish} in --workloads").into());
        }
    }
    let mut runs: Vec<Runs> = Vec::new();
    for imp in &config.impls {
        for workload in WORKLOADS {
            if config.workloads.iter().any(|w| w == workload) {
                runs.push(Runs {
                    imp: imp.clone(),
                    workload,
                    ..Runs::default()
                });
            }
        }
    }
    // Warm-up (discarded): every implementation once on small numbers, so that the first
    // measured round does not pay for first channels, queues and allocations.
    let warm = Config {
        messages: config.messages.min(2000),
        confirm_messages: config.confirm_messages.min(200),
        ..config.clone()
    };
    for imp in &config.impls {
        for workload in WORKLOADS {
            if config.workloads.iter().any(|w| w == workload) {
                let queue = queue_name(0, imp, workload);
                if let Err(e) = run(&clients, &warm, imp, workload, &queue).await {
                    let _ = clients.admin.delete(&queue).await;
                    return Err(format!("warm-up, {imp}, {workload}: {e}").into());
                }
            }
        }
    }
    let started = Instant::now();
    for round in 1..=config.rounds {
        // Each round starts with the next implementation, so that none always runs first.
        let mut order = config.impls.clone();
        let shift = (round - 1) % order.len();
        order.rotate_left(shift);
        for imp in &order {
            for workload in WORKLOADS {
                if !config.workloads.iter().any(|w| w == workload) {
                    continue;
                }
                let queue = queue_name(round, imp, workload);
                let cpu_before = cpu_seconds();
                let result = run(&clients, &config, imp, workload, &queue).await;
                let cpu = cpu_seconds() - cpu_before;
                let result = match result {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = clients.admin.delete(&queue).await;
                        return Err(format!("round {round}, {imp}, {workload}: {e}").into());
                    }
                };
                let Some((n, elapsed)) = result else { continue };
                let rate = n as f64 / elapsed.as_secs_f64();
                let cpu_us = cpu * 1e6 / n as f64;
                eprintln!(
                    "round {round} {imp:>16} {workload:<24} {n:>7} msgs in {:>7.3} s: {:>9.0} msgs/s, {cpu_us:>5.1} us CPU/msg",
                    elapsed.as_secs_f64(),
                    rate
                );
                let entry = runs
                    .iter_mut()
                    .find(|r| &r.imp == imp && r.workload == workload)
                    .expect("entry");
                entry.rates.push(rate);
                entry.seconds.push(elapsed.as_secs_f64());
                entry.cpu_us.push(cpu_us);
            }
        }
    }
    let total = started.elapsed();
    let _ = clients.carrot.close().await;
    let _ = clients.lapin.close(200, "OK".into()).await;

    let mut results = serde_json::Map::new();
    for run in &runs {
        if run.rates.is_empty() {
            continue;
        }
        let entry = results
            .entry(run.imp.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object");
        entry.insert(
            run.workload.to_string(),
            json!({
                "median": median(&run.rates),
                "rates": run.rates,
                "seconds": run.seconds,
                "cpu_us_per_msg": run.cpu_us,
                "cpu_us_per_msg_median": median(&run.cpu_us),
            }),
        );
    }
    let mut ratios = serde_json::Map::new();
    for (ours, peer) in [
        ("carrot", "lapin"),
        ("carrot", "lapin_pipelined"),
        ("carrot_pipelined", "lapin_pipelined"),
    ] {
        let mut of_peer = serde_json::Map::new();
        for workload in WORKLOADS {
            let get = |imp: &str| {
                results
                    .get(imp)
                    .and_then(|r| r.get(workload))
                    .and_then(|w| w["median"].as_f64())
            };
            if let (Some(c), Some(p)) = (get(ours), get(peer)) {
                of_peer.insert(workload.into(), json!(c / p));
            }
        }
        if !of_peer.is_empty() {
            ratios.insert(format!("{ours}/{peer}"), serde_json::Value::Object(of_peer));
        }
    }
    Ok(json!({
        "bench": "amqp",
        "url": redact(&config.url),
        "body_bytes": BODY_LEN,
        "prefetch": PREFETCH,
        "messages": config.messages,
        "confirm_messages": config.confirm_messages,
        "rounds": config.rounds,
        "lapin_ack": format!("{:?}", config.lapin_ack).to_lowercase(),
        "total_seconds": total.as_secs_f64(),
        "results": results,
        "ratios": ratios,
    }))
}

/// CPU time (user + system) of this whole process so far, in seconds: the client side's cost,
/// RabbitMQ's is not counted. Read from `/proc/self/stat` in clock ticks (USER_HZ, 100 on
/// Linux), so short runs are coarse; 0 where there is no /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (in parentheses, which may contain spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn main() {
    let config = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("amqp bench: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "amqp bench: {} rounds of {:?} on {}; {} messages ({} with confirms), {BODY_LEN}-byte bodies, prefetch {PREFETCH}",
        config.rounds,
        config.impls,
        redact(&config.url),
        config.messages,
        config.confirm_messages
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The whole bench runs as a task on the runtime's workers, as an application would.
    let result = runtime.block_on(async { tokio::spawn(bench(config)).await });
    match result {
        Ok(Ok(summary)) => {
            println!("{}", serde_json::to_string_pretty(&summary).expect("json"));
        }
        Ok(Err(e)) => {
            eprintln!("amqp bench failed: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("amqp bench panicked: {e}");
            std::process::exit(1);
        }
    }
}
