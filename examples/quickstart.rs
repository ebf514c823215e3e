//! The seed's example on the embedded broker: a consumer with a callback, a publisher, and
//! `wait` with a limit.
//!
//! ```text
//! cargo run --release --example quickstart
//! CARROT_BROKER_URL=memory://other cargo run --release --example quickstart
//! ```

use carrot::{BrokerConnection, Consumer, Publisher, SendOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> carrot::Result<()> {
    let conn = BrokerConnection::from_env().await?;
    println!("connected to {}", conn.url());

    let mut consumer = Consumer::builder(&conn)
        .queue("feed")
        .exchange("feed")
        .routing_key("importer")
        .build()
        .await?;
    consumer.register_callback(|payload, message| {
        let feed_url = payload
            .as_data()
            .and_then(|data| data["import_feed"].as_str())
            .unwrap_or("<no import_feed in message>");
        println!(
            "Got feed import message for: {feed_url} (delivery tag {}, content type {})",
            message.delivery_tag(),
            message.content_type().unwrap_or("?")
        );
        message.ack()
    });

    let publisher = Publisher::builder(&conn)
        .exchange("feed")
        .routing_key("importer")
        .build()
        .await?;
    let feeds = [
        "http://cnn.com/rss/edition.rss",
        "https://blog.rust-lang.org/feed.xml",
        "https://www.rabbitmq.com/blog/feed.xml",
    ];
    for url in feeds {
        publisher.send(&json!({ "import_feed": url })).await?;
    }
    // A message nobody is bound to: mandatory turns silent loss into an error.
    let lost = publisher
        .send_with(
            &json!({"import_feed": "nowhere"}),
            SendOptions::new()
                .routing_key("no-such-key")
                .mandatory(true),
        )
        .await;
    println!(
        "unroutable mandatory message: {}",
        lost.map_or_else(|e| e.to_string(), |_| "delivered?!".into())
    );

    let processed = consumer.wait(Some(feeds.len())).await?;
    println!(
        "processed {processed} messages; {} left in the queue",
        conn.queue_info("feed").await?.message_count
    );
    consumer.close().await?;
    publisher.close().await?;
    Ok(())
}
