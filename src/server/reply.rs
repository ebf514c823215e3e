//! carrot errors as the AMQP replies RabbitMQ sends: reply code, reply text in RabbitMQ's
//! `NAME - detail` style, and whether the error closes the channel or the connection.

use crate::error::Error;

/// An error to send to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) code: u16,
    pub(super) text: String,
    /// Closes the whole connection (hard errors: 5xx, 320) rather than the channel.
    pub(super) hard: bool,
}

impl Refusal {
    pub(super) fn channel(code: u16, detail: impl std::fmt::Display) -> Refusal {
        Refusal {
            code,
            text: text(code, detail),
            hard: false,
        }
    }

    pub(super) fn connection(code: u16, detail: impl std::fmt::Display) -> Refusal {
        Refusal {
            code,
            text: text(code, detail),
            hard: true,
        }
    }

    /// The reply for a broker error.
    pub(super) fn of(error: &Error) -> Refusal {
        match error {
            Error::NotFound(m) => Refusal::channel(404, m),
            Error::ResourceLocked(m) => Refusal::channel(405, m),
            Error::PreconditionFailed(m) => Refusal::channel(406, m),
            Error::AccessRefused(m) => Refusal::channel(403, m),
            Error::Unsupported(m) => Refusal::connection(540, m),
            Error::MessageTooLarge { .. } => Refusal::channel(406, error),
            Error::ChannelClosed {
                reply_code: Some(code),
                reply_text,
                ..
            } => Refusal::channel(*code, reply_text),
            Error::ConnectionClosed {
                reply_code: Some(code),
                reply_text,
                ..
            } => Refusal::connection(*code, reply_text),
            other => Refusal::connection(541, other),
        }
    }
}

/// RabbitMQ's reply text: the code's name, then the detail.
fn text(code: u16, detail: impl std::fmt::Display) -> String {
    let name = match code {
        200 => "OK",
        311 => "CONTENT_TOO_LARGE",
        312 => "NO_ROUTE",
        313 => "NO_CONSUMERS",
        320 => "CONNECTION_FORCED",
        402 => "INVALID_PATH",
        403 => "ACCESS_REFUSED",
        404 => "NOT_FOUND",
        405 => "RESOURCE_LOCKED",
        406 => "PRECONDITION_FAILED",
        501 => "FRAME_ERROR",
        502 => "SYNTAX_ERROR",
        503 => "COMMAND_INVALID",
        504 => "CHANNEL_ERROR",
        505 => "UNEXPECTED_FRAME",
        506 => "RESOURCE_ERROR",
        530 => "NOT_ALLOWED",
        540 => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    };
    let mut text = format!("{name} - {detail}");
    // A short string: at most 255 bytes, cut on a character boundary.
    if text.len() > 255 {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_rabbitmqs() {
        let r = Refusal::of(&Error::NotFound("no queue 'q' in vhost '/'".into()));
        assert_eq!(r, Refusal::channel(404, "no queue 'q' in vhost '/'"));
        assert_eq!(r.text, "NOT_FOUND - no queue 'q' in vhost '/'");
        assert!(Refusal::of(&Error::Unsupported("tx".into())).hard);
        assert!(Refusal::channel(406, "é".repeat(200)).text.len() <= 255);
    }
}
