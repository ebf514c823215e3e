//! What the caller of an operation is told once its transaction is over: nothing (it
//! committed) or why not.

use crate::error::{Cause, Error};

/// What a finished operation does once the transaction is over: `None` if it committed, why
/// not otherwise.
pub(super) type Reply = Box<dyn FnOnce(Option<&Failure>) + Send>;

/// Why a transaction failed, as every operation in it reports it: an `Error::Storage` with the
/// reason and the SQLite error under it, when there is one.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) reason: String,
    cause: Option<Cause>,
}

impl Failure {
    pub(super) fn of(e: &Error) -> Failure {
        match e {
            Error::Storage { reason, source } => Failure {
                reason: reason.clone(),
                cause: source.clone(),
            },
            other => Failure {
                reason: other.to_string(),
                cause: None,
            },
        }
    }

    pub(super) fn new(reason: &str) -> Failure {
        Failure {
            reason: reason.into(),
            cause: None,
        }
    }

    /// The error an operation of the failed transaction reports.
    pub(super) fn error(&self) -> Error {
        Error::Storage {
            reason: self.reason.clone(),
            source: self.cause.clone(),
        }
    }
}
