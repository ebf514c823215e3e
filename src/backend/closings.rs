//! The closes a drop starts without waiting for them (a dropped consumer's `channel.close`, a
//! dropped connection's `connection.close`), counted, so that whoever owns the runtime they
//! run on can let them finish before stopping it (the blocking API's runtime does).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// A count of closes under way on one connection; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Closings(Arc<watch::Sender<usize>>);

impl Default for Closings {
    fn default() -> Self {
        Closings(Arc::new(watch::Sender::new(0)))
    }
}

/// One close under way: counted while it lives.
#[derive(Debug)]
struct Underway(Arc<watch::Sender<usize>>);

impl Drop for Underway {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Closings {
    /// `close`, counted from now until it ends or is dropped.
    #[cfg_attr(not(any(feature = "amqp", feature = "redis")), allow(dead_code))]
    pub(crate) fn track<F: Future>(&self, close: F) -> impl Future<Output = F::Output> {
        self.0.send_modify(|n| *n += 1);
        let underway = Underway(self.0.clone());
        async move {
            let _underway = underway;
            close.await
        }
    }

    /// Resolves once no close is under way.
    pub(crate) async fn idle(&self) {
        let mut count = self.0.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_tracked_close() {
        let closings = Closings::default();
        closings.idle().await; // nothing under way
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let close = tokio::spawn(closings.track(async move {
            let _ = rx.await;
        }));
        let dropped = closings.track(async {});
        let idle = tokio::spawn({
            let closings = closings.clone();
            async move { closings.idle().await }
        });
        drop(dropped); // a close dropped before it ran is no longer under way
        tokio::task::yield_now().await;
        assert!(!idle.is_finished(), "one close is still under way");
        let _ = tx.send(());
        let _ = close.await;
        tokio::time::timeout(std::time::Duration::from_secs(5), idle)
            .await
            .expect("idle once the close ended")
            .expect("the idle task");
    }
}
