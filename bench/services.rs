//! The services layer against the plain API on the same broker (issue 19):
//!
//! - the worker loop with 1, 8 and 64 handlers at once against the plain consumer loop
//!   (`next_message` + `ack`), first with handlers that do nothing (the worker's own cost),
//!   then with handlers that wait 1 ms (an I/O-bound service: where concurrency gains);
//! - RPC round trips per second: one caller waiting for each reply, and 16 callers at once.
//!
//! ```text
//! cargo run --release --example services_bench -- [URL] [--n 20000] [--slow-n 2000] [--calls 2000]
//! ```
//! Prints one JSON object; `bench/kombu_rpc.py` measures kombu's RPC pattern on the same broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carrot::{
    BrokerConnection, CancellationToken, Consumer, Publisher, QueueSpec, RpcClient, RpcServer,
    Worker,
};
use serde_json::{json, Value};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn fill(conn: &BrokerConnection, queue: &str, n: usize) -> carrot::Result<()> {
    conn.declare_queue(&QueueSpec::new(queue)).await?;
    conn.purge(queue).await?;
    let publisher = Publisher::builder(conn)
        .routing_key(queue)
        .confirm_publish(true)
        .build()
        .await?;
    let items: Vec<usize> = (0..n).collect();
    for chunk in items.chunks(1000) {
        for sent in publisher.send_batch(chunk.iter()).await {
            sent?;
        }
    }
    Ok(())
}

/// Messages per second of the plain loop: one message at a time, `work` each.
async fn plain(
    conn: &BrokerConnection,
    queue: &str,
    n: usize,
    work: Duration,
    prefetch: u16,
) -> carrot::Result<f64> {
    fill(conn, queue, n).await?;
    let mut consumer = Consumer::builder(conn).queue(queue).build().await?;
    consumer
        .qos(carrot::Qos::new().prefetch_count(prefetch))
        .await?;
    let started = Instant::now();
    for _ in 0..n {
        let message = consumer
            .next_message()
            .await?
            .ok_or("ended")
            .map_err(|e| carrot::Error::InvalidArgument(e.into()))?;
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        message.ack()?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    consumer.close().await?;
    Ok(rate)
}

/// Messages per second of the worker with `handlers` at once, `work` each.
async fn worker(
    conn: &BrokerConnection,
    queue: &str,
    n: usize,
    handlers: usize,
    work: Duration,
    prefetch: Option<u16>,
) -> carrot::Result<f64> {
    fill(conn, queue, n).await?;
    let stop = CancellationToken::new();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut builder = Worker::builder(conn);
    if let Some(prefetch) = prefetch {
        builder = builder.prefetch_count(prefetch);
    }
    let worker = {
        let (stop, done) = (stop.clone(), done.clone());
        builder.concurrency(handlers).shutdown(stop.clone()).queue(
            Consumer::builder(conn).queue(queue),
            move |_message| {
                let (stop, done) = (stop.clone(), done.clone());
                async move {
                    if !work.is_zero() {
                        tokio::time::sleep(work).await;
                    }
                    if done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == n {
                        stop.cancel();
                    }
                    Ok(())
                }
            },
        )
    };
    let started = Instant::now();
    let stats = worker.run().await?;
    let rate = stats.handled() as f64 / started.elapsed().as_secs_f64();
    Ok(rate)
}

async fn rpc(
    conn: &BrokerConnection,
    queue: &str,
    calls: usize,
    callers: usize,
    mandatory: bool,
) -> carrot::Result<f64> {
    let _ = conn.delete_queue(queue, Default::default()).await;
    let mut server = RpcServer::new(conn, queue).await?;
    let stop = CancellationToken::new();
    let serving = tokio::spawn({
        let stop = stop.clone();
        async move {
            server
                .serve(
                    |request| async move { Ok::<_, carrot::BoxError>(request.decode::<Value>()?) },
                    stop,
                )
                .await
        }
    });
    let client = Arc::new(RpcClient::new(conn).await?);
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (client, queue) = (client.clone(), queue.to_string());
            tokio::spawn(async move {
                for n in 0..calls / callers {
                    let options = carrot::SendOptions::new()
                        .routing_key(queue.as_str())
                        .mandatory(mandatory);
                    client
                        .call_with(&json!({"n": n}), options, Duration::from_secs(10))
                        .await?;
                }
                Ok::<_, carrot::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| carrot::Error::InvalidArgument(e.to_string()))??;
    }
    let rate = (calls / callers * callers) as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = serving.await;
    Ok(rate)
}

#[tokio::main]
async fn main() -> Result<(), carrot::BoxError> {
    let url = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "memory://".into());
    let (n, slow_n, calls) = (
        arg("--n", 20_000),
        arg("--slow-n", 2_000),
        arg("--calls", 2_000),
    );
    let conn = BrokerConnection::connect(&url).await?;
    let queue = "carrot-bench.services";
    let slow = Duration::from_millis(1);
    let mut out = serde_json::Map::new();
    out.insert("url".into(), json!(conn.url().to_string()));
    let zero = Duration::ZERO;
    for prefetch in [64, 4] {
        let rate = plain(&conn, queue, n, zero, prefetch).await?;
        out.insert(format!("plain_noop_prefetch_{prefetch}"), json!(rate));
    }
    for handlers in [1, 8, 64] {
        let rate = worker(&conn, queue, n, handlers, zero, None).await?;
        out.insert(format!("worker_{handlers}_noop"), json!(rate));
    }
    let rate = worker(&conn, queue, n, 1, zero, Some(64)).await?;
    out.insert("worker_1_noop_prefetch_64".into(), json!(rate));
    let rate = plain(&conn, queue, slow_n, slow, 64).await?;
    out.insert("plain_1ms".into(), json!(rate));
    for handlers in [1, 8, 64] {
        let rate = worker(&conn, queue, slow_n, handlers, slow, None).await?;
        out.insert(format!("worker_{handlers}_1ms"), json!(rate));
    }
    for (callers, mandatory) in [(1, true), (16, true), (1, false), (16, false)] {
        let name = format!("rpc_{callers}_callers_mandatory_{mandatory}");
        let rate = rpc(&conn, "carrot-bench.rpc", calls, callers, mandatory).await?;
        out.insert(name, json!(rate));
    }
    let _ = conn.delete_queue(queue, Default::default()).await;
    let _ = conn
        .delete_queue("carrot-bench.rpc", Default::default())
        .await;
    println!("{}", Value::Object(out));
    Ok(())
}
