//! Dead-lettering as RabbitMQ records it: the `x-death` header and its cycle rule.

use crate::backend::Published;
use crate::table::{FieldTable, FieldValue};

/// Whether the message already died in `queue` for a reason other than rejection.
pub(crate) fn died_in(message: &Published, queue: &str) -> bool {
    let Some(FieldValue::Array(deaths)) =
        message.properties.headers().and_then(|h| h.get("x-death"))
    else {
        return false;
    };
    deaths.iter().any(|d| match d {
        FieldValue::Table(t) => {
            t.get("queue").and_then(FieldValue::as_str) == Some(queue)
                && t.get("reason").and_then(FieldValue::as_str) != Some("rejected")
        }
        _ => false,
    })
}

/// The message's properties with its death recorded in `x-death` (newest first, one entry per
/// queue and reason with a count) and the `x-first-death-*` headers.
pub(crate) fn with_death(
    message: &Published,
    queue: &str,
    reason: &str,
    time: i64,
) -> crate::Properties {
    let mut headers: FieldTable = message.properties.headers().cloned().unwrap_or_default();
    let mut deaths = match headers.remove("x-death") {
        Some(FieldValue::Array(d)) => d,
        _ => Vec::new(),
    };
    let same = |d: &FieldValue| match d {
        FieldValue::Table(t) => {
            t.get("queue").and_then(FieldValue::as_str) == Some(queue)
                && t.get("reason").and_then(FieldValue::as_str) == Some(reason)
        }
        _ => false,
    };
    let mut entry = match deaths.iter().position(same).map(|i| deaths.remove(i)) {
        Some(FieldValue::Table(t)) => t,
        _ => FieldTable::new(),
    };
    let count = match entry.get("count") {
        Some(FieldValue::Int(n)) => n + 1,
        _ => 1,
    };
    entry.insert("count".into(), FieldValue::Int(count));
    entry.insert("reason".into(), reason.into());
    entry.insert("queue".into(), queue.into());
    entry.insert("time".into(), FieldValue::Int(time));
    entry.insert("exchange".into(), message.exchange.as_ref().into());
    entry.insert(
        "routing-keys".into(),
        FieldValue::Array(vec![message.routing_key.as_ref().into()]),
    );
    let mut properties = message.properties.clone();
    if reason == "expired" {
        if let Some(expiration) = properties.expiration() {
            entry.insert("original-expiration".into(), expiration.into());
        }
        properties = properties.without_expiration();
    }
    deaths.insert(0, FieldValue::Table(entry));
    if !headers.contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), reason.into());
        headers.insert("x-first-death-queue".into(), queue.into());
        headers.insert(
            "x-first-death-exchange".into(),
            message.exchange.as_ref().into(),
        );
    }
    headers.insert("x-death".into(), FieldValue::Array(deaths));
    properties.with_headers(headers)
}
