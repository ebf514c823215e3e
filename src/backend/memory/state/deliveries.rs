//! Publishing, routing, `get`, consumers and settling in the memory broker; the channel
//! semantics (tags, windows, round robin) are the shared layer's.

use std::sync::Arc;

use super::{millis_since, Held, QueueSource, State};
use crate::backend::embedded::{Settlement, TxHeld};
use crate::backend::memory::queue::NEVER;
use crate::backend::rules;
use crate::backend::{Delivery, DeliveryStream, PublishFlags, Published, Replenish};
use crate::error::{Error, Result};

impl State {
    pub(in crate::backend::memory) fn publish(
        &mut self,
        channel: u64,
        message: Arc<Published>,
        flags: PublishFlags,
    ) -> Result<()> {
        // channel.flow stops deliveries to the client, not its publishing.
        self.layer.connection_of(channel)?;
        let mut targets = std::mem::take(&mut self.route_buffer);
        targets.clear();
        if let Err(e) = self.route(&message, &mut targets, true) {
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
            targets.retain(|q| self.layer.has_ready_consumer(q));
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

    /// Whether the channel is open (what `tx.select` checks).
    pub(in crate::backend::memory) fn check_channel(&self, channel: u64) -> Result<()> {
        self.layer.connection_of(channel).map(|_| ())
    }

    /// What a transactional channel checks of a publish when it holds it: its exchange exists
    /// and takes publishers.
    pub(in crate::backend::memory) fn check_publishable(
        &self,
        channel: u64,
        message: &Published,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        if message.exchange.is_empty() {
            return Ok(());
        }
        match self.exchanges.get(&*message.exchange) {
            Some(ex) => rules::publishable(&message.exchange, ex.spec.internal),
            None => Err(rules::no_exchange(&message.exchange)),
        }
    }

    /// The outstanding deliveries a settlement of `tag` covers (for a transaction to hold).
    pub(in crate::backend::memory) fn outstanding(
        &self,
        channel: u64,
        tag: u64,
        multiple: bool,
    ) -> Result<Vec<u64>> {
        self.layer.outstanding(channel, tag, multiple)
    }

    /// Applies what a transaction held, in order: the mandatory messages no queue took come
    /// back; a message whose exchange went meanwhile reaches nothing.
    pub(in crate::backend::memory) fn apply(
        &mut self,
        channel: u64,
        held: Vec<TxHeld>,
    ) -> Result<Vec<(Arc<Published>, Error)>> {
        let mut returned = Vec::new();
        for op in held {
            match op {
                TxHeld::Publish(message, flags) => {
                    match self.publish(channel, message.clone(), flags) {
                        Ok(()) | Err(Error::NotFound(_)) => {}
                        Err(e @ Error::Unroutable { .. }) => returned.push((message, e)),
                        Err(e) => return Err(e),
                    }
                }
                TxHeld::Settle(tag, Settlement::Ack) => self.ack(channel, tag, false)?,
                TxHeld::Settle(tag, Settlement::Reject { requeue }) => {
                    self.reject(channel, tag, requeue)?
                }
            }
        }
        Ok(returned)
    }

    /// The queues a message reaches; [`Error::NotFound`] for a missing exchange, and for a
    /// client's publish (`from_client`; dead-lettering may go to one) to an internal one,
    /// [`Error::AccessRefused`].
    pub(super) fn route(
        &self,
        message: &Published,
        targets: &mut Vec<Arc<str>>,
        from_client: bool,
    ) -> Result<()> {
        let exchange = &*message.exchange;
        if exchange.is_empty() {
            if let Some((name, _)) = self.queues.get_key_value(&*message.routing_key) {
                targets.push(name.clone());
            }
            return Ok(());
        }
        match self.exchanges.get(exchange) {
            Some(ex) => {
                if from_client {
                    rules::publishable(exchange, ex.spec.internal)?;
                }
                ex.bindings.route(
                    &message.routing_key,
                    message.properties.headers(),
                    |name| self.exchanges.get(name).map(|x| &x.bindings),
                    targets,
                );
                Ok(())
            }
            None => Err(rules::no_exchange(exchange)),
        }
    }

    /// Puts a routed message in its queues and hands it to their consumers; messages pushed
    /// out by `x-max-length` are dead-lettered.
    pub(super) fn enqueue(&mut self, targets: &[Arc<str>], message: Arc<Published>) {
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
            if q.may_expire() {
                self.dispatch(name);
            } else if self
                .layer
                .hand_out(name, &mut QueueSource { queue: q })
                .gone
            {
                if let Some((queue, left)) = self.layer.remove_gone(name) {
                    self.consumer_removed(&queue, left);
                }
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

    pub(in crate::backend::memory) fn get(
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
        let name = q.name.clone();
        let held = (!no_ack).then(|| Held::of(&ready));
        let tag = match self.layer.record_get(channel, &name, held) {
            Ok(tag) => tag,
            Err(e) => {
                if let Some(q) = self.queues.get_mut(&name) {
                    q.put_back(ready);
                }
                return Err(e);
            }
        };
        Ok(Some(Delivery {
            message: ready.message,
            delivery_tag: tag,
            redelivered: ready.redelivered,
            consumer_tag: None,
        }))
    }

    pub(in crate::backend::memory) fn consume(
        &mut self,
        channel: u64,
        queue: &str,
        tag: &str,
        (no_ack, exclusive, priority): (bool, bool, i32),
        replenish: Replenish,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let name = self.usable_queue(channel, queue)?.name.clone();
        let current = self.layer.consumers_of(&name).iter().map(|s| s.exclusive);
        rules::consumer_admission(queue, exclusive, current)?;
        let tag = self.layer.consumer_tag(channel, tag)?;
        let rx = self.layer.subscribe(
            channel,
            &name,
            tag.clone(),
            (no_ack, exclusive, priority),
            replenish,
        )?;
        let now = self.now();
        if let Some(q) = self.queues.get_mut(&name) {
            q.had_subscriber = true;
            q.last_used = now;
        }
        self.dispatch(&name);
        Ok((tag, rx))
    }

    pub(in crate::backend::memory) fn cancel(&mut self, channel: u64, tag: &str) -> Result<()> {
        if let Some((queue, left)) = self.layer.unsubscribe(channel, tag)? {
            self.consumer_removed(&queue, left);
        }
        Ok(())
    }

    pub(in crate::backend::memory) fn ack(
        &mut self,
        channel: u64,
        tag: u64,
        multiple: bool,
    ) -> Result<()> {
        let mut refill: Vec<Arc<str>> = Vec::new();
        self.layer.settle(channel, tag, multiple, drop, |q| {
            if !refill.contains(q) {
                refill.push(q.clone());
            }
        })?;
        for queue in refill {
            self.dispatch(&queue);
        }
        Ok(())
    }

    pub(in crate::backend::memory) fn reject(
        &mut self,
        channel: u64,
        tag: u64,
        requeue: bool,
    ) -> Result<()> {
        let mut settled = None;
        let mut refill: Vec<Arc<str>> = Vec::new();
        self.layer.settle(
            channel,
            tag,
            false,
            |u| settled = Some(u),
            |q| {
                if !refill.contains(q) {
                    refill.push(q.clone());
                }
            },
        )?;
        if let Some(unacked) = settled {
            if let Some(q) = self.queues.get_mut(&unacked.queue) {
                if requeue {
                    q.put_back(unacked.item.requeued());
                } else {
                    let queue = q.name.clone();
                    self.dead_letter(&queue, vec![unacked.item.message], "rejected");
                }
            }
            if !refill.contains(&unacked.queue) {
                refill.push(unacked.queue);
            }
        }
        for queue in refill {
            self.dispatch(&queue);
        }
        Ok(())
    }

    pub(in crate::backend::memory) fn qos(
        &mut self,
        channel: u64,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) -> Result<()> {
        self.layer
            .qos(channel, prefetch_size, prefetch_count, global)?;
        for queue in self.layer.queues_of_channel(channel) {
            self.dispatch(&queue);
        }
        Ok(())
    }

    pub(in crate::backend::memory) fn flow(&mut self, channel: u64, active: bool) -> Result<()> {
        self.layer.flow(channel, active)?;
        if active {
            for queue in self.layer.queues_of_channel(channel) {
                self.dispatch(&queue);
            }
        }
        Ok(())
    }
}
