//! A consumer's holding list: where its takes move messages off its queue (`LMOVE`, one atomic
//! Redis command each) until the same consumer records them as kombu records deliveries and
//! empties it again (one `MULTI`/`EXEC`), a round trip later.
//!
//! This is how carrot takes without kombu's loss window (kombu pops a message, then records it:
//! a consumer killed in between loses it) and without a script per take: scripts cost Redis
//! five to ten times the commands they run (measured in BENCHMARKS.md). A message is always in
//! one place: its queue's list, a holding list, or kombu's `unacked` records.
//!
//! Each holding list is registered in a sorted set scored with the end of a lease that the
//! connection's restorer renews with the consumer's; what a consumer left in its list (its
//! connection failed between the two steps, or its process died) goes back to the head of its
//! queue: at once when the consumer itself sees it, after the lease when another process does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::channel::{own_connection_lost, Taken};
use super::{entities, envelope, settle, Shared};
use crate::error::Result;

/// The holding list of consumer `member` of `queue` (`<prefix>_carrot.holding.<id>.<queue>`).
pub(crate) fn list(shared: &Shared, member: &str, queue: &str) -> String {
    let id = member.trim_end_matches(":x");
    format!("{}.{id}.{queue}", shared.keys.holding)
}

/// The consumer id and the queue of a holding list.
fn owner<'a>(shared: &Shared, holding: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = holding
        .strip_prefix(shared.keys.holding.as_str())?
        .strip_prefix('.')?;
    rest.split_once('.')
}

/// The list a holding list gives back to: its queue's list of priority step 0 (takes move
/// messages off that list only; the other steps' are taken by the script, records and all).
fn home(shared: &Shared, holding: &str) -> Option<String> {
    let (_, queue) = owner(shared, holding)?;
    shared.keys.lists(queue).into_iter().next()
}

/// Registers (or renews) holding lists for a lease of three restore periods from now.
pub(crate) fn renew(pipe: &mut redis::Pipeline, shared: &Shared, lists: &[String]) {
    if lists.is_empty() {
        return;
    }
    let until =
        settle::now() + settle::lease(shared.link.settings.visibility_timeout).as_secs_f64();
    let cmd = pipe.cmd("ZADD").arg(&shared.keys.holding);
    for list in lists {
        cmd.arg(until).arg(list);
    }
    cmd.ignore();
}

/// Moves everything in a holding list back to the head of its queue (next out, in the order
/// it was taken); returns how many. Each move is one atomic `LMOVE`, so two processes giving
/// back the same list never give back one message twice.
pub(crate) async fn give_back(shared: &Shared, holding: &str) -> Result<usize> {
    let Some(home) = home(shared, holding) else {
        return Ok(0);
    };
    let mut moved = 0;
    loop {
        let mut pipe = redis::pipe();
        for _ in 0..64 {
            pipe.cmd("LMOVE")
                .arg(holding)
                .arg(&home)
                // The newest first, each at the head: the oldest ends up next out.
                .arg("LEFT")
                .arg("RIGHT");
        }
        let out: Vec<Value> = shared.link.query("holding", pipe).await?;
        let n = out.iter().filter(|v| !matches!(v, Value::Nil)).count();
        moved += n;
        if n < out.len() {
            return Ok(moved);
        }
    }
}

/// A consumer is done with its holding list: what is in it goes back, and it is no longer
/// registered.
pub(crate) async fn release(shared: &Shared, holding: &str) -> Result<()> {
    give_back(shared, holding).await?;
    let zrem = redis::cmd("ZREM")
        .arg(&shared.keys.holding)
        .arg(holding)
        .to_owned();
    registry::<i64>(shared, &zrem).await?;
    Ok(())
}

/// Runs a command on the registry of holding lists.
async fn registry<T: redis::FromRedisValue + Send>(shared: &Shared, cmd: &redis::Cmd) -> Result<T> {
    shared.link.query("holding", cmd.clone()).await
}

/// Gives back the holding lists whose lease ended (their process died, or lost Redis for
/// longer than the lease); returns how many messages went back.
pub(crate) async fn sweep(shared: &Shared) -> Result<usize> {
    let ended = format!("({}", settle::now());
    let expired: Vec<String> = registry(
        shared,
        redis::cmd("ZRANGEBYSCORE")
            .arg(&shared.keys.holding)
            .arg("-inf")
            .arg(&ended)
            .arg("LIMIT")
            .arg(0)
            .arg(100),
    )
    .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let mut moved = 0;
    for holding in &expired {
        moved += give_back(shared, holding).await?;
    }
    // Only those still expired: a process that was only slow renews its lease and keeps it.
    registry::<i64>(
        shared,
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&shared.keys.holding)
            .arg("-inf")
            .arg(&ended),
    )
    .await?;
    // Their consumers are gone: an auto-delete queue goes with the last one, as on RabbitMQ
    // when a consumer's connection dies.
    for holding in &expired {
        if let Some((id, queue)) = owner(shared, holding) {
            if let Err(e) = entities::consumer_gone(shared, queue, id).await {
                tracing::debug!(error = %e, queue, "a dead consumer's queue could not be checked for auto-delete");
            }
        }
    }
    if moved > 0 {
        tracing::info!(
            moved,
            "messages that consumers of a process that is gone had taken but not recorded given back to their queues"
        );
    }
    Ok(moved)
}

/// What one take moved into a holding list, and what the queue's lists held after it.
pub(super) struct Moved {
    pub(super) taken: Vec<Taken>,
    /// How long the queue's list of priority step 0 was right after the take.
    pub(super) left: u64,
    /// Whether the lists of the other priority steps held messages then.
    pub(super) others: bool,
}

/// A take: moves up to `n` messages off the queue's list of priority step 0 into `holding`,
/// on the consumer's own connection; with `wait`, the first move waits that long for a message
/// (`BLMOVE`). The messages are decoded, not yet recorded: [`record`] does that. The take owns
/// what it needs, so that a consumer can send it behind the record of the previous take and
/// await it later (one write to Redis for both).
pub(super) fn take(
    shared: &Arc<Shared>,
    mut conn: MultiplexedConnection,
    queue: &str,
    holding: &str,
    n: usize,
    wait: Option<Duration>,
) -> impl Future<Output = Result<Moved>> + Send + 'static {
    let mut lists = shared.keys.lists(queue);
    let mut pipe = redis::pipe();
    let mut moves = n;
    if let Some(limit) = wait {
        pipe.cmd("BLMOVE")
            .arg(&lists[0])
            .arg(holding)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(limit.as_secs_f64());
        moves = moves.saturating_sub(1);
    }
    for _ in 0..moves {
        pipe.cmd("LMOVE")
            .arg(&lists[0])
            .arg(holding)
            .arg("RIGHT")
            .arg("LEFT");
    }
    pipe.cmd("LLEN").arg(&lists[0]);
    if lists.len() > 1 {
        // An empty list does not exist on Redis: how many of the others hold messages.
        pipe.cmd("EXISTS").arg(&lists[1..]);
    }
    let limit = shared.link.operation_timeout() + wait.unwrap_or_default();
    let shared = shared.clone();
    async move {
        let out: Vec<Value> =
            own(&shared, "basic.consume", limit, pipe.query_async(&mut conn)).await?;
        let from = lists.swap_remove(0);
        let mut taken = Vec::new();
        let (mut left, mut others) = (0, false);
        for (i, value) in out.into_iter().enumerate() {
            if i == n {
                left = redis::from_redis_value::<u64>(value).unwrap_or(0);
                continue;
            }
            if i > n {
                others = redis::from_redis_value::<u64>(value).unwrap_or(0) > 0;
                continue;
            }
            let Ok(Some(payload)) = redis::from_redis_value::<Option<String>>(value) else {
                continue;
            };
            let mut incoming = envelope::decode(&payload, "");
            if incoming.tag.is_empty() {
                // Not kombu's envelope: a tag of carrot's for its record.
                incoming.tag = format!("carrot-{}-{i}", envelope::new_tag().simple());
            }
            taken.push(Taken::new(from.clone(), payload, incoming));
        }
        Ok(Moved {
            taken,
            left,
            others,
        })
    }
}

/// Records what a take moved into `holding` as kombu records deliveries (`unacked`: tag ->
/// `[envelope, exchange, routing_key]`, `unacked_index`: tag -> time; carrot's note of the
/// list each came from) and takes it out of the holding list, in one `MULTI`/`EXEC`: either
/// both happen or neither. Without acknowledgements (`no_ack`), only the latter.
pub(super) async fn record(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    holding: &str,
    taken: &[Taken],
    no_ack: bool,
) -> Result<()> {
    let keys = &shared.keys;
    let mut pipe = redis::pipe();
    pipe.atomic();
    if !no_ack && !taken.is_empty() {
        let now = settle::now();
        let records = pipe.cmd("HSET").arg(&keys.unacked);
        for t in taken {
            records.arg(t.tag()).arg(t.record());
        }
        records.ignore();
        let index = pipe.cmd("ZADD").arg(&keys.unacked_index);
        for t in taken {
            index.arg(now).arg(t.tag());
        }
        index.ignore();
        let from = pipe.cmd("HSET").arg(&keys.taken_from);
        for t in taken {
            from.arg(t.tag()).arg(t.list());
        }
        from.ignore();
    }
    // The oldest are at the right: these (the take's first), and only these, go; what a
    // take moved beyond its consumer's room stays, to be given back.
    let keep = -1 - i64::try_from(taken.len()).unwrap_or(i64::MAX - 1);
    pipe.cmd("LTRIM").arg(holding).arg(0).arg(keep).ignore();
    let limit = shared.link.operation_timeout();
    own::<()>(shared, "basic.consume", limit, pipe.query_async(conn)).await
}

/// A command on a consumer's own connection, bounded: a failure of the connection (or
/// silence) is [`own_connection_lost`], for the consumer to drop it and recover.
async fn own<T>(
    shared: &Shared,
    what: &str,
    limit: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) if !super::link::is_lost(&e) => Err(shared.link.command_error(what, e)),
        _ => Err(own_connection_lost()),
    }
}
