//! Conversions between carrot's types and lapin's: properties, field tables, errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldArray, FieldTable as LapinTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::backend::{Delivery, Published};
use crate::entity::DeliveryMode;
use crate::error::{is_client_fault_code, Cause, Error, Result};
use crate::properties::Properties;
use crate::table::{FieldTable, FieldValue};

/// Delivery tags handed to the application carry the generation of the AMQP channel they came
/// from in their top bits, so that an ack for a delivery of a channel the broker has since
/// closed is refused instead of acking an unrelated delivery on the reopened channel.
pub(super) const GENERATION_SHIFT: u32 = 48;

/// A name, key or property as an AMQP short string, which carries at most 255 bytes: longer
/// ones are an [`Error::InvalidArgument`] (lapin's conversion panics on them).
pub(super) fn short(value: &str, what: &str) -> Result<ShortString> {
    ShortString::try_new(value).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} {:?}... is {} bytes long: AMQP carries at most 255 bytes there",
            value.chars().take(32).collect::<String>(),
            value.len()
        ))
    })
}

pub(crate) fn to_lapin_table(table: &FieldTable) -> Result<LapinTable> {
    let map: BTreeMap<ShortString, AMQPValue> = table
        .iter()
        .map(|(k, v)| Ok((short(k, "the field table key")?, to_lapin_value(v)?)))
        .collect::<Result<_>>()?;
    Ok(LapinTable::from(map))
}

/// Integers go out as Python's py-amqp writes them: 32 bits when they fit, else 64.
fn to_lapin_value(value: &FieldValue) -> Result<AMQPValue> {
    Ok(match value {
        FieldValue::Void => AMQPValue::Void,
        FieldValue::Bool(b) => AMQPValue::Boolean(*b),
        FieldValue::Int(i) => match i32::try_from(*i) {
            Ok(small) => AMQPValue::LongInt(small),
            Err(_) => AMQPValue::LongLongInt(*i),
        },
        FieldValue::Float(f) => AMQPValue::Double(*f),
        FieldValue::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        FieldValue::Bytes(b) => AMQPValue::ByteArray(b.clone().into()),
        FieldValue::Array(a) => AMQPValue::FieldArray(FieldArray::from(
            a.iter().map(to_lapin_value).collect::<Result<Vec<_>>>()?,
        )),
        FieldValue::Table(t) => AMQPValue::FieldTable(to_lapin_table(t)?),
        #[allow(unreachable_patterns)]
        _ => AMQPValue::Void,
    })
}

pub(crate) fn from_lapin_table(table: &LapinTable) -> FieldTable {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), from_lapin_value(v)))
        .collect()
}

fn from_lapin_value(value: &AMQPValue) -> FieldValue {
    match value {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => FieldValue::Int(*i),
        AMQPValue::Timestamp(t) => FieldValue::Int(i64::try_from(*t).unwrap_or(i64::MAX)),
        AMQPValue::Float(f) => FieldValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => FieldValue::Float(*f),
        AMQPValue::DecimalValue(d) => {
            FieldValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => FieldValue::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => FieldValue::String(text.to_string()),
            Err(_) => FieldValue::Bytes(s.as_bytes().to_vec()),
        },
        AMQPValue::FieldArray(a) => {
            FieldValue::Array(a.as_slice().iter().map(from_lapin_value).collect())
        }
        AMQPValue::FieldTable(t) => FieldValue::Table(from_lapin_table(t)),
        AMQPValue::ByteArray(b) => FieldValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Void => FieldValue::Void,
    }
}

pub(crate) fn to_lapin_properties(p: &Properties) -> Result<BasicProperties> {
    let mut out = BasicProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(short(v, "the content_type property")?);
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(short(v, "the content_encoding property")?);
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(v.as_u8());
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(v);
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(to_lapin_table(v)?);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(short(v, "the correlation_id property")?);
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(short(v, "the reply_to property")?);
    }
    if let Some(v) = p.expiration() {
        out = out.with_expiration(short(v, "the expiration property")?);
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(short(v, "the message_id property")?);
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(short(v, "the type property")?);
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(short(v, "the user_id property")?);
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(short(v, "the app_id property")?);
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(short(v, "the cluster_id property")?);
    }
    Ok(out)
}

pub(crate) fn from_lapin_properties(p: &BasicProperties) -> Properties {
    let mut out = Properties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.as_str());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.as_str());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(DeliveryMode::from_u8(*v));
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(from_lapin_table(v));
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.as_str());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.as_str());
    }
    if let Some(v) = p.expiration() {
        out = out.with_expiration(v.as_str());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.as_str());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_kind(v.as_str());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.as_str());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.as_str());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.as_str());
    }
    out
}

/// A lapin delivery as carrot hands it on, its tag marked with the channel's generation.
pub(super) fn delivery(
    d: lapin::message::Delivery,
    generation: u64,
    consumer_tag: Option<Arc<str>>,
) -> Delivery {
    Delivery {
        message: Arc::new(Published {
            body: d.data.into_boxed_slice(),
            properties: from_lapin_properties(&d.properties),
            exchange: d.exchange.as_str().into(),
            routing_key: d.routing_key.as_str().into(),
        }),
        delivery_tag: (generation << GENERATION_SHIFT) | d.delivery_tag,
        redelivered: d.redelivered,
        consumer_tag,
    }
}

/// Whether an error means the connection itself is gone (network, heartbeats, the broker
/// closing it), as opposed to a refusal of what was asked.
pub(super) fn is_connection_loss(e: &lapin::Error) -> bool {
    use lapin::ErrorKind;
    match e.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::ParsingError(_) => true,
        // 320 CONNECTION_FORCED: the broker shut down or an operator closed the connection.
        ErrorKind::ProtocolError(amqp) => {
            matches!(
                amqp.kind(),
                AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)
            )
        }
        _ => false,
    }
}

/// Whether the broker closed the connection because of what the client sent (a frame or
/// method it refused): retrying the same operation would fail the same way.
pub(super) fn is_client_fault(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => {
            matches!(amqp.kind(), AMQPErrorKind::Hard(_)) && is_client_fault_code(amqp.get_id())
        }
        lapin::ErrorKind::SerialisationError(_) => true,
        _ => false,
    }
}

/// A lapin error as a carrot error, keeping the broker's reply code and text, and the lapin
/// error as its source.
pub(super) fn error(e: lapin::Error) -> Error {
    use lapin::ErrorKind;
    let channel =
        |reply_code: Option<u16>, reply_text: String, e: lapin::Error| Error::ChannelClosed {
            reply_code,
            reply_text,
            source: Some(Cause::new(e)),
        };
    let connection =
        |reply_code: Option<u16>, reply_text: String, e: lapin::Error| Error::ConnectionClosed {
            reply_code,
            reply_text,
            source: Some(Cause::new(e)),
        };
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => {
            let text = amqp.get_message().as_str().to_string();
            let code = amqp.get_id();
            match amqp.kind() {
                AMQPErrorKind::Soft(soft) => match soft {
                    AMQPSoftError::ACCESSREFUSED => Error::AccessRefused(text),
                    AMQPSoftError::NOTFOUND => Error::NotFound(text),
                    AMQPSoftError::RESOURCELOCKED => Error::ResourceLocked(text),
                    AMQPSoftError::PRECONDITIONFAILED => Error::PreconditionFailed(text),
                    // 311 CONTENT_TOO_LARGE, 312 NO_ROUTE, 313 NO_CONSUMERS as channel errors.
                    _ => channel(Some(code), text, e),
                },
                AMQPErrorKind::Hard(AMQPHardError::NOTIMPLEMENTED) => {
                    Error::Unsupported(format!("540 NOT_IMPLEMENTED: {text}"))
                }
                // 320 CONNECTION_FORCED, and the broker refusing what the client sent (5xx):
                // the broker closed the whole connection.
                AMQPErrorKind::Hard(_) => connection(Some(code), text, e),
            }
        }
        ErrorKind::IOError(io) => {
            let text = format!(
                "{io}: the connection to RabbitMQ was lost; reconnect once the broker is back"
            );
            connection(None, text, e)
        }
        ErrorKind::MissingHeartbeatError => connection(
            None,
            "RabbitMQ missed its heartbeats: the connection is dead; reconnect".into(),
            e,
        ),
        ErrorKind::InvalidConnectionState(state) => {
            let text = format!("the connection is {state:?}; open a new one");
            connection(None, text, e)
        }
        ErrorKind::RuntimeShutdownError(_) => connection(
            None,
            "the runtime of the connection is shutting down".into(),
            e,
        ),
        ErrorKind::InvalidChannelState(state, during) => {
            let text = format!(
                "the channel is {state:?} (during {during}); the broker closed it after an earlier error"
            );
            channel(None, text, e)
        }
        ErrorKind::InvalidChannel(id) => {
            let text = format!("channel {id} is not open on this connection");
            channel(None, text, e)
        }
        ErrorKind::ChannelsLimitReached => channel(
            None,
            "the connection has as many channels as the broker allows (channel_max): close unused publishers and consumers, or open another connection".into(),
            e,
        ),
        ErrorKind::ParsingError(parse) => {
            let text = format!(
                "the broker sent something that is not AMQP 0-9-1 ({parse}); the connection is dead"
            );
            connection(None, text, e)
        }
        ErrorKind::SerialisationError(gen) => Error::InvalidArgument(format!(
            "cannot encode the frame ({gen}): a name, routing key or header key is longer than 255 bytes, or a value does not fit its AMQP type"
        )),
        _ => {
            let text = e.to_string();
            channel(None, text, e)
        }
    }
}

/// A lapin error that met a lost connection, as a connection error saying `context`.
pub(super) fn lost_during(e: lapin::Error, context: &str) -> Error {
    Error::ConnectionClosed {
        reply_code: None,
        reply_text: format!("{context}: {e}"),
        source: Some(Cause::new(e)),
    }
}

#[cfg(test)]
mod tests;
