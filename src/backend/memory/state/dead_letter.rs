//! Expiry and dead-lettering, as RabbitMQ does them.
//!
//! A message expires once it reaches the head of its queue past its deadline (the queue's
//! `x-message-ttl` or its own `expiration`, whichever is shorter). Expired, rejected (without
//! requeue) and overflowing (`x-max-length`) messages go to the queue's dead-letter exchange,
//! with an `x-death` header saying where and why; without one they are dropped. A message
//! never goes back to a queue it already expired or overflowed from (a cycle), but rejections
//! are the consumer's choice. A queue unused for its `x-expires` is deleted.
//!
//! A thread per broker (started by the first queue or message that needs it) sleeps until the
//! next deadline, so expiry happens without anyone touching the queue.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::State;
use crate::backend::death::{died_in, with_death};
use crate::backend::Published;

impl State {
    /// Expires the heads of one queue.
    pub(in crate::backend::memory) fn expire_queue(&mut self, name: &str, now: u64) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let expired = q.expire(now);
        if !expired.is_empty() {
            self.dead_letter(name, expired, "expired");
        }
    }

    /// Sends messages that died in `queue` to its dead-letter exchange, if it has one.
    pub(super) fn dead_letter(&mut self, queue: &str, messages: Vec<Arc<Published>>, reason: &str) {
        let Some(target) = self
            .queues
            .get(queue)
            .and_then(|q| q.limits.dead_letter.clone())
        else {
            return;
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for message in messages {
            let dead = Published {
                body: message.body.clone(),
                properties: with_death(&message, queue, reason, time),
                exchange: target.exchange.clone(),
                routing_key: target
                    .routing_key
                    .clone()
                    .unwrap_or_else(|| message.routing_key.clone()),
            };
            let mut targets = Vec::new();
            // A missing dead-letter exchange drops the message, as on RabbitMQ.
            if self.route(&dead, &mut targets, false).is_err() {
                continue;
            }
            if reason != "rejected" {
                targets.retain(|t| !died_in(&dead, t));
            }
            if !targets.is_empty() {
                self.enqueue(&targets, Arc::new(dead));
            }
        }
    }

    /// Expires what is due in every queue and deletes unused `x-expires` queues; returns the
    /// next time there will be something to do.
    pub(in crate::backend::memory) fn sweep(&mut self, now: u64) -> Option<u64> {
        let names: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| q.limits.expires.is_some() || q.next_deadline().is_some())
            .map(|q| q.name.clone())
            .collect();
        let mut next: Option<u64> = None;
        let mut sooner = |at: u64| next = Some(next.map_or(at, |n| n.min(at)));
        for name in names {
            self.expire_queue(&name, now);
            let Some(q) = self.queues.get(&name) else {
                continue;
            };
            if let (Some(expires), true) =
                (q.limits.expires, self.layer.consumers_of(&name).is_empty())
            {
                let at = q.last_used.saturating_add(expires);
                if at <= now {
                    self.remove_queue(&name);
                    continue;
                }
                sooner(at);
            }
            if let Some(deadline) = q.next_deadline() {
                sooner(deadline);
            }
        }
        next
    }
}
