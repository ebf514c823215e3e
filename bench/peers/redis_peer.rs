//! The limit of the Redis transport, for `bench/redis_run.sh`: the workload of `carrot bench`
//! (same options, same JSON keys) as bare `redis` crate calls, the loop kombu's Redis
//! transport makes without anything of its own: producers LPUSH each body on the queue's list
//! (one round trip each, as a send is), consumers BRPOP it (one round trip each, as kombu's
//! consumer does). No envelope, no acknowledgement records, no routing: what is left is Redis
//! and the client library.
//!
//! ```text
//! cargo build --release --example redis_peer
//! target/release/examples/redis_peer --url redis://127.0.0.1:6379/0 --messages 50000 \
//!     --producers 4 --consumers 4 --json
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

struct Args {
    url: String,
    messages: u64,
    size: usize,
    producers: u64,
    consumers: u64,
    json: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: "redis://127.0.0.1:6379/0".into(),
        messages: 100_000,
        size: 100,
        producers: 1,
        consumers: 1,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => a.url = value()?,
            "--messages" => a.messages = value()?.parse().map_err(|e| format!("{e}"))?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("{e}"))?,
            "--producers" => a.producers = value()?.parse().map_err(|e| format!("{e}"))?,
            "--consumers" => a.consumers = value()?.parse().map_err(|e| format!("{e}"))?,
            "--json" => a.json = true,
            // carrot bench's options this loop has no use for (transient, no confirms).
            "--prefetch" => {
                value()?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let client = redis::Client::open(args.url.as_str())?;
    let queue = format!("carrot-bench-redis-peer-{}", std::process::id());
    let start = Instant::now();
    let per_producer = args.messages / args.producers;
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let queue = queue.clone();
        let count = if p + 1 == args.producers {
            args.messages - per_producer * (args.producers - 1)
        } else {
            per_producer
        };
        let size = args.size.max(8);
        producers.push(tokio::spawn(async move {
            let mut body = vec![b'x'; size];
            for _ in 0..count {
                let sent = start.elapsed().as_nanos() as u64;
                body[..8].copy_from_slice(&sent.to_le_bytes());
                let _: i64 = conn.lpush(&queue, &body).await?;
            }
            Ok::<Duration, redis::RedisError>(start.elapsed())
        }));
    }
    let consumed = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let (queue, consumed, total) = (queue.clone(), consumed.clone(), args.messages);
        consumers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while consumed.load(Ordering::Acquire) < total {
                let got: Option<(String, Vec<u8>)> = conn.brpop(&queue, 0.2).await?;
                if let Some((_, body)) = got {
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&body[..8]);
                    let now = start.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(u64::from_le_bytes(sent)));
                    consumed.fetch_add(1, Ordering::AcqRel);
                }
            }
            Ok::<(Duration, Vec<u64>), redis::RedisError>((start.elapsed(), latencies))
        }));
    }
    let mut published = Duration::ZERO;
    for p in producers {
        published = published.max(p.await??);
    }
    let mut done = Duration::ZERO;
    let mut latencies = Vec::new();
    for c in consumers {
        let (d, mut l) = c.await??;
        done = done.max(d);
        latencies.append(&mut l);
    }
    latencies.sort_unstable();
    let q = |f: f64| {
        latencies
            .get(((latencies.len() as f64 * f) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    let rate = |d: Duration| (args.messages as f64 / d.as_secs_f64().max(1e-9)).round();
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = conn.del(&queue).await?;
    if args.json {
        println!(
            "{{\"url\": \"{}\", \"messages\": {}, \"size\": {}, \"producers\": {}, \"consumers\": {}, \"published_per_s\": {}, \"consumed_per_s\": {}, \"elapsed_s\": {}, \"latency_ms\": {{\"p50\": {}, \"p99\": {}, \"max\": {}}}}}",
            args.url,
            args.messages,
            args.size,
            args.producers,
            args.consumers,
            rate(published),
            rate(done),
            done.as_secs_f64(),
            q(0.5),
            q(0.99),
            latencies.last().map_or(0.0, |ns| *ns as f64 / 1e6)
        );
    } else {
        println!("published {}/s, consumed {}/s", rate(published), rate(done));
    }
    Ok(())
}
