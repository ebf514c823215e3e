//! A consumer's loop, on a Redis connection of its own: while it has room (prefetch, the
//! channel's window, flow), move messages off its queue into its holding list and record them
//! (see `holding`: two round trips of plain commands, no script), then hand them over; when
//! the queue is empty, wait on Redis for the next one (`BLMOVE` into the holding list), at most
//! a second, as kombu's BRPOP does, so that a queue deleted by another process is seen within
//! that second, and at most 50 ms once messages came from the lists of other priority steps
//! (the wait watches the list of step 0; the script takes the others, in order).
//!
//! The next take is sent right behind a record, on the same connection, whenever the consumer
//! will still have room: Redis reads both in one go and answers the record at once, so that a
//! consumer that keeps up with its queue costs one write per message, not two.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use tokio_util::sync::CancellationToken;

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

/// A take sent ahead, right behind the record of the previous one (one write to Redis for
/// both), awaited on the next turn of the loop; and the client id of its connection.
struct Ahead {
    take: Pin<Box<dyn Future<Output = Result<Moved>> + Send>>,
    id: Option<i64>,
}

pub(super) async fn run(
    channel: Weak<RedisChannel>,
    tag: Arc<str>,
    recorded: bool,
    holding: String,
) {
    let shared = channel.upgrade().map(|ch| Arc::downgrade(&ch.shared));
    let mut ahead = None;
    consume(&channel, &tag, recorded, &holding, &mut ahead).await;
    let Some(shared) = shared.and_then(|s| s.upgrade()) else {
        return;
    };
    // A take still out moves what it moves before the holding list is given back.
    if let Some(Ahead { mut take, id }) = ahead {
        end_wait(&shared, id, take.as_mut()).await;
    }
    // What is still in the holding list goes back; the list is no longer leased.
    if let Err(e) = holding::release(&shared, &holding).await {
        tracing::debug!(error = %e, "a consumer's holding list could not be given back now; its lease gives it back");
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

/// Polls a future once (with the task's waker), so that a command it sends is on its way.
async fn start<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// Awaits a take sent ahead, or ends it if the consumer is cancelled meanwhile (then `None`).
/// (`run` ends a take still out.)
async fn answer(ahead: &mut Option<Ahead>, cancel: &CancellationToken) -> Option<Result<Moved>> {
    let take = &mut ahead.as_mut()?.take;
    let out = tokio::select! {
        r = take.as_mut() => r,
        () = cancel.cancelled() => return None,
    };
    *ahead = None;
    Some(out)
}

async fn consume(
    channel: &Weak<RedisChannel>,
    tag: &Arc<str>,
    recorded: bool,
    holding: &str,
    ahead: &mut Option<Ahead>,
) {
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
        let shared = ch.shared.clone();
        // Room first, listening for a change before looking, so that none is missed.
        let room = {
            let woken = ch.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let Some(room) = ch.room(tag) else { return };
            if room == 0 {
                // No room for what a take sent ahead brings (a qos applied meanwhile, the
                // consumer's stream full): it is ended, and what it moved goes back to the
                // head of the queue, for other consumers meanwhile.
                if let Some(Ahead { mut take, id }) = ahead.take() {
                    end_wait(&shared, id, take.as_mut()).await;
                    if let Err(e) = holding::give_back(&shared, holding).await {
                        tracing::debug!(error = %e, "a consumer's holding list could not be given back now; it is, before its next take");
                        dirty = true;
                    }
                }
                tokio::select! {
                    () = woken => {}
                    () = cancel.cancelled() => return,
                }
                continue;
            }
            room.min(BATCH)
        };
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
        let (asked, wait) = next_take(drained, priorities, room, hint);
        let moved = if ahead.is_some() {
            match answer(ahead, &cancel).await {
                Some(r) => r,
                None => return,
            }
        } else {
            let take = holding::take(&shared, w.conn.clone(), &queue, holding, asked, wait);
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
        let Moved {
            mut taken,
            left,
            others,
        } = match moved {
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
        hint = left as usize;
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
            let (conn, id) = (w.conn.clone(), w.id);
            let recorded_now = {
                let mut record = Box::pin(holding::record(
                    &shared,
                    &mut w.conn,
                    holding,
                    &taken,
                    no_ack,
                ));
                let first = start(&mut record).await;
                // The next take goes right behind the record, when this one leaves room and
                // nothing to give back, and the queue's other lists are empty (the script
                // takes those): Redis reads both at once, and answers the record at once.
                let rest = room - taken.len();
                if rest > 0 && over == 0 && !others {
                    let drained = taken.len() < room && hint == 0;
                    let (asked, wait) = next_take(drained, priorities, rest, hint);
                    let mut take: Pin<Box<dyn Future<Output = Result<Moved>> + Send>> =
                        Box::pin(holding::take(&shared, conn, &queue, holding, asked, wait));
                    if let Poll::Ready(r) = start(&mut take).await {
                        take = Box::pin(std::future::ready(r));
                    }
                    *ahead = Some(Ahead { take, id });
                }
                match first {
                    Poll::Ready(r) => r,
                    Poll::Pending => record.await,
                }
            };
            if let Err(e) = recorded_now {
                // Both steps of the record happened or neither: recorded deliveries are put
                // back through their records, the rest from the holding list (with what a
                // take sent ahead moved there: it is answered first).
                dirty = true;
                if let Some(Ahead { take, .. }) = ahead.take() {
                    let _ = take.await;
                }
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

/// How many messages the next take asks, and how long it waits for the first: one, waiting,
/// when the last take left the queue empty (`drained`; not long when the other priority
/// steps had messages, which the wait does not watch); otherwise what the queue's first list
/// held at the last look (`hint`), within the consumer's `room`, at once.
fn next_take(
    drained: bool,
    priorities: bool,
    room: usize,
    hint: usize,
) -> (usize, Option<Duration>) {
    if drained {
        (1, Some(if priorities { PRIORITY_WAIT } else { WAIT }))
    } else {
        (room.min(hint.max(1)), None)
    }
}

/// Whether an error is the loss of the consumer's own connection (it dials a new one).
fn lost(e: &Error) -> bool {
    e.is_connection_error()
}

/// Ends a wait whose consumer was cancelled: `CLIENT UNBLOCK` answers it at once (it moved a
/// message or nothing), then its answer is awaited, so that nothing lands in the holding list
/// after `run` gives it back.
async fn end_wait<F: Future<Output = Result<Moved>> + ?Sized>(
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
