//! How field tables and the rarely used message properties are stored in the database.
//!
//! JSON alone would lose the difference between a byte string and a list of numbers, so values
//! are stored tagged (`{"I":5}`, `{"X":[1,2]}`, `"V"`): a table read back equals the one written.
//! JSON has no NaN or infinity either: those floats are stored by their bits (`{"N":...}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::properties::Properties;
use crate::table::{FieldTable, FieldValue};

#[derive(Serialize, Deserialize)]
enum Stored {
    V,
    B(bool),
    I(i64),
    F(f64),
    S(String),
    A(Vec<Stored>),
    X(Vec<u8>),
    T(BTreeMap<String, Stored>),
    /// A float that JSON cannot write (NaN, an infinity), by its bits.
    N(u64),
}

fn to_stored(value: &FieldValue) -> Stored {
    match value {
        FieldValue::Void => Stored::V,
        FieldValue::Bool(b) => Stored::B(*b),
        FieldValue::Int(i) => Stored::I(*i),
        FieldValue::Float(f) if f.is_finite() => Stored::F(*f),
        FieldValue::Float(f) => Stored::N(f.to_bits()),
        FieldValue::String(s) => Stored::S(s.clone()),
        FieldValue::Array(a) => Stored::A(a.iter().map(to_stored).collect()),
        FieldValue::Bytes(b) => Stored::X(b.clone()),
        FieldValue::Table(t) => Stored::T(stored_table(t)),
    }
}

fn from_stored(value: Stored) -> FieldValue {
    match value {
        Stored::V => FieldValue::Void,
        Stored::B(b) => FieldValue::Bool(b),
        Stored::I(i) => FieldValue::Int(i),
        Stored::F(f) => FieldValue::Float(f),
        Stored::N(bits) => FieldValue::Float(f64::from_bits(bits)),
        Stored::S(s) => FieldValue::String(s),
        Stored::A(a) => FieldValue::Array(a.into_iter().map(from_stored).collect()),
        Stored::X(b) => FieldValue::Bytes(b),
        Stored::T(t) => {
            FieldValue::Table(t.into_iter().map(|(k, v)| (k, from_stored(v))).collect())
        }
    }
}

fn stored_table(table: &FieldTable) -> BTreeMap<String, Stored> {
    table
        .iter()
        .map(|(k, v)| (k.clone(), to_stored(v)))
        .collect()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::storage(format!(
        "unreadable {what} in the database ({e}): the file was changed by something other than carrot"
    ))
}

/// A field table as stored text.
pub(super) fn encode_table(table: &FieldTable) -> String {
    serde_json::to_string(&stored_table(table)).unwrap_or_else(|_| "{}".into())
}

/// A stored field table.
pub(super) fn decode_table(text: &str) -> Result<FieldTable> {
    let stored: BTreeMap<String, Stored> =
        serde_json::from_str(text).map_err(|e| corrupt("field table", e))?;
    Ok(stored
        .into_iter()
        .map(|(k, v)| (k, from_stored(v)))
        .collect())
}

/// Headers and the rare properties; the frequent ones have columns of their own.
#[derive(Serialize, Deserialize, Default)]
struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    h: Option<BTreeMap<String, Stored>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

/// The headers and rare properties of a message, or `None` when it has none (the usual case).
pub(super) fn encode_extra(p: &Properties) -> Option<String> {
    let owned = |s: Option<&str>| s.map(str::to_string);
    let extra = Extra {
        h: p.headers().map(stored_table),
        correlation_id: owned(p.correlation_id()),
        reply_to: owned(p.reply_to()),
        expiration: owned(p.expiration()),
        message_id: owned(p.message_id()),
        timestamp: p.timestamp(),
        kind: owned(p.kind()),
        user_id: owned(p.user_id()),
        app_id: owned(p.app_id()),
        cluster_id: owned(p.cluster_id()),
    };
    let empty = extra.h.is_none()
        && extra.correlation_id.is_none()
        && extra.reply_to.is_none()
        && extra.expiration.is_none()
        && extra.message_id.is_none()
        && extra.timestamp.is_none()
        && extra.kind.is_none()
        && extra.user_id.is_none()
        && extra.app_id.is_none()
        && extra.cluster_id.is_none();
    if empty {
        None
    } else {
        serde_json::to_string(&extra).ok()
    }
}

/// Adds stored headers and rare properties to `p`.
pub(super) fn decode_extra(mut p: Properties, text: &str) -> Result<Properties> {
    let extra: Extra = serde_json::from_str(text).map_err(|e| corrupt("message properties", e))?;
    if let Some(h) = extra.h {
        p = p.with_headers(h.into_iter().map(|(k, v)| (k, from_stored(v))).collect());
    }
    if let Some(v) = extra.correlation_id {
        p = p.with_correlation_id(v);
    }
    if let Some(v) = extra.reply_to {
        p = p.with_reply_to(v);
    }
    if let Some(v) = extra.expiration {
        p = p.with_expiration(v);
    }
    if let Some(v) = extra.message_id {
        p = p.with_message_id(v);
    }
    if let Some(v) = extra.timestamp {
        p = p.with_timestamp(v);
    }
    if let Some(v) = extra.kind {
        p = p.with_kind(v);
    }
    if let Some(v) = extra.user_id {
        p = p.with_user_id(v);
    }
    if let Some(v) = extra.app_id {
        p = p.with_app_id(v);
    }
    if let Some(v) = extra.cluster_id {
        p = p.with_cluster_id(v);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_with_their_kinds() {
        let mut inner = FieldTable::new();
        inner.insert("n".into(), FieldValue::Int(-3));
        let table: FieldTable = [
            ("bytes".to_string(), FieldValue::Bytes(vec![1, 2])),
            (
                "list".into(),
                FieldValue::Array(vec![FieldValue::Int(1), FieldValue::Int(2)]),
            ),
            ("void".into(), FieldValue::Void),
            ("f".into(), FieldValue::Float(1.5)),
            ("t".into(), FieldValue::Table(inner)),
            ("s".into(), "x".into()),
            ("b".into(), true.into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(decode_table(&encode_table(&table)).unwrap(), table);
    }

    #[test]
    fn rare_properties_round_trip_and_plain_ones_store_nothing() {
        assert_eq!(encode_extra(&Properties::default().with_priority(3)), None);
        let p = Properties::default()
            .with_reply_to("r")
            .with_expiration("100")
            .with_timestamp(9)
            .with_headers(crate::table([("a", 1.into())]));
        let text = encode_extra(&p).unwrap();
        assert_eq!(decode_extra(Properties::default(), &text).unwrap(), p);
    }

    /// Regression: NaN and the infinities were stored as `null` and the row could not be read
    /// back (a message with such a header was an `Error::Storage` at every fetch), and some
    /// floats came back one ulp off (serde_json's default float parsing is not exact).
    #[test]
    fn every_float_reads_back_bit_for_bit() {
        for f in [
            f64::NAN,
            f64::from_bits(0xfff8_dead_beef_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            -1.3087734787291732e269,
        ] {
            let table = crate::table([("f", FieldValue::Float(f))]);
            let back = decode_table(&encode_table(&table)).unwrap();
            assert!(
                matches!(back["f"], FieldValue::Float(g) if g.to_bits() == f.to_bits()),
                "{f:?}: {back:?}"
            );
            let p = Properties::default().with_headers(table);
            let back = decode_extra(Properties::default(), &encode_extra(&p).unwrap()).unwrap();
            let g = back.headers().map(|h| &h["f"]);
            assert!(
                matches!(g, Some(FieldValue::Float(g)) if g.to_bits() == f.to_bits()),
                "{f:?}: {g:?}"
            );
        }
    }

    #[test]
    fn foreign_text_is_a_storage_error() {
        assert!(matches!(
            decode_table("nonsense"),
            Err(Error::Storage { .. })
        ));
    }
}

/// Property tests of the stored form: every field table and every set of rare properties reads
/// back exactly as written (floats compared by their bits), and any text in the column, as
/// another program or a damaged file may leave it, reads as a table or is an
/// `Error::Storage`, never a panic.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::table::strategies::{self, same_table};

    /// Text that looks enough like the stored form to get past the first brace.
    fn stored_like() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "{",
                    "}",
                    "[",
                    "]",
                    ":",
                    ",",
                    "\"",
                    "\"V\"",
                    "\"h\"",
                    "{\"I\":",
                    "{\"F\":",
                    "{\"S\":",
                    "{\"A\":[",
                    "{\"X\":[",
                    "{\"T\":{",
                    "{\"N\":",
                    "null",
                    "1e400",
                    "-0",
                    "18446744073709551616",
                    "\"\\ud800\"",
                    "\"k\"",
                ])
                .prop_map(str::to_string),
                "[0-9a-zA-Z.+-]{1,4}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    prop_compose! {
        fn rare_properties()(
            texts in prop::collection::vec(prop::option::of(".{0,8}"), 8),
            timestamp in prop::option::of(any::<u64>()),
            headers in prop::option::of(strategies::table()),
        ) -> Properties {
            let setters: [fn(Properties, String) -> Properties; 8] = [
                Properties::with_correlation_id,
                Properties::with_reply_to,
                Properties::with_expiration,
                Properties::with_message_id,
                Properties::with_kind,
                Properties::with_user_id,
                Properties::with_app_id,
                Properties::with_cluster_id,
            ];
            let mut p = Properties::default();
            for (set, text) in setters.iter().zip(texts) {
                if let Some(text) = text {
                    p = set(p, text);
                }
            }
            if let Some(timestamp) = timestamp {
                p = p.with_timestamp(timestamp);
            }
            if let Some(headers) = headers {
                p = p.with_headers(headers);
            }
            p
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn tables_read_back_as_written(table in strategies::table()) {
            let text = encode_table(&table);
            let back = decode_table(&text);
            prop_assert!(back.is_ok(), "{:?} stored as {} does not read back: {:?}", table, text, back);
            let back = back.unwrap();
            prop_assert!(same_table(&back, &table), "{:?}\nstored as {}\nread back as {:?}", table, text, back);
        }

        #[test]
        fn rare_properties_read_back_as_written(p in rare_properties()) {
            let base = Properties::default().with_content_type("application/json").with_priority(4);
            let Some(text) = encode_extra(&p) else {
                prop_assert_eq!(p, Properties::default());
                return Ok(());
            };
            let back = decode_extra(base.clone(), &text);
            prop_assert!(back.is_ok(), "{:?} stored as {} does not read back: {:?}", p, text, back);
            let back = back.unwrap();
            prop_assert_eq!(back.content_type(), Some("application/json"));
            prop_assert_eq!(back.priority(), Some(4));
            prop_assert_eq!(back.correlation_id(), p.correlation_id());
            prop_assert_eq!(back.reply_to(), p.reply_to());
            prop_assert_eq!(back.expiration(), p.expiration());
            prop_assert_eq!(back.message_id(), p.message_id());
            prop_assert_eq!(back.kind(), p.kind());
            prop_assert_eq!(back.user_id(), p.user_id());
            prop_assert_eq!(back.app_id(), p.app_id());
            prop_assert_eq!(back.cluster_id(), p.cluster_id());
            prop_assert_eq!(back.timestamp(), p.timestamp());
            let empty = FieldTable::new();
            prop_assert!(same_table(back.headers().unwrap_or(&empty), p.headers().unwrap_or(&empty)));
        }

        #[test]
        fn any_text_is_a_table_or_a_storage_error(text in prop_oneof![any::<String>(), stored_like()]) {
            for result in [
                decode_table(&text).map(|_| ()),
                decode_extra(Properties::default(), &text).map(|_| ()),
            ] {
                prop_assert!(matches!(result, Ok(()) | Err(Error::Storage { .. })), "{:?}: {:?}", text, result);
            }
        }
    }

    /// Nesting far deeper than any table carrot writes is refused, without exhausting the stack.
    #[test]
    fn deep_nesting_is_a_storage_error() {
        let deep = format!("{{\"k\":{}", "{\"A\":[".repeat(100_000));
        assert!(matches!(decode_table(&deep), Err(Error::Storage { .. })));
        let deep = format!("{{\"h\":{{\"k\":{}", "{\"T\":{\"k\":".repeat(100_000));
        assert!(matches!(
            decode_extra(Properties::default(), &deep),
            Err(Error::Storage { .. })
        ));
    }
}
