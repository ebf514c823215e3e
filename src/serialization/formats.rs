//! kombu's serializers beyond json and raw: msgpack, YAML and pickle (each behind its cargo
//! feature), and hessian, which is refused.
//!
//! The wire formats are kombu's (`kombu/serialization.py`):
//! - msgpack packs with `use_bin_type=True` and unpacks with `raw=False`: strings are msgpack
//!   str, bytes msgpack bin, so the two stay distinct. Structs are written as maps (kombu
//!   unpacks dictionaries), not as msgpack's positional arrays.
//! - YAML is what PyYAML's `safe_dump` / `safe_load` write and read: no tags that build
//!   objects, PyYAML's YAML 1.1 meaning of plain scalars (see [`yaml`](super::yaml)).
//!   Reading is bounded (aliases and nesting), so a small document cannot expand into a
//!   large one.
//! - pickle is written with protocol 3 (every Python 3 reads it) and read from protocols 0 to
//!   5. Reading never imports or calls anything: a pickle that names a class or a callable is
//!   refused. Tuples, sets and frozensets read as lists; integers up to 128 bits.

#[cfg(any(feature = "msgpack", feature = "yaml", feature = "pickle"))]
use serde::{de::DeserializeOwned, Serialize};

#[cfg(feature = "pickle")]
use super::Value;
#[cfg(any(feature = "msgpack", feature = "yaml", feature = "pickle"))]
use crate::error::BoxError;

/// The serializer kombu calls hessian: never implemented by carrot, carrot for Python or
/// kombu, and without a maintained Rust or Python implementation to check one against.
pub(crate) const HESSIAN_REFUSED: &str = "hessian is not supported: neither carrot for Python nor kombu ever implemented it, and there is no maintained Hessian 2.0 implementation in Rust or on PyPI to check one against; use msgpack for a compact binary format both sides read";

/// A format that needs a cargo feature this build was made without.
pub(crate) fn feature_missing(format: &str) -> String {
    format!("the {format} serializer is not in this build of carrot: enable its cargo feature `{format}` (on by default)")
}

#[cfg(feature = "msgpack")]
pub(crate) fn msgpack_encode<T: Serialize + ?Sized>(data: &T) -> Result<Vec<u8>, BoxError> {
    Ok(rmp_serde::to_vec_named(data)?)
}

#[cfg(feature = "msgpack")]
pub(crate) fn msgpack_decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BoxError> {
    Ok(rmp_serde::from_slice(body)?)
}

#[cfg(feature = "yaml")]
pub(crate) fn yaml_encode<T: Serialize + ?Sized>(data: &T) -> Result<Vec<u8>, BoxError> {
    Ok(serde_saphyr::to_string(&data)?.into_bytes())
}

#[cfg(feature = "yaml")]
pub(crate) fn yaml_decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BoxError> {
    let text = std::str::from_utf8(body)?;
    Ok(T::deserialize(super::yaml::load(text)?)?)
}

#[cfg(feature = "pickle")]
pub(crate) fn pickle_encode<T: Serialize + ?Sized>(data: &T) -> Result<Vec<u8>, BoxError> {
    Ok(serde_pickle::to_vec(
        &data,
        serde_pickle::SerOptions::new(),
    )?)
}

#[cfg(feature = "pickle")]
pub(crate) fn pickle_decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BoxError> {
    // Read into pickle's own model first: its integers have any size, which serde's data
    // model does not carry, and tuples, sets and dictionaries with any keys come through.
    let value = serde_pickle::value_from_slice(body, serde_pickle::DeOptions::new()).map_err(
        |e| -> BoxError {
            match e {
                serde_pickle::Error::Syntax(serde_pickle::ErrorCode::UnresolvedGlobal) => {
                    let named = named_global(body)
                        .map(|name| format!(" ({name})"))
                        .unwrap_or_default();
                    format!("the pickle names a Python class or callable{named}: carrot reads data only (dicts, lists, tuples, strings, bytes, numbers, booleans, None) and never imports or calls anything").into()
                }
                other => other.into(),
            }
        },
    )?;
    let value = from_pickle(value)?;
    Ok(T::deserialize(value)?)
}

#[cfg(feature = "pickle")]
fn from_pickle(value: serde_pickle::Value) -> Result<Value, BoxError> {
    use serde_pickle::Value as P;
    Ok(match value {
        P::None => Value::None,
        P::Bool(b) => Value::Bool(b),
        P::I64(i) => Value::Int(i.into()),
        P::Int(big) => Value::Int(big_int(&big)?),
        P::F64(f) => Value::Float(f),
        P::Bytes(b) => Value::Bytes(b),
        P::String(s) => Value::Str(s),
        P::List(items) | P::Tuple(items) => Value::List(
            items
                .into_iter()
                .map(from_pickle)
                .collect::<Result<_, _>>()?,
        ),
        P::Set(items) | P::FrozenSet(items) => Value::List(
            items
                .into_iter()
                .map(|h| from_pickle(h.into_value()))
                .collect::<Result<_, _>>()?,
        ),
        P::Dict(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| Ok((from_pickle(k.into_value())?, from_pickle(v)?)))
                .collect::<Result<_, BoxError>>()?,
        ),
    })
}

#[cfg(feature = "pickle")]
fn big_int(big: &impl std::fmt::Display) -> Result<i128, BoxError> {
    let digits = big.to_string();
    digits.parse().map_err(|_| {
        format!("the integer {digits} does not fit in 128 bits, the largest carrot reads").into()
    })
}

/// The first class or callable a pickle names, as `module.name`, for the error that refuses
/// it: the GLOBAL opcode of protocols 0 to 3 (`c` module `\n` name `\n`), or the two strings
/// that STACK_GLOBAL (protocols 4 and 5) takes, as CPython writes them (each string memoized).
#[cfg(feature = "pickle")]
fn named_global(body: &[u8]) -> Option<String> {
    let ident = |s: &[u8]| {
        !s.is_empty()
            && s.iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
    };
    // Protocol 4 and 5: SHORT_BINUNICODE module, MEMOIZE, SHORT_BINUNICODE name, MEMOIZE,
    // STACK_GLOBAL.
    for (at, _) in body.iter().enumerate().filter(|(_, &b)| b == 0x93) {
        let before = &body[..at];
        let take = |end: usize| -> Option<(&[u8], usize)> {
            let end = if end > 0 && before[end - 1] == 0x94 {
                end - 1
            } else {
                end
            };
            (0..end.saturating_sub(1))
                .rev()
                .take(256)
                .find_map(|start| {
                    let len = usize::from(before[start + 1]);
                    (before[start] == 0x8c && start + 2 + len == end)
                        .then(|| (&before[start + 2..end], start))
                })
        };
        if let Some((name, start)) = take(before.len()) {
            if let Some((module, _)) = take(start) {
                if ident(module) && ident(name) {
                    return Some(format!(
                        "{}.{}",
                        String::from_utf8_lossy(module),
                        String::from_utf8_lossy(name)
                    ));
                }
            }
        }
    }
    // Protocols 0 to 3: GLOBAL.
    body.iter().enumerate().find_map(|(at, &b)| {
        // An opcode follows another opcode's argument, never a letter of a text.
        if b != b'c' || (at > 0 && body[at - 1].is_ascii_alphanumeric()) {
            return None;
        }
        let mut lines = body[at + 1..].splitn(3, |&c| c == b'\n');
        let (module, name) = (lines.next()?, lines.next()?);
        lines.next()?;
        (ident(module) && ident(name)).then(|| {
            format!(
                "{}.{}",
                String::from_utf8_lossy(module),
                String::from_utf8_lossy(name)
            )
        })
    })
}
