//! The parts of an outgoing message that come from [`SendOptions`]: its properties, its
//! character set and its compression.

use std::sync::Arc;

use super::SendOptions;
use crate::error::{Error, Result};
use crate::properties::Properties;
use crate::serialization::{Charset, Compression, Encoded};

/// The properties `options` set (content type and encoding are set by the caller).
pub(super) fn properties(options: &SendOptions) -> Properties {
    let mut p = Properties::default();
    let strings = [
        (
            &options.correlation_id,
            Properties::with_correlation_id as fn(Properties, String) -> Properties,
        ),
        (&options.reply_to, Properties::with_reply_to),
        (&options.expiration, Properties::with_expiration),
        (&options.message_id, Properties::with_message_id),
        (&options.message_type, Properties::with_kind),
        (&options.user_id, Properties::with_user_id),
        (&options.app_id, Properties::with_app_id),
    ];
    for (value, set) in strings {
        if let Some(value) = value {
            p = set(p, value.clone());
        }
    }
    if let Some(seconds) = options.timestamp {
        p = p.with_timestamp(seconds);
    }
    if let Some(priority) = options.priority {
        p = p.with_priority(priority);
    }
    if let Some(headers) = &options.headers {
        p = p.with_headers(headers.clone());
    }
    p
}

/// A compression method by name, refused when unknown or left out of this build.
pub(super) fn compression(name: &str) -> Result<Compression> {
    let method = Compression::from_name(name)?;
    if !method.is_available() {
        // The same error compressing would give, at once.
        method.compress(&[])?;
    }
    Ok(method)
}

/// The body in the character set `wanted` names, with the encoding to send it with: text a
/// serializer wrote as UTF-8 is re-encoded (as kombu's `str.encode(content_encoding)`);
/// binary bodies keep their bytes and take the label as given.
pub(super) fn in_charset(encoded: Encoded, wanted: Option<&str>) -> Result<(Vec<u8>, Arc<str>)> {
    let Some(wanted) = wanted else {
        return Ok((encoded.body, encoded.content_encoding));
    };
    let is_text = Charset::of(Some(&encoded.content_encoding)) == Ok(Some(Charset::Utf8));
    if !is_text {
        return Ok((encoded.body, wanted.into()));
    }
    let refuse = |reason: String| Error::Encode {
        serializer: format!("content_encoding {wanted:?}"),
        source: reason.into(),
    };
    let body = match Charset::of(Some(wanted)).map_err(refuse)? {
        Some(Charset::Utf8) | None => encoded.body,
        Some(charset) => {
            let text = std::str::from_utf8(&encoded.body).map_err(|e| refuse(e.to_string()))?;
            charset.encode(text).map_err(refuse)?
        }
    };
    Ok((body, wanted.into()))
}
