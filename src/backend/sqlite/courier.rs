//! After a commit: sending its deliveries to local consumers and answering its callers.
//!
//! Each send may wake a sleeping thread (a system call), so a commit with many of them (many
//! producers and consumers at once) hands them to a courier thread and lets the engine start
//! the next transaction meanwhile: on two cores, waking callers and running SQL then overlap.
//! A commit with few of them, when the courier has nothing left to do, is answered on the
//! engine thread at once (one producer and one consumer would otherwise pay a hand-over per
//! commit). Either way everything goes out in commit order: a consumer sees its deliveries in
//! the order they were made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::mpsc as tokio_mpsc;

use super::outcome::Reply;
use crate::backend::Delivery;

/// A delivery to hand out once its transaction commits: (channel, consumer stream, delivery).
pub(super) type Outgoing = (
    u64,
    tokio_mpsc::UnboundedSender<crate::error::Result<Delivery>>,
    Delivery,
);

/// A commit with more deliveries and replies than this goes to the courier.
const HAND_OVER_AT: usize = 16;

/// What one commit sends.
struct Parcel {
    deliveries: Vec<Outgoing>,
    replies: Vec<Reply>,
}

impl Parcel {
    fn send(self) {
        for (_, tx, delivery) in self.deliveries {
            let _ = tx.send(Ok(delivery));
        }
        for reply in self.replies {
            reply(None);
        }
    }
}

/// The courier thread (it ends with the broker).
pub(super) struct Courier {
    parcels: mpsc::Sender<Parcel>,
    /// Parcels handed over and not sent yet.
    pending: Arc<AtomicUsize>,
}

impl Courier {
    pub(super) fn start() -> std::io::Result<Courier> {
        let (parcels, rx) = mpsc::channel::<Parcel>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        std::thread::Builder::new()
            .name("carrot-sqlite-courier".into())
            .spawn(move || {
                for parcel in rx {
                    parcel.send();
                    left.fetch_sub(1, Ordering::Release);
                }
            })?;
        Ok(Courier { parcels, pending })
    }

    /// Sends a commit's deliveries, then its replies: here when they are few and nothing
    /// handed over before is still being sent, on the courier thread otherwise.
    pub(super) fn send(courier: Option<&Courier>, deliveries: Vec<Outgoing>, replies: Vec<Reply>) {
        let parcel = Parcel {
            deliveries,
            replies,
        };
        let Some(courier) = courier else {
            return parcel.send();
        };
        let many = parcel.deliveries.len() + parcel.replies.len() > HAND_OVER_AT;
        if !many && courier.pending.load(Ordering::Acquire) == 0 {
            return parcel.send();
        }
        courier.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::SendError(parcel)) = courier.parcels.send(parcel) {
            // The courier thread is gone (it cannot be while its sender lives): send here.
            courier.pending.fetch_sub(1, Ordering::AcqRel);
            parcel.send();
        }
    }
}

impl std::fmt::Debug for Courier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Courier")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish()
    }
}
