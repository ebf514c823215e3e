//! A received message as output: its body, or one line of JSON.

use std::io::Write;

use base64::Engine as _;
use serde_json::{json, Value};

use carrot::{Message, Payload};

/// The body for `--output body`: decompressed; text as UTF-8; data of a serializer other
/// than json and raw as JSON; as it is when it cannot be decoded.
pub(crate) fn body(out: &mut impl Write, message: &Message) -> std::io::Result<()> {
    let plain = message
        .decompressed_body()
        .unwrap_or(std::borrow::Cow::Borrowed(message.body()));
    let structured = !matches!(
        message.content_type(),
        None | Some("application/json" | "text/plain" | "application/data")
    );
    match message.payload() {
        Ok(Payload::Data(value)) if structured => serde_json::to_writer(&mut *out, value)?,
        // Text in its character set (latin-1, ...) is written as UTF-8.
        Ok(Payload::Text(text)) => out.write_all(text.as_bytes())?,
        _ => out.write_all(&plain)?,
    }
    Ok(())
}

/// The JSON object `carrot consume --output json` prints for a message.
///
/// `body` is the decoded payload: JSON data for json, msgpack, yaml and pickle messages (for
/// the accepted ones), a string for text, and for binary bodies, or bodies that cannot be
/// decoded, a base64 string of the body as received, with `"body_encoding": "base64"`
/// saying so, and `refused` saying why when it was not decoded.
pub(crate) fn json_line(message: &Message) -> Value {
    let (body, base64, refused) = match message.payload() {
        Ok(Payload::Data(value)) => (value.clone(), false, None),
        Ok(Payload::Text(text)) => (Value::String(text.clone()), false, None),
        Ok(Payload::Bytes(bytes)) => (Value::String(encode(bytes)), true, None),
        Ok(_) => (Value::String(encode(message.body())), true, None),
        Err(e) => (
            Value::String(encode(message.body())),
            true,
            Some(e.to_string()),
        ),
    };
    let headers = message
        .headers()
        .and_then(|h| serde_json::to_value(h).ok())
        .unwrap_or_else(|| json!({}));
    let p = message.properties();
    let mut line = json!({
        "body": body,
        "content_type": message.content_type(),
        "content_encoding": message.content_encoding(),
        "compression": message.compression(),
        "exchange": message.exchange(),
        "routing_key": message.routing_key(),
        "headers": headers,
        "priority": message.priority(),
        "delivery_mode": message.delivery_mode().map(|m| m.as_u8()),
        "redelivered": message.redelivered(),
        "delivery_tag": message.delivery_tag(),
    });
    let properties = [
        ("correlation_id", p.correlation_id()),
        ("reply_to", p.reply_to()),
        ("expiration", p.expiration()),
        ("message_id", p.message_id()),
        ("type", p.kind()),
        ("user_id", p.user_id()),
        ("app_id", p.app_id()),
    ];
    for (name, value) in properties {
        if let Some(value) = value {
            line[name] = Value::String(value.into());
        }
    }
    if let Some(timestamp) = p.timestamp() {
        line["timestamp"] = json!(timestamp);
    }
    if base64 {
        line["body_encoding"] = Value::String("base64".into());
    }
    if let Some(reason) = refused {
        line["refused"] = Value::String(reason);
    }
    line
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
