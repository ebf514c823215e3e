//! Exchanges, queues and bindings of the memory broker.

use std::sync::Arc;

use super::{Exchange, State};
use crate::backend::arguments::limits;
use crate::backend::memory::queue::Queue;
use crate::backend::rules;
use crate::backend::QueueInfo;
use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::Result;
use crate::routing::{Bindings, Destination};
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
        self.remove_exchange(name);
        Ok(())
    }

    /// Deletes an exchange and every binding to it; the auto-delete exchanges that this
    /// leaves without bindings go too.
    fn remove_exchange(&mut self, name: &str) {
        if self.exchanges.remove(name).is_some() {
            self.remove_destination(&Destination::Exchange(name.into()));
        }
    }

    /// Removes every binding to `destination` (a deleted queue or exchange); the auto-delete
    /// exchanges left without bindings are deleted, and so on.
    fn remove_destination(&mut self, destination: &Destination) {
        let mut emptied = Vec::new();
        for (exchange_name, exchange) in &mut self.exchanges {
            if exchange.bindings.remove_destination(destination)
                && exchange.spec.auto_delete
                && exchange.bindings.is_empty()
            {
                emptied.push(exchange_name.clone());
            }
        }
        for exchange in emptied {
            self.remove_exchange(&exchange);
        }
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
        self.remove_destination(&Destination::Queue(name.into()));
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
        self.exchange_for_binding(exchange)?.bindings.bind(
            &Destination::Queue(queue_name),
            key,
            arguments,
        );
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
        self.unbind_from(exchange, &Destination::Queue(queue.into()), key, arguments)
    }

    /// Removes a binding of `source`; an auto-delete source left without bindings goes.
    fn unbind_from(
        &mut self,
        source: &str,
        destination: &Destination,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let ex = self.exchange_for_binding(source)?;
        if ex.bindings.unbind(destination, key, arguments)
            && ex.spec.auto_delete
            && ex.bindings.is_empty()
        {
            self.remove_exchange(source);
        }
        Ok(())
    }

    /// `exchange.bind`: what `source` routes with a matching key (or headers) goes on to
    /// `destination`. 404 if either is missing, 403 for the default exchange.
    pub(in crate::backend::memory) fn bind_exchange(
        &mut self,
        channel: u64,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        rules::bindable(destination)?;
        let destination = match self.exchanges.get_key_value(destination) {
            Some((name, _)) => Destination::Exchange(name.clone()),
            None => return Err(rules::no_exchange(destination)),
        };
        self.exchange_for_binding(source)?
            .bindings
            .bind(&destination, key, arguments);
        Ok(())
    }

    /// `exchange.unbind`: a binding that does not exist is not an error; 404 if either
    /// exchange is missing.
    pub(in crate::backend::memory) fn unbind_exchange(
        &mut self,
        channel: u64,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        rules::bindable(destination)?;
        if !self.exchanges.contains_key(destination) {
            return Err(rules::no_exchange(destination));
        }
        self.unbind_from(
            source,
            &Destination::Exchange(destination.into()),
            key,
            arguments,
        )
    }

    pub(in crate::backend::memory) fn purge(&mut self, channel: u64, queue: &str) -> Result<u32> {
        Ok(self.usable_queue(channel, queue)?.purge() as u32)
    }
}
