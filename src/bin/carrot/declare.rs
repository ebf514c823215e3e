//! `carrot declare exchange|queue|bind` and `carrot delete exchange|queue|binding`.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use carrot::{BrokerConnection, ExchangeSpec, QueueSpec, QueueType};

use crate::args::{self, Kind, Pair};
use crate::failure::Failure;

#[derive(Subcommand, Debug)]
pub(crate) enum Declare {
    /// Declare an exchange (durable unless --transient).
    Exchange {
        /// The exchange's name.
        name: String,
        /// Its type.
        #[arg(long = "type", value_enum, default_value_t = Kind::Direct)]
        kind: Kind,
        /// Not durable: gone when the broker restarts.
        #[arg(long)]
        transient: bool,
        /// Deleted when its last queue is unbound.
        #[arg(long)]
        auto_delete: bool,
        /// An exchange argument KEY=VALUE (repeatable).
        #[arg(long = "argument", value_name = "KEY=VALUE", value_parser = args::pair)]
        arguments: Vec<Pair>,
    },
    /// Declare a queue (durable unless --transient); prints its name, message and consumer
    /// counts as JSON (the name is the broker's choice when NAME is "").
    Queue(QueueArgs),
    /// Bind a queue to an exchange.
    Bind(BindArgs),
}

#[derive(Args, Debug)]
pub(crate) struct QueueArgs {
    /// The queue's name ("" lets the broker choose one).
    name: String,
    /// Not durable: gone when the broker restarts.
    #[arg(long)]
    transient: bool,
    /// Only this connection may use it (it goes when the command ends).
    #[arg(long)]
    exclusive: bool,
    /// Deleted when its last consumer goes.
    #[arg(long)]
    auto_delete: bool,
    /// Highest priority the queue honours (x-max-priority).
    #[arg(long)]
    max_priority: Option<u8>,
    /// Messages expire after this many seconds in the queue (x-message-ttl).
    #[arg(long, value_parser = args::seconds)]
    message_ttl: Option<Duration>,
    /// At most this many ready messages; the oldest are dropped (x-max-length).
    #[arg(long)]
    max_length: Option<u32>,
    /// The queue is deleted after this many seconds unused (x-expires).
    #[arg(long, value_parser = args::seconds)]
    expires: Option<Duration>,
    /// Rejected and expired messages go to this exchange (x-dead-letter-exchange).
    #[arg(long)]
    dead_letter_exchange: Option<String>,
    /// ... with this routing key (x-dead-letter-routing-key).
    #[arg(long)]
    dead_letter_routing_key: Option<String>,
    /// Queue type (x-queue-type).
    #[arg(long, value_enum)]
    queue_type: Option<QueueKind>,
    /// Any other queue argument KEY=VALUE (repeatable).
    #[arg(long = "argument", value_name = "KEY=VALUE", value_parser = args::pair)]
    arguments: Vec<Pair>,
}

/// `--queue-type`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum QueueKind {
    /// A classic queue.
    Classic,
    /// A replicated quorum queue (always durable).
    Quorum,
}

#[derive(Args, Debug)]
pub(crate) struct BindArgs {
    /// The queue.
    #[arg(long)]
    queue: String,
    /// The exchange.
    #[arg(long)]
    exchange: String,
    /// The binding key.
    #[arg(long, default_value = "")]
    routing_key: String,
    /// A binding argument KEY=VALUE for a headers exchange (repeatable; x-match=any|all).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = args::pair)]
    headers: Vec<Pair>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Delete {
    /// Delete an exchange.
    Exchange {
        /// The exchange's name.
        name: String,
        /// Only if no queue is bound to it.
        #[arg(long)]
        if_unused: bool,
    },
    /// Delete a queue; prints how many messages it held.
    Queue {
        /// The queue's name.
        name: String,
        /// Only if it has no consumers.
        #[arg(long)]
        if_unused: bool,
        /// Only if it holds no messages.
        #[arg(long)]
        if_empty: bool,
    },
    /// Remove a binding.
    Binding(BindArgs),
}

pub(crate) async fn declare(conn: &BrokerConnection, what: Declare) -> Result<(), Failure> {
    match what {
        Declare::Exchange {
            name,
            kind,
            transient,
            auto_delete,
            arguments,
        } => {
            let mut spec = ExchangeSpec::new(name, kind.into())
                .durable(!transient)
                .auto_delete(auto_delete);
            spec.arguments = args::table(&arguments);
            conn.declare_exchange(&spec).await?;
        }
        Declare::Queue(q) => {
            let info = conn.declare_queue(&queue_spec(q)).await?;
            println!(
                "{}",
                serde_json::json!({
                    "name": info.name,
                    "message_count": info.message_count,
                    "consumer_count": info.consumer_count,
                })
            );
        }
        Declare::Bind(b) => {
            conn.bind(
                &b.queue,
                &b.exchange,
                &b.routing_key,
                &args::table(&b.headers),
            )
            .await?;
        }
    }
    Ok(())
}

fn queue_spec(q: QueueArgs) -> QueueSpec {
    let mut spec = QueueSpec::new(q.name)
        .durable(!q.transient)
        .exclusive(q.exclusive)
        .auto_delete(q.auto_delete);
    if let Some(max) = q.max_priority {
        spec = spec.max_priority(max);
    }
    if let Some(ttl) = q.message_ttl {
        spec = spec.message_ttl(ttl);
    }
    if let Some(max) = q.max_length {
        spec = spec.max_length(max);
    }
    if let Some(after) = q.expires {
        spec = spec.expires(after);
    }
    if let Some(exchange) = q.dead_letter_exchange {
        spec = spec.dead_letter_exchange(exchange);
    }
    if let Some(key) = q.dead_letter_routing_key {
        spec = spec.dead_letter_routing_key(key);
    }
    if let Some(kind) = q.queue_type {
        spec = spec.queue_type(match kind {
            QueueKind::Classic => QueueType::Classic,
            QueueKind::Quorum => QueueType::Quorum,
        });
    }
    for pair in q.arguments {
        spec = spec.argument(pair.key, pair.value);
    }
    spec
}

pub(crate) async fn delete(conn: &BrokerConnection, what: Delete) -> Result<(), Failure> {
    match what {
        Delete::Exchange { name, if_unused } => {
            conn.delete_exchange(
                &name,
                carrot::DeleteExchangeOptions::new().if_unused(if_unused),
            )
            .await?
        }
        Delete::Queue {
            name,
            if_unused,
            if_empty,
        } => println!(
            "{}",
            conn.delete_queue(
                &name,
                carrot::DeleteQueueOptions::new()
                    .if_unused(if_unused)
                    .if_empty(if_empty)
            )
            .await?
        ),
        Delete::Binding(b) => {
            conn.unbind(
                &b.queue,
                &b.exchange,
                &b.routing_key,
                &args::table(&b.headers),
            )
            .await?
        }
    }
    Ok(())
}
