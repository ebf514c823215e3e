//! A consumer's deliveries, from the broker to the consumer.
//!
//! On the embedded brokers the stream has a window: the broker hands a consumer at most
//! [`WINDOW`] deliveries that the consumer has not taken from its stream yet, whatever its
//! prefetch (no_ack consumers and unlimited prefetch included). A consumer that stops reading
//! (a `carrot serve` client that stops reading its socket) then leaves the messages in the
//! queue, counted as ready, instead of in memory; RabbitMQ's credit flow does the same. Once
//! the consumer has taken half the window back, the broker is asked to hand out more.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::Delivery;
use crate::error::{Error, Result};

/// Deliveries handed to a consumer and not yet taken from its stream, at most.
pub(crate) const WINDOW: usize = 4096;

/// Asks a broker to hand the ready messages of a queue to its consumers again.
pub(crate) type Replenish = Arc<dyn Fn(Arc<str>) + Send + Sync>;

struct Window {
    in_flight: AtomicUsize,
    queue: Arc<str>,
    replenish: Replenish,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .field("queue", &self.queue)
            .finish()
    }
}

/// Deliveries of one consumer. It ends after the application cancels the consumer or closes
/// its channel; an end the application did not ask for is an error: the last item says why
/// when the broker knows ([`Error::ConsumerCancelled`](crate::Error::ConsumerCancelled), a
/// recovery that gave up), and the consumer reports an end without one as cancelled by the
/// broker.
#[derive(Debug)]
pub(crate) struct DeliveryStream {
    rx: mpsc::UnboundedReceiver<Result<Delivery>>,
    window: Option<Arc<Window>>,
}

impl DeliveryStream {
    /// A stream without a window (RabbitMQ: its own prefetch and credit flow bound it).
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) fn unbounded(rx: mpsc::UnboundedReceiver<Result<Delivery>>) -> Self {
        DeliveryStream { rx, window: None }
    }

    /// The next item; `None` once the stream has ended.
    pub(crate) async fn recv(&mut self) -> Option<Result<Delivery>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            self.taken();
        }
        polled
    }

    /// The next item if one is there now.
    pub(crate) fn try_recv(&mut self) -> Option<Result<Delivery>> {
        let item = self.rx.try_recv().ok()?;
        if item.is_ok() {
            self.taken();
        }
        Some(item)
    }

    /// A delivery left the stream: once half the window is free again, the broker (which may
    /// have stopped handing out) is asked for more.
    fn taken(&self) {
        if let Some(window) = &self.window {
            let before = window.in_flight.fetch_sub(1, Ordering::AcqRel);
            if before == WINDOW / 2 + 1 {
                (window.replenish)(window.queue.clone());
            }
        }
    }
}

/// The broker's side of a windowed stream.
#[derive(Clone, Debug)]
pub(crate) struct Feed {
    tx: mpsc::UnboundedSender<Result<Delivery>>,
    window: Arc<Window>,
}

impl Feed {
    /// A feed of deliveries from `queue` and its stream; `replenish` is called (outside the
    /// broker's lock) when the consumer has taken half its window back.
    pub(crate) fn new(queue: Arc<str>, replenish: Replenish) -> (Feed, DeliveryStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        let window = Arc::new(Window {
            in_flight: AtomicUsize::new(0),
            queue,
            replenish,
        });
        let stream = DeliveryStream {
            rx,
            window: Some(window.clone()),
        };
        (Feed { tx, window }, stream)
    }

    /// How many more deliveries the window takes now.
    pub(crate) fn room(&self) -> usize {
        WINDOW.saturating_sub(self.window.in_flight.load(Ordering::Acquire))
    }

    /// Counts a delivery in the window before it is sent (with [`send_reserved`]).
    ///
    /// [`send_reserved`]: Feed::send_reserved
    pub(crate) fn reserve(&self) {
        self.window.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes back a reservation whose delivery will not be sent (a rolled-back transaction).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn unreserve(&self) {
        self.window.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Sends a delivery counted by [`reserve`](Feed::reserve); false if the stream was
    /// dropped.
    pub(crate) fn send_reserved(&self, delivery: Delivery) -> bool {
        self.tx.send(Ok(delivery)).is_ok()
    }

    /// Ends the stream with an error (the consumer cancelled by the broker).
    pub(crate) fn fail(&self, error: Error) {
        let _ = self.tx.send(Err(error));
    }

    /// Whether the consumer dropped its stream.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
