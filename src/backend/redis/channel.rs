//! A channel on Redis: publishing through the connection's outbox, deliveries taken (by consumers
//! through their holding lists, by `basic.get` in one script) and recorded as kombu records
//! them, acknowledgements through the connection's settler, qos, flow, consumers and
//! transactions as RabbitMQ has them (RabbitMQ's refusals, from `backend::rules`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::envelope::{self, Incoming};
use super::outbox::{Fault, Route};
use super::settle::{self, Op};
use super::{consumer, entities, fanout, holding, scripts, Shared};
use crate::backend::embedded::{Settlement, Transaction, TxHeld};
use crate::backend::{
    rules, Channel, Confirmation, Delivery, DeliveryStream, Feed, PublishFlags, Published,
    QueueInfo,
};
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::table::FieldTable;

/// A delivery this channel holds until it is settled.
#[derive(Debug)]
struct Held {
    /// kombu's delivery tag (the field of its `unacked` record).
    tag: String,
    /// The list it was taken from.
    list: String,
    /// Its envelope as taken.
    payload: String,
    consumer: Option<Arc<str>>,
}

/// A consumer of this channel.
#[derive(Debug)]
pub(super) struct Sub {
    pub(super) queue: Arc<str>,
    prefetch: u16,
    pub(super) no_ack: bool,
    /// Its member in the queue's set of consumers (its lease).
    member: String,
    /// Its holding list (see `holding`), leased as the member is.
    holding: String,
    held: usize,
    cancel: CancellationToken,
    feed: Feed,
}

#[derive(Debug, Default)]
struct State {
    next_tag: u64,
    held: BTreeMap<u64, Held>,
    consumers: HashMap<Arc<str>, Sub>,
    /// The consumers' loops, awaited when they are cancelled (they give back their holding
    /// lists as they end).
    loops: HashMap<Arc<str>, tokio::task::JoinHandle<()>>,
    prefetch: u16,
    global_prefetch: u16,
    paused: bool,
    tx: Transaction,
}

/// A message taken off a list for this channel.
pub(super) struct Taken {
    list: String,
    payload: String,
    incoming: Incoming,
}

impl Taken {
    pub(super) fn new(list: String, payload: String, incoming: Incoming) -> Self {
        Taken {
            list,
            payload,
            incoming,
        }
    }

    /// kombu's delivery tag of it.
    pub(super) fn tag(&self) -> &str {
        &self.incoming.tag
    }

    /// kombu's record of it as a delivery.
    pub(super) fn record(&self) -> String {
        let m = &self.incoming.message;
        envelope::record(&self.payload, &m.exchange, &m.routing_key)
    }

    /// The list it was taken from.
    pub(super) fn list(&self) -> &str {
        &self.list
    }

    /// Putting it back at the head of its list (see [`Op::Requeue`]).
    pub(super) fn into_requeue(self, mark: bool, recorded: bool) -> Op {
        Op::Requeue {
            tag: self.incoming.tag,
            list: self.list,
            payload: self.payload,
            mark,
            recorded,
        }
    }
}

/// What [`RedisChannel::take_on`] says when the caller's own connection failed.
pub(super) fn own_connection_lost() -> Error {
    Error::connection_closed("a consumer's own connection to Redis was lost")
}

/// A channel on a Redis connection.
#[derive(Debug)]
pub(crate) struct RedisChannel {
    me: Weak<RedisChannel>,
    pub(super) shared: Arc<Shared>,
    state: parking_lot::Mutex<State>,
    /// Woken when a consumer may take more: a settlement, flow back on, its stream drained.
    pub(super) wake: Notify,
    closed: AtomicBool,
    /// A failed send of a message published without confirms, for the next publish or close
    /// to report.
    fault: Fault,
}

impl RedisChannel {
    pub(super) fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new_cyclic(|me| RedisChannel {
            me: me.clone(),
            shared,
            state: parking_lot::Mutex::new(State::default()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            fault: Fault::default(),
        })
    }

    fn open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) || self.shared.link.is_closed() {
            return Err(rules::channel_closed());
        }
        Ok(())
    }

    /// The kombu delivery tags of what the channel holds (their times are kept fresh).
    pub(super) fn held_tags(&self) -> Vec<String> {
        self.state
            .lock()
            .held
            .values()
            .map(|h| h.tag.clone())
            .collect()
    }

    /// The queues, members and holding lists of the channel's consumers (their leases are
    /// renewed).
    pub(super) fn consumer_leases(&self) -> Vec<(Arc<str>, String, String)> {
        self.state
            .lock()
            .consumers
            .values()
            .map(|sub| (sub.queue.clone(), sub.member.clone(), sub.holding.clone()))
            .collect()
    }

    /// How many more messages consumer `tag` may take now: `None` once it is gone.
    pub(super) fn room(&self, tag: &str) -> Option<usize> {
        let st = self.state.lock();
        let sub = st.consumers.get(tag)?;
        if st.paused {
            return Some(0);
        }
        let mut room = sub.feed.room();
        if !sub.no_ack {
            if sub.prefetch > 0 {
                room = room.min(usize::from(sub.prefetch).saturating_sub(sub.held));
            }
            if st.global_prefetch > 0 {
                room = room.min(usize::from(st.global_prefetch).saturating_sub(st.held.len()));
            }
        }
        Some(room)
    }

    pub(super) fn consumer(&self, tag: &str) -> Option<(Arc<str>, bool, CancellationToken)> {
        let st = self.state.lock();
        st.consumers
            .get(tag)
            .map(|s| (s.queue.clone(), s.no_ack, s.cancel.clone()))
    }

    /// Takes up to `max` messages off a queue's lists (recorded as kombu records deliveries,
    /// unless `no_ack`), in one step.
    pub(super) async fn take(&self, queue: &str, max: usize, no_ack: bool) -> Result<Vec<Taken>> {
        self.take_on(None, queue, max, no_ack).await
    }

    /// [`take`](Self::take) on a connection of the caller's (a consumer's own, so that its
    /// takes do not queue behind the shared connection's publishes), or on the shared one.
    /// A failure on the caller's connection is `Ok(None)`: the caller drops that connection
    /// and takes on the shared one, which recovers.
    pub(super) async fn take_on(
        &self,
        own: Option<&mut redis::aio::MultiplexedConnection>,
        queue: &str,
        max: usize,
        no_ack: bool,
    ) -> Result<Vec<Taken>> {
        let keys = &self.shared.keys;
        let lists = keys.lists(queue);
        let mut script_keys = vec![
            keys.unacked.clone(),
            keys.unacked_index.clone(),
            keys.taken_from.clone(),
        ];
        script_keys.extend(lists.iter().cloned());
        let fallback = format!("carrot-{}-", envelope::new_tag().simple());
        let args = [
            settle::now().to_string(),
            max.to_string(),
            fallback,
            if no_ack { "noack" } else { "" }.to_string(),
        ];
        let out: Vec<String> = match own {
            Some(conn) => {
                let mut invocation = scripts::TAKE.prepare_invoke();
                for key in &script_keys {
                    invocation.key(key);
                }
                for arg in &args {
                    invocation.arg(arg);
                }
                let limit = self.shared.link.operation_timeout();
                match tokio::time::timeout(limit, invocation.invoke_async(conn)).await {
                    Ok(Ok(out)) => out,
                    Ok(Err(e)) if !super::link::is_lost(&e) => {
                        return Err(self.shared.link.command_error("basic.get", e))
                    }
                    // Lost or silent: the shared connection takes over (and recovers).
                    _ => return Err(own_connection_lost()),
                }
            }
            None => {
                self.shared
                    .link
                    .script("basic.get", &scripts::TAKE, &script_keys, &args)
                    .await?
            }
        };
        let mut taken = Vec::with_capacity(out.len() / 3);
        let mut it = out.into_iter();
        while let (Some(index), Some(tag), Some(payload)) = (it.next(), it.next(), it.next()) {
            let list = index
                .parse::<usize>()
                .ok()
                .and_then(|i| lists.get(i.wrapping_sub(1)))
                .cloned()
                .unwrap_or_else(|| lists[0].clone());
            let incoming = envelope::decode(&payload, &tag);
            taken.push(Taken {
                list,
                payload,
                incoming,
            });
        }
        Ok(taken)
    }

    fn hold(
        &self,
        st: &mut State,
        taken: Taken,
        consumer: Option<Arc<str>>,
        no_ack: bool,
    ) -> Delivery {
        st.next_tag += 1;
        let delivery_tag = st.next_tag;
        let Taken {
            list,
            payload,
            incoming,
        } = taken;
        if !no_ack {
            st.held.insert(
                delivery_tag,
                Held {
                    tag: incoming.tag,
                    list,
                    payload,
                    consumer: consumer.clone(),
                },
            );
        }
        Delivery {
            message: incoming.message,
            delivery_tag,
            redelivered: incoming.redelivered,
            consumer_tag: consumer,
        }
    }

    /// Hands taken messages to consumer `tag`; those it can no longer take go back (next out,
    /// not marked redelivered).
    pub(super) fn deliver(&self, tag: &Arc<str>, taken: Vec<Taken>, taken_no_ack: bool) {
        let mut back = Vec::new();
        {
            let mut st = self.state.lock();
            let mut taken = taken.into_iter();
            let no_ack = st
                .consumers
                .get(tag)
                .filter(|sub| !sub.feed.is_closed())
                .map(|sub| sub.no_ack);
            if let Some(no_ack) = no_ack {
                for t in taken.by_ref() {
                    let delivery = self.hold(&mut st, t, Some(tag.clone()), no_ack);
                    let delivery_tag = delivery.delivery_tag;
                    let sent = st.consumers.get_mut(tag).is_some_and(|sub| {
                        sub.feed.reserve();
                        let sent = sub.feed.send_reserved(delivery);
                        if sent {
                            sub.held += usize::from(!no_ack);
                        } else {
                            sub.feed.unreserve();
                        }
                        sent
                    });
                    if !sent {
                        if let Some(h) = st.held.remove(&delivery_tag) {
                            back.push(Taken {
                                list: h.list,
                                incoming: envelope::decode(&h.payload, &h.tag),
                                payload: h.payload,
                            });
                        }
                        break;
                    }
                }
            }
            back.extend(taken);
        }
        for t in back.into_iter().rev() {
            self.shared
                .settler
                .push(t.into_requeue(false, !taken_no_ack));
        }
    }

    /// Ends a consumer whose loop failed (Redis gone for good): its stream says why.
    pub(super) fn consumer_failed(&self, tag: &str, error: Error) {
        if let Some(sub) = self.state.lock().consumers.remove(tag) {
            sub.feed.fail(error);
            sub.cancel.cancel();
        }
    }

    /// The queue was deleted: its consumers here are cancelled, as RabbitMQ cancels them.
    pub(crate) fn queue_deleted(&self, queue: &str) {
        let mut st = self.state.lock();
        let tags: Vec<Arc<str>> = st
            .consumers
            .iter()
            .filter(|(_, s)| &*s.queue == queue)
            .map(|(t, _)| t.clone())
            .collect();
        for tag in tags {
            if let Some(sub) = st.consumers.remove(&tag) {
                sub.feed.fail(rules::consumer_cancelled(&tag, queue));
                sub.cancel.cancel();
            }
        }
    }

    /// Removes the held deliveries `delivery_tag` covers (with `multiple`, all up to it; 0:
    /// all): 406 for a tag the channel does not hold.
    fn release(st: &mut State, delivery_tag: u64, multiple: bool) -> Result<Vec<Held>> {
        let tags: Vec<u64> = if multiple {
            let upto = if delivery_tag == 0 {
                u64::MAX
            } else {
                delivery_tag
            };
            st.held.range(..=upto).map(|(t, _)| *t).collect()
        } else {
            vec![delivery_tag]
        };
        if tags.is_empty() || (!multiple && !st.held.contains_key(&delivery_tag)) {
            return Err(rules::unknown_tag(delivery_tag));
        }
        let mut out = Vec::with_capacity(tags.len());
        for t in tags {
            if let Some(h) = st.held.remove(&t) {
                if let Some(c) = &h.consumer {
                    if let Some(sub) = st.consumers.get_mut(c) {
                        sub.held = sub.held.saturating_sub(1);
                    }
                }
                out.push(h);
            }
        }
        Ok(out)
    }

    fn settle_now(&self, delivery_tag: u64, multiple: bool, how: Settlement) -> Result<()> {
        let released = {
            let mut st = self.state.lock();
            if st.tx.is_selected() {
                let outstanding: Vec<u64> = if multiple {
                    let upto = if delivery_tag == 0 {
                        u64::MAX
                    } else {
                        delivery_tag
                    };
                    st.held.range(..=upto).map(|(t, _)| *t).collect()
                } else if st.held.contains_key(&delivery_tag) {
                    vec![delivery_tag]
                } else {
                    return Err(rules::unknown_tag(delivery_tag));
                };
                return st
                    .tx
                    .hold_settlement(delivery_tag, multiple, outstanding, how);
            }
            Self::release(&mut st, delivery_tag, multiple)?
        };
        self.apply(released, how);
        Ok(())
    }

    fn apply(&self, released: Vec<Held>, how: Settlement) {
        match how {
            Settlement::Reject { requeue: true } => {
                for h in released {
                    self.shared.settler.push(Op::Requeue {
                        tag: h.tag,
                        list: h.list,
                        payload: h.payload,
                        mark: true,
                        recorded: true,
                    });
                }
            }
            _ => self
                .shared
                .settler
                .push(Op::Settle(released.into_iter().map(|h| h.tag).collect())),
        }
        self.wake.notify_waiters();
    }

    /// Ends every consumer and gives back what the channel holds (next out, marked
    /// redelivered, oldest last so that the order stays); returns the consumers ended.
    fn end(&self) -> Vec<Sub> {
        self.closed.store(true, Ordering::Release);
        let (subs, held) = {
            let mut st = self.state.lock();
            let subs: Vec<Sub> = st.consumers.drain().map(|(_, s)| s).collect();
            let held = std::mem::take(&mut st.held);
            (subs, held)
        };
        for s in &subs {
            s.cancel.cancel();
        }
        for (_, h) in held.into_iter().rev() {
            self.shared.settler.push(Op::Requeue {
                tag: h.tag,
                list: h.list,
                payload: h.payload,
                mark: true,
                recorded: true,
            });
        }
        self.wake.notify_waiters();
        subs
    }
}

#[async_trait]
impl Channel for RedisChannel {
    async fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> Result<()> {
        self.open()?;
        entities::declare_exchange(&self.shared, spec, passive).await
    }

    async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<()> {
        self.open()?;
        entities::delete_exchange(&self.shared, name, if_unused).await
    }

    async fn declare_queue(&self, spec: &QueueSpec, passive: bool) -> Result<QueueInfo> {
        self.open()?;
        self.caught_up().await;
        entities::declare_queue(&self.shared, spec, passive).await
    }

    async fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool) -> Result<u32> {
        self.open()?;
        self.caught_up().await;
        entities::delete_queue(&self.shared, name, if_unused, if_empty).await
    }

    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.open()?;
        entities::bind(&self.shared, queue, exchange, key, arguments, true).await
    }

    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.open()?;
        entities::bind(&self.shared, queue, exchange, key, arguments, false).await
    }

    async fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        _key: &str,
        _arguments: &FieldTable,
    ) -> Result<()> {
        self.open()?;
        entities::bind_exchange(&self.shared, destination, source).await
    }

    async fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        _key: &str,
        _arguments: &FieldTable,
    ) -> Result<()> {
        self.open()?;
        entities::bind_exchange(&self.shared, destination, source).await
    }

    async fn publish(&self, message: Arc<Published>, flags: PublishFlags) -> Result<Confirmation> {
        self.open()?;
        if flags.immediate {
            return Err(Error::Unsupported(
                "immediate on redis://: whether a consumer is ready cannot be known on Redis (RabbitMQ 3 refuses it too); publish with mandatory instead".into(),
            ));
        }
        if message.properties.expiration().is_some() {
            // Refused now, also inside a transaction.
            envelope::encode(&message, "")?;
        }
        {
            let mut st = self.state.lock();
            if st.tx.is_selected() {
                st.tx.hold_publish(message, flags);
                return Ok(Confirmation::Done);
            }
        }
        self.reported()?;
        let route = Route::of(&message, &self.shared.keys)?;
        let outbox = &self.shared.outbox;
        if message.exchange.is_empty() && !flags.mandatory {
            // Nothing to learn but a failure to store it: with confirms, the caller awaits
            // that; without, the next publish or the close reports it.
            if !flags.confirm {
                outbox.send(route, &self.fault).await?;
                return Ok(Confirmation::Done);
            }
            if !flags.awaited {
                let outcome = outbox.request(route).await?;
                return Ok(Confirmation::Pending(Box::pin(async move {
                    outcome.await.map(|_| ())
                })));
            }
        }
        // A missing exchange, or a mandatory message no queue took, is this call's error.
        let routed = outbox.now(route).await?;
        if flags.mandatory && !routed {
            return Err(rules::unroutable(&message));
        }
        Ok(Confirmation::Done)
    }

    async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        self.open()?;
        self.caught_up().await;
        entities::usable(&self.shared, queue).await?;
        let Some(taken) = self.take(queue, 1, no_ack).await?.pop() else {
            return Ok(None);
        };
        let mut st = self.state.lock();
        Ok(Some(self.hold(&mut st, taken, None, no_ack)))
    }

    async fn consume(
        &self,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        self.open()?;
        if priority != 0 {
            return Err(Error::Unsupported(
                "consumer priorities (x-priority) on redis://: consumers of a list take messages first come, first served; use RabbitMQ for them".into(),
            ));
        }
        entities::usable(&self.shared, queue).await?;
        let tag: Arc<str> = if consumer_tag.is_empty() {
            format!("amq.ctag-{}", uuid::Uuid::new_v4().simple()).into()
        } else {
            consumer_tag.into()
        };
        if self.state.lock().consumers.contains_key(&tag) {
            return Err(rules::reused_tag(&tag));
        }
        entities::admit_consumer(&self.shared, queue, exclusive).await?;
        let member = entities::consumer_member(exclusive);
        entities::count_consumer(&self.shared, queue, &member, true).await?;
        let holding = holding::list(&self.shared, &member, queue);
        let mut lease = redis::pipe();
        holding::renew(&mut lease, &self.shared, std::slice::from_ref(&holding));
        self.shared.link.query::<()>("basic.consume", lease).await?;
        let channel: Weak<RedisChannel> = self.me();
        let wake = channel.clone();
        let (feed, stream) = Feed::new(
            queue.into(),
            Arc::new(move |_| {
                if let Some(ch) = wake.upgrade() {
                    ch.wake.notify_waiters();
                }
            }),
        );
        let cancel = CancellationToken::new();
        {
            let mut st = self.state.lock();
            let prefetch = st.prefetch;
            st.consumers.insert(
                tag.clone(),
                Sub {
                    queue: queue.into(),
                    prefetch,
                    no_ack,
                    member,
                    holding: holding.clone(),
                    held: 0,
                    cancel: cancel.clone(),
                    feed,
                },
            );
        }
        fanout::ensure(&self.shared).await;
        let recorded = entities::is_recorded(&self.shared, queue).await?;
        let task = tokio::spawn(consumer::run(channel, tag.clone(), recorded, holding));
        {
            let mut st = self.state.lock();
            st.loops.retain(|_, h| !h.is_finished());
            st.loops.insert(tag.clone(), task);
        }
        Ok((tag, stream))
    }

    async fn cancel(&self, consumer_tag: &str) -> Result<()> {
        let (sub, task) = {
            let mut st = self.state.lock();
            (
                st.consumers.remove(consumer_tag),
                st.loops.remove(consumer_tag),
            )
        };
        if let Some(sub) = sub {
            sub.cancel.cancel();
            self.loops_ended(task).await;
            entities::consumer_gone(&self.shared, &sub.queue, &sub.member).await?;
        }
        Ok(())
    }

    fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        self.open()?;
        self.settle_now(delivery_tag, multiple, Settlement::Ack)
    }

    fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        self.open()?;
        self.settle_now(delivery_tag, false, Settlement::Reject { requeue })
    }

    async fn qos(&self, prefetch_size: u32, prefetch_count: u16, global: bool) -> Result<()> {
        self.open()?;
        rules::prefetch_size(prefetch_size)?;
        let mut st = self.state.lock();
        if global {
            st.global_prefetch = prefetch_count;
        } else {
            st.prefetch = prefetch_count;
        }
        drop(st);
        self.wake.notify_waiters();
        Ok(())
    }

    async fn flow(&self, active: bool) -> Result<()> {
        self.open()?;
        self.state.lock().paused = !active;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn purge(&self, queue: &str) -> Result<u32> {
        self.open()?;
        self.caught_up().await;
        entities::purge(&self.shared, queue).await
    }

    async fn tx_select(&self) -> Result<()> {
        self.open()?;
        self.state.lock().tx.select();
        Ok(())
    }

    async fn tx_commit(&self) -> Result<Vec<(Arc<Published>, Error)>> {
        self.open()?;
        self.reported()?;
        let held = self.state.lock().tx.commit()?;
        let mut returned = Vec::new();
        for op in held {
            match op {
                TxHeld::Publish(message, flags) => {
                    let route = Route::of(&message, &self.shared.keys)?;
                    let routed = self.shared.outbox.now(route).await?;
                    if flags.mandatory && !routed {
                        let e = rules::unroutable(&message);
                        returned.push((message, e));
                    }
                }
                TxHeld::Settle(tag, how) => {
                    let released = Self::release(&mut self.state.lock(), tag, false);
                    if let Ok(released) = released {
                        self.apply(released, how);
                    }
                }
            }
        }
        self.shared.settler.flush().await;
        Ok(returned)
    }

    async fn tx_rollback(&self) -> Result<()> {
        self.open()?;
        self.state.lock().tx.rollback()
    }

    async fn flush(&self) -> Result<()> {
        self.shared.outbox.flush().await;
        self.reported()
    }

    async fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let subs = self.end();
        let tasks: Vec<_> = self.state.lock().loops.drain().map(|(_, t)| t).collect();
        self.loops_ended(tasks).await;
        for sub in subs {
            let _ = entities::consumer_gone(&self.shared, &sub.queue, &sub.member).await;
        }
        self.caught_up().await;
        self.reported()
    }

    fn shutdown(&self) {
        if let Some(task) = self.shut() {
            // Awaited by the connection's close or drop, before the connection closes.
            let mut ending = self.shared.ending.lock();
            ending.retain(|t| !t.is_finished());
            ending.push(task);
        }
    }
}

impl RedisChannel {
    /// Waits until what the connection published and settled before is applied, so that a
    /// queue read now counts it.
    async fn caught_up(&self) {
        self.shared.outbox.flush().await;
        self.shared.settler.flush().await;
    }

    /// The failure to send a message published on this channel without confirms, not yet
    /// reported (reported once).
    fn reported(&self) -> Result<()> {
        match self.fault.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn me(&self) -> Weak<RedisChannel> {
        self.me.clone()
    }

    /// What `close` does, without waiting (a drop may come on a thread of no runtime): the
    /// work runs on the connection's runtime, and its task is returned for the connection's
    /// own drop to await. If that runtime is gone, so is the connection, and its counts and
    /// holding lists stay as a dead process leaves them (their leases end them).
    pub(super) fn shut(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let subs = self.end();
        let tasks: Vec<_> = self.state.lock().loops.drain().map(|(_, t)| t).collect();
        if subs.is_empty() && tasks.is_empty() {
            return None;
        }
        let shared = self.shared.clone();
        let limit = shared.link.operation_timeout() * 2;
        Some(self.shared.runtime.spawn(async move {
            for task in tasks {
                let _ = tokio::time::timeout(limit, task).await;
            }
            for sub in subs {
                let _ = entities::consumer_gone(&shared, &sub.queue, &sub.member).await;
            }
        }))
    }

    /// Waits (bounded) until cancelled consumers' loops have ended, and so have given back
    /// what their holding lists held: a message a wait took as its consumer was cancelled is
    /// on its queue again when `cancel` or `close` returns.
    async fn loops_ended(&self, tasks: impl IntoIterator<Item = tokio::task::JoinHandle<()>>) {
        let limit = self.shared.link.operation_timeout() * 2;
        for task in tasks {
            let _ = tokio::time::timeout(limit, task).await;
        }
    }
}
