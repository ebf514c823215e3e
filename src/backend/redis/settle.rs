//! Settling deliveries on Redis, and putting back those of consumers that are gone.
//!
//! `ack` and `reject` do not wait (as on RabbitMQ): each connection has one task that applies
//! them in order ([`Settler`]), and every other operation of the connection first waits until
//! what was settled before it is applied, so that a queue's counts read after an ack include it.
//!
//! A delivery is recorded in kombu's `unacked` hash and `unacked_index` (its time) when it is
//! taken. kombu gives it to another consumer once it is older than the visibility timeout;
//! carrot does that too, under kombu's `unacked_mutex`, and refreshes the time of the
//! deliveries its own live consumers hold, so that only those of a dead process (or of a
//! kombu consumer) come back, whatever the visibility timeout.
//!
//! The mutex only spares the processes from scanning at the same time: each restore is atomic
//! on its own (carrot's is a script that checks the record is unchanged, kombu's a WATCHed
//! transaction), so two restorers never give one delivery back twice. carrot therefore holds
//! it for three restore periods at most ([`mutex_hold`]), not for kombu's
//! `unacked_mutex_expire` (300 s): a process killed while it restores would otherwise stop
//! every restore, and so every redelivery of a dead consumer's messages, for five minutes.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::envelope;
use super::link::Link;
use super::ordered::{ordered, Ordered, Worker};
use super::scripts;
use super::{Keys, Shared};
use crate::error::Result;

/// Seconds since the epoch, as kombu writes them in `unacked_index`.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What settling does to a delivery on Redis.
#[derive(Debug)]
pub(crate) enum Op {
    /// Acknowledged, or rejected without requeue: its records go.
    Settle(Vec<String>),
    /// Back at the head of `list` (its queue's list: next out, as RabbitMQ requeues), marked
    /// redelivered if it was delivered (`mark`).
    Requeue {
        tag: String,
        list: String,
        payload: String,
        mark: bool,
        /// Whether it has a delivery record (not a no-ack take): pushed back only if its record
        /// is still there; without one, pushed back as it is.
        recorded: bool,
    },
}

/// The connection's settling task and its progress.
#[derive(Debug)]
pub(crate) struct Settler {
    queue: Ordered<Op>,
}

impl Settler {
    pub(crate) fn start(link: Arc<Link>, keys: &Keys, stop: CancellationToken) -> Settler {
        let (queue, worker) = ordered(stop);
        let records = [
            keys.unacked.clone(),
            keys.unacked_index.clone(),
            keys.taken_from.clone(),
        ];
        tokio::spawn(run(link, records, worker));
        Settler { queue }
    }

    /// Queues an operation; it is applied after those queued before it.
    pub(crate) fn push(&self, op: Op) {
        // If the task is gone (the runtime is shutting down), the records stay, and the
        // visibility timeout gives the deliveries to another consumer.
        let _ = self.queue.push(op);
    }

    /// Waits until everything queued so far is applied (or the task is gone).
    pub(crate) async fn flush(&self) {
        self.queue.flush().await;
    }
}

async fn run(link: Arc<Link>, records: [String; 3], mut worker: Worker<Op>) {
    let mut batch = Vec::new();
    while worker.next(&mut batch, usize::MAX).await {
        let n = batch.len();
        let mut tags: Vec<String> = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Settle(mut t) => tags.append(&mut t),
                Op::Requeue {
                    tag,
                    list,
                    payload,
                    mark,
                    recorded,
                } => {
                    if !tags.is_empty() {
                        settle(&link, &records, std::mem::take(&mut tags)).await;
                    }
                    let keys = [
                        records[0].clone(),
                        records[1].clone(),
                        records[2].clone(),
                        list,
                    ];
                    let args = [
                        tag,
                        "R".to_string(),
                        if mark {
                            envelope::redelivered(&payload)
                        } else {
                            payload
                        },
                        if recorded { "" } else { "unrecorded" }.to_string(),
                    ];
                    if let Err(e) = link
                        .script::<i64>("requeue", &scripts::REQUEUE, &keys, &args)
                        .await
                    {
                        tracing::warn!(error = %e, "a delivery could not be put back on Redis now; the visibility timeout will restore it");
                    }
                }
            }
        }
        if !tags.is_empty() {
            settle(&link, &records, tags).await;
        }
        worker.applied(n);
    }
}

/// Removes the records of settled deliveries: three variadic commands in one `MULTI`/`EXEC`
/// (a script would cost Redis four times as much).
async fn settle(link: &Link, records: &[String; 3], tags: Vec<String>) {
    for chunk in tags.chunks(1000) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HDEL").arg(&records[0]).arg(chunk).ignore();
        pipe.cmd("ZREM").arg(&records[1]).arg(chunk).ignore();
        pipe.cmd("HDEL").arg(&records[2]).arg(chunk).ignore();
        if let Err(e) = link.query::<()>("basic.ack", pipe).await {
            tracing::warn!(error = %e, "acknowledgements could not be written to Redis; the visibility timeout will give those messages again");
        }
    }
}

/// How often the restorer runs: a third of the visibility timeout, between 100 ms and 10 s
/// (kombu's `unacked_restore_interval`).
fn period(visibility: Duration) -> Duration {
    (visibility / 3).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

/// How long a consumer counts for its queue without a renewal: three restore periods (the
/// restorer renews the leases of its connection's consumers each period), so that a consumer
/// of a process that died stops counting (and stops holding its queue exclusively) within
/// about the visibility timeout, 30 s at most.
pub(crate) fn lease(visibility: Duration) -> Duration {
    period(visibility) * 3
}

/// How long a restorer holds kombu's `unacked_mutex`: three restore periods (about the
/// visibility timeout when it is under 30 s, 30 s with the default of an hour), or `unacked_mutex_expire` if shorter. A
/// pass stops restoring after half of it and leaves the rest to the next one.
fn mutex_hold(visibility: Duration, unacked_mutex_expire: Duration) -> Duration {
    (period(visibility) * 3)
        .min(unacked_mutex_expire)
        .max(Duration::from_millis(1))
}

/// Starts the connection's restorer: it refreshes the times of the deliveries this
/// connection holds, and restores the expired ones of others.
pub(crate) fn start_restorer(shared: Weak<Shared>, stop: CancellationToken) {
    tokio::spawn(async move {
        let Some(period) = shared
            .upgrade()
            .map(|s| period(s.link.settings.visibility_timeout))
        else {
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = stop.cancelled() => return,
            }
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Err(e) = refresh(&shared).await {
                tracing::debug!(error = %e, "refreshing the times of held deliveries failed");
            }
            if let Err(e) = restore_expired(&shared).await {
                tracing::debug!(error = %e, "restoring expired deliveries failed");
            }
            if let Err(e) = super::holding::sweep(&shared).await {
                tracing::debug!(error = %e, "giving back the holding lists of consumers that are gone failed");
            }
        }
    });
}

/// Marks the deliveries this connection's channels hold as alive now, and renews the leases
/// of its consumers and of their holding lists.
async fn refresh(shared: &Shared) -> Result<()> {
    let channels = shared.channels();
    let tags: Vec<String> = channels.iter().flat_map(|c| c.held_tags()).collect();
    let now = now();
    let renewing = shared.leases.lock().await;
    let leases: Vec<(std::sync::Arc<str>, String, String)> =
        channels.iter().flat_map(|c| c.consumer_leases()).collect();
    if !leases.is_empty() {
        let until = now + lease(shared.link.settings.visibility_timeout).as_secs_f64();
        let mut pipe = redis::pipe();
        for (queue, member, _) in &leases {
            // Added again if it had gone (Redis restarted, or this process stalled longer
            // than the lease).
            pipe.cmd("ZADD")
                .arg(super::entities::consumers_key(shared, queue))
                .arg(until)
                .arg(member)
                .ignore();
        }
        let holding: Vec<String> = leases.into_iter().map(|(_, _, h)| h).collect();
        super::holding::renew(&mut pipe, shared, &holding);
        shared.link.query::<()>("refresh", pipe).await?;
    }
    drop(renewing);
    for chunk in tags.chunks(500) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&shared.keys.unacked_index).arg("XX");
        for tag in chunk {
            cmd.arg(now).arg(tag);
        }
        shared.link.query::<i64>("refresh", cmd).await?;
    }
    Ok(())
}

/// Restores, under kombu's mutex, the deliveries older than the visibility timeout.
pub(crate) async fn restore_expired(shared: &Shared) -> Result<usize> {
    let keys = &shared.keys;
    let link = &shared.link;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let hold = mutex_hold(
        link.settings.visibility_timeout,
        link.settings.unacked_mutex_expire,
    );
    let expire = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
    let locked: Option<String> = link
        .query(
            "unacked_mutex",
            redis::cmd("SET")
                .arg(&keys.unacked_mutex)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(expire)
                .to_owned(),
        )
        .await?;
    if locked.is_none() {
        return Ok(0);
    }
    let result = restore_locked(shared, Instant::now() + hold / 2).await;
    let _ = link
        .script::<i64>(
            "unacked_mutex",
            &scripts::UNLOCK,
            std::slice::from_ref(&keys.unacked_mutex),
            &[token],
        )
        .await;
    result
}

/// Restores the expired deliveries, until `until` (the mutex is held a little longer).
async fn restore_locked(shared: &Shared, until: Instant) -> Result<usize> {
    let keys = &shared.keys;
    let link = &shared.link;
    let cutoff = now() - link.settings.visibility_timeout.as_secs_f64();
    let tags: Vec<String> = link
        .query(
            "restore",
            redis::cmd("ZRANGEBYSCORE")
                .arg(&keys.unacked_index)
                .arg("-inf")
                .arg(cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .to_owned(),
        )
        .await?;
    let mut restored = 0;
    for tag in tags {
        if Instant::now() >= until {
            break;
        }
        let record: Option<String> = link
            .query(
                "restore",
                redis::cmd("HGET").arg(&keys.unacked).arg(&tag).to_owned(),
            )
            .await?;
        let Some(record) = record else {
            link.query::<i64>(
                "restore",
                redis::cmd("ZREM")
                    .arg(&keys.unacked_index)
                    .arg(&tag)
                    .to_owned(),
            )
            .await?;
            continue;
        };
        let Ok((payload, exchange, routing_key)) = parse_record(&record) else {
            tracing::warn!(%tag, "an unacked record on Redis is not kombu's [envelope, exchange, routing_key]; left as it is");
            continue;
        };
        let priority = envelope::decode(payload, &tag)
            .message
            .properties
            .priority()
            .unwrap_or(0);
        let script_keys = [
            keys.unacked.clone(),
            keys.unacked_index.clone(),
            keys.taken_from.clone(),
            keys.exchanges.clone(),
        ];
        let args = [
            tag.clone(),
            record.clone(),
            envelope::redelivered(payload),
            exchange,
            routing_key,
            keys.prefix().to_string(),
            keys.sep().to_string(),
            keys.suffix(priority),
        ];
        let n: i64 = link
            .script("restore", &scripts::RESTORE, &script_keys, &args)
            .await?;
        if n > 0 {
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::info!(
            restored,
            "deliveries past the visibility timeout given back to their queues"
        );
    }
    Ok(restored)
}

/// kombu's record of a delivery: `[envelope, exchange, routing_key]`, the envelope as written.
fn parse_record(record: &str) -> std::result::Result<(&str, String, String), serde_json::Error> {
    let (payload, exchange, routing_key): (&serde_json::value::RawValue, String, String) =
        serde_json::from_str(record)?;
    Ok((payload.get(), exchange, routing_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_envelope_as_written() {
        let record = r#"[{"body": "e30=", "properties": {"delivery_tag": "t"}}, "ex", "rk"]"#;
        let (payload, ex, rk) = parse_record(record).unwrap();
        assert_eq!(
            payload,
            r#"{"body": "e30=", "properties": {"delivery_tag": "t"}}"#
        );
        assert_eq!((ex.as_str(), rk.as_str()), ("ex", "rk"));
        assert!(parse_record("[1]").is_err());
    }

    #[test]
    fn the_restorer_follows_the_visibility_timeout() {
        assert_eq!(period(Duration::from_secs(3600)), Duration::from_secs(10));
        assert_eq!(period(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(
            period(Duration::from_millis(30)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn the_mutex_is_held_for_three_periods_at_most() {
        let kombus = Duration::from_secs(300);
        assert_eq!(
            mutex_hold(Duration::from_secs(3), kombus),
            Duration::from_secs(3)
        );
        assert_eq!(
            mutex_hold(Duration::from_secs(3600), kombus),
            Duration::from_secs(30)
        );
        assert_eq!(
            mutex_hold(Duration::from_secs(3600), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            mutex_hold(Duration::from_secs(3600), Duration::ZERO),
            Duration::from_millis(1)
        );
    }
}
