//! Connections, channels and consumers of this process, and handing messages to consumers.
//!
//! Consumers are recorded in the `consumers` table (other processes see them: consumer counts,
//! exclusive consumers, auto-delete), but their prefetch window and delivery stream live here.
//! After each batch of operations, every queue that may have messages for a local consumer
//! ("dirty") is read once for all its consumers, which share the messages round robin.

use std::sync::Arc;

use rusqlite::params;
use tokio::sync::mpsc;

use super::broker::{Broker, ChannelState, Subscriber, Unacked, DISPATCH_CHUNK};
use crate::backend::rules;
use crate::backend::{Delivery, DeliveryStream};
use crate::error::{Error, Result};

impl Broker {
    pub(super) fn open_connection(&mut self) -> Result<i64> {
        self.exec(
            "INSERT INTO connections (process) VALUES (?1)",
            [self.process],
        )?;
        let id = self.db.last_insert_rowid();
        self.connections.insert(id);
        Ok(id)
    }

    pub(super) fn open_channel(&mut self, connection: i64) -> Result<u64> {
        if !self.connections.contains(&connection) {
            return Err(Error::connection_closed(
                "the connection was closed (by close(), or by a broker restart)",
            ));
        }
        self.next_channel += 1;
        self.channels.insert(
            self.next_channel,
            ChannelState {
                connection,
                flow: true,
                consumer_prefetch: 0,
                channel_prefetch: 0,
                next_tag: 1,
                unacked: Default::default(),
                consumer_tags: 0,
            },
        );
        Ok(self.next_channel)
    }

    /// Closes a channel: its consumers go, its unsettled deliveries go back to their queues.
    pub(super) fn close_channel(&mut self, channel: u64) -> Result<()> {
        let Some(state) = self.channels.remove(&channel) else {
            return Ok(());
        };
        let mine: Vec<(Arc<str>, Arc<str>)> = self
            .subscribers
            .iter()
            .flat_map(|(queue, subs)| {
                subs.list
                    .iter()
                    .filter(|s| s.channel == channel)
                    .map(|s| (queue.clone(), s.tag.clone()))
            })
            .collect();
        for (queue, tag) in mine {
            self.remove_subscriber(&queue, state.connection, channel, &tag)?;
        }
        for unacked in state.unacked.into_values() {
            self.requeue(unacked.id, &unacked.queue)?;
        }
        Ok(())
    }

    /// Closes a connection of this process: its channels, its exclusive queues.
    pub(super) fn close_connection(&mut self, connection: i64) -> Result<()> {
        let channels: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| c.connection == connection)
            .map(|(id, _)| *id)
            .collect();
        for channel in channels {
            self.close_channel(channel)?;
        }
        self.connections.remove(&connection);
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
        }
        if released > 0 {
            self.wake_peers = true;
            self.dirty.extend(self.subscribers.keys().cloned());
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
        no_ack: bool,
        exclusive: bool,
    ) -> Result<(Arc<str>, DeliveryStream)> {
        let connection = self.connection_of(channel)?;
        let q = self.usable_queue(connection, queue)?;
        let others: Vec<bool> =
            self.column("SELECT exclusive FROM consumers WHERE queue = ?1", [queue])?;
        rules::consumer_admission(queue, exclusive, others.into_iter())?;
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or_else(|| Error::channel_closed("the channel was closed"))?;
        let tag: Arc<str> = if tag.is_empty() {
            ch.consumer_tags += 1;
            format!("amq.ctag-{connection}-{channel}-{}", ch.consumer_tags).into()
        } else {
            tag.into()
        };
        let prefetch = ch.consumer_prefetch;
        let duplicate = self.subscribers.values().any(|subs| {
            subs.list
                .iter()
                .any(|s| s.channel == channel && s.tag == tag)
        });
        if duplicate {
            return Err(rules::reused_tag(&tag));
        }
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
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .entry(q.name.clone())
            .or_default()
            .list
            .push(Subscriber {
                tag: tag.clone(),
                channel,
                no_ack,
                prefetch,
                unacked: 0,
                tx,
            });
        self.dirty.insert(q.name.clone());
        Ok((tag, rx))
    }

    pub(super) fn cancel(&mut self, channel: u64, tag: &str) -> Result<()> {
        let connection = self.connection_of(channel)?;
        let queue = self
            .subscribers
            .iter()
            .find(|(_, subs)| {
                subs.list
                    .iter()
                    .any(|s| s.channel == channel && &*s.tag == tag)
            })
            .map(|(q, _)| q.clone());
        if let Some(queue) = queue {
            self.remove_subscriber(&queue, connection, channel, tag)?;
        }
        Ok(())
    }

    fn remove_subscriber(
        &mut self,
        queue: &Arc<str>,
        connection: i64,
        channel: u64,
        tag: &str,
    ) -> Result<()> {
        if let Some(subs) = self.subscribers.get_mut(queue) {
            subs.list
                .retain(|s| !(s.channel == channel && &*s.tag == tag));
            if subs.list.is_empty() {
                self.subscribers.remove(queue);
            }
        }
        self.exec(
            "DELETE FROM consumers WHERE connection = ?1 AND channel = ?2 AND tag = ?3",
            params![connection, channel as i64, tag],
        )?;
        self.delete_if_unused_auto_delete(queue)
    }

    /// Removes settled deliveries from a channel's ledger (all up to `tag` with `multiple`) and
    /// gives their consumers credit back.
    pub(super) fn settle(
        &mut self,
        channel: u64,
        tag: u64,
        multiple: bool,
    ) -> Result<Vec<Unacked>> {
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or_else(|| Error::channel_closed("the channel was closed"))?;
        let settled: Vec<Unacked> = if multiple {
            let later = if tag == 0 {
                Default::default()
            } else {
                ch.unacked.split_off(&(tag + 1))
            };
            let done = std::mem::replace(&mut ch.unacked, later);
            if done.is_empty() && tag != 0 {
                return Err(rules::unknown_tag(tag));
            }
            done.into_values().collect()
        } else {
            vec![ch
                .unacked
                .remove(&tag)
                .ok_or_else(|| rules::unknown_tag(tag))?]
        };
        let channel_limited = ch.channel_prefetch != 0;
        for unacked in &settled {
            let Some(consumer) = &unacked.consumer else {
                continue;
            };
            if let Some(subs) = self.subscribers.get_mut(&unacked.queue) {
                if let Some(s) = subs
                    .list
                    .iter_mut()
                    .find(|s| s.channel == channel && s.tag == *consumer)
                {
                    s.unacked = s.unacked.saturating_sub(1);
                    // Refill once half the window is free, not after every ack: one read of
                    // the queue then fetches many messages.
                    if s.prefetch != 0 && s.unacked * 2 <= u32::from(s.prefetch) {
                        self.dirty.insert(unacked.queue.clone());
                    }
                }
            }
        }
        if channel_limited {
            self.dirty_channel(channel);
        }
        Ok(settled)
    }

    fn dirty_channel(&mut self, channel: u64) {
        for (queue, subs) in &self.subscribers {
            if subs.list.iter().any(|s| s.channel == channel) {
                self.dirty.insert(queue.clone());
            }
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
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or_else(|| Error::channel_closed("the channel was closed"))?;
        if global {
            ch.channel_prefetch = prefetch_count;
        } else {
            ch.consumer_prefetch = prefetch_count;
        }
        self.dirty_channel(channel);
        Ok(())
    }

    pub(super) fn flow(&mut self, channel: u64, active: bool) -> Result<()> {
        self.channels
            .get_mut(&channel)
            .ok_or_else(|| Error::channel_closed("the channel was closed"))?
            .flow = active;
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
        let Some(subs) = self.subscribers.get(queue) else {
            return Ok(());
        };
        // Each consumer's credit, bounded by its channel's flow and window.
        let mut credit: Vec<usize> = Vec::with_capacity(subs.list.len());
        let mut channel_room: rustc_hash::FxHashMap<u64, usize> = Default::default();
        for s in &subs.list {
            let Some(ch) = self.channels.get(&s.channel) else {
                credit.push(0);
                continue;
            };
            if !ch.flow || s.tx.is_closed() {
                credit.push(0);
                continue;
            }
            let own = if s.no_ack || s.prefetch == 0 {
                DISPATCH_CHUNK
            } else {
                usize::from(s.prefetch).saturating_sub(s.unacked as usize)
            };
            if !s.no_ack && ch.channel_prefetch != 0 {
                channel_room.entry(s.channel).or_insert_with(|| {
                    usize::from(ch.channel_prefetch).saturating_sub(ch.unacked.len())
                });
            }
            credit.push(own);
        }
        let total: usize = credit.iter().sum::<usize>().min(DISPATCH_CHUNK);
        if total == 0 {
            return Ok(());
        }
        let rows = self.take(queue, total)?;
        let full = rows.len() == total;
        let Some(subs) = self.subscribers.get_mut(queue) else {
            return Ok(());
        };
        let n = subs.list.len();
        let mut given = Vec::with_capacity(rows.len());
        let mut rows = rows.into_iter();
        let mut idle = 0;
        let mut pending = rows.next();
        while let Some(row) = pending.take() {
            if idle >= n {
                pending = Some(row);
                break;
            }
            let i = subs.next % n;
            subs.next = subs.next.wrapping_add(1);
            let s = &subs.list[i];
            let room = channel_room.get(&s.channel).copied();
            if credit[i] == 0 || room == Some(0) {
                idle += 1;
                pending = Some(row);
                continue;
            }
            idle = 0;
            credit[i] -= 1;
            if let Some(r) = channel_room.get_mut(&s.channel) {
                *r -= 1;
            }
            given.push((i, row));
            pending = rows.next();
        }
        // Rows nobody had room for stay ready (they were only read).
        let more = full && pending.is_none();
        let mut claimed: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        let mut dropped: Vec<i64> = Vec::new();
        for (i, row) in given {
            let (channel, no_ack, tag, tx) = {
                let s = &self.subscribers[queue].list[i];
                (s.channel, s.no_ack, s.tag.clone(), s.tx.clone())
            };
            let Some(ch) = self.channels.get_mut(&channel) else {
                continue;
            };
            let connection = ch.connection;
            let delivery_tag = ch.next_tag;
            ch.next_tag += 1;
            if !no_ack {
                ch.unacked.insert(
                    delivery_tag,
                    Unacked {
                        id: row.id,
                        queue: queue.clone(),
                        consumer: Some(tag.clone()),
                    },
                );
                if let Some(subs) = self.subscribers.get_mut(queue) {
                    subs.list[i].unacked += 1;
                }
            }
            if no_ack {
                dropped.push(row.id);
            } else {
                claimed.entry(connection).or_default().push(row.id);
            }
            self.outbox.push((
                tx,
                Delivery {
                    message: Arc::new(row.message),
                    delivery_tag,
                    redelivered: row.redelivered,
                    consumer_tag: Some(tag),
                },
            ));
        }
        for (connection, ids) in claimed {
            self.hand_over(&ids, Some(connection))?;
        }
        self.hand_over(&dropped, None)?;
        if more {
            // There may be more than one chunk: come back after this transaction.
            self.dirty.insert(queue.clone());
        }
        Ok(())
    }

    /// Forgets deliveries of a transaction that did not commit (the rows are still ready).
    pub(super) fn undo_outbox(&mut self) {
        for (_, delivery) in std::mem::take(&mut self.outbox) {
            for ch in self.channels.values_mut() {
                if let Some(u) = ch.unacked.get(&delivery.delivery_tag) {
                    let consumer = u.consumer.clone();
                    if consumer == delivery.consumer_tag {
                        ch.unacked.remove(&delivery.delivery_tag);
                        for subs in self.subscribers.values_mut() {
                            for s in &mut subs.list {
                                if Some(&s.tag) == consumer.as_ref() {
                                    s.unacked = s.unacked.saturating_sub(1);
                                }
                            }
                        }
                        break;
                    }
                }
            }
        }
    }
}
