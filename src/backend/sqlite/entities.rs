//! Exchanges, queues and bindings in the database, with RabbitMQ's rules (the same as the
//! memory broker's: reserved `amq.` names, equivalence on redeclaration, exclusive owners,
//! auto-delete).

use rusqlite::params;

use super::broker::{now_ms, Broker, BACKEND};
use super::codec::encode_table;
use crate::backend::arguments::limits;
use crate::backend::rules;
use crate::backend::QueueInfo;
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::Result;
use crate::table::FieldTable;

impl Broker {
    /// The exchanges every AMQP broker has (durable, so they are created once).
    pub(super) fn predeclare(&mut self) -> Result<()> {
        for (name, kind) in [
            ("amq.direct", ExchangeType::Direct),
            ("amq.fanout", ExchangeType::Fanout),
            ("amq.topic", ExchangeType::Topic),
            ("amq.headers", ExchangeType::Headers),
            ("amq.match", ExchangeType::Headers),
        ] {
            self.exec(
                "INSERT OR IGNORE INTO exchanges (name, kind, durable, auto_delete, arguments)
                 VALUES (?1, ?2, 1, 0, '{}')",
                params![name, kind.as_str()],
            )?;
        }
        Ok(())
    }

    pub(super) fn declare_exchange(
        &mut self,
        channel: u64,
        spec: &ExchangeSpec,
        passive: bool,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        let existing = if spec.name.is_empty() {
            None
        } else {
            self.exchange(&spec.name)?
        };
        if !rules::exchange_declaration(spec, passive, existing.as_deref().map(|e| &e.spec))? {
            return Ok(());
        }
        self.exec(
            "INSERT INTO exchanges (name, kind, durable, auto_delete, arguments, internal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                spec.name,
                spec.kind.as_str(),
                spec.durable,
                spec.auto_delete,
                encode_table(&spec.arguments),
                spec.internal
            ],
        )?;
        self.bump()
    }

    pub(super) fn delete_exchange(
        &mut self,
        channel: u64,
        name: &str,
        if_unused: bool,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        let bound = self.exchange(name)?.map(|e| !e.bindings.is_empty());
        rules::exchange_deletion(name, if_unused, bound)?;
        self.remove_exchange(name)?;
        self.bump()
    }

    /// Deletes an exchange with its bindings and the bindings to it; the auto-delete exchanges
    /// that this leaves without bindings go too.
    fn remove_exchange(&mut self, name: &str) -> Result<()> {
        let sources: Vec<String> = self.column(
            "SELECT DISTINCT source FROM exchange_bindings WHERE destination = ?1",
            [name],
        )?;
        self.exec("DELETE FROM bindings WHERE exchange = ?1", [name])?;
        self.exec(
            "DELETE FROM exchange_bindings WHERE source = ?1 OR destination = ?1",
            [name],
        )?;
        self.exec("DELETE FROM exchanges WHERE name = ?1", [name])?;
        self.remove_if_unbound(sources)
    }

    /// Deletes those of `exchanges` that are auto-delete and have no binding left.
    fn remove_if_unbound(&mut self, exchanges: Vec<String>) -> Result<()> {
        for exchange in exchanges {
            let gone: Option<String> = self.one(
                "SELECT name FROM exchanges WHERE name = ?1 AND auto_delete
                 AND NOT EXISTS (SELECT 1 FROM bindings WHERE exchange = ?1)
                 AND NOT EXISTS (SELECT 1 FROM exchange_bindings WHERE source = ?1)",
                [&exchange],
            )?;
            if gone.is_some() {
                self.remove_exchange(&exchange)?;
            }
        }
        Ok(())
    }

    pub(super) fn declare_queue(
        &mut self,
        channel: u64,
        spec: &QueueSpec,
        passive: bool,
    ) -> Result<QueueInfo> {
        let connection = self.layer.connection_of(channel)?;
        let named = spec.name.is_empty();
        let mut spec =
            rules::server_named(spec, passive, || format!("{connection}-{:x}", now_ms()))?;
        while named && self.queue(&spec.name)?.is_some() {
            spec.name.push('x');
        }
        let existing = self.queue(&spec.name)?;
        let current = existing.as_ref().map(|q| (&q.spec, q.owner));
        if !rules::queue_declaration(&spec, passive, current, connection)? {
            if let Some(queue) = existing.filter(|q| q.limits.expires.is_some()) {
                self.touch(&queue.name)?;
            }
            return self.queue_info(&spec.name);
        }
        let limits = limits(&spec, BACKEND)?;
        let now = now_ms();
        self.exec(
            "INSERT INTO queues (name, durable, exclusive, auto_delete, arguments, owner, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                spec.name,
                spec.durable,
                spec.exclusive,
                spec.auto_delete,
                encode_table(&spec.arguments),
                spec.exclusive.then_some(connection),
                now
            ],
        )?;
        if let Some(expires) = limits.expires {
            self.expire_no_later_than(now + expires as i64);
        }
        self.bump()?;
        Ok(QueueInfo {
            name: spec.name,
            message_count: 0,
            consumer_count: 0,
        })
    }

    /// Marks a queue as used now (for `x-expires`).
    pub(super) fn touch(&mut self, queue: &str) -> Result<()> {
        let now = now_ms();
        self.exec(
            "UPDATE queues SET last_used = ?2 WHERE name = ?1",
            params![queue, now],
        )?;
        if let Some(expires) = self.queue(queue)?.and_then(|q| q.limits.expires) {
            self.expire_no_later_than(now + expires as i64);
        }
        Ok(())
    }

    /// Every queue with its ready (not expired), unacknowledged (owned by a connection) and
    /// consumer counts, by name, across every process of the file. One scan of the messages.
    #[cfg(feature = "serve")]
    pub(super) fn queue_stats(&mut self) -> Result<Vec<crate::backend::QueueStats>> {
        let now = now_ms();
        self.rows_of(
            "SELECT q.name,
                    (SELECT count(*) FROM messages m WHERE m.queue = q.name AND m.owner IS NULL
                       AND coalesce(m.expires_at, 9223372036854775807) > ?1),
                    (SELECT count(*) FROM messages m WHERE m.queue = q.name AND m.owner IS NOT NULL),
                    (SELECT count(*) FROM consumers c WHERE c.queue = q.name)
             FROM queues q ORDER BY q.name",
            [now],
            |row| {
                Ok(crate::backend::QueueStats {
                    name: row.get(0)?,
                    ready: row.get::<_, i64>(1)? as u64,
                    unacked: row.get::<_, i64>(2)? as u64,
                    consumers: row.get::<_, i64>(3)? as u64,
                })
            },
        )
    }

    /// Every exchange with its bindings, and every queue with the counts of `queue_stats`,
    /// in one transaction (through the caches, which decode what the tables store).
    #[cfg(feature = "serve")]
    pub(super) fn topology(&mut self) -> Result<crate::backend::Topology> {
        let names: Vec<String> = self.column("SELECT name FROM exchanges", [])?;
        let mut exchanges = Vec::with_capacity(names.len());
        for name in &names {
            exchanges.extend(self.exchange(name)?);
        }
        let mut queues = Vec::new();
        for stats in self.queue_stats()? {
            if let Some(queue) = self.queue(&stats.name)? {
                let spec = queue.spec.clone();
                let exclusive_owner = queue.owner.is_some();
                queues.push(crate::backend::QueueEntry::new(
                    spec,
                    &stats,
                    exclusive_owner,
                ));
            }
        }
        Ok(crate::backend::Topology::new(
            exchanges.iter().map(|e| e.spec.clone()).collect(),
            queues,
            exchanges
                .iter()
                .map(|e| (e.spec.name.as_str(), &e.bindings)),
        ))
    }

    pub(super) fn queue_info(&mut self, name: &str) -> Result<QueueInfo> {
        let now = now_ms();
        let messages: i64 = self
            .one(
                "SELECT count(*) FROM messages WHERE queue = ?1 AND owner IS NULL
                 AND coalesce(expires_at, 9223372036854775807) > ?2",
                params![name, now],
            )?
            .unwrap_or(0);
        let consumers: i64 = self
            .one("SELECT count(*) FROM consumers WHERE queue = ?1", [name])?
            .unwrap_or(0);
        Ok(QueueInfo {
            name: name.to_string(),
            message_count: messages as u32,
            consumer_count: consumers as u32,
        })
    }

    pub(super) fn delete_queue(
        &mut self,
        channel: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32> {
        let connection = self.layer.connection_of(channel)?;
        if self.queue(name)?.is_none() {
            // Deleted already: RabbitMQ answers delete-ok with no message.
            return Ok(0);
        }
        self.usable_queue(connection, name)?;
        let info = self.queue_info(name)?;
        rules::queue_deletion(
            name,
            if_unused,
            if_empty,
            info.consumer_count as usize,
            info.message_count as usize,
        )?;
        self.remove_queue(name)?;
        Ok(info.message_count)
    }

    /// Deletes a queue with its messages, bindings and consumers (their streams end), and the
    /// auto-delete exchanges it leaves without bindings.
    pub(super) fn remove_queue(&mut self, name: &str) -> Result<()> {
        let exchanges: Vec<String> = self.column(
            "SELECT DISTINCT exchange FROM bindings WHERE queue = ?1",
            [name],
        )?;
        self.exec("DELETE FROM bindings WHERE queue = ?1", [name])?;
        self.exec("DELETE FROM messages WHERE queue = ?1", [name])?;
        self.exec("DELETE FROM consumers WHERE queue = ?1", [name])?;
        self.exec("DELETE FROM queues WHERE name = ?1", [name])?;
        self.remove_if_unbound(exchanges)?;
        // Local consumers of the queue: their delivery streams end. Settling their deliveries
        // afterwards succeeds and changes nothing (the messages went with the queue).
        self.layer.queue_deleted(name);
        self.bump()
    }

    fn exchange_for_binding(&mut self, exchange: &str) -> Result<()> {
        rules::bindable(exchange)?;
        match self.exchange(exchange)? {
            Some(_) => Ok(()),
            None => Err(rules::no_exchange(exchange)),
        }
    }

    pub(super) fn bind(
        &mut self,
        channel: u64,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        let connection = self.layer.connection_of(channel)?;
        self.usable_queue(connection, queue)?;
        self.exchange_for_binding(exchange)?;
        let added = self.exec(
            "INSERT OR IGNORE INTO bindings VALUES (?1, ?2, ?3, ?4)",
            params![exchange, queue, key, encode_table(arguments)],
        )?;
        if added > 0 {
            self.bump()?;
        }
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
        let connection = self.layer.connection_of(channel)?;
        self.usable_queue(connection, queue)?;
        self.exchange_for_binding(exchange)?;
        let removed = self.exec(
            "DELETE FROM bindings WHERE exchange = ?1 AND queue = ?2 AND key = ?3 AND arguments = ?4",
            params![exchange, queue, key, encode_table(arguments)],
        )?;
        if removed > 0 {
            self.remove_if_unbound(vec![exchange.to_string()])?;
            self.bump()?;
        }
        Ok(())
    }

    /// `exchange.bind`: what `source` routes goes on to `destination` (see the memory
    /// broker's).
    pub(super) fn bind_exchange(
        &mut self,
        channel: u64,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        self.exchange_for_binding(destination)?;
        self.exchange_for_binding(source)?;
        let added = self.exec(
            "INSERT OR IGNORE INTO exchange_bindings VALUES (?1, ?2, ?3, ?4)",
            params![source, destination, key, encode_table(arguments)],
        )?;
        if added > 0 {
            self.bump()?;
        }
        Ok(())
    }

    /// `exchange.unbind`: a binding that does not exist is not an error.
    pub(super) fn unbind_exchange(
        &mut self,
        channel: u64,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        self.exchange_for_binding(destination)?;
        self.exchange_for_binding(source)?;
        let removed = self.exec(
            "DELETE FROM exchange_bindings
             WHERE source = ?1 AND destination = ?2 AND key = ?3 AND arguments = ?4",
            params![source, destination, key, encode_table(arguments)],
        )?;
        if removed > 0 {
            self.remove_if_unbound(vec![source.to_string()])?;
            self.bump()?;
        }
        Ok(())
    }
}
