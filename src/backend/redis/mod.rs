//! The Redis broker behind `redis://`, `rediss://`, `redis+socket://` and `sentinel://`, in
//! kombu's format, so that kombu and Celery on the same Redis read what carrot writes and
//! the other way round.
//!
//! # Layout
//! - `link.rs`: connections (the shared multiplexed one, one per waiting consumer), Sentinel,
//!   recovery under the retry policy.
//! - `envelope.rs`: kombu's JSON envelope, byte for byte.
//! - `scripts.rs`: the Lua scripts that make routing, `basic.get` and restoring atomic.
//! - `holding.rs`: consumers' takes: messages moved into a holding list of the consumer's,
//!   then recorded, with plain commands (scripts cost Redis several times more), and the
//!   holding lists of dead consumers given back.
//! - `entities.rs`: exchanges, queues and bindings (kombu's binding sets, carrot's records).
//! - `channel.rs`: the AMQP channel: publishing, deliveries, acknowledgements, qos, flow,
//!   transactions; `consumer.rs` each consumer's loop.
//! - `settle.rs`: acknowledgements and requeues in order, and the restore of deliveries whose
//!   consumer is gone (kombu's visibility timeout).
//!
//! # What is kept where
//! Queues are kombu's lists (LPUSH to publish, taken from the right; a priority step other
//! than 0 has its own list, `queue\x06\x16step`, and lower steps are served first, as kombu
//! serves them); bindings are kombu's sets `_kombu.binding.<exchange>`; deliveries are recorded
//! as kombu records them (`unacked`, `unacked_index`). carrot adds what kombu keeps per process
//! only, so that every process sees the same: declarations (`_carrot.exchange`,
//! `_carrot.queue`), consumer leases (`_carrot.consumers.<queue>`), the list each delivery
//! came from (`_carrot.unacked_queue`), and consumers' holding lists
//! (`_carrot.holding.<consumer>.<queue>`, leased in the sorted set `_carrot.holding`).

mod channel;
mod consumer;
mod entities;
mod envelope;
mod fanout;
mod holding;
mod link;
mod ordered;
mod outbox;
mod scripts;
mod settle;

use std::sync::{Arc, Weak};

use async_trait::async_trait;

use crate::backend::{Channel, Closings, Transport};
use crate::error::Result;
use crate::options::ConnectionOptions;
use crate::status::StatusHub;
use crate::url::{BrokerUrl, RedisSettings};

use channel::RedisChannel;
use link::Link;
use outbox::Outbox;
use settle::Settler;

/// The names of the keys, with the `global_keyprefix`.
#[derive(Debug)]
pub(crate) struct Keys {
    prefix: String,
    sep: String,
    steps: Vec<u8>,
    db: u32,
    fanout_prefix: bool,
    fanout_patterns: bool,
    pub(crate) unacked: String,
    pub(crate) unacked_index: String,
    pub(crate) unacked_mutex: String,
    pub(crate) exchanges: String,
    pub(crate) queues: String,
    /// The prefix of the queues' consumer lease sets (`<this>.<queue>`).
    pub(crate) consumers: String,
    pub(crate) taken_from: String,
    /// The registry of holding lists (scored with their leases' ends), and the prefix of
    /// their names (`<this>.<consumer>.<queue>`).
    pub(crate) holding: String,
}

impl Keys {
    fn new(s: &RedisSettings) -> Self {
        let p = &s.global_keyprefix;
        Keys {
            prefix: p.clone(),
            sep: s.sep.clone(),
            steps: s.priority_steps.clone(),
            db: s.db,
            fanout_prefix: s.fanout_prefix,
            fanout_patterns: s.fanout_patterns,
            unacked: format!("{p}{}", s.unacked_key),
            unacked_index: format!("{p}{}", s.unacked_index_key),
            unacked_mutex: format!("{p}{}", s.unacked_mutex_key),
            exchanges: format!("{p}_carrot.exchange"),
            queues: format!("{p}_carrot.queue"),
            consumers: format!("{p}_carrot.consumers"),
            taken_from: format!("{p}_carrot.unacked_queue"),
            holding: format!("{p}_carrot.holding"),
        }
    }

    /// kombu's priority step of a priority: the highest step at most `priority`.
    fn step(&self, priority: u8) -> u8 {
        let priority = priority.min(9);
        self.steps
            .iter()
            .copied()
            .filter(|s| *s <= priority)
            .max()
            .unwrap_or(0)
    }

    /// What follows the queue's name in the key of a priority's list (`""` for step 0).
    pub(crate) fn suffix(&self, priority: u8) -> String {
        match self.step(priority) {
            0 => String::new(),
            step => format!("{}{step}", self.sep),
        }
    }

    /// The lists of a queue, in the order they are served (step 0 first, as kombu's BRPOP).
    pub(crate) fn lists(&self, queue: &str) -> Vec<String> {
        self.steps
            .iter()
            .map(|step| match step {
                0 => format!("{}{queue}", self.prefix),
                s => format!("{}{queue}{}{s}", self.prefix, self.sep),
            })
            .collect()
    }

    /// kombu's binding set of an exchange, and its permanent twin.
    pub(crate) fn bindings(&self, exchange: &str) -> (String, String) {
        (
            format!("{}_kombu.binding.{exchange}", self.prefix),
            format!("{}_kombu.binding_permanent.{exchange}", self.prefix),
        )
    }

    /// A member of a binding set: `routing_key SEP pattern SEP queue`.
    pub(crate) fn member(&self, key: &str, pattern: &str, queue: &str) -> String {
        let sep = &self.sep;
        format!("{key}{sep}{pattern}{sep}{queue}")
    }

    /// What every fanout channel's name starts with: the key prefix, and `/{db}.` with
    /// kombu's `fanout_prefix` (Pub/Sub is not per database).
    fn fanout_head(&self) -> String {
        if self.fanout_prefix {
            format!("{}/{}.", self.prefix, self.db)
        } else {
            self.prefix.clone()
        }
    }

    /// The channel kombu subscribes to for a fanout exchange's messages with this key.
    pub(crate) fn fanout_channel(&self, exchange: &str, routing_key: &str) -> String {
        let head = self.fanout_head();
        if self.fanout_patterns && !routing_key.is_empty() {
            format!("{head}{exchange}/{routing_key}")
        } else {
            format!("{head}{exchange}")
        }
    }

    /// The pattern of every fanout channel (`PSUBSCRIBE`), the head's glob characters escaped.
    pub(crate) fn fanout_pattern(&self) -> String {
        let mut pattern = String::new();
        for c in self.fanout_head().chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// The exchange of a fanout channel (up to the first `/` with kombu's `fanout_patterns`).
    pub(crate) fn fanout_exchange<'a>(&self, channel: &'a str) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.fanout_head().as_str())?;
        if self.fanout_patterns {
            return rest.split('/').next();
        }
        Some(rest)
    }

    /// The mark that a fanout message (by its delivery tag) is on carrot's queues already.
    pub(crate) fn fanout_mark(&self, tag: &str) -> String {
        format!("{}_carrot.fanout.{tag}", self.prefix)
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn sep(&self) -> &str {
        &self.sep
    }
}

/// What the channels of one connection share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Keys,
    /// This connection's id: the owner recorded for its exclusive queues.
    pub(crate) id: String,
    pub(crate) settler: Settler,
    /// Sends the connection's messages, in order (see `outbox`).
    pub(crate) outbox: Outbox,
    /// Held while the restorer renews the consumers' leases, and while a consumer's lease
    /// ends, so that a renewal never brings back the lease of a consumer just cancelled.
    pub(crate) leases: tokio::sync::Mutex<()>,
    channels: parking_lot::Mutex<Vec<Weak<RedisChannel>>>,
    /// Set once the connection's bridge of kombu's fanout messages runs (see `fanout`).
    pub(crate) fanout: tokio::sync::OnceCell<()>,
    pub(crate) exclusive: parking_lot::Mutex<Vec<String>>,
    /// The work of channels shut by a drop (their consumers giving back their holding lists),
    /// which the connection awaits before it closes.
    pub(crate) ending: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// The runtime the connection was opened on: drops (of the blocking API, on threads of no
    /// runtime) finish their work there.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Shared {
    /// The open channels of the connection.
    pub(crate) fn channels(&self) -> Vec<Arc<RedisChannel>> {
        let mut channels = self.channels.lock();
        channels.retain(|c| c.strong_count() > 0);
        channels.iter().filter_map(Weak::upgrade).collect()
    }
}

/// A connection to Redis.
#[derive(Debug)]
pub(crate) struct RedisConnection {
    shared: Arc<Shared>,
    /// The close a drop leaves running (see `Closings`): its messages still in the outbox
    /// are sent before the connection closes.
    closings: Closings,
}

impl RedisConnection {
    /// Connects, and starts the connection's background work: settling in order, and
    /// restoring the deliveries of consumers that are gone.
    pub(crate) async fn open(
        url: &BrokerUrl,
        settings: &RedisSettings,
        options: &ConnectionOptions,
        hub: Arc<StatusHub>,
    ) -> Result<Self> {
        let link = Link::open(url, settings, options, hub).await?;
        let keys = Keys::new(settings);
        let stop = tokio_util::sync::CancellationToken::new();
        let settler = Settler::start(link.clone(), &keys, stop.clone());
        let outbox = Outbox::start(link.clone(), &keys, stop.clone());
        let shared = Arc::new(Shared {
            link,
            keys,
            id: uuid::Uuid::new_v4().to_string(),
            settler,
            outbox,
            leases: tokio::sync::Mutex::new(()),
            channels: parking_lot::Mutex::new(Vec::new()),
            fanout: tokio::sync::OnceCell::new(),
            exclusive: parking_lot::Mutex::new(Vec::new()),
            ending: parking_lot::Mutex::new(Vec::new()),
            stop,
            runtime: tokio::runtime::Handle::current(),
        });
        entities::predeclare(&shared).await?;
        settle::start_restorer(Arc::downgrade(&shared), shared.stop.clone());
        Ok(RedisConnection {
            shared,
            closings: Closings::default(),
        })
    }
}

#[async_trait]
impl Transport for RedisConnection {
    async fn channel(&self) -> Result<Arc<dyn Channel>> {
        if self.shared.link.is_closed() {
            return Err(crate::backend::rules::connection_closed());
        }
        let channel = RedisChannel::new(self.shared.clone());
        self.shared.channels.lock().push(Arc::downgrade(&channel));
        Ok(channel)
    }

    async fn close(&self) -> Result<()> {
        if self.shared.link.is_closed() {
            return Ok(());
        }
        for channel in self.shared.channels() {
            let _ = channel.close().await;
        }
        let ending = std::mem::take(&mut *self.shared.ending.lock());
        for task in ending {
            let _ = task.await;
        }
        let exclusive = std::mem::take(&mut *self.shared.exclusive.lock());
        for queue in exclusive {
            let _ = entities::delete_queue(&self.shared, &queue, false, false).await;
        }
        self.shared.outbox.flush().await;
        self.shared.settler.flush().await;
        self.shared.stop.cancel();
        self.shared.link.close();
        Ok(())
    }

    fn closings(&self) -> Closings {
        self.closings.clone()
    }
}

impl Drop for RedisConnection {
    /// What `close` does, without waiting: the channels give back their deliveries, and the
    /// connection's exclusive queues are deleted, on the connection's runtime (a drop may come
    /// on a thread of none); then its background work ends.
    fn drop(&mut self) {
        if self.shared.link.is_closed() {
            return;
        }
        let mut ending: Vec<_> = self
            .shared
            .channels()
            .iter()
            .filter_map(|channel| channel.shut())
            .collect();
        ending.append(&mut self.shared.ending.lock());
        let shared = self.shared.clone();
        let exclusive = std::mem::take(&mut *shared.exclusive.lock());
        let close = async move {
            // The consumers give back their holding lists before the connection closes.
            for task in ending {
                let _ = task.await;
            }
            for queue in exclusive {
                let _ = entities::delete_queue(&shared, &queue, false, false).await;
            }
            shared.outbox.flush().await;
            shared.settler.flush().await;
            shared.stop.cancel();
            shared.link.close();
        };
        self.shared.runtime.spawn(self.closings.track(close));
    }
}
