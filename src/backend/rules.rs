//! RabbitMQ's rules for declaring, deleting and using exchanges, queues and consumers, with its
//! refusals (codes and texts), shared by the embedded brokers (memory, SQLite) so that they
//! refuse the same things with the same words.

use std::fmt;

use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::table::{FieldTable, FieldValue};

const VHOST: &str = "in vhost '/'";

/// 404 for a missing exchange.
pub(crate) fn no_exchange(name: &str) -> Error {
    Error::NotFound(format!("no exchange '{name}' {VHOST}"))
}

/// 404 for a missing queue.
pub(crate) fn no_queue(name: &str) -> Error {
    Error::NotFound(format!("no queue '{name}' {VHOST}"))
}

/// 405 for a queue that is exclusive to another connection, or redeclared with another
/// `exclusive` than it has.
fn locked(name: &str) -> Error {
    Error::ResourceLocked(format!(
        "cannot obtain exclusive access to locked queue '{name}' {VHOST}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
    ))
}

/// 405 unless `connection` may use a queue whose exclusive owner is `owner`.
pub(crate) fn check_owner<C: PartialEq>(name: &str, owner: Option<C>, connection: C) -> Result<()> {
    match owner {
        Some(owner) if owner != connection => Err(locked(name)),
        _ => Ok(()),
    }
}

// The equivalence checks live here rather than in `entity`, beside the other refusals.
impl ExchangeSpec {
    /// Checks that a redeclaration matches this existing exchange, as RabbitMQ does.
    pub(crate) fn check_equivalent(&self, new: &ExchangeSpec) -> Result<()> {
        let what = format!("exchange '{}'", self.name);
        inequivalent(&what, "type", self.kind.as_str(), new.kind.as_str())?;
        inequivalent(&what, "durable", self.durable, new.durable)?;
        inequivalent(&what, "auto_delete", self.auto_delete, new.auto_delete)?;
        inequivalent(&what, "internal", self.internal, new.internal)?;
        equivalent_arguments(&what, &self.arguments, &new.arguments, EXCHANGE_ARGUMENTS)
    }
}

/// The exchange arguments a redeclaration must repeat: RabbitMQ compares only these
/// (`rabbit_exchange:assert_args_equivalence`); others may differ.
const EXCHANGE_ARGUMENTS: &[&str] = &["alternate-exchange"];

/// The queue arguments a redeclaration must repeat (RabbitMQ's declare arguments,
/// `rabbit_amqqueue:declare_args`); others may differ.
const QUEUE_ARGUMENTS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-quorum-initial-group-size",
    "x-initial-cluster-size",
    "x-max-age",
    "x-queue-master-locator",
    "x-queue-leader-locator",
];

impl QueueSpec {
    /// Checks that a redeclaration, on a connection that may use this existing queue, matches
    /// it, as RabbitMQ does (`rabbit_amqqueue:assert_equivalence`): `exclusive` first, and
    /// strictly (405), then `durable` as RabbitMQ stores it (an exclusive queue is never
    /// durable), `auto_delete` and the arguments (406).
    pub(crate) fn check_equivalent(&self, new: &QueueSpec) -> Result<()> {
        if self.exclusive != new.exclusive {
            return Err(locked(&self.name));
        }
        let what = format!("queue '{}'", self.name);
        inequivalent(&what, "durable", self.is_durable(), new.is_durable())?;
        inequivalent(&what, "auto_delete", self.auto_delete, new.auto_delete)?;
        equivalent_arguments(&what, &self.arguments, &new.arguments, QUEUE_ARGUMENTS)
    }

    /// Whether the queue survives a restart: RabbitMQ declares a queue
    /// `durable andalso not exclusive` (`rabbit_channel`), so an exclusive queue never is.
    fn is_durable(&self) -> bool {
        self.durable && !self.exclusive
    }
}

fn inequivalent<T: PartialEq + fmt::Display>(
    what: &str,
    arg: &str,
    current: T,
    received: T,
) -> Result<()> {
    if current == received {
        Ok(())
    } else {
        Err(Error::PreconditionFailed(format!(
            "inequivalent arg '{arg}' for {what} {VHOST}: received '{received}' but current is '{current}'"
        )))
    }
}

/// Compares the `keys` arguments of a declaration with those of a redeclaration, as RabbitMQ
/// does, with its wording. A queue without `x-queue-type` is a classic queue.
fn equivalent_arguments(
    what: &str,
    current: &FieldTable,
    received: &FieldTable,
    keys: &[&str],
) -> Result<()> {
    let classic = FieldValue::String("classic".into());
    for key in keys {
        let lookup = |table: &'_ FieldTable| match (table.get(*key), *key) {
            (None, "x-queue-type") => Some(classic.clone()),
            (value, _) => value.cloned(),
        };
        let (c, r) = (lookup(current), lookup(received));
        if c == r {
            continue;
        }
        let (received, current) = match (&r, &c) {
            (Some(r), Some(c)) => (format!("'{}'", shown(r)), format!("'{}'", shown(c))),
            (r, c) => (described(r.as_ref()), described(c.as_ref())),
        };
        return Err(Error::PreconditionFailed(format!(
            "inequivalent arg '{key}' for {what} {VHOST}: received {received} but current is {current}"
        )));
    }
    Ok(())
}

/// An argument's value as RabbitMQ prints it.
fn shown(value: &FieldValue) -> String {
    match value {
        FieldValue::String(s) => s.clone(),
        FieldValue::Int(i) => i.to_string(),
        FieldValue::Float(f) => f.to_string(),
        FieldValue::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// "none", or "the value 'V' of type 'T'", as RabbitMQ says when one side lacks the argument.
fn described(value: Option<&FieldValue>) -> String {
    let Some(value) = value else {
        return "none".into();
    };
    let kind = match value {
        FieldValue::Void => "void",
        FieldValue::Bool(_) => "bool",
        FieldValue::Int(i) if i32::try_from(*i).is_ok() => "signedint",
        FieldValue::Int(_) => "long",
        FieldValue::Float(_) => "double",
        FieldValue::String(_) => "longstr",
        FieldValue::Array(_) => "array",
        FieldValue::Bytes(_) => "bytes",
        FieldValue::Table(_) => "table",
    };
    format!("the value '{}' of type '{kind}'", shown(value))
}

/// Whether declaring `spec` creates the exchange (given the one of that name, if any); the
/// refusals otherwise.
pub(crate) fn exchange_declaration(
    spec: &ExchangeSpec,
    passive: bool,
    existing: Option<&ExchangeSpec>,
) -> Result<bool> {
    if spec.name.is_empty() {
        return if passive {
            Ok(false)
        } else {
            Err(Error::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ))
        };
    }
    match existing {
        Some(_) if passive => Ok(false),
        Some(existing) => existing.check_equivalent(spec).map(|()| false),
        None if passive => Err(no_exchange(&spec.name)),
        None if spec.name.starts_with("amq.") => Err(Error::AccessRefused(format!(
            "exchange name '{}' contains reserved prefix 'amq.*'",
            spec.name
        ))),
        None => Ok(true),
    }
}

/// Refuses deleting the default or an `amq.` exchange (403), or with `if_unused` one that has
/// bindings (406); a missing one (`bound` is `None`) is deleted already, as RabbitMQ answers.
pub(crate) fn exchange_deletion(name: &str, if_unused: bool, bound: Option<bool>) -> Result<()> {
    if name.is_empty() {
        return Err(Error::AccessRefused(
            "operation not permitted on the default exchange".into(),
        ));
    }
    if name.starts_with("amq.") {
        return Err(Error::AccessRefused(format!(
            "deletion of system exchange '{name}' {VHOST} not allowed"
        )));
    }
    match bound {
        Some(true) if if_unused => Err(Error::PreconditionFailed(format!(
            "exchange '{name}' {VHOST} in use"
        ))),
        // A missing exchange is deleted already: RabbitMQ answers delete-ok.
        None | Some(_) => Ok(()),
    }
}

/// Whether declaring `spec` on `connection` creates the queue, given the one of that name if
/// any (its declaration and exclusive owner); the refusals otherwise: another connection's
/// exclusive queue (405), a redeclaration with other settings, a passive declaration of a
/// missing queue (404), a reserved name (403). A server-named queue is named before this.
pub(crate) fn queue_declaration<C: PartialEq>(
    spec: &QueueSpec,
    passive: bool,
    existing: Option<(&QueueSpec, Option<C>)>,
    connection: C,
) -> Result<bool> {
    match existing {
        Some((current, owner)) => {
            check_owner(&spec.name, owner, connection)?;
            if !passive {
                current.check_equivalent(spec)?;
            }
            Ok(false)
        }
        None => queue_creation(spec, passive).map(|()| true),
    }
}

/// The name a queue declared without one gets: `amq.gen-` and what makes it unique, unless the
/// declaration is passive (404: there is no queue without a name).
pub(crate) fn server_named(
    spec: &QueueSpec,
    passive: bool,
    unique: impl FnOnce() -> String,
) -> Result<QueueSpec> {
    let mut spec = spec.clone();
    if spec.name.is_empty() {
        if passive {
            return Err(no_queue(""));
        }
        spec.name = format!("amq.gen-{}", unique());
    }
    Ok(spec)
}

/// The argument that marks the queue behind a direct reply-to address (`carrot serve`), whose
/// name is reserved to the broker: only such a queue may take it.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) const REPLY_QUEUE: &str = "x-carrot-direct-reply-to";

/// Refuses a passive declaration of a missing queue, and a new queue with a reserved name.
fn queue_creation(spec: &QueueSpec, passive: bool) -> Result<()> {
    if passive {
        return Err(no_queue(&spec.name));
    }
    let reply_queue =
        spec.name.starts_with("amq.rabbitmq.reply-to.") && spec.arguments.contains_key(REPLY_QUEUE);
    if spec.name.starts_with("amq.") && !spec.name.starts_with("amq.gen-") && !reply_queue {
        return Err(Error::AccessRefused(format!(
            "queue name '{}' contains reserved prefix 'amq.*'",
            spec.name
        )));
    }
    Ok(())
}

/// Refuses deleting a queue that has consumers (`if_unused`) or messages (`if_empty`).
pub(crate) fn queue_deletion(
    name: &str,
    if_unused: bool,
    if_empty: bool,
    consumers: usize,
    messages: usize,
) -> Result<()> {
    if if_unused && consumers > 0 {
        return Err(Error::PreconditionFailed(format!(
            "queue '{name}' {VHOST} in use"
        )));
    }
    if if_empty && messages > 0 {
        return Err(Error::PreconditionFailed(format!(
            "queue '{name}' {VHOST} not empty"
        )));
    }
    Ok(())
}

/// Refuses a publish to an internal exchange (403), as RabbitMQ does.
pub(crate) fn publishable(exchange: &str, internal: bool) -> Result<()> {
    if internal {
        return Err(Error::AccessRefused(format!(
            "cannot publish to internal exchange '{exchange}' {VHOST}"
        )));
    }
    Ok(())
}

/// A mandatory message that no queue took (312 NO_ROUTE), as RabbitMQ returns it.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(crate) fn unroutable(message: &crate::backend::Published) -> Error {
    Error::Unroutable {
        reply_code: 312,
        reply_text: "NO_ROUTE".into(),
        exchange: message.exchange.to_string(),
        routing_key: message.routing_key.to_string(),
    }
}

/// Refuses binding to (or unbinding from) the default exchange.
pub(crate) fn bindable(exchange: &str) -> Result<()> {
    if exchange.is_empty() {
        return Err(Error::AccessRefused(
            "operation not permitted on the default exchange".into(),
        ));
    }
    Ok(())
}

/// Refuses a consumer on a queue that has an exclusive one, or an exclusive consumer on a queue
/// that has any; `current` gives the `exclusive` flag of each current consumer.
pub(crate) fn consumer_admission(
    queue: &str,
    exclusive: bool,
    mut current: impl Iterator<Item = bool>,
) -> Result<()> {
    let refused = if exclusive {
        current.next().is_some()
    } else {
        current.any(|e| e)
    };
    if refused {
        return Err(Error::AccessRefused(format!(
            "queue '{queue}' {VHOST} in exclusive use"
        )));
    }
    Ok(())
}

/// 406 for a consumer tag already used on the channel.
pub(crate) fn reused_tag(tag: &str) -> Error {
    Error::PreconditionFailed(format!(
        "attempt to reuse consumer tag '{tag}' on the same channel"
    ))
}

/// What a consumer's stream ends with when its queue is deleted (RabbitMQ sends
/// `basic.cancel`).
pub(crate) fn consumer_cancelled(tag: &str, queue: &str) -> Error {
    Error::ConsumerCancelled {
        consumer_tag: tag.to_string(),
        queue: queue.to_string(),
        reason: "the queue was deleted".into(),
    }
}

/// 406 for a delivery tag the channel does not have.
pub(crate) fn unknown_tag(tag: u64) -> Error {
    Error::PreconditionFailed(format!("unknown delivery tag {tag}"))
}

/// Refuses a prefetch window in bytes, as RabbitMQ does.
pub(crate) fn prefetch_size(prefetch_size: u32) -> Result<()> {
    if prefetch_size != 0 {
        return Err(Error::Unsupported(
            "prefetch_size is not implemented (RabbitMQ refuses it too, 540 NOT_IMPLEMENTED): bound deliveries with prefetch_count".into(),
        ));
    }
    Ok(())
}

/// Using a channel that was closed.
pub(crate) fn channel_closed() -> Error {
    Error::channel_closed(
        "the channel was closed (by close(), a channel error, or a broker restart): open a new one",
    )
}

/// Using a connection that was closed.
pub(crate) fn connection_closed() -> Error {
    Error::connection_closed(
        "the connection was closed (by close(), or by a broker restart): open a new one",
    )
}
