//! The state of one embedded broker: its exchanges and queues (storage), and the shared
//! channel layer (`backend::embedded`) for connections, channels and consumers.
//!
//! All of it sits behind one mutex: each operation is short and needs a consistent view across
//! exchanges, queues and channels (exclusive owners, auto-delete, redelivery), as a
//! single-threaded broker would give.
//!
//! - `entities.rs`: exchanges, queues, bindings;
//! - `deliveries.rs`: publishing, routing, `get`, consumers, settling;
//! - `dead_letter.rs`: expiry and dead-lettering.

mod dead_letter;
mod deliveries;
mod entities;

use std::sync::Arc;

use parking_lot::Condvar;
use std::time::Instant;

// Names and ids chosen by the application, not hostile input: a fast hash matters more here
// (3 to 5 lookups per message) than flooding resistance.
use rustc_hash::FxHashMap as HashMap;

use super::queue::{Queue, Ready};
use crate::backend::embedded::{ChannelLayer, Handing, Refill, Source};
use crate::backend::{Delivery, Published, QueueInfo};
use crate::entity::{DeliveryMode, ExchangeSpec, ExchangeType};
use crate::routing::Bindings;

#[derive(Debug)]
struct Exchange {
    spec: ExchangeSpec,
    bindings: Bindings,
}

/// What the channel layer keeps of a delivered message until it is settled.
#[derive(Debug)]
pub(super) struct Held {
    message: Arc<Published>,
    /// Its expiry, kept if it is requeued.
    deadline: u64,
    /// Its place in its queue, where a requeue puts it back.
    seq: u64,
}

impl Held {
    fn of(ready: &Ready) -> Held {
        Held {
            message: ready.message.clone(),
            deadline: ready.deadline,
            seq: ready.seq,
        }
    }

    /// Back to its queue, marked redelivered.
    fn requeued(self) -> Ready {
        Ready {
            message: self.message,
            redelivered: true,
            deadline: self.deadline,
            seq: self.seq,
        }
    }
}

#[derive(Debug)]
pub(super) struct State {
    exchanges: HashMap<Arc<str>, Exchange>,
    queues: HashMap<Arc<str>, Queue>,
    layer: ChannelLayer<u64, Held>,
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

/// A queue's ready messages, handed to its consumers as they come.
struct QueueSource<'a> {
    queue: &'a mut Queue,
}

impl Source<u64, Held> for QueueSource<'_> {
    type Message = Ready;

    fn next(&mut self) -> Option<Ready> {
        self.queue.pop()
    }

    fn deliver(&mut self, to: Handing<'_, u64>, ready: Ready) -> Result<Option<Held>, Ready> {
        let delivery = Delivery {
            message: ready.message.clone(),
            delivery_tag: to.delivery_tag,
            redelivered: ready.redelivered,
            consumer_tag: Some(to.consumer.tag.clone()),
        };
        to.consumer.feed.reserve();
        if !to.consumer.feed.send_reserved(delivery) {
            to.consumer.feed.unreserve();
            return Err(ready);
        }
        Ok((!to.consumer.no_ack).then(|| Held::of(&ready)))
    }

    fn put_back(&mut self, ready: Ready) {
        self.queue.put_back(ready);
    }
}

impl State {
    pub(super) fn new() -> Self {
        let mut state = State {
            exchanges: HashMap::default(),
            queues: HashMap::default(),
            layer: ChannelLayer::new(Refill::Each),
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
        self.layer.add_connection(id);
        id
    }

    pub(super) fn close_connection(&mut self, connection: u64) {
        if !self.layer.has_connection(connection) {
            return;
        }
        for channel in self.layer.channels_of(connection) {
            self.close_channel(channel);
        }
        self.layer.remove_connection(connection);
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

    pub(super) fn open_channel(&mut self, connection: u64) -> crate::Result<u64> {
        self.layer.open_channel(connection)
    }

    /// Closes a channel: its consumers are cancelled and its unacknowledged deliveries go back
    /// to their queues, in order, marked redelivered.
    pub(super) fn close_channel(&mut self, channel: u64) {
        let Some(closed) = self.layer.close_channel(channel) else {
            return;
        };
        let mut touched: Vec<Arc<str>> = Vec::new();
        for unacked in closed.unacked {
            if let Some(q) = self.queues.get_mut(&unacked.queue) {
                q.put_back(unacked.item.requeued());
                if !touched.contains(&unacked.queue) {
                    touched.push(unacked.queue);
                }
            }
        }
        for (queue, _, left) in closed.consumers {
            self.consumer_removed(&queue, left);
        }
        for queue in touched {
            self.dispatch(&queue);
        }
    }

    /// A consumer of `queue` went and `left` remain: an auto-delete queue goes with its last
    /// consumer; otherwise the others may take what it left.
    fn consumer_removed(&mut self, queue: &str, left: usize) {
        let now = self.now();
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.last_used = now;
        if left == 0 && q.had_subscriber && q.spec.auto_delete {
            self.remove_queue(queue);
        } else {
            self.dispatch(queue);
        }
    }

    /// A consumer took half its window back: hands it (and the others) more.
    pub(in crate::backend::memory) fn replenish(&mut self, queue: &str) {
        self.dispatch(queue);
    }

    /// Hands waiting messages to consumers with credit, round robin (expiring the heads of the
    /// queue first).
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
        if q.len() > 0
            && self
                .layer
                .hand_out(queue, &mut QueueSource { queue: q })
                .gone
        {
            if let Some((name, left)) = self.layer.remove_gone(queue) {
                self.consumer_removed(&name, left);
            }
        }
        if !expired.is_empty() {
            self.dead_letter(queue, expired, "expired");
        }
    }

    /// A broker restart: every connection is closed (unacknowledged messages requeued), and
    /// only durable exchanges, durable queues and their persistent messages remain.
    pub(super) fn restart(&mut self) {
        for connection in self.layer.connections() {
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

    /// Every queue with its ready, unacknowledged and consumer counts, by name.
    #[cfg(feature = "serve")]
    pub(crate) fn queue_stats(&self) -> Vec<crate::backend::QueueStats> {
        let unacked = self.layer.unacked_by_queue();
        let mut stats: Vec<_> = self
            .queues
            .values()
            .map(|queue| crate::backend::QueueStats {
                name: queue.name.to_string(),
                ready: queue.len() as u64,
                unacked: unacked.get(&queue.name).copied().unwrap_or(0),
                consumers: self.layer.consumers_of(&queue.name).len() as u64,
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Every exchange, queue (with the counts of `queue_stats`) and binding.
    #[cfg(feature = "serve")]
    pub(crate) fn topology(&self) -> crate::backend::Topology {
        let queues = self
            .queue_stats()
            .iter()
            .filter_map(|stats| {
                let queue = self.queues.get(stats.name.as_str())?;
                let spec = queue.spec.clone();
                Some(crate::backend::QueueEntry::new(
                    spec,
                    stats,
                    queue.owner.is_some(),
                ))
            })
            .collect();
        crate::backend::Topology::new(
            self.exchanges.values().map(|e| e.spec.clone()).collect(),
            queues,
            self.exchanges
                .iter()
                .map(|(name, e)| (&**name, &e.bindings)),
        )
    }

    fn info(&self, queue: &Queue) -> QueueInfo {
        QueueInfo {
            name: queue.name.to_string(),
            message_count: queue.len() as u32,
            consumer_count: self.layer.consumers_of(&queue.name).len() as u32,
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
