//! The callbacks and decode-error handler that `receive` runs, for a consumer or a set.

use crate::error::{Error, Result};
use crate::message::Message;
use crate::serialization::Payload;

/// A callback: receives the decoded payload and the message (the seed's
/// `callback(message_data, message)`). An error stops `wait` / `iterconsume` and is returned.
pub type Callback = Box<dyn FnMut(&Payload, &Message) -> Result<()> + Send>;

/// Called when a message cannot be decoded (`on_decode_error(message, error)`). Without one,
/// the error is returned and the message stays unacknowledged.
pub type DecodeErrorHandler = Box<dyn FnMut(&Message, &Error) + Send>;

/// The callbacks and decode-error handler of a consumer or consumer set: what `receive` runs.
#[derive(Default)]
pub(crate) struct Handlers {
    callbacks: Vec<Callback>,
    on_decode_error: Option<DecodeErrorHandler>,
}

impl Handlers {
    pub(crate) fn add(&mut self, callback: Callback) {
        self.callbacks.push(callback);
    }

    pub(crate) fn set_on_decode_error(&mut self, handler: DecodeErrorHandler) {
        self.on_decode_error = Some(handler);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Passes a message to every callback: [`Error::NoCallbacks`] without any; a body that
    /// cannot be decoded goes to the decode-error handler, or is returned as the error.
    pub(crate) fn receive(&mut self, message: &Message) -> Result<()> {
        if self.callbacks.is_empty() {
            return Err(Error::NoCallbacks);
        }
        let payload = match message.payload() {
            Ok(payload) => payload,
            Err(error) => {
                return match &mut self.on_decode_error {
                    Some(handler) => {
                        handler(message, &error);
                        Ok(())
                    }
                    None => Err(error),
                }
            }
        };
        for callback in &mut self.callbacks {
            callback(payload, message)?;
        }
        Ok(())
    }
}
