//! Exchanges, queues and bindings on Redis.
//!
//! Bindings are kombu's: the set `_kombu.binding.<exchange>` of `key SEP pattern SEP queue`
//! (and its `_kombu.binding_permanent.` twin, as kombu 5 writes both), the pattern of a topic
//! binding being the regular expression kombu's publishers match. kombu keeps exchange types
//! and queue settings per process; carrot records its declarations in `_carrot.exchange` and
//! `_carrot.queue` (name -> JSON), so that every process checks redeclarations against the
//! same and a publisher knows an exchange's type. What the transport cannot do is refused with
//! [`Error::Unsupported`]: headers exchanges, exchange-to-exchange bindings, alternate
//! exchanges, and the queue arguments of message expiry, length limits, dead-lettering and
//! other queue types.

use serde_json::{json, Value};

use super::{settle, Shared};
use crate::backend::{rules, QueueInfo};
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::table::{FieldTable, FieldValue};

/// The exchanges every AMQP broker has (RabbitMQ's `amq.*`), those the transport can route.
/// (The headers ones exist, as everywhere, but refuse bindings.)
const PREDECLARED: [(&str, ExchangeType); 5] = [
    ("amq.direct", ExchangeType::Direct),
    ("amq.fanout", ExchangeType::Fanout),
    ("amq.topic", ExchangeType::Topic),
    ("amq.headers", ExchangeType::Headers),
    ("amq.match", ExchangeType::Headers),
];

fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!(
        "{what} on redis://: kombu's Redis transport has no such thing (see the README's list of what redis:// cannot do); use RabbitMQ or carrot's embedded brokers for it"
    ))
}

/// Records the `amq.` exchanges once per Redis.
pub(crate) async fn predeclare(shared: &Shared) -> Result<()> {
    let mut pipe = redis::pipe();
    for (name, kind) in PREDECLARED {
        pipe.cmd("HSETNX")
            .arg(&shared.keys.exchanges)
            .arg(name)
            .arg(exchange_json(&ExchangeSpec::new(name, kind)))
            .ignore();
    }
    shared.link.query::<()>("exchange.declare", pipe).await
}

fn exchange_json(spec: &ExchangeSpec) -> String {
    json!({
        "type": spec.kind.as_str(),
        "durable": spec.durable,
        "auto_delete": spec.auto_delete,
        "internal": spec.internal,
        "arguments": spec.arguments,
    })
    .to_string()
}

fn exchange_from_json(name: &str, text: &str) -> Option<ExchangeSpec> {
    let v: Value = serde_json::from_str(text).ok()?;
    let kind: ExchangeType = v.get("type")?.as_str()?.parse().ok()?;
    let mut spec = ExchangeSpec::new(name, kind)
        .durable(v.get("durable")?.as_bool()?)
        .auto_delete(v.get("auto_delete")?.as_bool()?)
        .internal(v.get("internal").and_then(Value::as_bool).unwrap_or(false));
    spec.arguments = serde_json::from_value(v.get("arguments")?.clone()).ok()?;
    Some(spec)
}

/// A queue as recorded: its declaration and the connection that owns it if exclusive.
struct Recorded {
    spec: QueueSpec,
    owner: Option<String>,
}

fn queue_json(spec: &QueueSpec, owner: Option<&str>) -> String {
    json!({
        "durable": spec.durable,
        "exclusive": spec.exclusive,
        "auto_delete": spec.auto_delete,
        "arguments": spec.arguments,
        "owner": owner,
    })
    .to_string()
}

fn queue_from_json(name: &str, text: &str) -> Option<Recorded> {
    let v: Value = serde_json::from_str(text).ok()?;
    let mut spec = QueueSpec::new(name)
        .durable(v.get("durable")?.as_bool()?)
        .exclusive(v.get("exclusive")?.as_bool()?)
        .auto_delete(v.get("auto_delete")?.as_bool()?);
    spec.arguments = serde_json::from_value(v.get("arguments")?.clone()).ok()?;
    let owner = v.get("owner").and_then(Value::as_str).map(str::to_string);
    Some(Recorded { spec, owner })
}

async fn exchange(shared: &Shared, name: &str) -> Result<Option<ExchangeSpec>> {
    let text: Option<String> = shared
        .link
        .query(
            "exchange.declare",
            redis::cmd("HGET")
                .arg(&shared.keys.exchanges)
                .arg(name)
                .to_owned(),
        )
        .await?;
    Ok(text.and_then(|t| exchange_from_json(name, &t)))
}

async fn recorded(shared: &Shared, name: &str) -> Result<Option<Recorded>> {
    let text: Option<String> = shared
        .link
        .query(
            "queue.declare",
            redis::cmd("HGET")
                .arg(&shared.keys.queues)
                .arg(name)
                .to_owned(),
        )
        .await?;
    Ok(text.and_then(|t| queue_from_json(name, &t)))
}

/// Messages ready in a queue (all its priority lists).
pub(crate) async fn ready(shared: &Shared, queue: &str) -> Result<u32> {
    let mut pipe = redis::pipe();
    for list in shared.keys.lists(queue) {
        pipe.cmd("LLEN").arg(list);
    }
    let counts: Vec<u64> = shared.link.query("queue.declare", pipe).await?;
    Ok(counts.iter().sum::<u64>().min(u64::from(u32::MAX)) as u32)
}

async fn consumers(shared: &Shared, queue: &str) -> Result<u32> {
    let n: i64 = shared
        .link
        .query(
            "queue.declare",
            redis::cmd("ZCOUNT")
                .arg(consumers_key(shared, queue))
                .arg(settle::now())
                .arg("+inf")
                .to_owned(),
        )
        .await?;
    Ok(n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// The sorted set of a queue's consumers in every process: a member per consumer (`:x` at
/// the end for an exclusive one), scored with the time its lease ends. Each connection's
/// restorer renews the leases of its consumers; a consumer of a process that died without
/// cancelling it stops counting once its lease ends ([`settle::lease`]).
pub(crate) fn consumers_key(shared: &Shared, queue: &str) -> String {
    format!("{}.{queue}", shared.keys.consumers)
}

pub(crate) async fn declare_exchange(
    shared: &Shared,
    spec: &ExchangeSpec,
    passive: bool,
) -> Result<()> {
    if !passive {
        if spec.kind == ExchangeType::Headers {
            return Err(unsupported("a headers exchange"));
        }
        if spec.arguments.contains_key("alternate-exchange") {
            return Err(unsupported("an alternate exchange"));
        }
    }
    if spec.name.is_empty() {
        return rules::exchange_declaration(spec, passive, None).map(|_| ());
    }
    let existing = exchange(shared, &spec.name).await?;
    if rules::exchange_declaration(spec, passive, existing.as_ref())? {
        let created: bool = shared
            .link
            .query(
                "exchange.declare",
                redis::cmd("HSETNX")
                    .arg(&shared.keys.exchanges)
                    .arg(&spec.name)
                    .arg(exchange_json(spec))
                    .to_owned(),
            )
            .await?;
        if !created {
            // Another process declared it meanwhile: compare with that one.
            if let Some(other) = exchange(shared, &spec.name).await? {
                other.check_equivalent(spec)?;
            }
        }
    }
    Ok(())
}

pub(crate) async fn delete_exchange(shared: &Shared, name: &str, if_unused: bool) -> Result<()> {
    let (set, permanent) = shared.keys.bindings(name);
    let existing = exchange(shared, name).await?;
    let bound = match existing {
        Some(_) => {
            let n: u64 = shared
                .link
                .query("exchange.delete", redis::cmd("SCARD").arg(&set).to_owned())
                .await?;
            Some(n > 0)
        }
        None => None,
    };
    rules::exchange_deletion(name, if_unused, bound)?;
    if bound.is_some() {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HDEL")
            .arg(&shared.keys.exchanges)
            .arg(name)
            .ignore()
            .cmd("DEL")
            .arg(&set)
            .arg(&permanent)
            .ignore();
        shared.link.query::<()>("exchange.delete", pipe).await?;
    }
    Ok(())
}

/// The queue arguments the embedded brokers check (RabbitMQ's 406 for a bad value), then
/// those the transport cannot act on refused.
fn check_queue_arguments(spec: &QueueSpec) -> Result<()> {
    let limits = crate::backend::arguments::limits(spec, "redis://")?;
    let refused = [
        ("x-max-length", limits.max_length.is_some()),
        ("x-message-ttl", limits.message_ttl.is_some()),
        ("x-expires", limits.expires.is_some()),
        ("x-dead-letter-exchange", limits.dead_letter.is_some()),
        (
            "x-queue-type quorum",
            spec.arguments
                .get("x-queue-type")
                .and_then(FieldValue::as_str)
                == Some("quorum"),
        ),
    ];
    match refused.iter().find(|(_, given)| *given) {
        Some((what, _)) => Err(unsupported(&format!("the queue argument {what}"))),
        None => Ok(()),
    }
}

pub(crate) async fn declare_queue(
    shared: &Shared,
    spec: &QueueSpec,
    passive: bool,
) -> Result<QueueInfo> {
    if !passive {
        check_queue_arguments(spec)?;
    }
    let spec = rules::server_named(spec, passive, || uuid::Uuid::new_v4().simple().to_string())?;
    let existing = recorded(shared, &spec.name).await?;
    let id = shared.id.as_str();
    let exists_unrecorded = existing.is_none() && ready(shared, &spec.name).await? > 0;
    if exists_unrecorded && passive {
        // A queue kombu uses (kombu records nothing of a queue but its messages).
    } else {
        let creates = rules::queue_declaration(
            &spec,
            passive,
            existing.as_ref().map(|r| (&r.spec, r.owner.as_deref())),
            id,
        )?;
        if creates {
            let owner = spec.exclusive.then_some(id);
            let created: bool = shared
                .link
                .query(
                    "queue.declare",
                    redis::cmd("HSETNX")
                        .arg(&shared.keys.queues)
                        .arg(&spec.name)
                        .arg(queue_json(&spec, owner))
                        .to_owned(),
                )
                .await?;
            if !created {
                let other = recorded(shared, &spec.name).await?;
                rules::queue_declaration(
                    &spec,
                    passive,
                    other.as_ref().map(|r| (&r.spec, r.owner.as_deref())),
                    id,
                )?;
            } else if spec.exclusive {
                shared.exclusive.lock().push(spec.name.clone());
            }
        }
    }
    Ok(QueueInfo {
        message_count: ready(shared, &spec.name).await?,
        consumer_count: consumers(shared, &spec.name).await?,
        name: spec.name,
    })
}

/// Checks that this connection may use the queue: 404 if carrot does not know it and it
/// holds no message, 405 if it is another connection's exclusive queue. Returns its
/// declaration when carrot recorded one.
pub(crate) async fn usable(shared: &Shared, queue: &str) -> Result<Option<QueueSpec>> {
    match recorded(shared, queue).await? {
        Some(r) => {
            rules::check_owner(queue, r.owner.as_deref(), shared.id.as_str())?;
            Ok(Some(r.spec))
        }
        None if ready(shared, queue).await? > 0 => Ok(None),
        None => Err(rules::no_queue(queue)),
    }
}

/// Whether carrot still has a record of the queue (a consumer's queue deleted elsewhere
/// is not).
pub(crate) async fn is_recorded(shared: &Shared, queue: &str) -> Result<bool> {
    shared
        .link
        .query(
            "basic.consume",
            redis::cmd("HEXISTS")
                .arg(&shared.keys.queues)
                .arg(queue)
                .to_owned(),
        )
        .await
}

pub(crate) async fn delete_queue(
    shared: &Shared,
    name: &str,
    if_unused: bool,
    if_empty: bool,
) -> Result<u32> {
    let existing = recorded(shared, name).await?;
    if let Some(r) = &existing {
        rules::check_owner(name, r.owner.as_deref(), shared.id.as_str())?;
    }
    let messages = ready(shared, name).await?;
    if existing.is_none() && messages == 0 {
        return Ok(0);
    }
    let consumers = consumers(shared, name).await? as usize;
    rules::queue_deletion(name, if_unused, if_empty, consumers, messages as usize)?;
    // Its bindings, wherever they are (kombu's sets are per exchange).
    let sep = shared.keys.sep();
    let pattern = format!("{}_kombu.binding.*", shared.keys.prefix());
    let sets: Vec<String> = scan(shared, &pattern).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut touched = Vec::new();
    for set in &sets {
        let members: Vec<String> = shared
            .link
            .query("queue.delete", redis::cmd("SMEMBERS").arg(set).to_owned())
            .await?;
        let exchange = set
            .rsplit_once("_kombu.binding.")
            .map(|(_, e)| e)
            .unwrap_or("");
        let (_, permanent) = shared.keys.bindings(exchange);
        // `key SEP pattern SEP queue`: the queue is the last field, whatever the pattern.
        for m in members
            .iter()
            .filter(|m| m.rsplit(sep).next() == Some(name) && m.matches(sep).count() >= 2)
        {
            pipe.cmd("SREM").arg(set).arg(m).ignore();
            pipe.cmd("SREM").arg(&permanent).arg(m).ignore();
            touched.push(exchange.to_string());
        }
    }
    for list in shared.keys.lists(name) {
        pipe.cmd("DEL").arg(list).ignore();
    }
    pipe.cmd("HDEL").arg(&shared.keys.queues).arg(name).ignore();
    pipe.cmd("DEL").arg(consumers_key(shared, name)).ignore();
    shared.link.query::<()>("queue.delete", pipe).await?;
    shared.exclusive.lock().retain(|q| q != name);
    touched.dedup();
    for exchange in touched {
        auto_delete_exchange(shared, &exchange).await?;
    }
    for channel in shared.channels() {
        channel.queue_deleted(name);
    }
    Ok(messages)
}

async fn scan(shared: &Shared, pattern: &str) -> Result<Vec<String>> {
    let mut cursor = 0u64;
    let mut found = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = shared
            .link
            .query(
                "scan",
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .to_owned(),
            )
            .await?;
        found.extend(keys);
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

pub(crate) async fn purge(shared: &Shared, queue: &str) -> Result<u32> {
    usable(shared, queue).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for list in shared.keys.lists(queue) {
        pipe.cmd("LLEN").arg(&list);
        pipe.cmd("DEL").arg(&list).ignore();
    }
    let counts: Vec<u64> = shared.link.query("queue.purge", pipe).await?;
    Ok(counts.iter().sum::<u64>().min(u64::from(u32::MAX)) as u32)
}

/// kombu's regular expression for a topic binding key (`TopicExchange.key_to_pattern`), which
/// kombu's publishers match routing keys against. kombu's matching differs from AMQP's:
/// `#` keeps the dots around it (`a.#` does not match `a`), and other characters than
/// letters and digits are escaped.
fn kombu_topic_pattern(key: &str) -> String {
    let escaped: String = key
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '#' | '*') {
                c.to_string()
            } else if c == '\0' {
                "\\000".to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect();
    let words: Vec<&str> = escaped
        .split('.')
        .map(|w| match w {
            "*" => "[^\\.]+",
            "#" => ".*?",
            other => other,
        })
        .collect();
    format!("^{}$", words.join("\\."))
}

async fn binding_member(shared: &Shared, exchange: &str, key: &str, queue: &str) -> Result<String> {
    let kind = self::exchange(shared, exchange)
        .await?
        .map(|e| e.kind)
        .ok_or_else(|| rules::no_exchange(exchange))?;
    let pattern = match kind {
        ExchangeType::Topic => kombu_topic_pattern(key),
        ExchangeType::Headers => return Err(unsupported("a headers exchange")),
        _ => String::new(),
    };
    Ok(shared.keys.member(key, &pattern, queue))
}

pub(crate) async fn bind(
    shared: &Shared,
    queue: &str,
    exchange: &str,
    key: &str,
    arguments: &FieldTable,
    add: bool,
) -> Result<()> {
    rules::bindable(exchange)?;
    let _ = arguments;
    usable(shared, queue).await?;
    let member = binding_member(shared, exchange, key, queue).await?;
    let (set, permanent) = shared.keys.bindings(exchange);
    let command = if add { "SADD" } else { "SREM" };
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd(command)
        .arg(&set)
        .arg(&member)
        .ignore()
        .cmd(command)
        .arg(&permanent)
        .arg(&member)
        .ignore()
        .cmd("SCARD")
        .arg(&set);
    let (_left,): (u64,) = shared.link.query("queue.bind", pipe).await?;
    if !add {
        auto_delete_exchange(shared, exchange).await?;
    }
    Ok(())
}

/// An auto-delete exchange goes with its last binding, as on RabbitMQ.
async fn auto_delete_exchange(shared: &Shared, exchange: &str) -> Result<()> {
    let Some(e) = self::exchange(shared, exchange).await? else {
        return Ok(());
    };
    if !e.auto_delete {
        return Ok(());
    }
    let (set, _) = shared.keys.bindings(exchange);
    let left: u64 = shared
        .link
        .query("exchange.delete", redis::cmd("SCARD").arg(&set).to_owned())
        .await?;
    if left == 0 {
        delete_exchange(shared, exchange, false).await?;
    }
    Ok(())
}

/// Exchange-to-exchange bindings: refused (kombu has none), after the checks RabbitMQ makes
/// first.
pub(crate) async fn bind_exchange(shared: &Shared, destination: &str, source: &str) -> Result<()> {
    rules::bindable(source)?;
    for name in [destination, source] {
        if !name.is_empty() && self::exchange(shared, name).await?.is_none() {
            return Err(rules::no_exchange(name));
        }
    }
    Err(unsupported("an exchange-to-exchange binding"))
}

/// Counts consumer `member` of `queue` in (`joins`: its lease starts) or out. Returns how
/// many live consumers the queue has then.
pub(crate) async fn count_consumer(
    shared: &Shared,
    queue: &str,
    member: &str,
    joins: bool,
) -> Result<i64> {
    let key = consumers_key(shared, queue);
    let _renewals = if joins {
        None
    } else {
        Some(shared.leases.lock().await)
    };
    let now = settle::now();
    let mut pipe = redis::pipe();
    pipe.atomic();
    if joins {
        let until = now + settle::lease(shared.link.settings.visibility_timeout).as_secs_f64();
        pipe.cmd("ZADD").arg(&key).arg(until).arg(member).ignore();
    } else {
        pipe.cmd("ZREM").arg(&key).arg(member).ignore();
    }
    // Leases of consumers that died go.
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(format!("({now}"))
        .ignore();
    pipe.cmd("ZCARD").arg(&key);
    let (n,): (i64,) = shared.link.query("basic.consume", pipe).await?;
    Ok(n)
}

/// RabbitMQ's exclusive-consumer refusals, from the live consumers of every process.
pub(crate) async fn admit_consumer(shared: &Shared, queue: &str, exclusive: bool) -> Result<()> {
    let live: Vec<String> = shared
        .link
        .query(
            "basic.consume",
            redis::cmd("ZRANGEBYSCORE")
                .arg(consumers_key(shared, queue))
                .arg(settle::now())
                .arg("+inf")
                .to_owned(),
        )
        .await?;
    let current = live.iter().map(|m| m.ends_with(":x"));
    rules::consumer_admission(queue, exclusive, current)
}

/// A new consumer's member in its queue's set: unique, `:x` at the end if exclusive.
pub(crate) fn consumer_member(exclusive: bool) -> String {
    let id = uuid::Uuid::new_v4().simple();
    if exclusive {
        format!("{id}:x")
    } else {
        id.to_string()
    }
}

/// An auto-delete queue goes with its last consumer, as on RabbitMQ.
pub(crate) async fn consumer_gone(shared: &Shared, queue: &str, member: &str) -> Result<()> {
    let left = count_consumer(shared, queue, member, false).await?;
    if left <= 0 {
        if let Some(r) = recorded(shared, queue).await? {
            if r.spec.auto_delete {
                delete_queue(shared, queue, false, false).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kombus_topic_patterns() {
        assert_eq!(kombu_topic_pattern("a.*.#"), r"^a\.[^\.]+\..*?$");
        assert_eq!(kombu_topic_pattern("us-east.x_y"), r"^us\-east\.x\_y$");
        assert_eq!(kombu_topic_pattern("#"), "^.*?$");
    }

    #[test]
    fn declarations_read_back() {
        let spec = ExchangeSpec::new("e", ExchangeType::Topic).auto_delete(true);
        assert_eq!(exchange_from_json("e", &exchange_json(&spec)), Some(spec));
        let q = QueueSpec::new("q").exclusive(true).max_priority(9);
        let r = queue_from_json("q", &queue_json(&q, Some("c1"))).unwrap();
        assert_eq!((r.spec, r.owner.as_deref()), (q, Some("c1")));
    }
}
