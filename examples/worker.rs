//! A worker service with a graceful shutdown: it handles the messages of a queue, 8 at once,
//! until SIGINT (Ctrl-C) or SIGTERM; then it stops taking messages, lets running handlers
//! finish and ack (30 s at most), and the messages it had not started go back to the queue.
//!
//! ```text
//! cargo run --release --example worker -- [URL] [QUEUE] [--concurrency N] [--work-ms MS] [--record FILE] [--auto-delete]
//! cargo run --release --example worker -- sqlite:///tmp/jobs.db jobs --record /tmp/handled.txt
//! ```
//!
//! Each message's body (json) is written on a line of the record file once its handler is done
//! and before it is acknowledged, so that a run can be checked for lost and repeated messages.
//! At the end it prints its counts: `handled=N failed=N abandoned=N`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrot::{BrokerConnection, Consumer, Worker};

#[tokio::main]
async fn main() -> Result<(), carrot::BoxError> {
    let mut positional = Vec::new();
    let (mut concurrency, mut work, mut record) = (8, Duration::ZERO, None);
    // Whether the queue goes with its last consumer.
    let mut auto_delete = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--concurrency" => concurrency = args.next().ok_or("--concurrency N")?.parse()?,
            "--work-ms" => {
                work = Duration::from_millis(args.next().ok_or("--work-ms MS")?.parse()?)
            }
            "--record" => record = Some(args.next().ok_or("--record FILE")?),
            "--auto-delete" => auto_delete = true,
            _ => positional.push(arg),
        }
    }
    let url = positional.first().map_or("memory://", String::as_str);
    let queue = positional.get(1).map_or("jobs", String::as_str);
    let record = match record {
        Some(path) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ))),
        None => None,
    };

    let conn = BrokerConnection::connect(url).await?;
    let worker = Worker::builder(&conn)
        .concurrency(concurrency)
        .grace(Duration::from_secs(30))
        .shutdown_on_signals(true)
        .on_connection_event(|event| eprintln!("worker: {event:?}"))
        .on_decode_error(|message, error| {
            eprintln!(
                "worker: message {} cannot be decoded: {error}",
                message.delivery_tag()
            )
        })
        .decoded(
            Consumer::builder(&conn)
                .queue(queue)
                .auto_delete(auto_delete),
            move |job: serde_json::Value, _message| {
                let record = record.clone();
                async move {
                    tokio::time::sleep(work).await;
                    if let Some(record) = record {
                        // One write of the whole line: `writeln!` writes the number and the
                        // newline apart, and a kill between the two would join two lines.
                        let line = format!("{job}\n");
                        let mut file = record.lock().map_err(|_| "the record file's lock")?;
                        file.write_all(line.as_bytes())?;
                    }
                    Ok(())
                }
            },
        );
    let stats = worker.stats();
    eprintln!(
        "worker: consuming {queue} on {} with {concurrency} handlers",
        conn.url()
    );
    let outcome = worker.run().await;
    println!(
        "handled={} failed={} abandoned={}",
        stats.handled(),
        stats.failed(),
        stats.abandoned()
    );
    conn.close().await?;
    outcome?;
    Ok(())
}
