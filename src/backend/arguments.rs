//! Queue arguments the embedded brokers act on (`x-max-priority`, `x-max-length`,
//! `x-message-ttl`, `x-expires`, dead-lettering, `x-queue-type`), parsed once at declaration.

use std::sync::Arc;

use crate::entity::QueueSpec;
use crate::error::{Error, Result};
use crate::table::FieldValue;

/// Where a queue's dead letters go (`x-dead-letter-exchange`, `x-dead-letter-routing-key`).
#[derive(Clone, Debug)]
pub(crate) struct DeadLetter {
    pub(crate) exchange: Arc<str>,
    pub(crate) routing_key: Option<Arc<str>>,
}

/// The arguments of a queue the broker acts on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limits {
    pub(crate) max_priority: Option<u8>,
    pub(crate) max_length: Option<usize>,
    /// `x-message-ttl` in milliseconds.
    pub(crate) message_ttl: Option<u64>,
    /// `x-expires` in milliseconds.
    pub(crate) expires: Option<u64>,
    pub(crate) dead_letter: Option<DeadLetter>,
}

/// The queue arguments an embedded broker (memory, SQLite) acts on; others are refused, never
/// ignored. `backend` names the broker in error messages.
pub(crate) fn limits(spec: &QueueSpec, backend: &str) -> Result<Limits> {
    let invalid = |key: &str, what: &str| {
        Error::PreconditionFailed(format!(
            "invalid arg '{key}' for queue '{}': {what}",
            spec.name
        ))
    };
    let millis = |key: &str, positive: bool| -> Result<Option<u64>> {
        match spec.arguments.get(key) {
            None => Ok(None),
            Some(FieldValue::Int(n)) if *n > 0 || (*n == 0 && !positive) => Ok(Some(*n as u64)),
            Some(_) => Err(invalid(key, "expected a whole number of milliseconds")),
        }
    };
    let text = |key: &str| -> Result<Option<Arc<str>>> {
        match spec.arguments.get(key) {
            None => Ok(None),
            Some(FieldValue::String(s)) => Ok(Some(s.as_str().into())),
            Some(_) => Err(invalid(key, "expected a string")),
        }
    };
    let mut limits = Limits {
        max_priority: spec.max_priority_value()?,
        max_length: match spec.arguments.get("x-max-length") {
            None => None,
            Some(FieldValue::Int(n)) if *n >= 0 => Some(*n as usize),
            Some(_) => return Err(invalid("x-max-length", "expected a non-negative integer")),
        },
        message_ttl: millis("x-message-ttl", false)?,
        expires: millis("x-expires", true)?,
        dead_letter: None,
    };
    let routing_key = text("x-dead-letter-routing-key")?;
    limits.dead_letter = match text("x-dead-letter-exchange")? {
        Some(exchange) => Some(DeadLetter {
            exchange,
            routing_key,
        }),
        None if routing_key.is_some() => {
            return Err(invalid(
                "x-dead-letter-routing-key",
                "it needs x-dead-letter-exchange too",
            ))
        }
        None => None,
    };
    for key in spec.arguments.keys() {
        match key.as_str() {
            "x-max-priority" | "x-max-length" | "x-message-ttl" | "x-expires"
            | "x-dead-letter-exchange" | "x-dead-letter-routing-key" => {}
            // The queue behind a direct reply-to address (`rules::REPLY_QUEUE`).
            k if k == super::rules::REPLY_QUEUE && spec.name.starts_with("amq.rabbitmq.reply-to.") => {}
            "x-queue-type" => match spec.arguments[key].as_str() {
                Some("classic") => {}
                Some("quorum") if spec.durable && !spec.exclusive && !spec.auto_delete => {}
                Some("quorum") => {
                    return Err(invalid(
                        key,
                        "quorum queues must be durable, not exclusive and not auto-delete",
                    ))
                }
                Some("stream") => {
                    return Err(Error::Unsupported(
                        format!("x-queue-type \"stream\": {backend} has classic and quorum queues; streams need RabbitMQ (amqp://)"),
                    ))
                }
                other => return Err(invalid(key, &format!("unknown queue type {other:?}"))),
            },
            other if other.starts_with("x-") => {
                return Err(Error::Unsupported(format!(
                    "queue argument '{other}' is not implemented by {backend}; use RabbitMQ (amqp://) for it"
                )))
            }
            _ => {}
        }
    }
    Ok(limits)
}

impl Limits {
    /// How long a message may wait in this queue, in milliseconds: the queue's `x-message-ttl`
    /// or the message's own `expiration`, whichever is shorter; `None` for ever.
    pub(crate) fn ttl_of(&self, message: &crate::backend::Published) -> Option<u64> {
        let per_message = message
            .properties
            .expiration()
            .and_then(|e| e.trim().parse::<u64>().ok());
        match (self.message_ttl, per_message) {
            (None, None) => None,
            (Some(t), None) | (None, Some(t)) => Some(t),
            (Some(a), Some(b)) => Some(a.min(b)),
        }
    }
}
