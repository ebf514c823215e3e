//! AMQP field tables: message headers, queue arguments and binding arguments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A table of named values, as AMQP headers and arguments carry.
pub type FieldTable = BTreeMap<String, FieldValue>;

/// One value of a [`FieldTable`].
///
/// The variants cover what Python's kombu and RabbitMQ exchange: integers of every width are
/// [`FieldValue::Int`], floats are [`FieldValue::Float`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum FieldValue {
    /// No value (AMQP void); in a headers binding it matches any value of the header.
    Void,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// A list of values.
    Array(Vec<FieldValue>),
    /// Raw bytes (written as a list of numbers in JSON, so JSON lists read back as `Array`).
    Bytes(Vec<u8>),
    /// A nested table.
    Table(FieldTable),
}

impl FieldValue {
    /// The value as a string slice, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::String(s) => Some(s),
            _ => None,
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for FieldValue {
            fn from(v: $t) -> Self { FieldValue::Int(v as i64) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::String(v.to_string())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::String(v)
    }
}
impl From<Vec<u8>> for FieldValue {
    fn from(v: Vec<u8>) -> Self {
        FieldValue::Bytes(v)
    }
}
impl From<FieldTable> for FieldValue {
    fn from(v: FieldTable) -> Self {
        FieldValue::Table(v)
    }
}

/// Builds a [`FieldTable`] from `(name, value)` pairs.
///
/// ```
/// let args = carrot::table([("x-match", "any".into()), ("format", "pdf".into())]);
/// assert_eq!(args.len(), 2);
/// ```
pub fn table<K: Into<String>, const N: usize>(pairs: [(K, FieldValue); N]) -> FieldTable {
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lists_are_arrays_and_numbers_keep_their_kind() {
        let t: FieldTable =
            serde_json::from_str(r#"{"a":[1,2],"b":1,"c":1.5,"d":null,"e":"x"}"#).unwrap();
        assert_eq!(
            t["a"],
            FieldValue::Array(vec![FieldValue::Int(1), FieldValue::Int(2)])
        );
        assert_eq!(t["b"], FieldValue::Int(1));
        assert_eq!(t["c"], FieldValue::Float(1.5));
        assert_eq!(t["d"], FieldValue::Void);
        assert_eq!(t["e"].as_str(), Some("x"));
    }
}
