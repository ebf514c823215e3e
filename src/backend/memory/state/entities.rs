//! Exchanges, queues and bindings of the memory broker.

use std::sync::Arc;

use super::{Exchange, State};
use crate::backend::arguments::limits;
use crate::backend::memory::queue::Queue;
use crate::backend::rules;
use crate::backend::QueueInfo;
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::routing::Bindings;
use crate::table::FieldTable;

impl State {
    /// The queue, if this channel's connection may use it.
    pub(super) fn usable_queue(&mut self, channel: u64, name: &str) -> Result<&mut Queue> {
        let connection = self.layer.connection_of(channel)?;
        let queue = self
            .queues
            .get_mut(name)
            .ok_or_else(|| rules::no_queue(name))?;
        rules::check_owner(name, queue.owner, connection)?;
        Ok(queue)
    }

    pub(in crate::backend::memory) fn declare_exchange(
        &mut self,
        channel: u64,
        spec: &ExchangeSpec,
        passive: bool,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
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

    pub(in crate::backend::memory) fn delete_exchange(
        &mut self,
        channel: u64,
        name: &str,
        if_unused: bool,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        let bound = self.exchanges.get(name).map(|e| !e.bindings.is_empty());
        rules::exchange_deletion(name, if_unused, bound)?;
        self.exchanges.remove(name);
        Ok(())
    }

    pub(in crate::backend::memory) fn declare_queue(
        &mut self,
        channel: u64,
        spec: &QueueSpec,
        passive: bool,
    ) -> Result<QueueInfo> {
        let connection = self.layer.connection_of(channel)?;
        let id = self.id();
        let spec = rules::server_named(spec, passive, || format!("{connection}-{id}"))?;
        let existing = self
            .queues
            .get(spec.name.as_str())
            .map(|q| (&q.spec, q.owner));
        if !rules::queue_declaration(&spec, passive, existing, connection)? {
            let now = self.now();
            let name: Arc<str> = spec.name.as_str().into();
            if let Some(queue) = self.queues.get_mut(&name) {
                queue.last_used = now;
            }
            self.expire_queue(&name, now);
            return match self.queues.get(&name) {
                Some(q) => Ok(self.info(q)),
                None => Err(rules::no_queue(&name)),
            };
        }
        let limits = limits(&spec, "the memory broker")?;
        if limits.message_ttl.is_some() || limits.expires.is_some() {
            self.sweeper_needed = true;
            self.sweeper.notify_one();
        }
        let name: Arc<str> = spec.name.as_str().into();
        let owner = spec.exclusive.then_some(connection);
        let now = self.now();
        let queue = Queue::new(name.clone(), spec, owner, limits, now);
        let info = self.info(&queue);
        self.queues.insert(name, queue);
        Ok(info)
    }

    pub(in crate::backend::memory) fn delete_queue(
        &mut self,
        channel: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32> {
        let consumers = self.layer.consumers_of(name).len();
        if !self.queues.contains_key(name) {
            // Deleted already: RabbitMQ answers delete-ok with no message.
            self.layer.connection_of(channel)?;
            return Ok(0);
        }
        let queue = self.usable_queue(channel, name)?;
        rules::queue_deletion(name, if_unused, if_empty, consumers, queue.len())?;
        let count = queue.len() as u32;
        self.remove_queue(name);
        Ok(count)
    }

    /// Deletes a queue, its bindings, and auto-delete exchanges left without bindings.
    /// Its consumers' delivery streams end.
    pub(super) fn remove_queue(&mut self, name: &str) {
        if self.queues.remove(name).is_none() {
            return;
        }
        self.layer.queue_deleted(name);
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

    pub(in crate::backend::memory) fn bind(
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

    pub(in crate::backend::memory) fn unbind(
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

    pub(in crate::backend::memory) fn purge(&mut self, channel: u64, queue: &str) -> Result<u32> {
        Ok(self.usable_queue(channel, queue)?.purge() as u32)
    }
}
