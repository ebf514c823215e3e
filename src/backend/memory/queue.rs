//! One queue of the embedded broker: its messages (by priority) and its consumers.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::backend::{Delivery, Published};
use crate::entity::QueueSpec;

/// A message waiting in a queue.
#[derive(Debug)]
pub(super) struct Ready {
    pub(super) message: Arc<Published>,
    pub(super) redelivered: bool,
}

/// A consumer subscribed to a queue.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) tag: Arc<str>,
    pub(super) channel: u64,
    pub(super) no_ack: bool,
    pub(super) exclusive: bool,
    /// 0: unlimited.
    pub(super) prefetch: u16,
    pub(super) unacked: u32,
    pub(super) tx: mpsc::UnboundedSender<Delivery>,
}

impl Subscriber {
    pub(super) fn has_credit(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked < u32::from(self.prefetch)
    }
}

#[derive(Debug)]
pub(super) struct Queue {
    pub(super) name: Arc<str>,
    pub(super) spec: QueueSpec,
    /// The connection owning an exclusive queue.
    pub(super) owner: Option<u64>,
    /// One level per priority, highest last; a single level without `x-max-priority`.
    levels: Vec<VecDeque<Ready>>,
    len: usize,
    max_length: Option<usize>,
    pub(super) subscribers: Vec<Subscriber>,
    /// Round-robin position among subscribers.
    pub(super) next_subscriber: usize,
    pub(super) had_subscriber: bool,
}

impl Queue {
    pub(super) fn new(
        name: Arc<str>,
        spec: QueueSpec,
        owner: Option<u64>,
        max_priority: Option<u8>,
        max_length: Option<usize>,
    ) -> Self {
        let levels = usize::from(max_priority.unwrap_or(0)) + 1;
        Queue {
            name,
            spec,
            owner,
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            len: 0,
            max_length,
            subscribers: Vec::new(),
            next_subscriber: 0,
            had_subscriber: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn level(&self, message: &Published) -> usize {
        let top = self.levels.len() - 1;
        usize::from(message.properties.priority().unwrap_or(0)).min(top)
    }

    /// Appends a published message; with `x-max-length`, the oldest messages make room.
    pub(super) fn push_back(&mut self, message: Arc<Published>) {
        let level = self.level(&message);
        self.levels[level].push_back(Ready {
            message,
            redelivered: false,
        });
        self.len += 1;
        if let Some(max) = self.max_length {
            while self.len > max {
                self.pop();
            }
        }
    }

    /// Puts a message back at the head of its priority level, marked redelivered.
    pub(super) fn push_front(&mut self, message: Arc<Published>) {
        let level = self.level(&message);
        self.levels[level].push_front(Ready {
            message,
            redelivered: true,
        });
        self.len += 1;
    }

    /// Takes the next message: the oldest of the highest priority.
    pub(super) fn pop(&mut self) -> Option<Ready> {
        let ready = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.len -= 1;
        Some(ready)
    }

    /// Drops every waiting message; returns how many.
    pub(super) fn purge(&mut self) -> usize {
        let n = self.len;
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.len = 0;
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
