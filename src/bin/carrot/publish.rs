//! `carrot publish`: one message from BODY, or one per line of stdin.

use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};

use carrot::{BrokerConnection, DeliveryMode, Publisher, SendOptions};

use crate::args::{self, Kind, Pair};
use crate::failure::Failure;

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// Exchange to publish to ("" is the default exchange, which routes to the queue named by
    /// the routing key).
    #[arg(long)]
    exchange: String,
    /// Declare the exchange with this type (durable) if it does not exist. Without it, the
    /// exchange must exist already.
    #[arg(long, value_enum)]
    exchange_type: Option<Kind>,
    /// Routing key.
    #[arg(long, default_value = "")]
    routing_key: String,
    /// Serializer: `raw` sends the text as it is (text/plain); `json`, `msgpack`, `yaml` and
    /// `pickle` parse it as JSON first and send that data in their format (kombu's content
    /// types; invalid JSON is a usage error).
    #[arg(long, default_value = "raw")]
    serializer: String,
    /// Send the body as it is with this content type (instead of a serializer's).
    #[arg(long, conflicts_with = "serializer")]
    content_type: Option<String>,
    /// The content encoding: for text, the character set it is sent in (utf-8, ascii,
    /// latin-1).
    #[arg(long)]
    content_encoding: Option<String>,
    /// Compress each body as kombu does: gzip (or zlib), bzip2, lzma (or xz), brotli, zstd.
    #[arg(long)]
    compression: Option<String>,
    /// The correlation_id property.
    #[arg(long)]
    correlation_id: Option<String>,
    /// The reply_to property.
    #[arg(long)]
    reply_to: Option<String>,
    /// The expiration property: a per-message TTL in milliseconds.
    #[arg(long)]
    expiration: Option<String>,
    /// The message_id property.
    #[arg(long)]
    message_id: Option<String>,
    /// The timestamp property, in seconds since the Unix epoch.
    #[arg(long)]
    timestamp: Option<u64>,
    /// The type property.
    #[arg(long = "type", value_name = "TYPE")]
    message_type: Option<String>,
    /// The user_id property (RabbitMQ refuses one that is not the connection's user).
    #[arg(long)]
    user_id: Option<String>,
    /// The app_id property.
    #[arg(long)]
    app_id: Option<String>,
    /// Message priority (0-255; queues honour up to their max priority).
    #[arg(long)]
    priority: Option<u8>,
    /// Send transient messages (delivery mode 1) instead of persistent ones.
    #[arg(long)]
    transient: bool,
    /// A message header KEY=VALUE (repeatable); integers and true/false are typed.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = args::pair)]
    headers: Vec<Pair>,
    /// Fail (exit 1) when no queue takes a message.
    #[arg(long)]
    mandatory: bool,
    /// Wait for the broker to confirm each message (publisher confirms).
    #[arg(long)]
    confirm: bool,
    /// Send each message this many times.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// The message body; without it, each line of stdin is one message.
    body: Option<String>,
}

impl PublishArgs {
    /// Whether the messages are sent transient.
    pub(crate) fn is_transient(&self) -> bool {
        self.transient
    }
}

pub(crate) async fn run(conn: &BrokerConnection, args: PublishArgs) -> Result<(), Failure> {
    if !args.exchange.is_empty() && args.exchange_type.is_none() {
        conn.exchange_exists(&args.exchange).await.map_err(|e| {
            Failure::not_found_hint(
                e,
                "declare it with `carrot declare exchange NAME`, or pass --exchange-type to declare it",
            )
        })?;
    }
    let mut builder = Publisher::builder(conn)
        .exchange(&args.exchange)
        .exchange_type(args.exchange_type.unwrap_or_default().into())
        .routing_key(&args.routing_key)
        .auto_declare(args.exchange_type.is_some())
        .delivery_mode(if args.transient {
            DeliveryMode::Transient
        } else {
            DeliveryMode::Persistent
        });
    if args.confirm {
        builder = builder.confirm_publish(true);
    }
    if args.content_type.is_none() {
        // Checked before reading stdin, so that a typo fails at once.
        conn.registry().content_type_of(&args.serializer)?;
        builder = builder.serializer(&args.serializer);
    }
    if let Some(compression) = &args.compression {
        carrot::Compression::from_name(compression)?;
        builder = builder.compression(compression);
    }
    let publisher = builder.build().await?;
    let mut options = SendOptions::new().mandatory(args.mandatory);
    if let Some(content_type) = &args.content_type {
        options = options.content_type(content_type.as_str());
    }
    options.content_encoding = args.content_encoding.clone();
    options.correlation_id = args.correlation_id.clone();
    options.reply_to = args.reply_to.clone();
    options.expiration = args.expiration.clone();
    options.message_id = args.message_id.clone();
    options.timestamp = args.timestamp;
    options.message_type = args.message_type.clone();
    options.user_id = args.user_id.clone();
    options.app_id = args.app_id.clone();
    if let Some(priority) = args.priority {
        options = options.priority(priority);
    }
    if !args.headers.is_empty() {
        options = options.headers(args::table(&args.headers));
    }
    // Every serializer but raw sends data: the body is read as JSON.
    let json = args.content_type.is_none() && args.serializer != "raw";
    let serializer = args.serializer.as_str();
    let send = |text: String, line: Option<u64>| {
        let publisher = &publisher;
        let options = &options;
        async move {
            if json {
                let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    let place = line.map_or("the body".to_string(), |n| format!("line {n}"));
                    Failure::Usage(format!(
                        "{place} is not valid JSON ({e}), which --serializer {serializer} reads; use --serializer raw to send text"
                    ))
                })?;
                for _ in 0..args.count {
                    publisher.send_with(&value, options.clone()).await?;
                }
            } else {
                for _ in 0..args.count {
                    publisher.send_with(text.as_str(), options.clone()).await?;
                }
            }
            Ok::<(), Failure>(())
        }
    };
    match args.body.clone() {
        Some(body) => send(body, None).await?,
        None => {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            let mut n = 0;
            while let Some(line) = lines.next_line().await? {
                n += 1;
                send(line, Some(n)).await?;
            }
        }
    }
    publisher.close().await?;
    Ok(())
}
