//! The worker loop under load, as a service runs it: 10,000 persistent messages, the worker
//! process (`examples/worker.rs`) sent SIGTERM mid-stream with handlers in flight, then a new
//! worker finishes the queue. Nothing may be lost, and a message may be handled twice only if
//! its handler was still running when the grace period ended (counted by the worker as
//! abandoned). On sqlite:// always, and on RabbitMQ with `CARROT_TEST_AMQP_URL` (required
//! under `CI=true`). Then the same through a RabbitMQ restart (`CARROT_TEST_AMQP_RESTART`):
//! the worker recovers by itself and finishes; only messages whose ack the restart lost (at
//! most the prefetch window) may come twice.

#![cfg(unix)]

mod amqp_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carrot::{BrokerConnection, Publisher, QueueSpec};

const MESSAGES: u64 = 10_000;

fn start_worker(url: &str, queue: &str, record: &Path) -> Child {
    Command::new(amqp_support::example_binary("worker"))
        .args([
            url,
            queue,
            "--concurrency",
            "8",
            "--work-ms",
            "2",
            "--record",
        ])
        .arg(record)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the worker starts")
}

fn lines(record: &Path) -> Vec<u64> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits (at most `within`) until `done` holds.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits for the worker's exit; returns what it counted as abandoned.
fn terminate(mut worker: Child) -> u64 {
    let pid = worker.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM {pid}");
    let mut exited = None;
    wait_until(
        "the worker exits after SIGTERM",
        Duration::from_secs(60),
        || {
            exited = worker.try_wait().expect("the worker's status");
            exited.is_some()
        },
    );
    let output = worker.wait_with_output().expect("the worker's output");
    assert!(
        exited.is_some_and(|s| s.success()),
        "the worker failed: {exited:?}"
    );
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    eprintln!("worker: {report}");
    report
        .split_whitespace()
        .find_map(|f| f.strip_prefix("abandoned="))
        .and_then(|n| n.parse().ok())
        .expect("the worker's report")
}

/// The tests that use RabbitMQ run one at a time: one of them restarts it.
static RABBITMQ: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What happens in the middle of the stream.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// SIGTERM to the worker, then a new worker.
    Sigterm,
    /// A RabbitMQ restart under the same worker, which goes on.
    Restart,
}

fn run(url: &str, broker: &str) {
    run_with(url, broker, Fault::Sigterm);
}

fn run_with(url: &str, broker: &str, fault: Fault) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let queue = format!(
        "carrot-test.worker-shutdown.{broker}.{}",
        std::process::id()
    );
    let record = std::env::temp_dir().join(format!("{queue}.record"));
    let _ = std::fs::remove_file(&record);
    let conn = runtime.block_on(async {
        let conn = BrokerConnection::connect(url).await.expect("the broker");
        conn.declare_queue(&QueueSpec::new(&queue))
            .await
            .expect("the queue");
        let publisher = Publisher::builder(&conn)
            .routing_key(&queue)
            .confirm_publish(true)
            .build()
            .await
            .expect("a publisher");
        let numbers: Vec<u64> = (0..MESSAGES).collect();
        for chunk in numbers.chunks(500) {
            for sent in publisher.send_batch(chunk.iter()).await {
                sent.expect("a confirmed send");
            }
        }
        conn
    });

    let first = start_worker(url, &queue, &record);
    wait_until("2,000 messages handled", Duration::from_secs(120), || {
        lines(&record).len() >= 2_000
    });
    let (last, mut abandoned) = match fault {
        Fault::Sigterm => (start_worker(url, &queue, &record), terminate(first)),
        Fault::Restart => {
            restart_rabbitmq();
            (first, 0)
        }
    };
    let after_first = lines(&record).len() as u64;
    assert!(after_first < MESSAGES, "the fault came after the end");
    wait_until("every message handled", Duration::from_secs(300), || {
        let mut seen: Vec<u64> = lines(&record);
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64 >= MESSAGES
    });
    abandoned += terminate(last);

    let mut counts = BTreeMap::new();
    for n in lines(&record) {
        *counts.entry(n).or_insert(0u32) += 1;
    }
    let lost: Vec<u64> = (0..MESSAGES).filter(|n| !counts.contains_key(n)).collect();
    let twice: u64 = counts.values().map(|&c| u64::from(c - 1)).sum();
    eprintln!(
        "{url}: {after_first} handled before the fault, {} lost, {twice} handled twice, {abandoned} abandoned",
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    // The worker's prefetch: 8 handlers, 4 messages each.
    let window = if fault == Fault::Restart { 32 } else { 0 };
    assert!(
        twice <= abandoned + window,
        "{twice} handled twice, but only {abandoned} handlers were abandoned (and {window} may come again after a restart)"
    );
    runtime.block_on(async {
        let left = conn.queue_info(&queue).await.expect("the queue");
        assert_eq!(left.message_count, 0);
        conn.delete_queue(&queue, carrot::DeleteQueueOptions::new())
            .await
            .expect("deleted");
    });
    let _ = std::fs::remove_file(&record);
}

#[test]
#[cfg(feature = "sqlite")]
fn sigterm_mid_stream_loses_nothing_on_sqlite() {
    let path =
        std::env::temp_dir().join(format!("carrot-worker-shutdown-{}.db", std::process::id()));
    run(&format!("sqlite://{}", path.display()), "sqlite");
    let _ = std::fs::remove_file(&path);
}

/// A setting of the RabbitMQ tests: required under `CI=true`, else its absence skips.
fn rabbitmq_setting(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true needs RabbitMQ: {var} is not set (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

/// Restarts RabbitMQ with `CARROT_TEST_AMQP_RESTART`.
fn restart_rabbitmq() {
    let command = rabbitmq_setting("CARROT_TEST_AMQP_RESTART").unwrap_or_default();
    let status = Command::new("sh")
        .args(["-c", &command])
        .status()
        .expect("the restart command runs");
    assert!(status.success(), "{command} failed");
}

#[test]
#[cfg(feature = "amqp")]
fn sigterm_mid_stream_loses_nothing_on_rabbitmq() {
    let _alone = RABBITMQ.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(url) = rabbitmq_setting("CARROT_TEST_AMQP_URL") {
        run(&url, "rabbitmq");
    }
}

#[test]
#[cfg(feature = "amqp")]
fn a_rabbitmq_restart_mid_stream_loses_nothing() {
    let _alone = RABBITMQ.lock().unwrap_or_else(|p| p.into_inner());
    let (Some(url), Some(_)) = (
        rabbitmq_setting("CARROT_TEST_AMQP_URL"),
        rabbitmq_setting("CARROT_TEST_AMQP_RESTART"),
    ) else {
        return;
    };
    run_with(&url, "rabbitmq-restart", Fault::Restart);
}
