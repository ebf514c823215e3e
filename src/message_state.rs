//! What has happened to a received message: [`MessageState`] (below the errors, which name
//! it when a message is settled twice).

use std::fmt;

/// What has happened to a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageState {
    /// Received and not yet settled: `ack`, `reject` or `requeue` it.
    Received,
    /// Acknowledged: the broker forgot it.
    Acknowledged,
    /// Rejected without requeue: the broker dropped it (or dead-lettered it).
    Rejected,
    /// Rejected with requeue: it went back to its queue.
    Requeued,
}

impl MessageState {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => MessageState::Acknowledged,
            2 => MessageState::Rejected,
            3 => MessageState::Requeued,
            _ => MessageState::Received,
        }
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageState::Received => "received",
            MessageState::Acknowledged => "acknowledged",
            MessageState::Rejected => "rejected",
            MessageState::Requeued => "requeued",
        })
    }
}
