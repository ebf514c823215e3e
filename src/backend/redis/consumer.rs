//! A consumer's loop, on a Redis connection of its own: while it has room (prefetch, the
//! channel's window, flow), take messages off its queue's lists and hand them over; when the
//! queue is empty, wait on Redis for the next one without taking it (`BLMOVE list list RIGHT
//! RIGHT` on the list of priority step 0: the element stays where it is), at most a second,
//! as kombu's BRPOP does, so that a queue deleted by another process is seen within that
//! second, and at most 50 ms once messages came from the lists of other priority steps.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::channel::RedisChannel;
use super::entities;

/// How many messages one take reads at most.
const BATCH: usize = 128;
/// The longest wait on an empty queue before looking again.
const WAIT: Duration = Duration::from_secs(1);
/// The same for a queue whose priority lists had messages.
const PRIORITY_WAIT: Duration = Duration::from_millis(50);

pub(super) async fn run(channel: Weak<RedisChannel>, tag: Arc<str>, recorded: bool) {
    let mut waiter: Option<MultiplexedConnection> = None;
    // Whether the last take left the lists empty; whether messages came from the lists of
    // priority steps other than 0, which the wait does not watch (it then looks again sooner).
    let (mut drained, mut priorities) = (false, false);
    loop {
        let Some(ch) = channel.upgrade() else { return };
        let Some((queue, no_ack, cancel)) = ch.consumer(&tag) else {
            return;
        };
        if cancel.is_cancelled() {
            return;
        }
        // Room first, listening for a change before looking, so that none is missed.
        let room = {
            let woken = ch.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let Some(room) = ch.room(&tag) else { return };
            if room == 0 {
                tokio::select! {
                    () = woken => {}
                    () = cancel.cancelled() => return,
                }
                continue;
            }
            room.min(BATCH)
        };
        if waiter.is_none() {
            waiter = ch.shared.link.dial(true).await.ok();
        }
        if !drained {
            // On the consumer's own connection while it has one (a take does not wait behind
            // the publishes of the shared one); on the shared one, which recovers, when it has
            // none. Not raced against the cancellation: what the script took must be handed
            // over or put back (`deliver` puts it back when the consumer is gone).
            match ch.take_on(waiter.as_mut(), &queue, room, no_ack).await {
                Ok(taken) if !taken.is_empty() => {
                    let first = ch.shared.keys.lists(&queue).swap_remove(0);
                    priorities |= taken.iter().any(|t| t.list() != first);
                    // Fewer than asked for: the lists were empty after them, so wait for the
                    // next message before taking again (one call less per message).
                    drained = taken.len() < room;
                    ch.deliver(&tag, taken, no_ack);
                    continue;
                }
                Ok(_) => {}
                Err(e) if waiter.is_some() && e.is_connection_error() => {
                    waiter = None;
                    continue;
                }
                Err(e) => {
                    ch.consumer_failed(&tag, e);
                    return;
                }
            }
        }
        drained = false;
        // Empty: wait for a message on the queue's first list.
        let shared = ch.shared.clone();
        drop(ch);
        if waiter.is_none() {
            // Redis is away: the next take (on the shared connection) waits for the recovery.
            tokio::select! {
                () = tokio::time::sleep(WAIT) => {}
                () = cancel.cancelled() => return,
            }
            continue;
        }
        let list = shared.keys.lists(&queue).swap_remove(0);
        let limit = if priorities { PRIORITY_WAIT } else { WAIT };
        let mut timed_out = true;
        if let Some(conn) = waiter.as_mut() {
            let wait = redis::cmd("BLMOVE")
                .arg(&list)
                .arg(&list)
                .arg("RIGHT")
                .arg("RIGHT")
                .arg(limit.as_secs_f64())
                .to_owned();
            let waited = tokio::select! {
                r = tokio::time::timeout(WAIT * 3, wait.query_async::<Option<String>>(conn)) => r,
                () = cancel.cancelled() => return,
            };
            match waited {
                Ok(Ok(Some(_))) => timed_out = false,
                Ok(Ok(None)) => {}
                _ => waiter = None,
            }
        }
        if recorded && timed_out {
            // A queue deleted by another connection cancels its consumers here too.
            if let Ok(false) = entities::is_recorded(&shared, &queue).await {
                if let Some(ch) = channel.upgrade() {
                    ch.queue_deleted(&queue);
                }
                return;
            }
        }
    }
}
