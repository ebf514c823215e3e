//! A consumer's loop, on a Redis connection of its own: while it has room (prefetch, the
//! channel's window, flow), move messages off its queue into its holding list and record them
//! (see `holding`: two round trips of plain commands, no script), then hand them over; when
//! the queue is empty, wait on Redis for the next one (`BLMOVE` into the holding list), at most
//! a second, as kombu's BRPOP does, so that a queue deleted by another process is seen within
//! that second, and at most 50 ms once messages came from the lists of other priority steps
//! (the wait watches the list of step 0; the script takes the others, in order).

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::channel::RedisChannel;
use super::holding::{self, Moved};
use super::{entities, Shared};
use crate::error::{Error, Result};

/// How many messages one take reads at most.
const BATCH: usize = 128;
/// The longest wait on an empty queue before looking again.
const WAIT: Duration = Duration::from_secs(1);
/// The same for a queue whose priority lists had messages.
const PRIORITY_WAIT: Duration = Duration::from_millis(50);

/// A consumer's own connection, and its client id (to end its wait when it is cancelled).
struct Waiter {
    conn: MultiplexedConnection,
    id: Option<i64>,
}

pub(super) async fn run(
    channel: Weak<RedisChannel>,
    tag: Arc<str>,
    recorded: bool,
    holding: String,
) {
    let shared = channel.upgrade().map(|ch| Arc::downgrade(&ch.shared));
    consume(&channel, &tag, recorded, &holding).await;
    // What is still in the holding list goes back; the list is no longer leased.
    if let Some(shared) = shared.and_then(|s| s.upgrade()) {
        if let Err(e) = holding::release(&shared, &holding).await {
            tracing::debug!(error = %e, "a consumer's holding list could not be given back now; its lease gives it back");
        }
    }
}

async fn dial(shared: &Shared) -> Option<Waiter> {
    let mut conn = shared.link.dial(true).await.ok()?;
    let id = redis::cmd("CLIENT")
        .arg("ID")
        .query_async::<i64>(&mut conn)
        .await
        .ok();
    Some(Waiter { conn, id })
}

async fn consume(channel: &Weak<RedisChannel>, tag: &Arc<str>, recorded: bool, holding: &str) {
    let mut waiter: Option<Waiter> = None;
    // Whether the last take left the lists empty; whether messages came from the lists of
    // priority steps other than 0, which the wait does not watch (it then looks again sooner).
    let (mut drained, mut priorities) = (false, false);
    // How long the queue's first list was at the last look: how many moves the next take asks.
    let mut hint = BATCH;
    // Whether a take or its record failed half-way (the holding list may hold messages).
    let mut dirty = false;
    loop {
        let Some(ch) = channel.upgrade() else { return };
        let Some((queue, no_ack, cancel)) = ch.consumer(tag) else {
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
            let Some(room) = ch.room(tag) else { return };
            if room == 0 {
                tokio::select! {
                    () = woken => {}
                    () = cancel.cancelled() => return,
                }
                continue;
            }
            room.min(BATCH)
        };
        let shared = ch.shared.clone();
        if dirty {
            // On the shared connection, which recovers under the retry policy.
            if let Err(e) = holding::give_back(&shared, holding).await {
                ch.consumer_failed(tag, e);
                return;
            }
            dirty = false;
        }
        if waiter.is_none() {
            waiter = dial(&shared).await;
        }
        let Some(w) = waiter.as_mut() else {
            // Redis is away: take on the shared connection, which waits for the recovery.
            match ch.take(&queue, room, no_ack).await {
                Ok(taken) if !taken.is_empty() => ch.deliver(tag, taken, no_ack),
                Ok(_) => {
                    drop(ch);
                    tokio::select! {
                        () = tokio::time::sleep(WAIT) => {}
                        () = cancel.cancelled() => return,
                    }
                }
                Err(e) => {
                    ch.consumer_failed(tag, e);
                    return;
                }
            }
            continue;
        };
        drop(ch);
        let wait = drained.then_some(if priorities { PRIORITY_WAIT } else { WAIT });
        let asked = if wait.is_some() {
            1
        } else {
            room.min(hint.max(1))
        };
        let moved = {
            let take = holding::take(&shared, &mut w.conn, &queue, holding, asked, wait);
            tokio::pin!(take);
            tokio::select! {
                r = &mut take => r,
                () = cancel.cancelled() => {
                    // What the wait moved stays in the holding list, which `run` gives back.
                    end_wait(&shared, w.id, take).await;
                    return;
                }
            }
        };
        let Moved { mut taken, lengths } = match moved {
            Ok(moved) => moved,
            Err(e) => {
                dirty = true;
                if lost(&e) {
                    waiter = None;
                    continue;
                }
                if let Some(ch) = channel.upgrade() {
                    ch.consumer_failed(tag, e);
                }
                return;
            }
        };
        hint = lengths.first().copied().unwrap_or(0) as usize;
        let others = lengths.iter().skip(1).any(|n| *n > 0);
        // The room may have shrunk while the take ran (a qos applied to the channel, the
        // consumer cancelled): what is over it, the newest, stays in the holding list and goes
        // back, unrecorded and undelivered.
        let room = channel
            .upgrade()
            .and_then(|ch| ch.room(tag))
            .unwrap_or(0)
            .min(room);
        let over = taken.len().saturating_sub(room);
        taken.truncate(taken.len() - over);
        if !taken.is_empty() {
            if let Err(e) = holding::record(&shared, &mut w.conn, holding, &taken, no_ack).await {
                // Both steps of the record happened or neither: recorded deliveries are put
                // back through their records, the rest from the holding list.
                dirty = true;
                if lost(&e) {
                    waiter = None;
                }
                if !no_ack {
                    for t in taken {
                        shared.settler.push(t.into_requeue(false, true));
                    }
                    continue;
                }
            }
        }
        if over > 0 {
            if let Err(e) = holding::give_back(&shared, holding).await {
                tracing::debug!(error = %e, "a consumer's holding list could not be given back now; it is, before its next take");
                dirty = true;
            }
        }
        let Some(ch) = channel.upgrade() else {
            for t in taken {
                shared.settler.push(t.into_requeue(false, !no_ack));
            }
            return;
        };
        let mut more = false;
        if taken.len() < room && others {
            // Messages on the lists of other priority steps: the script takes them in order.
            priorities = true;
            let conn = waiter.as_mut().map(|w| &mut w.conn);
            match ch.take_on(conn, &queue, room - taken.len(), no_ack).await {
                Ok(t) => {
                    more = !t.is_empty();
                    taken.extend(t);
                }
                Err(e) if lost(&e) => waiter = None,
                Err(e) => {
                    ch.deliver(tag, taken, no_ack);
                    ch.consumer_failed(tag, e);
                    return;
                }
            }
        }
        let timed_out = taken.is_empty() && wait.is_some();
        // Fewer than there was room for and nothing left: wait for the next message before
        // taking again (one call less per message).
        drained = taken.len() < room && hint == 0 && !more;
        if !taken.is_empty() {
            ch.deliver(tag, taken, no_ack);
        }
        drop(ch);
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

/// Whether an error is the loss of the consumer's own connection (it dials a new one).
fn lost(e: &Error) -> bool {
    e.is_connection_error()
}

/// Ends a wait whose consumer was cancelled: `CLIENT UNBLOCK` answers it at once (it moved a
/// message or nothing), then its answer is awaited, so that nothing lands in the holding list
/// after `run` gives it back.
async fn end_wait<F: std::future::Future<Output = Result<Moved>>>(
    shared: &Shared,
    id: Option<i64>,
    mut take: std::pin::Pin<&mut F>,
) {
    let deadline = tokio::time::Instant::now() + WAIT + shared.link.operation_timeout();
    while tokio::time::Instant::now() < deadline {
        if let Some(id) = id {
            let unblock = redis::cmd("CLIENT").arg("UNBLOCK").arg(id).to_owned();
            let limit = shared.link.operation_timeout();
            let _ = tokio::time::timeout(limit, shared.link.query::<i64>("basic.cancel", unblock))
                .await;
        }
        if tokio::time::timeout(Duration::from_millis(20), take.as_mut())
            .await
            .is_ok()
        {
            return;
        }
    }
}
