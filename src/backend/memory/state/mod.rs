//! The state of one embedded broker and every AMQP operation on it.
//!
//! All of it sits behind one mutex: each operation is short and needs a consistent view across
//! exchanges, queues and channels (exclusive owners, auto-delete, redelivery), as a
//! single-threaded broker would give.

mod dead_letter;

use std::sync::{Arc, Condvar};
use std::time::Instant;

// Names and ids chosen by the application, not hostile input: a fast hash matters more here
// (3 to 5 lookups per message) than flooding resistance.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use tokio::sync::mpsc;

use super::queue::{Queue, Subscriber, NEVER};
use super::unacked::Ledger;
use crate::backend::arguments::limits;
use crate::backend::rules;
use crate::backend::{Delivery, DeliveryStream, PublishFlags, Published, QueueInfo};
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::routing::Bindings;
use crate::table::FieldTable;

#[derive(Debug)]
struct Exchange {
    spec: ExchangeSpec,
    bindings: Bindings,
}

#[derive(Debug)]
struct Unacked {
    queue: Arc<str>,
    message: Arc<Published>,
    /// The consumer it was delivered to; `None` for `get`.
    consumer: Option<Arc<str>>,
    /// Its expiry, kept if it is requeued.
    deadline: u64,
}

#[derive(Debug)]
struct ChannelState {
    connection: u64,
    flow: bool,
    /// Prefetch given to consumers created from now on (qos with global = false).
    consumer_prefetch: u16,
    /// Limit on unacknowledged deliveries across the channel (qos with global = true).
    channel_prefetch: u16,
    next_tag: u64,
    unacked: Ledger<Unacked>,
    consumer_tags: u64,
}

#[derive(Debug)]
pub(super) struct State {
    exchanges: HashMap<Arc<str>, Exchange>,
    queues: HashMap<Arc<str>, Queue>,
    channels: HashMap<u64, ChannelState>,
    connections: HashSet<u64>,
    next_id: u64,
    /// Reused by `publish` to avoid an allocation per message.
    route_buffer: Vec<Arc<str>>,
    /// The broker's clock: deadlines are milliseconds since then.
    epoch: Instant,
    /// Wakes the thread that expires messages and queues (see `dead_letter.rs`).
    pub(super) sweeper: Arc<Condvar>,
    /// When that thread plans to wake next (`None`: not until woken).
    pub(super) sweeper_wake: Option<u64>,
    /// Whether some queue or message has a TTL, so that the thread is needed.
    pub(super) sweeper_needed: bool,
}

fn closed() -> Error {
    Error::channel_closed("the channel was closed (by close(), or by a broker restart)")
}

impl State {
    pub(super) fn new() -> Self {
        let mut state = State {
            exchanges: HashMap::default(),
            queues: HashMap::default(),
            channels: HashMap::default(),
            connections: HashSet::default(),
            next_id: 0,
            route_buffer: Vec::new(),
            epoch: Instant::now(),
            sweeper: Arc::new(Condvar::new()),
            sweeper_wake: None,
            sweeper_needed: false,
        };
        state.predeclare();
        state
    }

    /// Milliseconds on the broker's clock.
    pub(super) fn now(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// The exchanges every AMQP broker has.
    fn predeclare(&mut self) {
        for (name, kind) in [
            ("amq.direct", ExchangeType::Direct),
            ("amq.fanout", ExchangeType::Fanout),
            ("amq.topic", ExchangeType::Topic),
            ("amq.headers", ExchangeType::Headers),
            ("amq.match", ExchangeType::Headers),
        ] {
            self.exchanges.insert(
                name.into(),
                Exchange {
                    spec: ExchangeSpec::new(name, kind),
                    bindings: Bindings::new(kind),
                },
            );
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn open_connection(&mut self) -> u64 {
        let id = self.id();
        self.connections.insert(id);
        id
    }

    pub(super) fn close_connection(&mut self, connection: u64) {
        if !self.connections.remove(&connection) {
            return;
        }
        let channels: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| c.connection == connection)
            .map(|(id, _)| *id)
            .collect();
        for id in channels {
            self.close_channel(id);
        }
        let exclusive: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| q.owner == Some(connection))
            .map(|q| q.name.clone())
            .collect();
        for name in exclusive {
            self.remove_queue(&name);
        }
    }

    pub(super) fn open_channel(&mut self, connection: u64) -> Result<u64> {
        if !self.connections.contains(&connection) {
            return Err(Error::connection_closed(
                "the connection was closed (by close(), or by a broker restart): open a new one",
            ));
        }
        let id = self.id();
        self.channels.insert(
            id,
            ChannelState {
                connection,
                flow: true,
                consumer_prefetch: 0,
                channel_prefetch: 0,
                next_tag: 1,
                unacked: Ledger::default(),
                consumer_tags: 0,
            },
        );
        Ok(id)
    }

    /// Closes a channel: its consumers are cancelled and its unacknowledged deliveries go back
    /// to their queues, in order, marked redelivered.
    pub(super) fn close_channel(&mut self, channel: u64) {
        let Some(state) = self.channels.remove(&channel) else {
            return;
        };
        let mut touched: Vec<Arc<str>> = Vec::new();
        for unacked in state.unacked.into_newest_first() {
            if let Some(q) = self.queues.get_mut(&unacked.queue) {
                q.push_front(unacked.message, unacked.deadline, true);
                if !touched.contains(&unacked.queue) {
                    touched.push(unacked.queue);
                }
            }
        }
        let subscribed: Vec<(Arc<str>, Arc<str>)> = self
            .queues
            .values()
            .flat_map(|q| {
                q.subscribers
                    .iter()
                    .filter(|s| s.channel == channel)
                    .map(|s| (q.name.clone(), s.tag.clone()))
            })
            .collect();
        for (queue, tag) in subscribed {
            self.remove_subscriber(&queue, channel, &tag);
        }
        for queue in touched {
            self.dispatch(&queue);
        }
    }

    fn channel(&mut self, channel: u64) -> Result<&mut ChannelState> {
        self.channels.get_mut(&channel).ok_or_else(closed)
    }

    fn connection_of(&self, channel: u64) -> Result<u64> {
        self.channels
            .get(&channel)
            .map(|c| c.connection)
            .ok_or_else(closed)
    }

    /// The queue, if this channel's connection may use it.
    fn usable_queue(&mut self, channel: u64, name: &str) -> Result<&mut Queue> {
        let connection = self.connection_of(channel)?;
        let queue = self
            .queues
            .get_mut(name)
            .ok_or_else(|| rules::no_queue(name))?;
        rules::check_owner(name, queue.owner, connection)?;
        Ok(queue)
    }

    pub(super) fn declare_exchange(
        &mut self,
        channel: u64,
        spec: &ExchangeSpec,
        passive: bool,
    ) -> Result<()> {
        self.connection_of(channel)?;
        let existing = self.exchanges.get(spec.name.as_str()).map(|e| &e.spec);
        if rules::exchange_declaration(spec, passive, existing)? {
            self.exchanges.insert(
                spec.name.as_str().into(),
                Exchange {
                    spec: spec.clone(),
                    bindings: Bindings::new(spec.kind),
                },
            );
        }
        Ok(())
    }

    pub(super) fn delete_exchange(
        &mut self,
        channel: u64,
        name: &str,
        if_unused: bool,
    ) -> Result<()> {
        self.connection_of(channel)?;
        let bound = self.exchanges.get(name).map(|e| !e.bindings.is_empty());
        rules::exchange_deletion(name, if_unused, bound)?;
        self.exchanges.remove(name);
        Ok(())
    }

    pub(super) fn declare_queue(
        &mut self,
        channel: u64,
        spec: &QueueSpec,
        passive: bool,
    ) -> Result<QueueInfo> {
        let connection = self.connection_of(channel)?;
        let mut spec = spec.clone();
        if spec.name.is_empty() {
            if passive {
                return Err(rules::no_queue(""));
            }
            spec.name = format!("amq.gen-{}-{}", connection, self.id());
        }
        if self.queues.contains_key(spec.name.as_str()) {
            let now = self.now();
            let queue = self.usable_queue(channel, &spec.name)?;
            if !passive {
                queue.spec.check_equivalent(&spec)?;
            }
            queue.last_used = now;
            let name = queue.name.clone();
            self.expire_queue(&name, now);
            return self.queues.get(&name).map(info).ok_or_else(closed);
        }
        rules::queue_creation(&spec, passive)?;
        let limits = limits(&spec, "the memory broker")?;
        if limits.message_ttl.is_some() || limits.expires.is_some() {
            self.sweeper_needed = true;
            self.sweeper.notify_one();
        }
        let name: Arc<str> = spec.name.as_str().into();
        let owner = spec.exclusive.then_some(connection);
        let now = self.now();
        let queue = Queue::new(name.clone(), spec, owner, limits, now);
        let info = info(&queue);
        self.queues.insert(name, queue);
        Ok(info)
    }

    pub(super) fn delete_queue(
        &mut self,
        channel: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32> {
        let queue = self.usable_queue(channel, name)?;
        rules::queue_deletion(
            name,
            if_unused,
            if_empty,
            queue.subscribers.len(),
            queue.len(),
        )?;
        let count = queue.len() as u32;
        self.remove_queue(name);
        Ok(count)
    }

    /// Deletes a queue, its bindings, and auto-delete exchanges left without bindings.
    /// Its consumers' delivery streams end.
    fn remove_queue(&mut self, name: &str) {
        let Some(queue) = self.queues.remove(name) else {
            return;
        };
        for s in &queue.subscribers {
            let _ = s.tx.send(Err(rules::consumer_cancelled(&s.tag, name)));
        }
        let mut emptied = Vec::new();
        for (exchange_name, exchange) in &mut self.exchanges {
            if exchange.bindings.remove_queue(name)
                && exchange.spec.auto_delete
                && exchange.bindings.is_empty()
            {
                emptied.push(exchange_name.clone());
            }
        }
        for exchange in emptied {
            self.exchanges.remove(&exchange);
        }
    }

    fn exchange_for_binding(&mut self, exchange: &str) -> Result<&mut Exchange> {
        rules::bindable(exchange)?;
        self.exchanges
            .get_mut(exchange)
            .ok_or_else(|| rules::no_exchange(exchange))
    }

    pub(super) fn bind(
        &mut self,
        channel: u64,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let queue_name = self.usable_queue(channel, queue)?.name.clone();
        self.exchange_for_binding(exchange)?
            .bindings
            .bind(&queue_name, key, arguments);
        Ok(())
    }

    pub(super) fn unbind(
        &mut self,
        channel: u64,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.usable_queue(channel, queue)?;
        let ex = self.exchange_for_binding(exchange)?;
        if ex.bindings.unbind(queue, key, arguments)
            && ex.spec.auto_delete
            && ex.bindings.is_empty()
        {
            self.exchanges.remove(exchange);
        }
        Ok(())
    }

    pub(super) fn publish(
        &mut self,
        channel: u64,
        message: Arc<Published>,
        flags: PublishFlags,
    ) -> Result<()> {
        // channel.flow stops deliveries to the client, not its publishing.
        self.channel(channel)?;
        let mut targets = std::mem::take(&mut self.route_buffer);
        targets.clear();
        if let Err(e) = self.route(&message, &mut targets) {
            self.route_buffer = targets;
            return Err(e);
        }
        let returned = |code: u16, text: &str| Error::Unroutable {
            reply_code: code,
            reply_text: text.into(),
            exchange: message.exchange.to_string(),
            routing_key: message.routing_key.to_string(),
        };
        let mut result = Ok(());
        if targets.is_empty() {
            if flags.mandatory {
                result = Err(returned(312, "NO_ROUTE"));
            }
        } else if flags.immediate {
            targets.retain(|q| {
                self.queues
                    .get(q)
                    .is_some_and(|q| self.has_ready_subscriber(q))
            });
            if targets.is_empty() {
                result = Err(returned(313, "NO_CONSUMERS"));
            }
        }
        if result.is_ok() && !targets.is_empty() {
            self.enqueue(&targets, message);
        }
        self.route_buffer = targets;
        result
    }

    /// The queues a message reaches; [`Error::NotFound`] for a missing exchange.
    fn route(&self, message: &Published, targets: &mut Vec<Arc<str>>) -> Result<()> {
        let exchange = &*message.exchange;
        if exchange.is_empty() {
            if let Some((name, _)) = self.queues.get_key_value(&*message.routing_key) {
                targets.push(name.clone());
            }
            return Ok(());
        }
        match self.exchanges.get(exchange) {
            Some(ex) => {
                ex.bindings
                    .route(&message.routing_key, message.properties.headers(), targets);
                Ok(())
            }
            None => Err(rules::no_exchange(exchange)),
        }
    }

    /// Puts a routed message in its queues and hands it to their consumers; messages pushed
    /// out by `x-max-length` are dead-lettered.
    fn enqueue(&mut self, targets: &[Arc<str>], message: Arc<Published>) {
        let epoch = self.epoch;
        let timed = message.properties.expiration().is_some();
        let mut overflow = Vec::new();
        for name in targets {
            let Some(q) = self.queues.get_mut(name) else {
                continue;
            };
            let deadline = if timed || q.limits.message_ttl.is_some() {
                q.deadline(&message, millis_since(epoch))
            } else {
                NEVER
            };
            let dropped = q.push_back(message.clone(), deadline);
            if !dropped.is_empty() {
                overflow.push((name.clone(), dropped));
            }
            if !q.subscribers.is_empty() {
                self.dispatch(name);
            }
            if deadline != NEVER {
                self.sweeper_needed = true;
                if self.sweeper_wake.is_none_or(|wake| deadline < wake) {
                    self.sweeper.notify_one();
                }
            }
        }
        for (queue, dropped) in overflow {
            self.dead_letter(&queue, dropped, "maxlen");
        }
    }

    fn has_ready_subscriber(&self, queue: &Queue) -> bool {
        queue.subscribers.iter().any(|s| {
            s.has_credit()
                && self.channels.get(&s.channel).is_some_and(|c| {
                    c.flow
                        && (s.no_ack
                            || c.channel_prefetch == 0
                            || c.unacked.len() < usize::from(c.channel_prefetch))
                })
        })
    }

    pub(super) fn get(
        &mut self,
        channel: u64,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<Delivery>> {
        let epoch = self.epoch;
        let q = self.usable_queue(channel, queue)?;
        let expired = if q.may_expire() || q.limits.expires.is_some() {
            let now = millis_since(epoch);
            q.last_used = now;
            q.expire(now)
        } else {
            Vec::new()
        };
        if !expired.is_empty() {
            let name = q.name.clone();
            self.dead_letter(&name, expired, "expired");
            return self.get(channel, queue, no_ack);
        }
        let Some(ready) = q.pop() else {
            return Ok(None);
        };
        let queue_name = q.name.clone();
        let ch = self.channel(channel)?;
        let tag = ch.next_tag;
        ch.next_tag += 1;
        if !no_ack {
            ch.unacked.insert(
                tag,
                Unacked {
                    queue: queue_name,
                    message: ready.message.clone(),
                    consumer: None,
                    deadline: ready.deadline,
                },
            );
        }
        Ok(Some(Delivery {
            message: ready.message,
            delivery_tag: tag,
            redelivered: ready.redelivered,
            consumer_tag: None,
        }))
    }

    pub(super) fn consume(
        &mut self,
        channel: u64,
        queue: &str,
        tag: &str,
        no_ack: bool,
        exclusive: bool,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let q = self.usable_queue(channel, queue)?;
        rules::consumer_admission(queue, exclusive, q.subscribers.iter().map(|s| s.exclusive))?;
        let queue_name = q.name.clone();
        let ch = self.channel(channel)?;
        let tag: Arc<str> = if tag.is_empty() {
            ch.consumer_tags += 1;
            format!("amq.ctag-{channel}-{}", ch.consumer_tags).into()
        } else {
            tag.into()
        };
        let prefetch = ch.consumer_prefetch;
        let duplicate = self.queues.values().any(|q| {
            q.subscribers
                .iter()
                .any(|s| s.channel == channel && s.tag == tag)
        });
        if duplicate {
            return Err(rules::reused_tag(&tag));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let q = self.queues.get_mut(&queue_name).ok_or_else(closed)?;
        q.subscribers.push(Subscriber {
            tag: tag.clone(),
            channel,
            no_ack,
            exclusive,
            prefetch,
            unacked: 0,
            tx,
        });
        q.had_subscriber = true;
        q.last_used = self
            .epoch
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        self.dispatch(&queue_name);
        Ok((tag, rx))
    }

    pub(super) fn cancel(&mut self, channel: u64, tag: &str) -> Result<()> {
        self.connection_of(channel)?;
        let queue = self
            .queues
            .values()
            .find(|q| {
                q.subscribers
                    .iter()
                    .any(|s| s.channel == channel && &*s.tag == tag)
            })
            .map(|q| q.name.clone());
        if let Some(queue) = queue {
            self.remove_subscriber(&queue, channel, tag);
        }
        Ok(())
    }

    /// Removes a consumer; an auto-delete queue goes with its last consumer.
    fn remove_subscriber(&mut self, queue: &str, channel: u64, tag: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.subscribers
            .retain(|s| !(s.channel == channel && &*s.tag == tag));
        q.last_used = self
            .epoch
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        if q.subscribers.is_empty() && q.had_subscriber && q.spec.auto_delete {
            self.remove_queue(queue);
        } else {
            self.dispatch(queue);
        }
    }

    pub(super) fn ack(&mut self, channel: u64, tag: u64, multiple: bool) -> Result<()> {
        let ch = self.channel(channel)?;
        let channel_limited = ch.channel_prefetch != 0;
        if !multiple {
            // The common case: one delivery, no allocation.
            let unacked = ch
                .unacked
                .remove(tag)
                .ok_or_else(|| rules::unknown_tag(tag))?;
            if channel_limited {
                self.release_credit(channel, &unacked);
                self.dispatch_channel(channel);
            } else if self.release_credit(channel, &unacked) {
                self.dispatch(&unacked.queue);
            }
            return Ok(());
        }
        let done = ch.unacked.remove_through(tag);
        let mut touched: Vec<Arc<str>> = Vec::new();
        for unacked in done {
            if self.release_credit(channel, &unacked) && !touched.contains(&unacked.queue) {
                touched.push(unacked.queue);
            }
        }
        if channel_limited {
            self.dispatch_channel(channel);
        } else {
            for queue in touched {
                self.dispatch(&queue);
            }
        }
        Ok(())
    }

    pub(super) fn reject(&mut self, channel: u64, tag: u64, requeue: bool) -> Result<()> {
        let ch = self.channel(channel)?;
        let channel_limited = ch.channel_prefetch != 0;
        let unacked = ch
            .unacked
            .remove(tag)
            .ok_or_else(|| rules::unknown_tag(tag))?;
        self.release_credit(channel, &unacked);
        if let Some(q) = self.queues.get_mut(&unacked.queue) {
            if requeue {
                q.push_front(unacked.message, unacked.deadline, true);
            } else {
                let queue = q.name.clone();
                self.dead_letter(&queue, vec![unacked.message], "rejected");
            }
        }
        if channel_limited {
            self.dispatch_channel(channel);
        } else {
            self.dispatch(&unacked.queue);
        }
        Ok(())
    }

    /// Gives the consumer of a settled delivery its credit back; true when the consumer is
    /// bounded by a prefetch (so its queue may now have a message for it).
    fn release_credit(&mut self, channel: u64, unacked: &Unacked) -> bool {
        let Some(tag) = &unacked.consumer else {
            return false;
        };
        let Some(q) = self.queues.get_mut(&unacked.queue) else {
            return false;
        };
        match q
            .subscribers
            .iter_mut()
            .find(|s| s.channel == channel && (Arc::ptr_eq(&s.tag, tag) || s.tag == *tag))
        {
            Some(s) => {
                s.unacked = s.unacked.saturating_sub(1);
                s.prefetch != 0
            }
            None => false,
        }
    }

    pub(super) fn qos(
        &mut self,
        channel: u64,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) -> Result<()> {
        rules::prefetch_size(prefetch_size)?;
        let ch = self.channel(channel)?;
        if global {
            ch.channel_prefetch = prefetch_count;
        } else {
            ch.consumer_prefetch = prefetch_count;
        }
        self.dispatch_channel(channel);
        Ok(())
    }

    pub(super) fn flow(&mut self, channel: u64, active: bool) -> Result<()> {
        self.channel(channel)?.flow = active;
        if active {
            self.dispatch_channel(channel);
        }
        Ok(())
    }

    fn dispatch_channel(&mut self, channel: u64) {
        let queues: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| q.subscribers.iter().any(|s| s.channel == channel))
            .map(|q| q.name.clone())
            .collect();
        for queue in queues {
            self.dispatch(&queue);
        }
    }

    pub(super) fn purge(&mut self, channel: u64, queue: &str) -> Result<u32> {
        Ok(self.usable_queue(channel, queue)?.purge() as u32)
    }

    /// Hands waiting messages to consumers with credit, round robin.
    fn dispatch(&mut self, queue: &str) {
        let epoch = self.epoch;
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        // Reading the clock costs more than the rest of a delivery: only when it matters.
        let expired = if q.may_expire() {
            q.expire(millis_since(epoch))
        } else {
            Vec::new()
        };
        let mut dead: Vec<usize> = Vec::new();
        let mut idle = 0;
        while q.len() > 0 && idle < q.subscribers.len() {
            let i = q.next_subscriber % q.subscribers.len();
            q.next_subscriber = q.next_subscriber.wrapping_add(1);
            let (channel, no_ack, has_credit) = {
                let s = &q.subscribers[i];
                (s.channel, s.no_ack, s.has_credit())
            };
            let Some(ch) = self.channels.get_mut(&channel) else {
                idle += 1;
                continue;
            };
            let channel_full = !no_ack
                && ch.channel_prefetch != 0
                && ch.unacked.len() >= usize::from(ch.channel_prefetch);
            if dead.contains(&i) || !ch.flow || !has_credit || channel_full {
                idle += 1;
                continue;
            }
            idle = 0;
            let Some(ready) = q.pop() else { break };
            let tag = ch.next_tag;
            ch.next_tag += 1;
            let s = &mut q.subscribers[i];
            let delivery = Delivery {
                message: ready.message.clone(),
                delivery_tag: tag,
                redelivered: ready.redelivered,
                consumer_tag: Some(s.tag.clone()),
            };
            if s.tx.send(Ok(delivery)).is_err() {
                // The consumer's receiver is gone: take the message back (it was never
                // delivered), drop the consumer.
                q.push_front(ready.message, ready.deadline, ready.redelivered);
                dead.push(i);
                continue;
            }
            if !no_ack {
                s.unacked += 1;
                let consumer = Some(s.tag.clone());
                ch.unacked.insert(
                    tag,
                    Unacked {
                        queue: q.name.clone(),
                        message: ready.message,
                        consumer,
                        deadline: ready.deadline,
                    },
                );
            }
        }
        if !dead.is_empty() {
            let gone: Vec<(u64, Arc<str>)> = dead
                .iter()
                .map(|&i| (q.subscribers[i].channel, q.subscribers[i].tag.clone()))
                .collect();
            for (channel, tag) in gone {
                self.remove_subscriber(queue, channel, &tag);
            }
        }
        if !expired.is_empty() {
            self.dead_letter(queue, expired, "expired");
        }
    }

    /// A broker restart: every connection is closed (unacknowledged messages requeued), and
    /// only durable exchanges, durable queues and their persistent messages remain.
    pub(super) fn restart(&mut self) {
        let connections: Vec<u64> = self.connections.iter().copied().collect();
        for connection in connections {
            self.close_connection(connection);
        }
        self.exchanges.retain(|_, e| e.spec.durable);
        let transient: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| !q.spec.durable)
            .map(|q| q.name.clone())
            .collect();
        for name in transient {
            self.remove_queue(&name);
        }
        for q in self.queues.values_mut() {
            q.retain(|r| r.message.properties.delivery_mode() == Some(DeliveryMode::Persistent));
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn info(queue: &Queue) -> QueueInfo {
    QueueInfo {
        name: queue.name.to_string(),
        message_count: queue.len() as u32,
        consumer_count: queue.subscribers.len() as u32,
    }
}
