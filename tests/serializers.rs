//! Every serializer round-trips its edge values through the public API: empty containers,
//! nesting, unicode, big and negative integers, floats (NaN and infinities where the format
//! has them), bytes apart from strings, None, and keys that are not strings. Typed data
//! (structs, byte buffers) round-trips too, and a pickle never resolves a global.
//!
//! The same values against Python's kombu, byte for byte over RabbitMQ, are in
//! tests/kombu_matrix.rs.

use carrot::serialization::Registry;
use carrot::{Error, Value};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn int(i: i128) -> Value {
    Value::Int(i)
}
fn s(text: &str) -> Value {
    Value::Str(text.into())
}

/// What every format carries: JSON's model.
fn common() -> Value {
    Value::Map(vec![
        (s("empty list"), Value::List(vec![])),
        (s("empty map"), Value::Map(vec![])),
        (s("empty text"), s("")),
        (
            s("unicode"),
            s("héllo wörld ✓ 日本語 🥕 \"quoted\" \\ \n\t"),
        ),
        (s("none"), Value::None),
        (
            s("bools"),
            Value::List(vec![Value::Bool(true), Value::Bool(false)]),
        ),
        (
            s("ints"),
            Value::List(vec![
                int(0),
                int(-1),
                int(i64::MIN.into()),
                int(i64::MAX.into()),
                int(u64::MAX.into()),
            ]),
        ),
        (
            s("floats"),
            Value::List(vec![
                Value::Float(2.5),
                Value::Float(-1e-300),
                Value::Float(1e300),
            ]),
        ),
        (
            s("nested"),
            Value::Map(vec![(
                s("a"),
                Value::List(vec![Value::Map(vec![(s("b"), Value::List(vec![int(1)]))])]),
            )]),
        ),
    ])
}

/// What the binary formats add: bytes apart from text, NaN and infinities, integer keys.
fn beyond_json() -> Value {
    let Value::Map(mut entries) = common() else {
        unreachable!()
    };
    entries.extend([
        (s("bytes"), Value::Bytes((0..=255).collect())),
        (s("empty bytes"), Value::Bytes(vec![])),
        (s("text that looks like bytes"), s("\u{ff}\u{fe}")),
        (
            s("special floats"),
            Value::List(vec![
                Value::Float(f64::INFINITY),
                Value::Float(f64::NEG_INFINITY),
            ]),
        ),
        (int(7), s("an integer key")),
        (int(-3), Value::Map(vec![(int(1), int(2))])),
    ]);
    Value::Map(entries)
}

fn content_type(registry: &Registry, name: &str) -> String {
    registry.content_type_of(name).unwrap().to_string()
}

fn round_trip(name: &str, value: &Value) -> Value {
    let registry = Registry::default();
    let encoded = registry
        .encode(name, value)
        .unwrap_or_else(|e| panic!("{name} encodes {value:?}: {e}"));
    assert_eq!(&*encoded.content_type, content_type(&registry, name));
    registry
        .decode(
            Some(&encoded.content_type),
            Some(&encoded.content_encoding),
            &encoded.body,
        )
        .unwrap_or_else(|e| panic!("{name} decodes what it encoded: {e}"))
}

/// Map entries in a canonical order: pickle dictionaries come back sorted, YAML's keep
/// their order, msgpack's too.
fn sorted(value: Value) -> Value {
    match value {
        Value::Map(entries) => {
            let mut entries: Vec<(Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| (sorted(k), sorted(v)))
                .collect();
            entries.sort_by_key(|(k, _)| format!("{k:?}"));
            Value::Map(entries)
        }
        Value::List(items) => Value::List(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[test]
fn json_round_trips_what_json_carries() {
    assert_eq!(sorted(round_trip("json", &common())), sorted(common()));
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_keeps_bytes_apart_from_text_and_integer_keys() {
    assert_eq!(
        sorted(round_trip("msgpack", &beyond_json())),
        sorted(beyond_json())
    );
    let nan = round_trip("msgpack", &Value::Float(f64::NAN));
    assert!(matches!(nan, Value::Float(f) if f.is_nan()), "{nan:?}");
}

/// YAML as PyYAML's safe_dump writes it and safe_load reads it: bytes as `!!binary`,
/// special floats, integer keys, integers beyond 64 bits.
#[cfg(feature = "yaml")]
#[test]
fn yaml_round_trips_bytes_special_floats_and_integer_keys() {
    let mut value = beyond_json();
    if let Value::Map(entries) = &mut value {
        entries.push((
            s("big"),
            Value::List(vec![int(i128::MAX), int(i128::MIN), int(-(1i128 << 70))]),
        ));
    }
    assert_eq!(sorted(round_trip("yaml", &value)), sorted(value));
    let nan = round_trip("yaml", &Value::Float(f64::NAN));
    assert!(matches!(nan, Value::Float(f) if f.is_nan()), "{nan:?}");
    let bytes = Value::Map(vec![(s("b"), Value::Bytes(vec![0, 0xff]))]);
    let encoded = Registry::default().encode("yaml", &bytes).unwrap();
    let text = String::from_utf8(encoded.body).unwrap();
    assert!(text.contains("!!binary"), "{text}");
}

/// What PyYAML 6 writes for `yaml.safe_dump({...})` reads as Python reads it (YAML 1.1:
/// `y` and `1e3` stay text, `017` is octal, `yes` is a boolean).
#[cfg(feature = "yaml")]
#[test]
fn yaml_reads_what_pyyaml_writes() {
    let written = "b: !!binary |\n  AP8=\nbig: 18446744073709551616\nflags: [yes, 'no', y, n]\nnumbers: [017, 1e3, 1.0e+3, .inf, 0o17]\nnothing: null\n";
    let got: Value = Registry::default()
        .decode(
            Some("application/x-yaml"),
            Some("utf-8"),
            written.as_bytes(),
        )
        .unwrap();
    let expected = Value::Map(vec![
        (s("b"), Value::Bytes(vec![0, 0xff])),
        (s("big"), int(1 << 64)),
        (
            s("flags"),
            Value::List(vec![Value::Bool(true), s("no"), s("y"), s("n")]),
        ),
        (
            s("numbers"),
            Value::List(vec![
                int(15),
                s("1e3"),
                Value::Float(1000.0),
                Value::Float(f64::INFINITY),
                s("0o17"),
            ]),
        ),
        (s("nothing"), Value::None),
    ]);
    assert_eq!(got, expected);
}

/// Integers beyond 64 bits are read (see below) but not written: the pickle crate writes
/// 64-bit integers at most, and says so.
#[cfg(feature = "pickle")]
#[test]
fn pickle_round_trips_data() {
    assert_eq!(
        sorted(round_trip("pickle", &beyond_json())),
        sorted(beyond_json())
    );
    let nan = round_trip("pickle", &Value::Float(f64::NAN));
    assert!(matches!(nan, Value::Float(f) if f.is_nan()), "{nan:?}");
    let err = Registry::default()
        .encode("pickle", &Value::Int(1 << 70))
        .unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
}

/// Pickles written by CPython 3.11 (`pickle.dumps(v, protocol=p)`): protocols 2 to 5 read
/// the same, tuples and sets as lists, and protocol 2's bytes (`_codecs.encode`) as bytes.
#[cfg(feature = "pickle")]
#[test]
fn pickle_reads_what_python_writes_with_protocols_2_to_5() {
    // pickle.dumps({"t": (1, "a"), "b": b"\x00\xff", "n": 2**70, "f": 1.5, "x": None}, p)
    let written: [(u8, &[u8]); 4] = [
        (2, b"\x80\x02}q\x00(X\x01\x00\x00\x00tq\x01K\x01X\x01\x00\x00\x00aq\x02\x86q\x03X\x01\x00\x00\x00bq\x04c_codecs\x0aencode\x0aq\x05X\x03\x00\x00\x00\x00\xc3\xbfq\x06X\x06\x00\x00\x00latin1q\x07\x86q\x08Rq\x09X\x01\x00\x00\x00nq\x0a\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@X\x01\x00\x00\x00fq\x0bG?\xf8\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x0cNu."),
        (3, b"\x80\x03}q\x00(X\x01\x00\x00\x00tq\x01K\x01X\x01\x00\x00\x00aq\x02\x86q\x03X\x01\x00\x00\x00bq\x04C\x02\x00\xffq\x05X\x01\x00\x00\x00nq\x06\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@X\x01\x00\x00\x00fq\x07G?\xf8\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x08Nu."),
        (4, b"\x80\x04\x95;\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01t\x94K\x01\x8c\x01a\x94\x86\x94\x8c\x01b\x94C\x02\x00\xff\x94\x8c\x01n\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8c\x01f\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x01x\x94Nu."),
        (5, b"\x80\x05\x95;\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01t\x94K\x01\x8c\x01a\x94\x86\x94\x8c\x01b\x94C\x02\x00\xff\x94\x8c\x01n\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8c\x01f\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x01x\x94Nu."),
    ];
    let expected = sorted(Value::Map(vec![
        (s("t"), Value::List(vec![int(1), s("a")])),
        (s("b"), Value::Bytes(vec![0, 0xff])),
        (s("n"), int(1 << 70)),
        (s("f"), Value::Float(1.5)),
        (s("x"), Value::None),
    ]));
    let registry = Registry::default();
    for (protocol, body) in written {
        let got: Value = registry
            .decode(Some("application/x-python-serialize"), Some("binary"), body)
            .unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        assert_eq!(sorted(got), expected, "protocol {protocol}");
    }
}

/// `pickle.dumps(Evil())` where `Evil.__reduce__` returns `(os.system, ("echo pwned",))`:
/// refused, with a reason, and nothing can have run (nothing in carrot can run anything).
#[cfg(feature = "pickle")]
#[test]
fn a_pickle_that_names_a_callable_is_refused() {
    let evil: &[u8] = b"\x80\x04\x95%\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x0aecho pwned\x94\x85\x94R\x94.";
    let err = Registry::default()
        .decode::<Value>(Some("application/x-python-serialize"), Some("binary"), evil)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { .. })
            && err.to_string().contains("class or callable (posix.system)"),
        "{err}"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    #[serde(with = "serde_bytes_compat")]
    signature: Vec<u8>,
    lines: Vec<(String, i32)>,
    note: Option<String>,
}

/// Bytes as bytes (serde writes `Vec<u8>` as a list of numbers otherwise).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    struct Bytes;
    impl serde::de::Visitor<'_> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Bytes)
    }
}

#[test]
fn typed_data_round_trips_through_every_structured_serializer() {
    let order = Order {
        id: u64::MAX,
        customer: "Zoë".into(),
        signature: vec![0, 1, 0xff],
        lines: vec![("carrot".into(), -3)],
        note: None,
    };
    let registry = Registry::default();
    for name in ["msgpack", "yaml", "pickle"] {
        if !registry.contains(name) {
            continue;
        }
        let encoded = registry.encode(name, &order).unwrap();
        let back: Order = registry
            .decode(
                Some(&encoded.content_type),
                Some(&encoded.content_encoding),
                &encoded.body,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, order, "{name}");
    }
}

#[cfg(feature = "msgpack")]
#[test]
fn msgpack_writes_structs_as_maps_as_kombu_reads_them() {
    #[derive(Serialize)]
    struct Point {
        x: i32,
    }
    let encoded = Registry::default()
        .encode("msgpack", &Point { x: 1 })
        .unwrap();
    // fixmap of 1, fixstr "x", positive fixint 1.
    assert_eq!(encoded.body, b"\x81\xa1x\x01");
}

#[test]
fn hessian_is_refused_with_the_reason() {
    let err = Registry::default().encode("hessian", &1).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("kombu")),
        "{err}"
    );
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        any::<u64>().prop_map(|i| Value::Int(i.into())),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".*".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((".*".prop_map(Value::Str), inner), 0..6).prop_map(
                |entries| {
                    // Python dictionaries have unique keys.
                    let mut seen = std::collections::HashSet::new();
                    Value::Map(
                        entries
                            .into_iter()
                            .filter(|(k, _)| seen.insert(format!("{k:?}")))
                            .collect(),
                    )
                }
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any value of Python's model survives every format that has all its types.
    #[test]
    fn any_value_round_trips(value in value()) {
        for name in ["msgpack", "yaml", "pickle"] {
            if !Registry::default().contains(name) {
                continue;
            }
            // serde-saphyr writes bytes at the top of a document as a list of numbers (inside
            // a map or a list, as !!binary).
            if name == "yaml" && matches!(value, Value::Bytes(_)) {
                continue;
            }
            prop_assert_eq!(sorted(round_trip(name, &value)), sorted(value.clone()), "{}", name);
        }
    }
}
