//! Property tests of the conversions between carrot's field tables and properties and lapin's:
//! nothing panics, carrot's tables survive the trip to lapin and back bit for bit (floats
//! compared by their bits, so NaN payloads and -0.0 count), names and keys longer than the
//! 255 bytes of an AMQP short string are an `Error::InvalidArgument`, and any value lapin can
//! hold (or parse from the wire) converts to carrot's.
//!
//! Where the mapping is lossy, on purpose: every integer kind becomes `Int` and AMQP floats,
//! doubles and decimals become `Float`; a long string that is not UTF-8 becomes `Bytes`, which
//! goes back out as a byte array; a timestamp beyond `i64::MAX` saturates.

use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable as LapinTable, LongString,
    ShortString,
};
use proptest::prelude::*;

use super::*;
use crate::table::strategies::{self, has_long_key, same, same_table};

/// Any value lapin can hold, nested a few levels deep.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        Just(AMQPValue::Void),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        any::<f32>().prop_map(AMQPValue::Float),
        strategies::float().prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        ".{0,16}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| AMQPValue::LongString(LongString::from(b))),
        prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|a| AMQPValue::FieldArray(FieldArray::from(a))),
            prop::collection::btree_map(".{0,6}".prop_map(ShortString::from), inner, 0..5)
                .prop_map(|t| AMQPValue::FieldTable(LapinTable::from(t))),
        ]
    })
}

/// One field table entry in wire format: a key, a type tag of the AMQP alphabet and random
/// bytes, mostly as many as the type takes (with a length prefix for strings, byte arrays,
/// arrays and tables), sometimes any number.
fn wire_entry() -> impl Strategy<Value = Vec<u8>> {
    (
        "[a-c]{0,3}",
        prop::sample::select(b"tbBsuIiLlTfdDSAFVx".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(key, tag, mut value, well_formed)| {
            if well_formed {
                let size = match tag {
                    b't' | b'b' | b'B' => 1,
                    b's' | b'u' => 2,
                    b'I' | b'i' | b'f' => 4,
                    b'D' => 5,
                    b'L' | b'l' | b'T' | b'd' => 8,
                    b'V' => 0,
                    _ => {
                        let len = (value.len() as u32).to_be_bytes();
                        value.splice(0..0, len);
                        value.len()
                    }
                };
                value.resize(size, 0);
            }
            let mut entry = vec![key.len() as u8];
            entry.extend_from_slice(key.as_bytes());
            entry.push(tag);
            entry.extend_from_slice(&value);
            entry
        })
}

/// Whether carrot's value has the shape of lapin's: same kind, same lengths, same keys.
fn same_shape(lapin: &AMQPValue, carrot: &FieldValue) -> bool {
    match (lapin, carrot) {
        (AMQPValue::FieldArray(a), FieldValue::Array(b)) => {
            a.as_slice().len() == b.len()
                && a.as_slice().iter().zip(b).all(|(a, b)| same_shape(a, b))
        }
        (AMQPValue::FieldTable(a), FieldValue::Table(b)) => {
            a.inner().len() == b.len()
                && a.inner()
                    .iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka.as_str() == kb && same_shape(va, vb))
        }
        (AMQPValue::Void, FieldValue::Void) | (AMQPValue::Boolean(_), FieldValue::Bool(_)) => true,
        (
            AMQPValue::ShortShortInt(_)
            | AMQPValue::ShortShortUInt(_)
            | AMQPValue::ShortInt(_)
            | AMQPValue::ShortUInt(_)
            | AMQPValue::LongInt(_)
            | AMQPValue::LongUInt(_)
            | AMQPValue::LongLongInt(_)
            | AMQPValue::Timestamp(_),
            FieldValue::Int(_),
        ) => true,
        (
            AMQPValue::Float(_) | AMQPValue::Double(_) | AMQPValue::DecimalValue(_),
            FieldValue::Float(_),
        ) => true,
        (AMQPValue::ShortString(s), FieldValue::String(t)) => s.as_str() == t,
        (AMQPValue::LongString(s), FieldValue::String(t)) => s.as_bytes() == t.as_bytes(),
        (AMQPValue::LongString(s), FieldValue::Bytes(b)) => {
            std::str::from_utf8(s.as_bytes()).is_err() && s.as_bytes() == b.as_slice()
        }
        (AMQPValue::ByteArray(a), FieldValue::Bytes(b)) => a.as_slice() == b.as_slice(),
        _ => false,
    }
}

/// Optional strings for the short-string properties, some past the 255-byte limit.
fn property_text() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.6, prop_oneof![4 => ".{0,12}", 1 => "[a-z]{250,260}"])
}

prop_compose! {
    fn properties()(
        texts in prop::collection::vec(property_text(), 10),
        mode in prop::option::of(prop_oneof![Just(DeliveryMode::Transient), Just(DeliveryMode::Persistent)]),
        priority in prop::option::of(any::<u8>()),
        timestamp in prop::option::of(any::<u64>()),
        headers in prop::option::of(strategies::table()),
    ) -> Properties {
        let mut p = Properties::default();
        let setters: [fn(Properties, String) -> Properties; 10] = [
            |p, v| p.with_content_type(v),
            |p, v| p.with_content_encoding(v),
            Properties::with_correlation_id,
            Properties::with_reply_to,
            Properties::with_expiration,
            Properties::with_message_id,
            Properties::with_kind,
            Properties::with_user_id,
            Properties::with_app_id,
            Properties::with_cluster_id,
        ];
        for (set, text) in setters.iter().zip(texts) {
            if let Some(text) = text {
                p = set(p, text);
            }
        }
        if let Some(mode) = mode {
            p = p.with_delivery_mode(mode);
        }
        if let Some(priority) = priority {
            p = p.with_priority(priority);
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

fn short_strings(p: &Properties) -> [Option<&str>; 10] {
    [
        p.content_type(),
        p.content_encoding(),
        p.correlation_id(),
        p.reply_to(),
        p.expiration(),
        p.message_id(),
        p.kind(),
        p.user_id(),
        p.app_id(),
        p.cluster_id(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tables_go_to_lapin_and_back_unchanged(table in strategies::table()) {
        match to_lapin_table(&table) {
            Ok(lapin) => {
                prop_assert!(!has_long_key(&table), "a key over 255 bytes was accepted");
                let back = from_lapin_table(&lapin);
                prop_assert!(same_table(&back, &table), "{:?}\nbecame\n{:?}", table, back);
            }
            Err(e) => {
                prop_assert!(has_long_key(&table), "refused a valid table: {}", e);
                prop_assert!(matches!(e, Error::InvalidArgument(_)), "{:?}", e);
            }
        }
    }

    #[test]
    fn any_lapin_value_converts(value in amqp_value()) {
        let converted = from_lapin_value(&value);
        prop_assert!(same_shape(&value, &converted), "{:?}\nbecame\n{:?}", value, converted);
        // What carrot made of it goes back out (a valid table has no long keys).
        let again = to_lapin_value(&converted);
        prop_assert!(again.is_ok(), "{:?}", again);
    }

    /// Field tables as they come off the wire: whatever lapin's parser makes of entries of a
    /// random key, a type tag of the AMQP alphabet and random bytes.
    #[test]
    fn any_parsed_table_converts(entries in prop::collection::vec(wire_entry(), 0..5)) {
        let bytes = entries.concat();
        let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        if let Ok((_, table)) = lapin::types::parsing::parse_field_table(framed.as_slice()) {
            let converted = from_lapin_table(&table);
            prop_assert_eq!(converted.len(), table.inner().len());
        }
    }

    #[test]
    fn properties_go_to_lapin_and_back(p in properties()) {
        let too_long = short_strings(&p).iter().flatten().any(|s| s.len() > 255)
            || p.headers().is_some_and(has_long_key);
        match to_lapin_properties(&p) {
            Ok(lapin) => {
                prop_assert!(!too_long, "a property or key over 255 bytes was accepted");
                let back = from_lapin_properties(&lapin);
                prop_assert_eq!(short_strings(&back), short_strings(&p));
                prop_assert_eq!(back.delivery_mode(), p.delivery_mode());
                prop_assert_eq!(back.priority(), p.priority());
                prop_assert_eq!(back.timestamp(), p.timestamp());
                let empty = FieldTable::new();
                prop_assert!(same_table(
                    back.headers().unwrap_or(&empty),
                    p.headers().unwrap_or(&empty)
                ));
            }
            Err(e) => {
                prop_assert!(too_long, "refused valid properties: {}", e);
                prop_assert!(matches!(e, Error::InvalidArgument(_)), "{:?}", e);
            }
        }
    }
}

/// Regression: a key of 256 bytes made lapin panic ("ShortString exceeds maximum length").
#[test]
fn a_key_over_255_bytes_is_an_invalid_argument() {
    let nested = FieldValue::Table(crate::table([("k".repeat(256), FieldValue::Void)]));
    for table in [
        crate::table([("k".repeat(256), FieldValue::Int(1))]),
        crate::table([("outer", nested)]),
    ] {
        assert!(matches!(
            to_lapin_table(&table),
            Err(Error::InvalidArgument(_))
        ));
    }
    let at_limit = crate::table([("k".repeat(255), FieldValue::Int(1))]);
    assert_eq!(
        from_lapin_table(&to_lapin_table(&at_limit).unwrap()),
        at_limit
    );
}

/// Regression: a content type (or any short-string property) of 256 bytes made lapin panic.
#[test]
fn a_property_over_255_bytes_is_an_invalid_argument() {
    let p = Properties::default().with_content_type("t".repeat(256));
    let err = to_lapin_properties(&p).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("content_type")),
        "{err:?}"
    );
    assert!(matches!(
        short(&"q".repeat(300), "the queue name"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn lossy_on_purpose() {
    let huge = from_lapin_value(&AMQPValue::Timestamp(u64::MAX));
    assert_eq!(huge, FieldValue::Int(i64::MAX));
    let not_utf8 = from_lapin_value(&AMQPValue::LongString(LongString::from(vec![0xff])));
    assert_eq!(not_utf8, FieldValue::Bytes(vec![0xff]));
    let nan = FieldValue::Float(f64::NAN);
    let back = from_lapin_value(&to_lapin_value(&nan).unwrap());
    assert_ne!(back, nan, "NaN is never equal, even to itself");
    assert!(same(&back, &nan), "but it keeps its bits");
}

fn protocol_error(code: u16, text: &str) -> lapin::Error {
    let amqp = lapin::protocol::AMQPError::from_id(code, text.into()).expect("a known reply code");
    lapin::Error::from(lapin::ErrorKind::ProtocolError(amqp))
}

#[test]
fn broker_refusals_keep_their_kind_and_text() {
    for (code, expected) in [(403, 403), (404, 404), (405, 405), (406, 406)] {
        let err = error(protocol_error(code, "the broker's words"));
        assert_eq!(err.reply_code(), Some(expected), "{err:?}");
        assert!(err.to_string().contains("the broker's words"), "{err}");
        assert!(!err.is_retryable(), "{err:?}");
    }
    assert!(matches!(
        error(protocol_error(540, "x")),
        Error::Unsupported(_)
    ));
}

#[test]
fn a_channel_closed_by_the_broker_reports_its_real_reply_code_and_the_lapin_error() {
    let err = error(protocol_error(311, "CONTENT_TOO_LARGE - body too large"));
    match &err {
        Error::ChannelClosed {
            reply_code: Some(311),
            reply_text,
            source: Some(_),
        } => assert_eq!(reply_text, "CONTENT_TOO_LARGE - body too large"),
        other => panic!("{other:?}"),
    }
    let source = std::error::Error::source(&err).expect("the lapin error");
    assert!(
        source.downcast_ref::<lapin::Error>().is_some(),
        "{source:?}"
    );
}

#[test]
fn hard_errors_close_the_connection_and_only_a_forced_close_is_worth_a_retry() {
    let forced = protocol_error(320, "CONNECTION_FORCED - broker forced connection closure");
    assert!(is_connection_loss(&forced) && !is_client_fault(&forced));
    let err = error(forced);
    assert!(
        matches!(
            err,
            Error::ConnectionClosed {
                reply_code: Some(320),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_connection_error() && err.is_retryable(), "{err:?}");

    for code in [501, 502, 503, 504, 505, 506, 530, 541] {
        let refused = protocol_error(code, "the client sent something wrong");
        assert!(
            is_client_fault(&refused) && !is_connection_loss(&refused),
            "{code}"
        );
        let err = error(refused);
        assert!(
            matches!(err, Error::ConnectionClosed { reply_code: Some(c), .. } if c == code),
            "{code}: {err:?}"
        );
        assert!(!err.is_retryable(), "{code}: {err:?}");
    }
}

#[test]
fn a_lost_connection_keeps_the_io_error_as_its_cause() {
    let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    let e = lapin::Error::from(io);
    assert!(is_connection_loss(&e));
    let err = error(e);
    assert!(err.is_connection_error() && err.is_retryable(), "{err:?}");
    let lapin_error = std::error::Error::source(&err).expect("the lapin error");
    let io = lapin_error.source().expect("the io::Error");
    assert_eq!(
        io.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionReset)
    );
}
