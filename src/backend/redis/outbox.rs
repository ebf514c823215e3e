//! Publishing on Redis: the connection's outbox.
//!
//! Every publish of a connection goes through one task ([`Outbox`]) that sends the messages
//! in the order they were published. A message published without confirms and without
//! `mandatory` on the default exchange is handed to the outbox and `publish` returns, as
//! `basic.publish` without confirms returns on RabbitMQ once the message is on its way; any
//! other publish waits for its outcome (a confirm, a `mandatory` return, an exchange that does
//! not exist). The task sends what has gathered while the previous send was out: the
//! messages for the default exchange in one `MULTI`/`EXEC` (whether carrot declared each
//! queue, whether its list of step 0 held messages, the pushes), the messages for other
//! exchanges through the routing script, several at once. One publisher therefore sends at the speed of
//! Redis instead of one round trip per message, and many publishers of a connection share
//! their round trips.
//!
//! A lost connection is recovered under the retry policy and the send is made again, in
//! order. A send that fails for good (the retry policy exhausted, Redis refusing the write)
//! is reported: to the publishes that wait, as their error; for the messages nobody waits
//! for, as the error of their channel's next publish or of its `close`. Every other operation
//! of the connection first waits until what was published before it is sent, so that a
//! queue's counts read after a publish include it. The messages waiting in the outbox are
//! bounded ([`BUDGET`] bytes): a publisher that gets ahead of Redis waits for room.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rustc_hash::FxHashMap as HashMap;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::envelope;
use super::link::Link;
use super::ordered::{ordered, Ordered, Worker};
use super::scripts;
use super::Keys;
use crate::backend::{rules, Published};
use crate::error::{Error, Result};

/// How many bytes of messages may wait in a connection's outbox (a message larger than that
/// waits alone).
const BUDGET: usize = 8 << 20;

/// How many messages one send holds at most.
const BATCH: usize = 1024;

/// A channel's failed sends of messages nobody waited for, reported by its next publish or
/// its close.
pub(crate) type Fault = Arc<parking_lot::Mutex<Option<Error>>>;

/// Where a message goes, as Redis needs it.
#[derive(Debug)]
pub(crate) enum Route {
    /// The default exchange: the list of the queue named by the routing key (of the
    /// message's priority step).
    Queue {
        queue: String,
        /// The queue's list of step 0, when the message goes to another step's list.
        base: Option<String>,
        target: String,
        payload: String,
    },
    /// Another exchange, through the routing script (its arguments).
    Exchange { exchange: String, args: Vec<String> },
}

impl Route {
    /// The message in kombu's envelope (with a fresh delivery tag), and where it goes.
    pub(crate) fn of(message: &Published, keys: &Keys) -> Result<Route> {
        let tag = envelope::new_tag().to_string();
        let payload = envelope::encode(message, &tag)?;
        let priority = message.properties.priority().unwrap_or(0);
        if message.exchange.is_empty() {
            let queue = message.routing_key.to_string();
            let base = format!("{}{queue}", keys.prefix());
            let suffix = keys.suffix(priority);
            let (base, target) = if suffix.is_empty() {
                (None, base)
            } else {
                let target = format!("{base}{suffix}");
                (Some(base), target)
            };
            return Ok(Route::Queue {
                queue,
                base,
                target,
                payload,
            });
        }
        let args = vec![
            message.exchange.to_string(),
            message.routing_key.to_string(),
            payload,
            keys.suffix(priority),
            keys.prefix().to_string(),
            keys.sep().to_string(),
            keys.fanout_channel(&message.exchange, &message.routing_key),
            keys.fanout_mark(&tag),
        ];
        Ok(Route::Exchange {
            exchange: message.exchange.to_string(),
            args,
        })
    }

    fn size(&self) -> usize {
        match self {
            Route::Queue { payload, .. } => payload.len(),
            Route::Exchange { args, .. } => args.iter().map(String::len).sum(),
        }
    }
}

/// Who learns a message's outcome: whether a queue (or a fanout subscriber) took it.
enum Reply {
    /// A publish that waits for it.
    Wait(oneshot::Sender<Result<bool>>),
    /// Nobody: a failure goes to the channel's fault.
    Later(Fault),
}

struct Item {
    route: Route,
    reply: Reply,
    _room: OwnedSemaphorePermit,
}

/// The connection's publishing task and its progress.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Ordered<Item>,
    room: Arc<Semaphore>,
    /// Held by whoever sends: the task for each of its sends, or a publish sending its own
    /// message while the outbox is idle ([`Outbox::now`]).
    sending: Arc<tokio::sync::Mutex<()>>,
    link: Arc<Link>,
    names: [String; 2],
}

impl Outbox {
    pub(crate) fn start(link: Arc<Link>, keys: &Keys, stop: CancellationToken) -> Outbox {
        let (queue, worker) = ordered(stop);
        let names = [keys.exchanges.clone(), keys.queues.clone()];
        let sending = Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(run(link.clone(), names.clone(), worker, sending.clone()));
        Outbox {
            queue,
            room: Arc::new(Semaphore::new(BUDGET)),
            sending,
            link,
            names,
        }
    }

    /// Queues a message whose outcome nobody waits for: a failure to send it goes to `fault`.
    pub(crate) async fn send(&self, route: Route, fault: &Fault) -> Result<()> {
        self.queue(route, Reply::Later(fault.clone())).await
    }

    /// Queues a message and returns its outcome: whether a queue (or a fanout subscriber)
    /// took it, or why it was not sent.
    pub(crate) async fn request(
        &self,
        route: Route,
    ) -> Result<impl Future<Output = Result<bool>> + Send + 'static> {
        let (tx, rx) = oneshot::channel();
        self.queue(route, Reply::Wait(tx)).await?;
        Ok(async move { rx.await.unwrap_or_else(|_| Err(gone())) })
    }

    /// Sends a message whose publish waits for its outcome, and returns that outcome. When
    /// nothing is queued or being sent, the caller sends it itself (a hand-off to the task
    /// and back would cost each such publish two more wake-ups); the task's next send waits
    /// for it, so the order stays.
    pub(crate) async fn now(&self, route: Route) -> Result<bool> {
        if let Ok(_sending) = self.sending.try_lock() {
            if self.queue.is_idle() {
                return match &route {
                    Route::Queue { .. } => {
                        let routes = [&route];
                        let routed = routed_to_queues(&self.link, &self.names[1], &routes).await?;
                        Ok(routed.first().copied().unwrap_or(false))
                    }
                    Route::Exchange { .. } => {
                        routed_to_exchange(&self.link, &self.names, &route).await
                    }
                };
            }
        }
        self.request(route).await?.await
    }

    async fn queue(&self, route: Route, reply: Reply) -> Result<()> {
        let size = route.size().clamp(1, BUDGET) as u32;
        let room = self
            .room
            .clone()
            .acquire_many_owned(size)
            .await
            .map_err(|_| gone())?;
        let item = Item {
            route,
            reply,
            _room: room,
        };
        self.queue.push(item).map_err(|_| gone())
    }

    /// Waits until everything queued so far is sent (or the task is gone).
    pub(crate) async fn flush(&self) {
        self.queue.flush().await;
    }
}

/// The outbox's task ended (its connection closed, or its runtime shutting down).
fn gone() -> Error {
    rules::connection_closed()
}

async fn run(
    link: Arc<Link>,
    names: [String; 2],
    mut worker: Worker<Item>,
    sending: Arc<tokio::sync::Mutex<()>>,
) {
    let mut batch: Vec<Item> = Vec::new();
    while worker.next(&mut batch, BATCH).await {
        // After a publish sending its own message, if one is under way.
        let _sending = sending.lock().await;
        let n = batch.len();
        // Consecutive messages of one kind go together; the kinds take turns, in order.
        let mut run: Vec<Item> = Vec::new();
        for item in batch.drain(..) {
            let queue = matches!(item.route, Route::Queue { .. });
            if run
                .first()
                .is_some_and(|r| matches!(r.route, Route::Queue { .. }) != queue)
            {
                send(&link, &names, std::mem::take(&mut run)).await;
            }
            run.push(item);
        }
        send(&link, &names, run).await;
        worker.applied(n);
    }
}

/// Sends a run of messages of one kind: the default exchange's in one transaction, the
/// others' scripts at once (each sent in turn, so in order; their publishers wait for them).
async fn send(link: &Link, names: &[String; 2], run: Vec<Item>) {
    if run
        .first()
        .is_some_and(|r| matches!(r.route, Route::Queue { .. }))
    {
        return to_queues(link, &names[1], run).await;
    }
    let mut run = run.into_iter();
    loop {
        let chunk: Vec<Item> = run.by_ref().take(SCRIPTS_AT_ONCE).collect();
        if chunk.is_empty() {
            return;
        }
        in_turn(
            chunk
                .into_iter()
                .map(|item| to_exchange(link, names, item))
                .collect(),
        )
        .await;
    }
}

/// How many routing scripts a send keeps in flight at most.
const SCRIPTS_AT_ONCE: usize = 64;

/// Awaits the futures together, polling each in turn (each first poll sends its command, in
/// the order given).
async fn in_turn<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

/// Tells each item its outcome.
fn answer(items: Vec<Item>, outcomes: impl IntoIterator<Item = Result<bool>>) {
    for (item, outcome) in items.into_iter().zip(outcomes) {
        match item.reply {
            Reply::Wait(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Later(fault) => {
                if let Err(e) = outcome {
                    let mut fault = fault.lock();
                    if fault.is_none() {
                        *fault = Some(e);
                    }
                }
            }
        }
    }
}

/// The same failure for every item of a send.
fn failed(items: Vec<Item>, error: Error) {
    let copies: Vec<Result<bool>> = items
        .iter()
        .map(|_| {
            Err(error
                .duplicate()
                .unwrap_or_else(|| Error::storage(format!("basic.publish: {error}"))))
        })
        .collect();
    answer(items, copies);
}

/// A message for the default exchange goes to the queue named by its routing key if carrot
/// declared that queue or it held messages before (kombu records no declarations), and is
/// unroutable otherwise. One `MULTI`/`EXEC` of plain commands for the whole batch (per queue,
/// whether carrot declared it and, when a message goes to another priority step, whether its
/// list of step 0 held messages; then the pushes) instead of a script, which costs Redis
/// several times as much. The rare messages found unroutable afterwards are taken back out of
/// their lists (`LREM`: unless a consumer of that list, kombu's, took one first, which makes
/// it routed).
async fn to_queues(link: &Link, queues: &str, items: Vec<Item>) {
    let routes: Vec<&Route> = items.iter().map(|item| &item.route).collect();
    match routed_to_queues(link, queues, &routes).await {
        Ok(routed) => answer(items, routed.into_iter().map(Ok)),
        Err(e) => failed(items, e),
    }
}

/// Sends messages for the default exchange (see [`to_queues`]); whether each was routed.
async fn routed_to_queues(link: &Link, queues: &str, routes: &[&Route]) -> Result<Vec<bool>> {
    #[derive(Default)]
    struct Seen<'a> {
        /// Index of its `HEXISTS` answer, and of its `EXISTS` (step 0) answer.
        declared: usize,
        base: Option<usize>,
        /// Its lists pushed so far in this batch, with the index of the first push's answer.
        lists: Vec<(&'a str, usize)>,
        routed: bool,
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut next = 0usize;
    let mut seen: HashMap<&str, Seen> = HashMap::default();
    for route in routes {
        let Route::Queue {
            queue,
            base,
            target,
            payload,
        } = route
        else {
            continue;
        };
        let entry = seen.entry(queue.as_str()).or_insert_with(|| {
            pipe.cmd("HEXISTS").arg(queues).arg(queue);
            next += 1;
            let mut s = Seen {
                declared: next - 1,
                ..Seen::default()
            };
            if let Some(base) = base {
                // Whether step 0 held messages, before any push of this batch.
                pipe.cmd("EXISTS").arg(base);
                s.base = Some(next);
                next += 1;
            }
            s
        });
        pipe.cmd("LPUSH").arg(target).arg(payload);
        if !entry.lists.iter().any(|(l, _)| *l == target.as_str()) {
            entry.lists.push((target.as_str(), next));
        }
        next += 1;
    }
    let out: Vec<i64> = link.query("basic.publish", pipe).await?;
    if out.len() != next {
        return Err(Error::storage(format!(
            "basic.publish: Redis answered {} replies to {next} commands",
            out.len()
        )));
    }
    for s in seen.values_mut() {
        s.routed = out[s.declared] > 0
            || s.base.is_some_and(|i| out[i] > 0)
            // A list that held messages before this batch's first push to it.
            || s.lists.iter().any(|(_, i)| out[*i] > 1);
    }
    let mut outcomes: Vec<bool> = Vec::with_capacity(routes.len());
    let mut lrem = redis::pipe();
    let mut taken_back = Vec::new();
    for (n, route) in routes.iter().enumerate() {
        let Route::Queue {
            queue,
            target,
            payload,
            ..
        } = route
        else {
            outcomes.push(false);
            continue;
        };
        let routed = seen.get(queue.as_str()).is_some_and(|s| s.routed);
        if !routed {
            lrem.cmd("LREM").arg(target).arg(1).arg(payload);
            taken_back.push(n);
        }
        outcomes.push(routed);
    }
    if !taken_back.is_empty() {
        let removed: Vec<i64> = link.query("basic.publish", lrem).await?;
        for (n, removed) in taken_back.into_iter().zip(removed) {
            // Taken by a consumer of the list first: routed after all.
            outcomes[n] = removed == 0;
        }
    }
    Ok(outcomes)
}

/// A message for another exchange, through the routing script.
async fn to_exchange(link: &Link, names: &[String; 2], item: Item) {
    let outcome = routed_to_exchange(link, names, &item.route).await;
    answer(vec![item], [outcome]);
}

/// Sends a message for another exchange; whether a queue (or a fanout subscriber) took it.
async fn routed_to_exchange(link: &Link, names: &[String; 2], route: &Route) -> Result<bool> {
    let Route::Exchange { exchange, args } = route else {
        return Ok(false);
    };
    let (status, pushed, subscribers) = link
        .script::<(i64, i64, i64)>("basic.publish", &scripts::PUBLISH, names, args)
        .await?;
    match status {
        404 => Err(rules::no_exchange(exchange)),
        403 => rules::publishable(exchange, true).map(|()| false),
        _ => Ok(pushed > 0 || subscribers > 0),
    }
}
