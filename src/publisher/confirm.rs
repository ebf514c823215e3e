//! [`PendingConfirm`]: the broker's answer to one message, awaited now or later.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::backend::Confirmation;
use crate::error::Result;

/// The broker's answer to one message, to await now or later: `Ok(())` once the broker has
/// taken responsibility for it (publisher confirms), [`Error::Nacked`](crate::Error::Nacked) if it refused,
/// [`Error::Unroutable`](crate::Error::Unroutable) if a mandatory message found no queue, [`Error::Timeout`](crate::Error::Timeout) or
/// [`Error::Blocked`](crate::Error::Blocked) if no answer came within the send timeout. Without confirms (and on the
/// memory broker, which has a message once `begin_send` returns) it is ready at once; on
/// sqlite:// it resolves when the message's transaction has committed, on redis:// when Redis
/// has stored the message.
///
/// Awaiting many at once keeps many confirms in flight: one publisher is then no longer
/// bound by the broker's round trip (see [`Publisher::begin_send`](crate::Publisher::begin_send)). A confirm lost with a
/// connection is not lost for the message: it is sent again on the recovered connection.
#[must_use = "await it: it says whether the broker took the message"]
pub struct PendingConfirm {
    pub(super) confirmation: Option<Confirmation>,
}

impl std::fmt::Debug for PendingConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConfirm")
            .field("confirmation", &self.confirmation)
            .finish()
    }
}

impl PendingConfirm {
    /// Waits for the broker's answer (the same as awaiting it).
    pub async fn wait(self) -> Result<()> {
        self.await
    }

    /// Whether the answer is known without waiting (no confirms, or the memory broker; on
    /// sqlite:// a confirmed message is confirmed by its commit).
    pub fn is_ready(&self) -> bool {
        matches!(self.confirmation, Some(Confirmation::Done) | None)
    }
}

impl Future for PendingConfirm {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.confirmation {
            None | Some(Confirmation::Done) => {
                self.confirmation = None;
                Poll::Ready(Ok(()))
            }
            Some(Confirmation::Pending(pending)) => {
                let outcome = std::task::ready!(pending.as_mut().poll(cx));
                self.confirmation = None;
                Poll::Ready(outcome)
            }
        }
    }
}
