//! A received message as one line of output: its body, or a JSON object.

use base64::Engine as _;
use serde_json::{json, Value};

use carrot::{Message, Payload};

/// The JSON object `carrot consume --output json` prints for a message.
///
/// `body` is the decoded payload: JSON data for json messages, a string for text, and for
/// binary bodies (or bodies the content type cannot decode) a base64 string, with
/// `"body_encoding": "base64"` saying so.
pub(crate) fn json_line(message: &Message) -> Value {
    let (body, base64) = match message.payload() {
        Ok(Payload::Data(value)) => (value.clone(), false),
        Ok(Payload::Text(text)) => (Value::String(text.clone()), false),
        _ => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(message.body())),
            true,
        ),
    };
    let headers = message
        .headers()
        .and_then(|h| serde_json::to_value(h).ok())
        .unwrap_or_else(|| json!({}));
    let mut line = json!({
        "body": body,
        "content_type": message.content_type(),
        "content_encoding": message.content_encoding(),
        "exchange": message.exchange(),
        "routing_key": message.routing_key(),
        "headers": headers,
        "priority": message.priority(),
        "delivery_mode": message.delivery_mode().map(|m| m.as_u8()),
        "redelivered": message.redelivered(),
        "delivery_tag": message.delivery_tag(),
    });
    if base64 {
        line["body_encoding"] = Value::String("base64".into());
    }
    line
}
