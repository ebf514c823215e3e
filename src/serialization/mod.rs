//! Serializers: how message data becomes a body with a content type, and back.
//!
//! | name | content type | encoding | accepted by default |
//! | --- | --- | --- | --- |
//! | `json` (default) | `application/json` | `utf-8` | yes |
//! | `raw`, bytes | `application/data` | `binary` | yes |
//! | `raw`, text | `text/plain` | `utf-8` | yes |
//! | `msgpack` | `application/x-msgpack` | `binary` | when named |
//! | `yaml` | `application/x-yaml` | `utf-8` | when named |
//! | `pickle` | `application/x-python-serialize` | `binary` | when named |
//!
//! These are the content types and wire formats of Python's carrot and kombu, so bodies cross
//! between them unchanged ([`formats`] says how each is written). msgpack, yaml and pickle are
//! each behind the cargo feature of their name, all on by default. A consumer decodes only the
//! content types of its accept list ([`ConsumerBuilder::accept`](crate::ConsumerBuilder::accept));
//! the default list is json, raw and text, because YAML and msgpack readers are large attack
//! surfaces and unpickling runs code in Python. carrot's pickle reader never runs anything: it
//! reads data only and refuses a pickle that names a class or a callable.
//!
//! `hessian`, the seed's fifth serializer, is refused with [`Error::Unsupported`]: neither
//! carrot for Python nor kombu ever implemented it, and no maintained Hessian 2.0
//! implementation exists in Rust or on PyPI to check one against.
//!
//! Bodies may be compressed as kombu compresses them ([`Compression`], the `compression`
//! header). Text bodies honour their `content_encoding` (`utf-8`, `ascii`, `latin-1`).
//! Other formats are added with [`Registry::register`]: a custom serializer converts between
//! bytes and [`serde_json::Value`]. To read any body exactly in Python's data model (bytes
//! apart from text, integer keys, NaN), decode it into a [`Value`].
//!
//! A message whose content type no serializer knows decodes as raw text or bytes (as the seed
//! did).

pub(crate) mod accept;
mod charset;
mod compression;
pub mod formats;
mod python_json;
mod raw;
mod value;
#[cfg(feature = "yaml")]
pub mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{BoxError, Error, Result};

pub(crate) use charset::Charset;
pub use compression::Compression;
pub(crate) use python_json::python_json;
pub(crate) use raw::RawDeserializer;
pub use value::Value;

/// The content type of pickled Python data, never decoded unless accepted explicitly.
pub const PICKLE_CONTENT_TYPE: &str = "application/x-python-serialize";
/// The content type of msgpack bodies, decoded only when accepted explicitly.
pub const MSGPACK_CONTENT_TYPE: &str = "application/x-msgpack";
/// The content type of YAML bodies, decoded only when accepted explicitly.
pub const YAML_CONTENT_TYPE: &str = "application/x-yaml";

/// The serializers a consumer decodes only when its accept list names them, with their
/// content types: known whether or not this build has them.
pub(crate) const ACCEPTED_WHEN_NAMED: [(&str, &str); 4] = [
    ("pickle", PICKLE_CONTENT_TYPE),
    ("msgpack", MSGPACK_CONTENT_TYPE),
    ("yaml", YAML_CONTENT_TYPE),
    ("hessian", "application/x-hessian"),
];

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
    #[cfg(feature = "msgpack")]
    Msgpack,
    #[cfg(feature = "yaml")]
    Yaml,
    #[cfg(feature = "pickle")]
    Pickle,
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
    /// json, raw, and msgpack, yaml and pickle where their features are on.
    fn default() -> Self {
        let mut inner = Inner {
            by_name: HashMap::new(),
            by_content_type: HashMap::new(),
            text_plain: "text/plain".into(),
            utf8: "utf-8".into(),
        };
        inner.insert("json", "application/json", "utf-8", Codec::Json);
        inner.insert("raw", "application/data", "binary", Codec::Raw);
        #[cfg(feature = "msgpack")]
        inner.insert("msgpack", MSGPACK_CONTENT_TYPE, "binary", Codec::Msgpack);
        #[cfg(feature = "yaml")]
        inner.insert("yaml", YAML_CONTENT_TYPE, "utf-8", Codec::Yaml);
        #[cfg(feature = "pickle")]
        inner.insert("pickle", PICKLE_CONTENT_TYPE, "binary", Codec::Pickle);
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
        self.inner.by_name.get(name).ok_or_else(|| match name {
            "hessian" => Error::Unsupported(formats::HESSIAN_REFUSED.into()),
            "msgpack" | "yaml" | "pickle" => Error::Unsupported(formats::feature_missing(name)),
            _ => Error::UnknownSerializer(name.to_string()),
        })
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
                python_json(data).map_err(|e| fail(e.into()))?,
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
            #[cfg(feature = "msgpack")]
            Codec::Msgpack => (
                formats::msgpack_encode(data).map_err(fail)?,
                entry.content_type.clone(),
                entry.content_encoding.clone(),
            ),
            #[cfg(feature = "yaml")]
            Codec::Yaml => (
                formats::yaml_encode(data).map_err(fail)?,
                entry.content_type.clone(),
                entry.content_encoding.clone(),
            ),
            #[cfg(feature = "pickle")]
            Codec::Pickle => (
                formats::pickle_encode(data).map_err(fail)?,
                entry.content_type.clone(),
                entry.content_encoding.clone(),
            ),
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
        match self.lookup(ct).map(|e| &e.codec) {
            Some(Codec::Json) => serde_json::from_slice(body).map_err(|e| fail(e.into())),
            #[cfg(feature = "msgpack")]
            Some(Codec::Msgpack) => formats::msgpack_decode(body).map_err(fail),
            #[cfg(feature = "yaml")]
            Some(Codec::Yaml) => formats::yaml_decode(body).map_err(fail),
            #[cfg(feature = "pickle")]
            Some(Codec::Pickle) => formats::pickle_decode(body).map_err(fail),
            Some(Codec::Custom(custom)) => {
                let value = custom.decode(body).map_err(fail)?;
                serde_json::from_value(value).map_err(|e| fail(e.into()))
            }
            Some(Codec::Raw) | None => {
                // A character set carrot does not know is read as UTF-8, as before it knew any.
                let charset = Charset::of(content_encoding).unwrap_or(Some(Charset::Utf8));
                // The body read as text in its character set (binary, or text that is not
                // valid in it, stays bytes); byte types get the body as sent either way.
                let text = charset.and_then(|c| c.decode(body).ok());
                let text = text.as_deref();
                T::deserialize(RawDeserializer { body, text }).map_err(|e| fail(e.into()))
            }
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
        match self.lookup(ct).map(|e| &e.codec) {
            Some(Codec::Json) | Some(Codec::Custom(_)) => self
                .decode::<serde_json::Value>(content_type, content_encoding, body)
                .map(Payload::Data),
            Some(Codec::Raw) | None => {
                let charset = Charset::of(content_encoding).unwrap_or(Some(Charset::Utf8));
                Ok(match charset.map(|c| c.decode(body)) {
                    Some(Ok(text)) => Payload::Text(text.into_owned()),
                    _ => Payload::Bytes(body.to_vec()),
                })
            }
            // msgpack, yaml, pickle: Python's data model, seen as JSON.
            #[allow(unreachable_patterns)]
            Some(_) => self
                .decode::<Value>(content_type, content_encoding, body)
                .map(|v| Payload::Data(v.to_json())),
        }
    }

    fn lookup(&self, content_type: &str) -> Option<&Entry> {
        // "application/json; charset=utf-8" names the same serializer as "application/json".
        self.inner
            .by_content_type
            .get(base_content_type(content_type))
    }

    /// The serializer name that handles `content_type`, if any (`raw` for text/plain).
    pub(crate) fn name_for_content_type(&self, content_type: &str) -> Option<&str> {
        self.lookup(content_type).map(|e| &*e.name)
    }
}

/// A content type without its parameters (`application/json; charset=utf-8` is
/// `application/json`).
pub(crate) fn base_content_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
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
    fn unknown_and_hessian_serializers_are_refused_with_their_reason() {
        let r = Registry::default();
        assert!(matches!(r.encode("toml", &1), Err(Error::UnknownSerializer(n)) if n == "toml"));
        let err = r.encode("hessian", &1).unwrap_err();
        assert!(
            matches!(&err, Error::Unsupported(m) if m.contains("msgpack")),
            "{err:?}"
        );
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
