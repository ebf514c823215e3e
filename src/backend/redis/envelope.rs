//! kombu's message envelope on Redis, byte for byte: the JSON document its Redis transport
//! pushes on a queue's list (and publishes on fanout channels), written as Python's
//! `json.dumps` writes it (`", "` and `": "` separators, non-ASCII escaped, kombu's key
//! order), the body always base64, the delivery tag a uuid4.
//!
//! ```text
//! {"body": "eyJhIjogMX0=", "content-encoding": "utf-8", "content-type": "application/json",
//!  "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "myex",
//!  "routing_key": "rk"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "3f86..."}}
//! ```

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::backend::Published;
use crate::entity::DeliveryMode;
use crate::error::{Error, Result};
use crate::properties::Properties;
use crate::table::FieldTable;

/// `value` as Python's `json.dumps(value)` writes it.
fn python_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let out = crate::serialization::python_json(value).map_err(|e| {
        Error::InvalidArgument(format!(
            "the message cannot be written as kombu's JSON envelope: {e}"
        ))
    })?;
    // Python's `ensure_ascii` output is ASCII.
    String::from_utf8(out).map_err(|e| Error::InvalidArgument(e.to_string()))
}

#[derive(Serialize)]
struct Envelope<'a> {
    body: String,
    #[serde(rename = "content-encoding")]
    content_encoding: Option<&'a str>,
    #[serde(rename = "content-type")]
    content_type: Option<&'a str>,
    headers: &'a FieldTable,
    properties: Props<'a>,
}

#[derive(Serialize)]
struct Props<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<&'a str>,
    delivery_mode: u8,
    delivery_info: DeliveryInfo<'a>,
    priority: u8,
    body_encoding: &'static str,
    delivery_tag: &'a str,
}

#[derive(Serialize)]
struct DeliveryInfo<'a> {
    exchange: &'a str,
    routing_key: &'a str,
}

/// The envelope of a message published now, under a new delivery tag.
pub(crate) fn encode(message: &Published, delivery_tag: &str) -> Result<String> {
    let p = &message.properties;
    if p.expiration().is_some() {
        return Err(Error::Unsupported(
            "per-message TTL (expiration) on redis://: kombu's Redis transport has no message expiry; leave it out, or use RabbitMQ".into(),
        ));
    }
    let empty = FieldTable::new();
    let envelope = Envelope {
        body: base64::engine::general_purpose::STANDARD.encode(&message.body),
        content_encoding: p.content_encoding(),
        content_type: p.content_type(),
        headers: p.headers().unwrap_or(&empty),
        properties: Props {
            correlation_id: p.correlation_id(),
            reply_to: p.reply_to(),
            message_id: p.message_id(),
            timestamp: p.timestamp(),
            kind: p.kind(),
            user_id: p.user_id(),
            app_id: p.app_id(),
            cluster_id: p.cluster_id(),
            delivery_mode: p.delivery_mode().unwrap_or_default().as_u8(),
            delivery_info: DeliveryInfo {
                exchange: &message.exchange,
                routing_key: &message.routing_key,
            },
            priority: p.priority().unwrap_or(0),
            body_encoding: "base64",
            delivery_tag,
        },
    };
    python_json(&envelope)
}

/// A new delivery tag in kombu's form (`str(uuid.uuid4())`), from a thread-local generator:
/// a tag only has to be unique, and uuid's own v4 makes a system call for each.
pub(crate) fn new_tag() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
}

/// kombu's record of a delivery in its `unacked` hash: `[envelope, exchange, routing_key]`
/// as Python's `json.dumps` writes it, the envelope as it was taken.
pub(crate) fn record(payload: &str, exchange: &str, routing_key: &str) -> String {
    let text = |s: &str| python_json(s).unwrap_or_else(|_| format!("{s:?}"));
    format!("[{payload}, {}, {}]", text(exchange), text(routing_key))
}

/// A message read from Redis.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) message: Arc<Published>,
    /// kombu's delivery tag (the key of its unacked record).
    pub(crate) tag: String,
    pub(crate) redelivered: bool,
}

fn undecodable(reason: impl std::fmt::Display) -> String {
    reason.to_string()
}

/// The content type of a message whose envelope could not be read: its body is the whole
/// list element, and the header [`ENVELOPE_ERROR`] says why.
pub(crate) const UNREADABLE: &str = "application/x-carrot-unreadable-envelope";
/// The header that says why an envelope could not be read.
pub(crate) const ENVELOPE_ERROR: &str = "x-carrot-envelope-error";

/// Reads an envelope, as kombu's `virtual.Message` does. What is not kombu's envelope is
/// still handed out (it was taken off the queue and must be settled): its body is the
/// element as it was, its content type [`UNREADABLE`], under `fallback_tag`.
pub(crate) fn decode(payload: &str, fallback_tag: &str) -> Incoming {
    read(payload).unwrap_or_else(|reason| {
        let mut headers = FieldTable::new();
        headers.insert(
            ENVELOPE_ERROR.into(),
            crate::table::FieldValue::String(format!(
                "this element of a Redis list is not kombu's JSON envelope ({reason}); it was taken off the queue: acknowledge or reject it"
            )),
        );
        Incoming {
            message: Arc::new(Published {
                body: payload.as_bytes().into(),
                properties: Properties::default()
                    .with_content_type(UNREADABLE)
                    .with_headers(headers),
                exchange: "".into(),
                routing_key: "".into(),
            }),
            tag: fallback_tag.to_string(),
            redelivered: false,
        }
    })
}

fn read(payload: &str) -> std::result::Result<Incoming, String> {
    let doc: Value = serde_json::from_str(payload).map_err(undecodable)?;
    let Value::Object(mut doc) = doc else {
        return Err(undecodable("not a JSON object"));
    };
    let Some(Value::Object(props)) = doc.remove("properties") else {
        return Err(undecodable("no properties"));
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let tag = text(props.get("delivery_tag")).ok_or_else(|| undecodable("no delivery_tag"))?;
    let body = match doc.get("body") {
        Some(Value::String(s)) => match props.get("body_encoding").and_then(Value::as_str) {
            Some(enc) if enc.eq_ignore_ascii_case("base64") => {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| undecodable(format!("body is not base64: {e}")))?
            }
            Some(enc) if !enc.is_empty() && !enc.eq_ignore_ascii_case("utf-8") => {
                return Err(undecodable(format!("unknown body_encoding {enc:?}")))
            }
            _ => s.as_bytes().to_vec(),
        },
        None | Some(Value::Null) => Vec::new(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut properties = Properties::default();
    if let Some(ct) = text(doc.get("content-type")) {
        properties = properties.with_content_type(ct);
    }
    if let Some(ce) = text(doc.get("content-encoding")) {
        properties = properties.with_content_encoding(ce);
    }
    if let Some(Value::Object(h)) = doc.remove("headers") {
        if !h.is_empty() {
            let headers: FieldTable = h
                .into_iter()
                .filter_map(|(k, v)| serde_json::from_value(v).ok().map(|v| (k, v)))
                .collect();
            properties = properties.with_headers(headers);
        }
    }
    let number = |key: &str| {
        props
            .get(key)
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
    };
    if let Some(mode) = number("delivery_mode") {
        properties = properties.with_delivery_mode(DeliveryMode::from_u8(mode.min(255) as u8));
    }
    if let Some(priority) = number("priority") {
        properties = properties.with_priority(priority.min(255) as u8);
    }
    if let Some(ts) = number("timestamp") {
        properties = properties.with_timestamp(ts);
    }
    for (key, set) in [
        (
            "correlation_id",
            Properties::with_correlation_id as fn(Properties, String) -> Properties,
        ),
        ("reply_to", Properties::with_reply_to),
        ("message_id", Properties::with_message_id),
        ("type", Properties::with_kind),
        ("user_id", Properties::with_user_id),
        ("app_id", Properties::with_app_id),
        ("cluster_id", Properties::with_cluster_id),
        ("expiration", Properties::with_expiration),
    ] {
        if let Some(v) = text(props.get(key)) {
            properties = set(properties, v);
        }
    }
    let info = props.get("delivery_info");
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let redelivered = info
        .and_then(|i| i.get("redelivered"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Incoming {
        message: Arc::new(Published {
            body: body.into_boxed_slice(),
            properties,
            exchange: field("exchange").into(),
            routing_key: field("routing_key").into(),
        }),
        tag,
        redelivered,
    })
}

/// The envelope marked redelivered, as kombu's restore marks it (`delivery_info.redelivered`
/// and `headers.redelivered`), keeping the rest as written.
pub(crate) fn redelivered(payload: &str) -> String {
    if payload.contains("\"redelivered\": true") {
        return payload.to_string();
    }
    let marked = payload.replacen(
        "\"delivery_info\": {",
        "\"delivery_info\": {\"redelivered\": true, ",
        1,
    );
    if marked.contains("\"headers\": {}") {
        marked.replacen("\"headers\": {}", "\"headers\": {\"redelivered\": true}", 1)
    } else {
        marked.replacen("\"headers\": {", "\"headers\": {\"redelivered\": true, ", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::FieldValue;

    #[test]
    fn kombus_bytes() {
        let message = Published {
            body: b"{\"a\": 1}".to_vec().into_boxed_slice(),
            properties: Properties::default()
                .with_content_type("application/json")
                .with_content_encoding("utf-8")
                .with_delivery_mode(DeliveryMode::Persistent),
            exchange: "myex".into(),
            routing_key: "rk".into(),
        };
        assert_eq!(
            encode(&message, "3f867412-1c17-401a-b8c1-c25abeb9deac").unwrap(),
            r#"{"body": "eyJhIjogMX0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "myex", "routing_key": "rk"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "3f867412-1c17-401a-b8c1-c25abeb9deac"}}"#
        );
    }

    #[test]
    fn round_trip_with_headers_and_unicode() {
        let mut headers = FieldTable::new();
        headers.insert("h".into(), FieldValue::String("é€😀".into()));
        headers.insert("n".into(), FieldValue::Int(-3));
        let message = Published {
            body: vec![0, 159, 255].into_boxed_slice(),
            properties: Properties::default()
                .with_headers(headers.clone())
                .with_priority(7)
                .with_correlation_id("cid")
                .with_reply_to("rq"),
            exchange: "".into(),
            routing_key: "q".into(),
        };
        let json = encode(&message, "t").unwrap();
        assert!(json.is_ascii());
        assert!(
            json.contains(r#""h": "\u00e9\u20ac\ud83d\ude00""#),
            "{json}"
        );
        let back = read(&json).unwrap();
        assert_eq!(&*back.message.body, &[0, 159, 255]);
        assert_eq!(back.message.properties.headers(), Some(&headers));
        assert_eq!(back.message.properties.priority(), Some(7));
        assert_eq!(back.message.properties.correlation_id(), Some("cid"));
        assert_eq!(&*back.message.routing_key, "q");
        assert!(!back.redelivered);
        let again = read(&redelivered(&json)).unwrap();
        assert!(again.redelivered);
        assert_eq!(redelivered(&redelivered(&json)), redelivered(&json));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for bad in ["", "[]", "{}", "{\"properties\": {}}", "{\"body\": \"!!\", \"properties\": {\"delivery_tag\": \"t\", \"body_encoding\": \"base64\"}}"] {
            assert!(read(bad).is_err(), "{bad}");
            let kept = decode(bad, "fallback");
            assert_eq!((&*kept.message.body, kept.tag.as_str()), (bad.as_bytes(), "fallback"));
        }
    }
}
