//! The queue of a connection's background task that applies work in the order it was queued
//! (the settler's settlements, the outbox's messages), and the wait until what was queued
//! before is applied.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The side that queues work, and waits for it.
pub(crate) struct Ordered<T> {
    tx: mpsc::UnboundedSender<T>,
    sent: AtomicU64,
    done: watch::Receiver<u64>,
}

impl<T> std::fmt::Debug for Ordered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ordered")
            .field("sent", &self.sent.load(Ordering::Relaxed))
            .field("done", &*self.done.borrow())
            .finish()
    }
}

/// The task's side: the work in batches, and its progress.
pub(crate) struct Worker<T> {
    rx: mpsc::UnboundedReceiver<T>,
    done: watch::Sender<u64>,
    count: u64,
    stop: CancellationToken,
}

/// A queue whose task ends once `stop` is cancelled and what was queued is applied.
pub(crate) fn ordered<T>(stop: CancellationToken) -> (Ordered<T>, Worker<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done) = watch::channel(0u64);
    let queue = Ordered {
        tx,
        sent: AtomicU64::new(0),
        done,
    };
    let worker = Worker {
        rx,
        done: done_tx,
        count: 0,
        stop,
    };
    (queue, worker)
}

impl<T> Ordered<T> {
    /// Queues work, applied after what was queued before it; gives it back if the task is
    /// gone (its runtime shutting down, its connection closed).
    pub(crate) fn push(&self, item: T) -> std::result::Result<(), T> {
        self.sent.fetch_add(1, Ordering::AcqRel);
        self.tx.send(item).map_err(|e| {
            self.sent.fetch_sub(1, Ordering::AcqRel);
            e.0
        })
    }

    /// Whether everything queued so far is applied.
    pub(crate) fn is_idle(&self) -> bool {
        *self.done.borrow() >= self.sent.load(Ordering::Acquire)
    }

    /// Waits until everything queued so far is applied (or the task is gone).
    pub(crate) async fn flush(&self) {
        let target = self.sent.load(Ordering::Acquire);
        if *self.done.borrow() >= target {
            return;
        }
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d >= target).await;
    }
}

impl<T> Worker<T> {
    /// Fills `batch` (empty) with the next work, at most `max`: waits for the first, takes
    /// what else is queued. Once stopped, what is still queued comes, then `false`: the end.
    pub(crate) async fn next(&mut self, batch: &mut Vec<T>, max: usize) -> bool {
        let first = tokio::select! {
            item = self.rx.recv() => item,
            () = self.stop.cancelled() => {
                self.rx.close();
                self.rx.recv().await
            }
        };
        let Some(first) = first else { return false };
        batch.push(first);
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        true
    }

    /// Marks `n` more items applied.
    pub(crate) fn applied(&mut self, n: usize) {
        self.count += n as u64;
        self.done.send_replace(self.count);
    }
}
