//! `carrot consume` and `carrot discard`.

use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};

use carrot::{BrokerConnection, Consumer, Message};

use crate::args::{self, Kind, Pair};
use crate::failure::Failure;
use crate::render;

/// `--output`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Output {
    /// The body (decompressed; msgpack, yaml and pickle data as JSON), then a newline.
    #[default]
    Body,
    /// One JSON object per message: body, content_type, content_encoding, compression,
    /// exchange, routing_key, headers, every property set, redelivered, delivery_tag, and
    /// `refused` with the reason when the body could not be decoded.
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct ConsumeArgs {
    /// The queue to consume from. With --exchange it is declared (durable) and bound; without,
    /// it must exist.
    #[arg(long)]
    queue: String,
    /// Declare this exchange and bind the queue to it.
    #[arg(long)]
    exchange: Option<String>,
    /// The exchange's type, when --exchange declares it.
    #[arg(long, value_enum, requires = "exchange")]
    exchange_type: Option<Kind>,
    /// The binding key, with --exchange.
    #[arg(long, default_value = "", requires = "exchange")]
    routing_key: String,
    /// A binding argument KEY=VALUE for a headers exchange (repeatable; x-match=any|all).
    #[arg(long = "bind-header", value_name = "KEY=VALUE", value_parser = args::pair, requires = "exchange")]
    bind_headers: Vec<Pair>,
    /// Stop after this many messages.
    #[arg(long)]
    limit: Option<u64>,
    /// Stop after this many seconds without a message (fractions allowed).
    #[arg(long, value_parser = args::seconds)]
    timeout: Option<Duration>,
    /// Remove each message as it is received, without acknowledging it. With --limit, at most
    /// that many messages leave the queue (the rest stay).
    #[arg(long)]
    no_ack: bool,
    /// Unacknowledged messages in flight at most (0: no limit).
    #[arg(long, default_value_t = 100)]
    prefetch: u16,
    /// Reject each message (dropped, or dead-lettered) instead of acknowledging it.
    #[arg(long, conflicts_with_all = ["requeue", "no_ack"])]
    reject: bool,
    /// Leave the messages in the queue: each is held (unacknowledged) until the command ends,
    /// then they all go back, marked redelivered. At most --prefetch messages are shown.
    #[arg(long, conflicts_with = "no_ack")]
    requeue: bool,
    /// How to print each message.
    #[arg(long, value_enum, default_value_t = Output::Body)]
    output: Output,
    /// Also decode this serializer or content type (repeatable): msgpack, yaml, pickle, or a
    /// content type. Without it, json, raw and text are decoded; the others are shown as
    /// refused (with --output json) and still acknowledged as usual.
    #[arg(long = "accept", value_name = "NAME")]
    accept: Vec<String>,
}

pub(crate) async fn run(conn: &BrokerConnection, args: ConsumeArgs) -> Result<(), Failure> {
    if args.limit == Some(0) {
        return Ok(());
    }
    // A broker sends a no-ack consumer everything ready at once (no prefetch applies), so with
    // --limit the extra messages would be lost: consume with acknowledgements and a window of
    // the limit instead, acknowledging each message as it arrives.
    let limited_no_ack = args.no_ack && args.limit.is_some();
    let broker_no_ack = args.no_ack && !limited_no_ack;
    let mut builder = Consumer::builder(conn)
        .queue(&args.queue)
        .no_ack(broker_no_ack);
    if !args.accept.is_empty() {
        let widened = ["json", "raw", "text"].into_iter().map(String::from);
        builder = builder.accept(widened.chain(args.accept.iter().cloned()));
    }
    match &args.exchange {
        Some(exchange) => {
            builder = builder
                .exchange(exchange)
                .exchange_type(args.exchange_type.unwrap_or_default().into())
                .routing_key(&args.routing_key);
            if !args.bind_headers.is_empty() {
                builder = builder.binding_arguments(args::table(&args.bind_headers));
            }
        }
        None => {
            conn.queue_info(&args.queue).await.map_err(|e| {
                Failure::not_found_hint(
                    e,
                    "declare it with `carrot declare queue NAME`, or pass --exchange to declare and bind it",
                )
            })?;
            builder = builder.auto_declare(false);
        }
    }
    let mut consumer = builder.build().await?;
    if limited_no_ack {
        let window = args.limit.unwrap_or(1).min(u64::from(u16::MAX)) as u16;
        consumer
            .qos(carrot::Qos::new().prefetch_count(window))
            .await?;
    } else if !args.no_ack {
        consumer
            .qos(carrot::Qos::new().prefetch_count(args.prefetch))
            .await?;
    }
    consumer.consume().await?;
    let mut out = std::io::stdout().lock();
    let mut received = 0u64;
    let mut held = Vec::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while args.limit.is_none_or(|limit| received < limit) {
        let next = async {
            match args.timeout {
                Some(t) => tokio::time::timeout(t, consumer.next_message())
                    .await
                    .unwrap_or(Ok(None)),
                None => consumer.next_message().await,
            }
        };
        let message = tokio::select! {
            message = next => message?,
            _ = &mut interrupted => break,
        };
        let Some(message) = message else { break };
        if limited_no_ack {
            settled(message.ack())?;
        }
        print(&mut out, &message, args.output)?;
        if !args.no_ack {
            if args.reject {
                settled(message.reject())?;
            } else if args.requeue {
                // Requeued now, it would come straight back: hold it until the end.
                held.push(message);
            } else {
                settled(message.ack())?;
            }
        }
        received += 1;
    }
    out.flush()?;
    if !held.is_empty() {
        // Cancelled first: a message requeued while the consumer still runs would be
        // delivered to it again (and put back last, by the close, out of its place).
        consumer.cancel().await?;
        for message in held {
            settled(message.requeue())?;
        }
    }
    consumer.close().await?;
    Ok(())
}

/// An acknowledgement refused because the message's channel is gone (the connection was lost
/// and recovered in between) is not a failure: the broker requeued the message and delivers
/// it again.
fn settled(result: carrot::Result<()>) -> Result<(), Failure> {
    match result {
        Err(carrot::Error::ChannelClosed {
            reply_text: reason, ..
        }) => {
            tracing::info!(%reason, "not acknowledged: the message comes again");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Writes one message; flushed per message so that a reader sees it at once.
fn print(out: &mut impl Write, message: &Message, output: Output) -> std::io::Result<()> {
    match output {
        Output::Body => render::body(&mut *out, message)?,
        Output::Json => serde_json::to_writer(&mut *out, &render::json_line(message))?,
    }
    out.write_all(b"\n")?;
    out.flush()
}

#[derive(Args, Debug)]
pub(crate) struct DiscardArgs {
    /// The queue to empty; it must exist.
    #[arg(long)]
    queue: String,
}

pub(crate) async fn discard(conn: &BrokerConnection, args: DiscardArgs) -> Result<(), Failure> {
    let discarded = conn.purge(&args.queue).await?;
    println!("{discarded}");
    Ok(())
}
