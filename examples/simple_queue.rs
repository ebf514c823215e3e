//! A `SimpleQueue` shared with kombu: this program puts a message and gets one, and the same
//! queue works from kombu's `SimpleQueue` (the script below, on the same broker), both ways.
//!
//! ```text
//! cargo run --release --example simple_queue -- amqp://guest:guest@localhost:5672// put hello
//! python3 -c 'import kombu; c = kombu.Connection("amqp://guest:guest@localhost:5672//"); \
//!   q = c.SimpleQueue("carrot.simple"); m = q.get(timeout=5); print(m.payload); m.ack(); \
//!   q.put({"from": "kombu"})'
//! cargo run --release --example simple_queue -- amqp://guest:guest@localhost:5672// get
//! ```

use std::time::Duration;

use carrot::{BrokerConnection, SimpleQueue};

#[tokio::main]
async fn main() -> Result<(), carrot::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().map_or("memory://", String::as_str);
    let conn = BrokerConnection::connect(url).await?;
    let queue = SimpleQueue::open(&conn, "carrot.simple").await?;
    match args.get(1).map(String::as_str) {
        Some("put") => {
            let text = args.get(2).map_or("hello", String::as_str);
            queue
                .put(&serde_json::json!({ "from": "carrot", "text": text }))
                .await?;
            println!("put; {} message(s) in the queue", queue.len().await?);
        }
        Some("get") => {
            let message = queue.get(Some(Duration::from_secs(5))).await?;
            println!("{}", message.decode::<serde_json::Value>()?);
            message.ack()?;
        }
        _ => {
            queue.put(&serde_json::json!({ "from": "carrot" })).await?;
            let message = queue.get(Some(Duration::from_secs(5))).await?;
            println!("{}", message.decode::<serde_json::Value>()?);
            message.ack()?;
        }
    }
    queue.close().await?;
    Ok(())
}
