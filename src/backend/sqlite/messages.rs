//! Messages in the database: publishing (routing with the shared engine), taking, settling,
//! expiring and dead-lettering.
//!
//! A message is one row per queue it reached. `owner` is the connection it is delivered to and
//! not yet settled (NULL: ready). Acknowledging deletes the row; requeueing clears `owner` and
//! sets `redelivered`. `rank` orders delivery: the priority, capped by the queue's
//! `x-max-priority` (0 without one, as RabbitMQ ignores priorities there).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::params;

use super::broker::{now_ms, Broker, ExchangeEntry, QueueEntry};
use super::codec::{decode_extra, encode_extra};
use crate::backend::death::{died_in, with_death};
use crate::backend::embedded::{Settlement, TxHeld};
use crate::backend::rules;
use crate::backend::{Delivery, PublishFlags, Published};
use crate::entity::DeliveryMode;
use crate::error::{Error, Result};
use crate::properties::Properties;

/// The columns [`Broker::row`] reads, in order.
pub(super) const COLUMNS: &str = "id, redelivered, exchange, routing_key, content_type, content_encoding, delivery_mode, priority, extra, body";

/// A message row as read.
pub(super) struct Row {
    pub(super) id: i64,
    pub(super) redelivered: bool,
    pub(super) message: Published,
}

type RawRow = (
    i64,
    bool,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<u8>,
    Option<u8>,
    Option<String>,
    Vec<u8>,
);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn decode(raw: RawRow) -> Result<Row> {
    let (id, redelivered, exchange, routing_key, ct, ce, mode, priority, extra, body) = raw;
    let mut properties = Properties::default();
    if let Some(ct) = ct {
        properties = properties.with_content_type(ct);
    }
    if let Some(ce) = ce {
        properties = properties.with_content_encoding(ce);
    }
    if let Some(mode) = mode {
        properties = properties.with_delivery_mode(DeliveryMode::from_u8(mode));
    }
    if let Some(priority) = priority {
        properties = properties.with_priority(priority);
    }
    if let Some(extra) = extra {
        properties = decode_extra(properties, &extra)?;
    }
    Ok(Row {
        id,
        redelivered,
        message: Published {
            body: body.into_boxed_slice(),
            properties,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        },
    })
}

impl Broker {
    /// Reads message rows; `sql` selects [`COLUMNS`].
    pub(super) fn rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Row>> {
        self.first_rows(sql, params, usize::MAX)
    }

    /// The first `n` rows of a query that selects [`COLUMNS`].
    ///
    /// Limits are applied here rather than with `LIMIT ?`: SQLite re-plans a statement at every
    /// execution when its LIMIT is a bound parameter (that was a third of the time per message).
    pub(super) fn first_rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        n: usize,
    ) -> Result<Vec<Row>> {
        let raws: Vec<RawRow> = self
            .db
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map(params, raw)
                    .and_then(|rows| rows.take(n).collect())
            })
            .map_err(|e| self.fail(e))?;
        raws.into_iter().map(decode).collect()
    }

    pub(super) fn publish(
        &mut self,
        channel: u64,
        message: &Published,
        flags: PublishFlags,
    ) -> Result<()> {
        self.layer.connection_of(channel)?;
        if flags.immediate {
            return Err(Error::Unsupported(
                "immediate is not implemented by the sqlite broker (consumers may be in other processes, so \"ready now\" cannot be known); RabbitMQ 3 refuses it too: use mandatory, or a consumer acknowledgement".into(),
            ));
        }
        if let Some(ex) = self.exchange(&message.exchange)? {
            rules::publishable(&message.exchange, ex.spec.internal)?;
        }
        let targets = self.route(message)?;
        if targets.is_empty() {
            if flags.mandatory {
                return Err(rules::unroutable(message));
            }
            return Ok(());
        }
        for queue in targets {
            self.enqueue(&queue, message)?;
        }
        Ok(())
    }

    /// What a transactional channel checks of a publish when it holds it: its exchange exists
    /// and takes publishers.
    pub(super) fn check_publishable(&mut self, channel: u64, message: &Published) -> Result<()> {
        self.layer.connection_of(channel)?;
        if message.exchange.is_empty() {
            return Ok(());
        }
        match self.exchange(&message.exchange)? {
            Some(ex) => rules::publishable(&message.exchange, ex.spec.internal),
            None => Err(rules::no_exchange(&message.exchange)),
        }
    }

    /// Applies what a transaction held, in order, in this one SQLite transaction: the
    /// mandatory messages no queue took come back; a message whose exchange went meanwhile
    /// reaches nothing.
    pub(super) fn apply(
        &mut self,
        channel: u64,
        held: Vec<TxHeld>,
    ) -> Result<Vec<(Arc<Published>, Error)>> {
        let mut returned = Vec::new();
        for op in held {
            match op {
                TxHeld::Publish(message, flags) => match self.publish(channel, &message, flags) {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e @ Error::Unroutable { .. }) => returned.push((message, e)),
                    Err(e) => return Err(e),
                },
                TxHeld::Settle(tag, Settlement::Ack) => self.ack(channel, tag, false)?,
                TxHeld::Settle(tag, Settlement::Reject { requeue }) => {
                    self.reject(channel, tag, requeue)?
                }
            }
        }
        Ok(returned)
    }

    /// The queues a message reaches; [`Error::NotFound`] for a missing exchange.
    fn route(&mut self, message: &Published) -> Result<Vec<Arc<QueueEntry>>> {
        let exchange = &*message.exchange;
        let mut names: Vec<Arc<str>> = Vec::new();
        if exchange.is_empty() {
            return Ok(self.queue(&message.routing_key)?.into_iter().collect());
        }
        match self.exchange(exchange)? {
            Some(ex) => {
                // The exchanges it may go on to, loaded before routing (routing reads them
                // from the cache).
                let mut reachable: Vec<Arc<ExchangeEntry>> = Vec::new();
                let mut next: Vec<Arc<str>> = ex.bindings.exchange_destinations().collect();
                while let Some(name) = next.pop() {
                    if reachable.iter().any(|e| *e.spec.name == *name) {
                        continue;
                    }
                    if let Some(entry) = self.exchange(&name)? {
                        next.extend(entry.bindings.exchange_destinations());
                        reachable.push(entry);
                    }
                }
                ex.bindings.route(
                    &message.routing_key,
                    message.properties.headers(),
                    |name| {
                        reachable
                            .iter()
                            .find(|e| e.spec.name == name)
                            .map(|e| &e.bindings)
                    },
                    &mut names,
                );
            }
            None => return Err(rules::no_exchange(exchange)),
        }
        let mut queues = Vec::with_capacity(names.len());
        for name in names {
            if let Some(queue) = self.queue(&name)? {
                queues.push(queue);
            }
        }
        Ok(queues)
    }

    /// Stores a routed message in one queue; `x-max-length` pushes the oldest out.
    fn enqueue(&mut self, queue: &QueueEntry, message: &Published) -> Result<()> {
        let p = &message.properties;
        let rank = match queue.limits.max_priority {
            Some(max) => p.priority().unwrap_or(0).min(max),
            None => 0,
        };
        let expires_at = queue
            .limits
            .ttl_of(message)
            .map(|ttl| now_ms().saturating_add(ttl as i64));
        self.exec(
            "INSERT INTO messages (queue, rank, owner, redelivered, persistent, expires_at, exchange,
                 routing_key, content_type, content_encoding, delivery_mode, priority, extra, body)
             VALUES (?1, ?2, NULL, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                &*queue.name,
                rank,
                p.delivery_mode() == Some(DeliveryMode::Persistent),
                expires_at,
                &*message.exchange,
                &*message.routing_key,
                p.content_type(),
                p.content_encoding(),
                p.delivery_mode().map(|m| m.as_u8()),
                p.priority(),
                encode_extra(p),
                &*message.body,
            ],
        )?;
        if let Some(at) = expires_at {
            self.exec(
                "INSERT INTO expiring VALUES (?1, ?2)",
                params![at, self.db.last_insert_rowid()],
            )?;
            self.expire_no_later_than(at);
        }
        if let Some(max) = queue.limits.max_length {
            let ready: i64 = self
                .one(
                    "SELECT count(*) FROM messages WHERE queue = ?1 AND owner IS NULL",
                    [&*queue.name],
                )?
                .unwrap_or(0);
            let excess = ready - max as i64;
            if excess > 0 {
                let sql = format!(
                    "SELECT {COLUMNS} FROM messages WHERE queue = ?1 AND owner IS NULL ORDER BY rank DESC, id"
                );
                let dropped = self.first_rows(&sql, [&*queue.name], excess as usize)?;
                self.drop_rows(queue, dropped, "maxlen")?;
            }
        }
        self.dirty.insert(queue.name.clone());
        self.wake_peers = true;
        Ok(())
    }

    /// Deletes rows that died in `queue` and sends them to its dead-letter exchange, if any.
    pub(super) fn drop_rows(
        &mut self,
        queue: &QueueEntry,
        rows: Vec<Row>,
        reason: &str,
    ) -> Result<()> {
        for row in &rows {
            self.exec("DELETE FROM messages WHERE id = ?1", [row.id])?;
        }
        let Some(target) = queue.limits.dead_letter.clone() else {
            return Ok(());
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for row in rows {
            let message = &row.message;
            let dead = Published {
                body: message.body.clone(),
                properties: with_death(message, &queue.name, reason, time),
                exchange: target.exchange.clone(),
                routing_key: target
                    .routing_key
                    .clone()
                    .unwrap_or_else(|| message.routing_key.clone()),
            };
            // A missing dead-letter exchange drops the message, as on RabbitMQ.
            let Ok(mut targets) = self.route(&dead) else {
                continue;
            };
            if reason != "rejected" {
                targets.retain(|t| !died_in(&dead, &t.name));
            }
            for t in targets {
                self.enqueue(&t, &dead)?;
            }
        }
        Ok(())
    }

    /// Takes up to `n` ready messages of a queue, best first.
    ///
    /// The expiry test is an expression (`coalesce`), not a plain range on the indexed
    /// `expires_at`, so that the planner always walks `messages_ready` in delivery order.
    pub(super) fn take(&mut self, queue: &str, n: usize) -> Result<Vec<Row>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE queue = ?1 AND owner IS NULL
             AND coalesce(expires_at, 9223372036854775807) > ?2 ORDER BY rank DESC, id"
        );
        self.first_rows(&sql, params![queue, now_ms()], n)
    }

    pub(super) fn get(
        &mut self,
        channel: u64,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<Delivery>> {
        let connection = self.layer.connection_of(channel)?;
        let q = self.usable_queue(connection, queue)?;
        if q.limits.expires.is_some() {
            self.touch(queue)?;
        }
        let Some(row) = self.take(queue, 1)?.pop() else {
            return Ok(None);
        };
        self.hand_over(&[row.id], (!no_ack).then_some(connection))?;
        let tag = self
            .layer
            .record_get(channel, &q.name, (!no_ack).then_some(row.id))?;
        Ok(Some(Delivery {
            message: Arc::new(row.message),
            delivery_tag: tag,
            redelivered: row.redelivered,
            consumer_tag: None,
        }))
    }

    pub(super) fn ack(&mut self, channel: u64, tag: u64, multiple: bool) -> Result<()> {
        let connection = self.layer.connection_of(channel)?;
        let (acked, dirty) = (&mut self.acked, &mut self.dirty);
        self.layer.settle(
            channel,
            tag,
            multiple,
            |u| acked.push((connection, u.item)),
            |q| {
                dirty.insert(q.clone());
            },
        )
    }

    /// Deletes the acknowledged messages of this transaction, one statement per connection.
    ///
    /// Acks only collect ids (an ack cannot fail once its tag is known); this runs before
    /// anything that could put a delivered message back (a requeue, a closing channel) and
    /// before the commit, so that an acknowledged message is never requeued.
    pub(super) fn flush_acks(&mut self) -> Result<()> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let mut acked = std::mem::take(&mut self.acked);
        acked.sort_unstable();
        for group in acked.chunk_by(|a, b| a.0 == b.0) {
            let ids = id_list(group.iter().map(|(_, id)| *id));
            self.exec(
                "DELETE FROM messages WHERE owner = ?1 AND id IN (SELECT value FROM json_each(?2))",
                params![group[0].0, ids],
            )?;
        }
        Ok(())
    }

    /// Marks taken messages as delivered to `connection`, or deletes them (`None`: no ack),
    /// in one statement.
    pub(super) fn hand_over(&mut self, ids: &[i64], connection: Option<i64>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = id_list(ids.iter().copied());
        match connection {
            Some(c) => self.exec(
                "UPDATE messages SET owner = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
                params![c, list],
            )?,
            None => self.exec(
                "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?1))",
                [list],
            )?,
        };
        Ok(())
    }

    pub(super) fn reject(&mut self, channel: u64, tag: u64, requeue: bool) -> Result<()> {
        let connection = self.layer.connection_of(channel)?;
        let mut settled = Vec::with_capacity(1);
        let dirty = &mut self.dirty;
        self.layer.settle(
            channel,
            tag,
            false,
            |u| settled.push(u),
            |q| {
                dirty.insert(q.clone());
            },
        )?;
        for unacked in settled {
            if requeue {
                self.requeue(unacked.item, &unacked.queue)?;
                continue;
            }
            let sql = format!("SELECT {COLUMNS} FROM messages WHERE id = ?1 AND owner = ?2");
            let rows = self.rows(&sql, params![unacked.item, connection])?;
            match self.queue(&unacked.queue)? {
                Some(q) => self.drop_rows(&q, rows, "rejected")?,
                None => {
                    self.exec("DELETE FROM messages WHERE id = ?1", [unacked.item])?;
                }
            }
        }
        Ok(())
    }

    /// Puts a delivered message back, marked redelivered.
    pub(super) fn requeue(&mut self, id: i64, queue: &Arc<str>) -> Result<()> {
        self.flush_acks()?;
        let expires_at: Option<Option<i64>> = self.one(
            "UPDATE messages SET owner = NULL, redelivered = 1 WHERE id = ?1 RETURNING expires_at",
            [id],
        )?;
        if let Some(Some(at)) = expires_at {
            self.schedule_expiry(id, at)?;
        }
        self.dirty.insert(queue.clone());
        self.wake_peers = true;
        Ok(())
    }

    pub(super) fn purge(&mut self, channel: u64, queue: &str) -> Result<u32> {
        let connection = self.layer.connection_of(channel)?;
        self.usable_queue(connection, queue)?;
        let n = self.exec(
            "DELETE FROM messages WHERE queue = ?1 AND owner IS NULL",
            [queue],
        )?;
        Ok(n as u32)
    }

    /// Makes the engine run an expiry pass no later than `at` (ms since the epoch).
    pub(super) fn expire_no_later_than(&mut self, at: i64) {
        if self.next_expiry.is_none_or(|next| at < next) {
            self.next_expiry = Some(at);
        }
    }

    /// Lists a message that is ready again (requeued) for expiry.
    pub(super) fn schedule_expiry(&mut self, id: i64, at: i64) -> Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO expiring VALUES (?1, ?2)",
            params![at, id],
        )?;
        self.expire_no_later_than(at);
        Ok(())
    }

    /// Expires what is due (messages, unused `x-expires` queues); returns the next deadline.
    ///
    /// `expiring` lists messages with a TTL; an entry goes when it is due: its message is then
    /// dead-lettered if still ready, forgotten if delivered (a requeue lists it again) or gone.
    pub(super) fn expire(&mut self, now: i64) -> Result<Option<i64>> {
        let due: Vec<i64> = self.column("SELECT id FROM expiring WHERE expires_at <= ?1", [now])?;
        self.exec("DELETE FROM expiring WHERE expires_at <= ?1", [now])?;
        let mut by_queue: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
        let sql = format!("SELECT {COLUMNS}, queue FROM messages WHERE id = ?1 AND owner IS NULL");
        for id in due {
            let found: Option<(RawRow, String)> =
                self.row_of(&sql, [id], |r| Ok((raw(r)?, r.get(10)?)))?;
            if let Some((raw_row, queue)) = found {
                by_queue.entry(queue).or_default().push(decode(raw_row)?);
            }
        }
        for (name, mut rows) in by_queue {
            rows.sort_by_key(|r| r.id);
            match self.queue(&name)? {
                Some(q) => self.drop_rows(&q, rows, "expired")?,
                None => {
                    for row in rows {
                        self.exec("DELETE FROM messages WHERE id = ?1", [row.id])?;
                    }
                }
            }
        }
        let mut next: Option<i64> = self
            .one::<Option<i64>>("SELECT min(expires_at) FROM expiring", [])?
            .flatten();
        // Queues with x-expires: deleted once unused for that long.
        let candidates: Vec<(String, i64)> = self.rows_of(
            "SELECT name, last_used FROM queues WHERE arguments LIKE '%\"x-expires\"%'
             AND NOT EXISTS (SELECT 1 FROM consumers WHERE consumers.queue = queues.name)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (name, last_used) in candidates {
            let Some(expires) = self.queue(&name)?.and_then(|q| q.limits.expires) else {
                continue;
            };
            let at = last_used.saturating_add(expires as i64);
            if at <= now {
                self.remove_queue(&name)?;
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }
}

/// Ids as a JSON array, for `json_each` (one statement for many rows).
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    let mut list = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&id.to_string());
    }
    list.push(']');
    list
}
