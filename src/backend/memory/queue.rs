//! One queue of the embedded broker: its messages, by priority (its consumers are in the
//! shared channel layer, `backend::embedded`).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::backend::arguments::Limits;
use crate::backend::Published;
use crate::entity::QueueSpec;

/// A deadline that never comes.
pub(super) const NEVER: u64 = u64::MAX;

/// A message waiting in a queue.
#[derive(Debug)]
pub(super) struct Ready {
    pub(super) message: Arc<Published>,
    pub(super) redelivered: bool,
    /// When it expires, in milliseconds of the broker's clock ([`NEVER`] without a TTL).
    pub(super) deadline: u64,
    /// Its place in the queue, in publishing order: a requeued message goes back there.
    pub(super) seq: u64,
}

#[derive(Debug)]
pub(super) struct Queue {
    pub(super) name: Arc<str>,
    pub(super) spec: QueueSpec,
    /// The connection owning an exclusive queue.
    pub(super) owner: Option<u64>,
    pub(super) limits: Limits,
    /// One level per priority, highest last; a single level without `x-max-priority`.
    levels: Vec<VecDeque<Ready>>,
    len: usize,
    /// Whether a waiting message may have a deadline (so expiry is worth checking).
    has_deadlines: bool,
    /// Whether it ever had a consumer (an auto-delete queue goes with its last one).
    pub(super) had_subscriber: bool,
    /// When the queue was last used (declared, read, consumed from), for `x-expires`.
    pub(super) last_used: u64,
    /// The `seq` of the next message published to it.
    next_seq: u64,
}

impl Queue {
    pub(super) fn new(
        name: Arc<str>,
        spec: QueueSpec,
        owner: Option<u64>,
        limits: Limits,
        now: u64,
    ) -> Self {
        let levels = usize::from(limits.max_priority.unwrap_or(0)) + 1;
        Queue {
            name,
            spec,
            owner,
            limits,
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            len: 0,
            has_deadlines: false,
            had_subscriber: false,
            last_used: now,
            next_seq: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn level(&self, message: &Published) -> usize {
        let top = self.levels.len() - 1;
        usize::from(message.properties.priority().unwrap_or(0)).min(top)
    }

    /// The deadline of a message published now: the shorter of the queue's TTL and the
    /// message's `expiration`.
    pub(super) fn deadline(&self, message: &Published, now: u64) -> u64 {
        self.limits
            .ttl_of(message)
            .map_or(NEVER, |ttl| now.saturating_add(ttl))
    }

    /// Appends a published message; with `x-max-length`, the oldest messages make room and
    /// are returned (to be dead-lettered).
    pub(super) fn push_back(
        &mut self,
        message: Arc<Published>,
        deadline: u64,
    ) -> Vec<Arc<Published>> {
        let level = self.level(&message);
        self.has_deadlines |= deadline != NEVER;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.levels[level].push_back(Ready {
            message,
            redelivered: false,
            deadline,
            seq,
        });
        self.len += 1;
        let mut dropped = Vec::new();
        if let Some(max) = self.limits.max_length {
            while self.len > max {
                match self.pop() {
                    Some(ready) => dropped.push(ready.message),
                    None => break,
                }
            }
        }
        dropped
    }

    /// Puts a message back where it was in its priority level (before the messages published
    /// after it), as RabbitMQ requeues: several requeued at once, in any order, keep their
    /// publishing order. `ready.redelivered` says whether it had been delivered.
    pub(super) fn put_back(&mut self, ready: Ready) {
        let level = self.level(&ready.message);
        self.has_deadlines |= ready.deadline != NEVER;
        let level = &mut self.levels[level];
        let at = level.partition_point(|r| r.seq < ready.seq);
        level.insert(at, ready);
        self.len += 1;
    }

    /// Takes the next message: the oldest of the highest priority.
    pub(super) fn pop(&mut self) -> Option<Ready> {
        let ready = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.len -= 1;
        Some(ready)
    }

    /// Whether a waiting message may have a deadline (so that expiry is worth a look).
    pub(super) fn may_expire(&self) -> bool {
        self.has_deadlines
    }

    /// Removes the messages at the head of each level whose deadline has passed (as RabbitMQ,
    /// a message expires once it reaches the head).
    pub(super) fn expire(&mut self, now: u64) -> Vec<Arc<Published>> {
        let mut expired = Vec::new();
        if !self.has_deadlines {
            return expired;
        }
        for level in &mut self.levels {
            while level.front().is_some_and(|r| r.deadline <= now) {
                if let Some(ready) = level.pop_front() {
                    expired.push(ready.message);
                }
            }
        }
        self.len -= expired.len();
        if self.len == 0 {
            self.has_deadlines = false;
        }
        expired
    }

    /// The earliest deadline among the heads of the levels.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        if !self.has_deadlines {
            return None;
        }
        self.levels
            .iter()
            .filter_map(|l| l.front().map(|r| r.deadline))
            .filter(|d| *d != NEVER)
            .min()
    }

    /// Drops every waiting message; returns how many.
    pub(super) fn purge(&mut self) -> usize {
        let n = self.len;
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.len = 0;
        self.has_deadlines = false;
        n
    }

    /// Keeps only the waiting messages `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Ready) -> bool) {
        for level in &mut self.levels {
            level.retain(&mut keep);
        }
        self.len = self.levels.iter().map(VecDeque::len).sum();
    }
}
