//! Memory held by the embedded `memory://` broker for 1,000,000 queued 100-byte messages.
//!
//! Publishes 1,000,000 raw, persistent 100-byte messages into one durable queue, then reads the
//! process's peak (VmHWM) and current (VmRSS) resident set size from `/proc/self/status`, and
//! fetches a sample back to show the messages are really there. Prints one human line and one
//! JSON line (`{"messages":1000000,"peak_rss_mb":...}`) that `bench/run.sh` parses.
//!
//! Target: under 350 MB (10^6 bytes) peak RSS. Run with `cargo bench --bench memory_hold`.

use std::process::ExitCode;
use std::time::Instant;

use carrot::{BrokerConnection, Consumer, DeliveryMode, ExchangeType, Publisher};
use serde::{Serialize, Serializer};

const MESSAGES: usize = 1_000_000;
const BODY_LEN: usize = 100;
const SAMPLE: usize = 1_000;
const TARGET_MB: f64 = 350.0;

/// A byte string serialized with `serialize_bytes` (as `serde_bytes` would).
struct Body<'a>(&'a [u8]);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A `kB` (KiB) field of `/proc/self/status`, in MB (10^6 bytes).
fn status_mb(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0 / 1e6)
}

/// (peak, current) resident set size in MB (10^6 bytes).
fn rss_mb() -> Result<(f64, f64), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let peak = status_mb(&status, "VmHWM:").ok_or("no VmHWM in /proc/self/status")?;
    let current = status_mb(&status, "VmRSS:").ok_or("no VmRSS in /proc/self/status")?;
    Ok((peak, current))
}

async fn run() -> Result<(), String> {
    let (_, baseline_mb) = rss_mb()?;
    let conn = BrokerConnection::connect("memory://hold")
        .await
        .map_err(|e| e.to_string())?;
    let publisher = Publisher::builder(&conn)
        .exchange("hold")
        .exchange_type(ExchangeType::Direct)
        .routing_key("hold")
        .delivery_mode(DeliveryMode::Persistent)
        .serializer("raw")
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = Consumer::builder(&conn)
        .queue("hold")
        .exchange("hold")
        .exchange_type(ExchangeType::Direct)
        .routing_key("hold")
        .durable(true)
        .build()
        .await
        .map_err(|e| e.to_string())?;

    let mut body = [0u8; BODY_LEN];
    let start = Instant::now();
    for i in 0..MESSAGES {
        // Distinct bodies, so that nothing could be shared between messages.
        body[..8].copy_from_slice(&(i as u64).to_le_bytes());
        publisher
            .send(&Body(&body))
            .await
            .map_err(|e| e.to_string())?;
    }
    let publish_s = start.elapsed().as_secs_f64();
    let (peak_mb, rss_mb_now) = rss_mb()?;

    let queued = consumer
        .declare()
        .await
        .map_err(|e| e.to_string())?
        .message_count as usize;
    if queued != MESSAGES {
        return Err(format!("{queued} messages queued, expected {MESSAGES}"));
    }
    for i in 0..SAMPLE {
        let message = consumer
            .fetch()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("queue empty after {i} of {SAMPLE} sample fetches"))?;
        let n = u64::from_le_bytes(message.body()[..8].try_into().expect("8 bytes"));
        if n != i as u64
            || message.body().len() != BODY_LEN
            || message.delivery_mode() != Some(DeliveryMode::Persistent)
        {
            return Err(format!("message {i} came back wrong: {message:?}"));
        }
        message.ack().map_err(|e| e.to_string())?;
    }

    let verdict = if peak_mb < TARGET_MB { "met" } else { "MISSED" };
    println!(
        "memory_hold: {MESSAGES} x {BODY_LEN}-byte persistent messages queued in {publish_s:.2} s \
         ({:.0} msg/s); peak RSS {peak_mb:.1} MB, RSS {rss_mb_now:.1} MB (baseline {baseline_mb:.1} MB, \
         {:.0} bytes/message); target < {TARGET_MB} MB: {verdict}; sample of {SAMPLE} fetched back intact",
        MESSAGES as f64 / publish_s,
        (rss_mb_now - baseline_mb) * 1e6 / MESSAGES as f64,
    );
    println!(
        "{{\"messages\":{MESSAGES},\"body_bytes\":{BODY_LEN},\"peak_rss_mb\":{peak_mb:.1},\"rss_mb\":{rss_mb_now:.1},\
         \"baseline_rss_mb\":{baseline_mb:.1},\"publish_s\":{publish_s:.3},\"target_mb\":{TARGET_MB}}}"
    );
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; there is nothing to configure.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("memory_hold: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory_hold: {e}");
            ExitCode::FAILURE
        }
    }
}
