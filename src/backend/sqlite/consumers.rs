//! Connections, channels and consumers of this process in the database, and handing messages
//! to consumers.
//!
//! Channels, windows and round robin are the shared layer's (`backend::embedded`). Consumers
//! are also recorded in the `consumers` table (other processes see them: consumer counts,
//! exclusive consumers, auto-delete). After each batch of operations, every queue that may have
//! messages for a local consumer ("dirty") is read once for all its consumers.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::params;

use super::broker::{Broker, Outgoing, DISPATCH_CHUNK};
use super::messages::Row;
use crate::backend::embedded::{Handing, Source};
use crate::backend::rules;
use crate::backend::{Delivery, DeliveryStream};
use crate::error::Result;

/// Rows read from a queue, handed to its consumers; delivered once the transaction commits.
struct RowSource<'a> {
    rows: std::vec::IntoIter<Row>,
    outbox: &'a mut Vec<Outgoing>,
    /// Rows delivered to be acknowledged, by connection.
    claimed: BTreeMap<i64, Vec<i64>>,
    /// Rows delivered without acknowledgement (deleted now).
    dropped: Vec<i64>,
}

impl Source<i64, i64> for RowSource<'_> {
    type Message = Row;

    fn next(&mut self) -> Option<Row> {
        self.rows.next()
    }

    fn deliver(&mut self, to: Handing<'_, i64>, row: Row) -> Result<Option<i64>, Row> {
        let consumer = to.consumer;
        if consumer.feed.is_closed() {
            return Err(row);
        }
        let id = row.id;
        consumer.feed.reserve();
        self.outbox.push((
            consumer.channel,
            consumer.feed.clone(),
            Delivery {
                message: Arc::new(row.message),
                delivery_tag: to.delivery_tag,
                redelivered: row.redelivered,
                consumer_tag: Some(consumer.tag.clone()),
            },
        ));
        if consumer.no_ack {
            self.dropped.push(id);
            Ok(None)
        } else {
            self.claimed.entry(to.connection).or_default().push(id);
            Ok(Some(id))
        }
    }

    /// A row nobody took stays ready: it was only read.
    fn put_back(&mut self, _row: Row) {}
}

impl Broker {
    pub(super) fn open_connection(&mut self) -> Result<i64> {
        self.exec(
            "INSERT INTO connections (process) VALUES (?1)",
            [self.process],
        )?;
        let id = self.db.last_insert_rowid();
        self.layer.add_connection(id);
        Ok(id)
    }

    pub(super) fn open_channel(&mut self, connection: i64) -> Result<u64> {
        self.layer.open_channel(connection)
    }

    /// Closes a channel: its consumers go, its unsettled deliveries go back to their queues.
    pub(super) fn close_channel(&mut self, channel: u64) -> Result<()> {
        let Some(closed) = self.layer.close_channel(channel) else {
            return Ok(());
        };
        for (queue, tag, _) in closed.consumers {
            self.forget_consumer(&queue, closed.connection, channel, &tag)?;
        }
        for unacked in closed.unacked {
            self.requeue(unacked.item, &unacked.queue)?;
        }
        Ok(())
    }

    /// Closes a connection of this process: its channels, its exclusive queues.
    pub(super) fn close_connection(&mut self, connection: i64) -> Result<()> {
        for channel in self.layer.channels_of(connection) {
            self.close_channel(channel)?;
        }
        self.layer.remove_connection(connection);
        self.release_connection(connection)
    }

    /// What closing a connection does in the database, for this process's connections and for
    /// those of dead processes: deliveries back, consumers gone (auto-delete queues with them),
    /// exclusive queues deleted.
    pub(super) fn release_connection(&mut self, connection: i64) -> Result<()> {
        self.flush_acks()?;
        // Queue by queue, so that `messages_ready` (queue, owner, ...) finds the deliveries.
        let queues: Vec<String> = self.column("SELECT name FROM queues", [])?;
        let mut released = 0;
        for queue in &queues {
            self.exec(
                "INSERT OR IGNORE INTO expiring SELECT expires_at, id FROM messages
                 WHERE queue = ?1 AND owner = ?2 AND expires_at IS NOT NULL",
                params![queue, connection],
            )?;
            released += self.exec(
                "UPDATE messages SET owner = NULL, redelivered = 1 WHERE queue = ?1 AND owner = ?2",
                params![queue, connection],
            )?;
        }
        if released > 0 {
            self.expire_no_later_than(super::broker::now_ms());
            self.wake_peers = true;
            self.dirty.extend(self.layer.consumed_queues());
        }
        let queues: Vec<String> = self.column(
            "SELECT DISTINCT queue FROM consumers WHERE connection = ?1",
            [connection],
        )?;
        self.exec("DELETE FROM consumers WHERE connection = ?1", [connection])?;
        for queue in queues {
            self.delete_if_unused_auto_delete(&queue)?;
        }
        let exclusive: Vec<String> =
            self.column("SELECT name FROM queues WHERE owner = ?1", [connection])?;
        for queue in exclusive {
            self.remove_queue(&queue)?;
        }
        self.exec("DELETE FROM connections WHERE id = ?1", [connection])?;
        Ok(())
    }

    /// Deletes an auto-delete queue that had consumers and has none left.
    fn delete_if_unused_auto_delete(&mut self, queue: &str) -> Result<()> {
        let unused: Option<i64> = self.one(
            "SELECT 1 FROM queues WHERE name = ?1 AND auto_delete AND had_consumer
             AND NOT EXISTS (SELECT 1 FROM consumers WHERE consumers.queue = ?1)",
            [queue],
        )?;
        if unused.is_some() {
            self.remove_queue(queue)?;
        } else if self
            .queue(queue)?
            .is_some_and(|q| q.limits.expires.is_some())
        {
            self.touch(queue)?;
        }
        Ok(())
    }

    pub(super) fn consume(
        &mut self,
        channel: u64,
        queue: &str,
        tag: &str,
        (no_ack, exclusive, priority): (bool, bool, i32),
        replenish: crate::backend::Replenish,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let connection = self.layer.connection_of(channel)?;
        let q = self.usable_queue(connection, queue)?;
        // Consumers of every process count.
        let others: Vec<bool> =
            self.column("SELECT exclusive FROM consumers WHERE queue = ?1", [queue])?;
        rules::consumer_admission(queue, exclusive, others.into_iter())?;
        let tag = self.layer.consumer_tag(channel, tag)?;
        self.exec(
            "INSERT INTO consumers VALUES (?1, ?2, ?3, ?4, ?5)",
            params![connection, channel as i64, &*tag, queue, exclusive],
        )?;
        self.exec(
            "UPDATE queues SET had_consumer = 1 WHERE name = ?1",
            [queue],
        )?;
        if q.limits.expires.is_some() {
            self.touch(queue)?;
        }
        let rx = self.layer.subscribe(
            channel,
            &q.name,
            tag.clone(),
            (no_ack, exclusive, priority),
            replenish,
        )?;
        self.dirty.insert(q.name.clone());
        Ok((tag, rx))
    }

    pub(super) fn cancel(&mut self, channel: u64, tag: &str) -> Result<()> {
        let connection = self.layer.connection_of(channel)?;
        if let Some((queue, _)) = self.layer.unsubscribe(channel, tag)? {
            self.forget_consumer(&queue, connection, channel, tag)?;
        }
        Ok(())
    }

    /// Deletes a consumer's row; an auto-delete queue goes with its last consumer.
    fn forget_consumer(
        &mut self,
        queue: &str,
        connection: i64,
        channel: u64,
        tag: &str,
    ) -> Result<()> {
        self.exec(
            "DELETE FROM consumers WHERE connection = ?1 AND channel = ?2 AND tag = ?3",
            params![connection, channel as i64, tag],
        )?;
        self.delete_if_unused_auto_delete(queue)
    }

    /// Marks every queue a channel's consumers read as worth a dispatch.
    fn dirty_channel(&mut self, channel: u64) {
        self.dirty.extend(self.layer.queues_of_channel(channel));
    }

    pub(super) fn qos(
        &mut self,
        channel: u64,
        prefetch_size: u32,
        prefetch_count: u16,
        global: bool,
    ) -> Result<()> {
        self.layer
            .qos(channel, prefetch_size, prefetch_count, global)?;
        self.dirty_channel(channel);
        Ok(())
    }

    pub(super) fn flow(&mut self, channel: u64, active: bool) -> Result<()> {
        self.layer.flow(channel, active)?;
        if active {
            self.dirty_channel(channel);
        }
        Ok(())
    }

    /// Hands ready messages to the local consumers of every dirty queue.
    pub(super) fn dispatch_dirty(&mut self) -> Result<()> {
        let dirty: Vec<Arc<str>> = self.dirty.drain().collect();
        for queue in dirty {
            self.dispatch(&queue)?;
        }
        Ok(())
    }

    /// Reads up to the consumers' total credit from one queue and shares it round robin.
    fn dispatch(&mut self, queue: &Arc<str>) -> Result<()> {
        let total = self.layer.credit(queue, DISPATCH_CHUNK);
        if total == 0 {
            return Ok(());
        }
        let rows = self.take(queue, total)?;
        let full = rows.len() == total;
        let mut source = RowSource {
            rows: rows.into_iter(),
            outbox: &mut self.outbox,
            claimed: BTreeMap::new(),
            dropped: Vec::new(),
        };
        let given = self.layer.hand_out(queue, &mut source).given;
        let (claimed, dropped) = (source.claimed, source.dropped);
        for (connection, ids) in claimed {
            self.hand_over(&ids, Some(connection))?;
        }
        self.hand_over(&dropped, None)?;
        if full && given == total {
            // There may be more than one chunk: come back after this transaction.
            self.dirty.insert(queue.clone());
        }
        Ok(())
    }

    /// Forgets deliveries of a transaction that did not commit (the rows are still ready).
    pub(super) fn undo_outbox(&mut self) {
        for (channel, feed, delivery) in std::mem::take(&mut self.outbox) {
            feed.unreserve();
            self.layer.unrecord(channel, delivery.delivery_tag);
        }
    }
}
