//! The crate's ways of making errors, so that the places that make them stay one line.

use super::{Cause, Error};
use crate::redact::redact;
use std::fmt;

impl Error {
    pub(crate) fn invalid_url(url: &str, reason: impl fmt::Display) -> Self {
        Error::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        }
    }

    /// A channel closed on this side (by the application or by carrot), with what happened.
    pub(crate) fn channel_closed(reply_text: impl Into<String>) -> Self {
        Error::ChannelClosed {
            reply_code: None,
            reply_text: reply_text.into(),
            source: None,
        }
    }

    /// A connection lost or closed on this side, with what happened.
    pub(crate) fn connection_closed(reply_text: impl Into<String>) -> Self {
        Error::ConnectionClosed {
            reply_code: None,
            reply_text: reply_text.into(),
            source: None,
        }
    }

    /// A storage failure that no other error caused (an unreadable row, a file of another
    /// application, ...).
    pub(crate) fn storage(reason: impl Into<String>) -> Self {
        Error::Storage {
            reason: reason.into(),
            source: None,
        }
    }

    /// A storage failure caused by `source` (a SQLite error).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn storage_caused(
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            reason: reason.into(),
            source: Some(Cause::new(source)),
        }
    }

    /// A task that did not finish (`task` says what it was doing).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn task_failed(task: impl Into<String>, error: tokio::task::JoinError) -> Self {
        Error::TaskFailed {
            task: task.into(),
            panicked: error.is_panic(),
            source: Cause::new(error),
        }
    }

    /// The same error for another caller, when it can be copied (every variant but `Io`,
    /// `Encode`, `Decode` and `TaskFailed`, whose causes cannot be); `None` otherwise.
    pub(crate) fn duplicate(&self) -> Option<Self> {
        Some(match self {
            Error::ConnectFailed {
                url,
                reason,
                source,
            } => Error::ConnectFailed {
                url: url.clone(),
                reason: reason.clone(),
                source: source.clone(),
            },
            Error::ConnectionClosed {
                reply_code,
                reply_text,
                source,
            } => Error::ConnectionClosed {
                reply_code: *reply_code,
                reply_text: reply_text.clone(),
                source: source.clone(),
            },
            Error::ChannelClosed {
                reply_code,
                reply_text,
                source,
            } => Error::ChannelClosed {
                reply_code: *reply_code,
                reply_text: reply_text.clone(),
                source: source.clone(),
            },
            Error::Storage { reason, source } => Error::Storage {
                reason: reason.clone(),
                source: source.clone(),
            },
            Error::RetriesExhausted {
                what,
                attempts,
                elapsed,
                last,
            } => Error::RetriesExhausted {
                what: what.clone(),
                attempts: *attempts,
                elapsed: *elapsed,
                last: last.clone(),
            },
            _ => return None,
        })
    }
}
