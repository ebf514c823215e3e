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

/// Arbitrary field tables for the property tests of the modules that convert, store or match
/// them, and a comparison that tells floats apart by their bits.
#[cfg(test)]
pub(crate) mod strategies {
    use super::{FieldTable, FieldValue};
    use proptest::prelude::*;

    /// Floats of every class: normal, subnormal, zeros, infinities and NaNs with payloads.
    pub(crate) fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => any::<f64>(),
            1 => prop_oneof![
                Just(f64::NAN),
                Just(-f64::NAN),
                Just(f64::from_bits(0x7ff0_0000_0000_0001)), // signalling NaN
                Just(f64::from_bits(0xfff8_dead_beef_0001)), // negative NaN with a payload
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-0.0),
                Just(f64::MIN_POSITIVE / 4.0),
                Just(f64::MAX),
                Just(f64::MIN),
            ],
        ]
    }

    /// Integers, with the extremes and the 32-bit boundaries weighted in.
    pub(crate) fn int() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => any::<i64>(),
            1 => prop::sample::select(vec![
                i64::MIN,
                i64::MAX,
                0,
                -1,
                i64::from(i32::MIN),
                i64::from(i32::MAX),
                i64::from(i32::MIN) - 1,
                i64::from(i32::MAX) + 1,
            ]),
        ]
    }

    /// Table keys: short ones (so that tables share them), any text, and keys around the
    /// 255-byte limit of AMQP short strings ('é' is two bytes).
    pub(crate) fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-c]{0,3}",
            2 => ".{0,12}",
            1 => "[a-z]{250,260}",
            1 => "é{125,130}",
        ]
    }

    fn leaf() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            Just(FieldValue::Void),
            any::<bool>().prop_map(FieldValue::Bool),
            int().prop_map(FieldValue::Int),
            float().prop_map(FieldValue::Float),
            ".{0,16}".prop_map(FieldValue::String),
            // Arbitrary bytes, mostly not UTF-8.
            prop::collection::vec(any::<u8>(), 0..24).prop_map(FieldValue::Bytes),
        ]
    }

    /// Values nested up to four levels deep.
    pub(crate) fn value() -> impl Strategy<Value = FieldValue> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                prop::collection::btree_map(key(), inner, 0..6).prop_map(FieldValue::Table),
            ]
        })
    }

    /// Tables of nested values.
    pub(crate) fn table() -> impl Strategy<Value = FieldTable> {
        prop::collection::btree_map(key(), value(), 0..6)
    }

    /// Whether two values are the same, floats compared by their bits (so NaN is NaN, and
    /// 0.0 is not -0.0).
    pub(crate) fn same(a: &FieldValue, b: &FieldValue) -> bool {
        match (a, b) {
            (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
            (FieldValue::Array(x), FieldValue::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (FieldValue::Table(x), FieldValue::Table(y)) => same_table(x, y),
            (x, y) => x == y,
        }
    }

    /// [`same`] for tables.
    pub(crate) fn same_table(a: &FieldTable, b: &FieldTable) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
    }

    /// Whether a key anywhere in the table is longer than AMQP's 255 bytes.
    pub(crate) fn has_long_key(table: &FieldTable) -> bool {
        fn long_in(value: &FieldValue) -> bool {
            match value {
                FieldValue::Array(a) => a.iter().any(long_in),
                FieldValue::Table(t) => has_long_key(t),
                _ => false,
            }
        }
        table.iter().any(|(k, v)| k.len() > 255 || long_in(v))
    }
}
