//! Serializers: how message data becomes a body with a content type, and back.
//!
//! | name | content type | encoding |
//! | --- | --- | --- |
//! | `json` (default) | `application/json` | `utf-8` |
//! | `raw`, bytes | `application/data` | `binary` |
//! | `raw`, text | `text/plain` | `utf-8` |
//!
//! These are the content types of Python's carrot and kombu, so bodies cross between them
//! unchanged. Other formats are added with [`Registry::register`]: a custom serializer
//! converts between bytes and [`serde_json::Value`], the data model shared with Python.
//!
//! A message whose content type no serializer knows decodes as raw text or bytes (as the seed
//! did), except pickle (`application/x-python-serialize`), which is refused unless the
//! consumer's accept list names it: unpickling runs code chosen by the sender.

mod raw;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{BoxError, Error, Result};

pub(crate) use raw::RawDeserializer;

/// The content type of pickled Python data, never decoded unless accepted explicitly.
pub const PICKLE_CONTENT_TYPE: &str = "application/x-python-serialize";

/// A serializer of one format, registered by name in a [`Registry`].
///
/// ```
/// use carrot::serialization::{Registry, Serializer};
/// use carrot::BoxError;
///
/// struct Reversed; // JSON written backwards: a toy format
/// impl Serializer for Reversed {
///     fn encode(&self, value: &serde_json::Value) -> Result<Vec<u8>, BoxError> {
///         Ok(serde_json::to_vec(value)?.into_iter().rev().collect())
///     }
///     fn decode(&self, body: &[u8]) -> Result<serde_json::Value, BoxError> {
///         Ok(serde_json::from_slice(&body.iter().rev().copied().collect::<Vec<_>>())?)
///     }
/// }
/// let mut registry = Registry::default();
/// registry.register("reversed", "application/x-reversed", "utf-8", Reversed);
/// let encoded = registry.encode("reversed", &[1, 2]).unwrap();
/// assert_eq!(encoded.body, b"]2,1[");
/// ```
pub trait Serializer: Send + Sync + 'static {
    /// Turns data into a body.
    fn encode(&self, value: &serde_json::Value) -> Result<Vec<u8>, BoxError>;
    /// Turns a body back into data.
    fn decode(&self, body: &[u8]) -> Result<serde_json::Value, BoxError>;
}

/// Message data decoded by the serializer its content type names.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// Structured data (json or a custom serializer).
    Data(serde_json::Value),
    /// A text body (`text/plain`, or an unknown content type with a text encoding).
    Text(String),
    /// A binary body (`application/data`, or an unknown content type).
    Bytes(Vec<u8>),
}

impl Payload {
    /// The structured data, if the payload is structured.
    pub fn as_data(&self) -> Option<&serde_json::Value> {
        match self {
            Payload::Data(v) => Some(v),
            _ => None,
        }
    }

    /// The text, if the payload is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Payload::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A serialized body with the content type and encoding to send it with.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Encoded {
    /// The body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: Arc<str>,
    /// Its content encoding.
    pub content_encoding: Arc<str>,
}

#[derive(Clone)]
enum Codec {
    Json,
    Raw,
    Custom(Arc<dyn Serializer>),
}

#[derive(Clone)]
struct Entry {
    name: Arc<str>,
    content_type: Arc<str>,
    content_encoding: Arc<str>,
    codec: Codec,
}

/// Named serializers. Cheap to clone: publishers and consumers take a snapshot when built.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    by_name: HashMap<Arc<str>, Entry>,
    by_content_type: HashMap<Arc<str>, Entry>,
    text_plain: Arc<str>,
    utf8: Arc<str>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.inner.by_name.keys().map(|n| &**n).collect();
        names.sort_unstable();
        f.debug_struct("Registry")
            .field("serializers", &names)
            .finish()
    }
}

impl Default for Registry {
    /// json and raw.
    fn default() -> Self {
        let mut inner = Inner {
            by_name: HashMap::new(),
            by_content_type: HashMap::new(),
            text_plain: "text/plain".into(),
            utf8: "utf-8".into(),
        };
        inner.insert("json", "application/json", "utf-8", Codec::Json);
        inner.insert("raw", "application/data", "binary", Codec::Raw);
        let text = Entry {
            name: "raw".into(),
            content_type: inner.text_plain.clone(),
            content_encoding: inner.utf8.clone(),
            codec: Codec::Raw,
        };
        inner
            .by_content_type
            .insert(text.content_type.clone(), text);
        Registry {
            inner: Arc::new(inner),
        }
    }
}

impl Inner {
    fn insert(&mut self, name: &str, content_type: &str, content_encoding: &str, codec: Codec) {
        let entry = Entry {
            name: name.into(),
            content_type: content_type.into(),
            content_encoding: content_encoding.into(),
            codec,
        };
        self.by_content_type
            .insert(entry.content_type.clone(), entry.clone());
        self.by_name.insert(entry.name.clone(), entry);
    }
}

impl Registry {
    /// Registers (or replaces) a serializer under `name`, with the content type and encoding
    /// its bodies carry.
    pub fn register(
        &mut self,
        name: &str,
        content_type: &str,
        content_encoding: &str,
        serializer: impl Serializer,
    ) {
        Arc::make_mut(&mut self.inner).insert(
            name,
            content_type,
            content_encoding,
            Codec::Custom(Arc::new(serializer)),
        );
    }

    /// Whether a serializer of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.inner.by_name.contains_key(name)
    }

    /// The content type of the named serializer.
    pub fn content_type_of(&self, name: &str) -> Result<&str> {
        Ok(&self.entry(name)?.content_type)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.inner
            .by_name
            .get(name)
            .ok_or_else(|| Error::UnknownSerializer(name.to_string()))
    }

    /// Checks that `name` is registered, so that a bad name fails when a publisher is built.
    pub(crate) fn check(&self, name: &str) -> Result<()> {
        self.entry(name).map(|_| ())
    }

    /// Serializes `data` with the named serializer.
    pub fn encode<T: Serialize + ?Sized>(&self, serializer: &str, data: &T) -> Result<Encoded> {
        let entry = self.entry(serializer)?;
        let fail = |source: BoxError| Error::Encode {
            serializer: serializer.to_string(),
            source,
        };
        let (body, content_type, content_encoding) = match &entry.codec {
            Codec::Json => (
                serde_json::to_vec(data).map_err(|e| fail(e.into()))?,
                entry.content_type.clone(),
                entry.content_encoding.clone(),
            ),
            Codec::Raw => {
                let raw = raw::to_body(data).map_err(|e| fail(e.into()))?;
                if raw.is_text {
                    (
                        raw.bytes,
                        self.inner.text_plain.clone(),
                        self.inner.utf8.clone(),
                    )
                } else {
                    (
                        raw.bytes,
                        entry.content_type.clone(),
                        entry.content_encoding.clone(),
                    )
                }
            }
            Codec::Custom(custom) => {
                let value = serde_json::to_value(data).map_err(|e| fail(e.into()))?;
                (
                    custom.encode(&value).map_err(fail)?,
                    entry.content_type.clone(),
                    entry.content_encoding.clone(),
                )
            }
        };
        Ok(Encoded {
            body,
            content_type,
            content_encoding,
        })
    }

    /// Decodes a body into `T`, choosing the serializer by content type.
    pub fn decode<T: DeserializeOwned>(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> Result<T> {
        let ct = content_type.unwrap_or("");
        let fail = |source: BoxError| Error::Decode {
            content_type: ct.to_string(),
            source,
        };
        match self.lookup(ct)?.map(|e| &e.codec) {
            Some(Codec::Json) => serde_json::from_slice(body).map_err(|e| fail(e.into())),
            Some(Codec::Custom(custom)) => {
                let value = custom.decode(body).map_err(fail)?;
                serde_json::from_value(value).map_err(|e| fail(e.into()))
            }
            Some(Codec::Raw) | None => T::deserialize(RawDeserializer {
                body,
                text: is_text_encoding(content_encoding),
            })
            .map_err(|e| fail(e.into())),
        }
    }

    /// Decodes a body into a [`Payload`], choosing the serializer by content type.
    pub fn decode_payload(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> Result<Payload> {
        let ct = content_type.unwrap_or("");
        match self.lookup(ct)?.map(|e| &e.codec) {
            Some(Codec::Json) | Some(Codec::Custom(_)) => self
                .decode::<serde_json::Value>(content_type, content_encoding, body)
                .map(Payload::Data),
            Some(Codec::Raw) | None => Ok(match std::str::from_utf8(body) {
                Ok(text) if is_text_encoding(content_encoding) => Payload::Text(text.to_string()),
                _ => Payload::Bytes(body.to_vec()),
            }),
        }
    }

    fn lookup(&self, content_type: &str) -> Result<Option<&Entry>> {
        // "application/json; charset=utf-8" names the same serializer as "application/json".
        let base = content_type.split(';').next().unwrap_or("").trim();
        if base == PICKLE_CONTENT_TYPE && !self.inner.by_content_type.contains_key(base) {
            return Err(Error::ContentTypeNotAccepted {
                content_type: base.to_string(),
                accepted: "json, raw and registered serializers; pickle is never decoded".into(),
            });
        }
        Ok(self.inner.by_content_type.get(base))
    }

    /// The serializer name that handles `content_type`, if any (`raw` for text/plain).
    pub(crate) fn name_for_content_type(&self, content_type: &str) -> Option<&str> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        self.inner.by_content_type.get(base).map(|e| &*e.name)
    }
}

fn is_text_encoding(encoding: Option<&str>) -> bool {
    !matches!(encoding, Some(e) if e.eq_ignore_ascii_case("binary"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_with_kombu_content_type() {
        let r = Registry::default();
        let e = r.encode("json", &serde_json::json!({"a": [1, 2]})).unwrap();
        assert_eq!(&*e.content_type, "application/json");
        assert_eq!(&*e.content_encoding, "utf-8");
        let v: serde_json::Value = r
            .decode(Some("application/json"), Some("utf-8"), &e.body)
            .unwrap();
        assert_eq!(v["a"][1], 2);
    }

    #[test]
    fn raw_text_and_bytes_use_carrot_content_types() {
        let r = Registry::default();
        let t = r.encode("raw", "hi").unwrap();
        assert_eq!(
            (&*t.content_type, &*t.content_encoding),
            ("text/plain", "utf-8")
        );
        let b = r.encode("raw", &vec![1u8, 2]).unwrap();
        assert_eq!(
            (&*b.content_type, &*b.content_encoding),
            ("application/data", "binary")
        );
        assert_eq!(
            r.decode_payload(Some("text/plain"), Some("utf-8"), b"hi")
                .unwrap(),
            Payload::Text("hi".into())
        );
        assert_eq!(
            r.decode_payload(Some("application/data"), Some("binary"), b"hi")
                .unwrap(),
            Payload::Bytes(b"hi".to_vec())
        );
    }

    #[test]
    fn unknown_serializer_and_pickle_are_refused() {
        let r = Registry::default();
        assert!(matches!(r.encode("yaml", &1), Err(Error::UnknownSerializer(n)) if n == "yaml"));
        assert!(matches!(
            r.decode_payload(Some(PICKLE_CONTENT_TYPE), Some("binary"), b"\x80\x04"),
            Err(Error::ContentTypeNotAccepted { .. })
        ));
    }

    #[test]
    fn undecodable_json_is_a_decode_error() {
        let r = Registry::default();
        let err = r
            .decode::<serde_json::Value>(Some("application/json"), None, b"{nope")
            .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    }
}
