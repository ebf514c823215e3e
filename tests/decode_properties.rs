//! Property tests of decoding message bodies through the public API, on a `memory://` broker.
//!
//! Arbitrary bytes are published with every content type carrot knows (json, text/plain,
//! application/data, pickle, yaml, a custom serializer), unknown and missing ones, and any
//! content encoding (latin-1 and ascii text included), to consumers with and without accept
//! lists. What they prove:
//! - `payload()` and `decode()` never panic and give what a model of the rules says: the
//!   decoded value, or `Error::Decode` / `Error::ContentTypeNotAccepted`;
//! - pickle and yaml are refused unless the consumer's accept list names them, and a custom
//!   pickle decoder never runs otherwise; carrot's own pickle and YAML readers give a value or
//!   `Error::Decode` for any bytes;
//! - a message whose body did not decode can still be acked, rejected or requeued, exactly once;
//! - JSON data comes back exactly as sent, floats to the last bit (and, a regression test on
//!   `sqlite://`, so do NaN, infinite and other float headers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use carrot::serialization::{Serializer, PICKLE_CONTENT_TYPE};
use carrot::{
    BoxError, BrokerConnection, Consumer, Error, FieldValue, MessageState, OutgoingMessage,
    Payload, Properties, Publisher, SendOptions,
};
use proptest::prelude::*;
use serde_json::Value;

/// One runtime for every case: a case is a few calls on an in-process broker.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

/// A queue of its own for each case, so that a failing case leaves nothing for the next.
fn fresh_queue() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("props-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// JSON written backwards: a custom serializer.
struct Reversed;

impl Serializer for Reversed {
    fn encode(&self, value: &Value) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?.into_iter().rev().collect())
    }
    fn decode(&self, body: &[u8]) -> Result<Value, BoxError> {
        let forward: Vec<u8> = body.iter().rev().copied().collect();
        Ok(serde_json::from_slice(&forward)?)
    }
}

/// Stands in for a pickle decoder: counts the bodies it is given, and decodes them all to null.
struct PickleSpy(Arc<AtomicUsize>);

impl Serializer for PickleSpy {
    fn encode(&self, _: &Value) -> Result<Vec<u8>, BoxError> {
        Err("the spy does not encode".into())
    }
    fn decode(&self, _: &[u8]) -> Result<Value, BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Value::Null)
    }
}

/// What the model knows of a content type.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Json,
    Reversed,
    Raw,
    Pickle,
    Yaml,
    Unknown,
}

impl Kind {
    fn of(content_type: Option<&str>) -> (Kind, String) {
        let base = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let kind = match base.as_str() {
            "application/json" => Kind::Json,
            "application/x-reversed" => Kind::Reversed,
            "text/plain" | "application/data" => Kind::Raw,
            PICKLE_CONTENT_TYPE => Kind::Pickle,
            "application/x-yaml" => Kind::Yaml,
            _ => Kind::Unknown,
        };
        (kind, base)
    }

    /// The serializer name an accept list may give for it.
    fn name(self) -> Option<&'static str> {
        match self {
            Kind::Json => Some("json"),
            Kind::Reversed => Some("reversed"),
            Kind::Raw => Some("raw"),
            Kind::Pickle => Some("pickle"),
            Kind::Yaml => Some("yaml"),
            Kind::Unknown => None,
        }
    }
}

/// What `payload()` and `decode::<Value>()` must give, as an error variant or a value.
#[derive(Debug, PartialEq)]
enum Expected<T> {
    Ok(T),
    Decode,
    NotAccepted,
    /// Decoded by a parser of its own (carrot's pickle and YAML readers): some value, or
    /// `Error::Decode`, never a panic nor another error.
    Parsed,
}

struct Model {
    payload: Expected<Payload>,
    value: Expected<Value>,
    pickle_runs: bool,
}

fn model(case: &Case) -> Model {
    let (kind, base) = Kind::of(case.content_type.as_deref());
    let named = |accept: &[String]| {
        accept
            .iter()
            .any(|a| Some(a.as_str()) == kind.name() || *a == base)
    };
    let accepted = match &case.accept {
        Some(accept) => named(accept),
        // Without an accept list json, raw, text, custom serializers and unknown types are
        // accepted; pickle and yaml (and msgpack) only when named.
        None => !matches!(kind, Kind::Pickle | Kind::Yaml),
    };
    // The character set: latin-1 reads every byte, ascii only ASCII, binary is not text, and
    // utf-8 or a name carrot does not know reads valid UTF-8.
    let encoding = case
        .content_encoding
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase().replace('_', "-"));
    let text = !matches!(encoding.as_deref(), Some("binary" | "ascii-8bit"));
    let latin1 = matches!(
        encoding.as_deref(),
        Some("latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1")
    );
    let ascii = matches!(encoding.as_deref(), Some("ascii" | "us-ascii"));
    let body = &case.body;
    let structured = |value: Option<Value>| match value {
        Some(v) => (Expected::Ok(Payload::Data(v.clone())), Expected::Ok(v)),
        None => (Expected::Decode, Expected::Decode),
    };
    let (payload, value) = if !accepted {
        (Expected::NotAccepted, Expected::NotAccepted)
    } else {
        match kind {
            Kind::Json => structured(serde_json::from_slice(body).ok()),
            Kind::Reversed => {
                let forward: Vec<u8> = body.iter().rev().copied().collect();
                structured(serde_json::from_slice(&forward).ok())
            }
            Kind::Pickle if case.pickle_registered => structured(Some(Value::Null)),
            Kind::Pickle | Kind::Yaml => (Expected::Parsed, Expected::Parsed),
            Kind::Raw | Kind::Unknown if latin1 => {
                let s: String = body.iter().map(|&b| char::from(b)).collect();
                (
                    Expected::Ok(Payload::Text(s.clone())),
                    Expected::Ok(Value::String(s)),
                )
            }
            Kind::Raw | Kind::Unknown => match std::str::from_utf8(body) {
                Ok(s) if text && (!ascii || s.is_ascii()) => (
                    Expected::Ok(Payload::Text(s.to_string())),
                    Expected::Ok(Value::String(s.to_string())),
                ),
                // serde_json's Value has no bytes: raw binary bodies decode into Vec<u8>.
                _ => (Expected::Ok(Payload::Bytes(body.clone())), Expected::Decode),
            },
        }
    };
    Model {
        pickle_runs: accepted && kind == Kind::Pickle && case.pickle_registered,
        payload,
        value,
    }
}

fn outcome<T>(result: Result<T, Error>) -> Result<Expected<T>, String> {
    match result {
        Ok(v) => Ok(Expected::Ok(v)),
        Err(Error::Decode { .. }) => Ok(Expected::Decode),
        Err(Error::ContentTypeNotAccepted { .. }) => Ok(Expected::NotAccepted),
        Err(other) => Err(format!("an error of an unexpected kind: {other:?}")),
    }
}

#[derive(Clone, Copy, Debug)]
enum Settle {
    Ack,
    Reject,
    Requeue,
}

#[derive(Debug)]
struct Case {
    body: Vec<u8>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    accept: Option<Vec<String>>,
    pickle_registered: bool,
    settle: Settle,
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    let known = prop::sample::select(vec![
        "application/json",
        "application/json; charset=utf-8",
        " application/json ",
        "APPLICATION/JSON",
        "text/plain",
        "text/plain; charset=latin-1",
        "application/data",
        PICKLE_CONTENT_TYPE,
        "application/x-python-serialize; protocol=4",
        "application/x-reversed",
        "application/x-yaml",
        "",
        ";",
    ]);
    prop::option::weighted(
        0.9,
        prop_oneof![4 => known.prop_map(str::to_string), 1 => ".{0,24}"],
    )
}

fn content_encoding() -> impl Strategy<Value = Option<String>> {
    let known = prop::sample::select(vec!["utf-8", "binary", "BINARY", "Binary", "latin-1", ""]);
    prop::option::weighted(
        0.8,
        prop_oneof![4 => known.prop_map(str::to_string), 1 => ".{0,8}"],
    )
}

/// JSON values of every kind, nested a little, floats included.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        2 => json().prop_map(|v| serde_json::to_vec(&v).expect("JSON encodes")),
        1 => json().prop_map(|v| serde_json::to_vec(&v).expect("JSON encodes").into_iter().rev().collect()),
        2 => ".{0,24}".prop_map(String::into_bytes),
        1 => Just(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94.".to_vec()),
    ]
}

fn accept() -> impl Strategy<Value = Option<Vec<String>>> {
    let entry = prop::sample::select(vec![
        "json",
        "raw",
        "reversed",
        "pickle",
        "application/json",
        "text/plain",
        "application/x-yaml",
        PICKLE_CONTENT_TYPE,
    ]);
    prop::option::of(prop::collection::vec(entry.prop_map(str::to_string), 0..3))
}

prop_compose! {
    fn case()(
        body in body(),
        content_type in content_type(),
        content_encoding in content_encoding(),
        accept in accept(),
        pickle_registered in any::<bool>(),
        settle in prop_oneof![Just(Settle::Ack), Just(Settle::Reject), Just(Settle::Requeue)],
    ) -> Case {
        Case { body, content_type, content_encoding, accept, pickle_registered, settle }
    }
}

async fn run(case: &Case) -> Result<(), TestCaseError> {
    let conn = BrokerConnection::connect("memory://properties-decoding").await?;
    conn.register_serializer("reversed", "application/x-reversed", "utf-8", Reversed);
    let pickle_calls = Arc::new(AtomicUsize::new(0));
    if case.pickle_registered {
        conn.register_serializer(
            "pickle",
            PICKLE_CONTENT_TYPE,
            "binary",
            PickleSpy(pickle_calls.clone()),
        );
    }
    let queue = fresh_queue();
    let mut builder = Consumer::builder(&conn).queue(&queue);
    if let Some(accept) = &case.accept {
        builder = builder.accept(accept.clone());
    }
    let mut consumer = builder.build().await?;
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .build()
        .await?;

    let mut properties = Properties::default();
    if let Some(ct) = &case.content_type {
        properties = properties.with_content_type(ct.as_str());
    }
    if let Some(ce) = &case.content_encoding {
        properties = properties.with_content_encoding(ce.as_str());
    }
    let message = OutgoingMessage::new(case.body.clone(), properties);
    publisher.publish(message, &SendOptions::new()).await?;
    let message = consumer.fetch().await?.expect("the message just published");
    prop_assert_eq!(message.body(), &case.body[..]);

    let expected = model(case);
    let payload = outcome(message.payload().cloned()).map_err(TestCaseError::fail)?;
    if expected.payload == Expected::Parsed {
        prop_assert!(
            matches!(payload, Expected::Ok(_) | Expected::Decode),
            "payload(): {:?}",
            payload
        );
    } else {
        prop_assert_eq!(&payload, &expected.payload, "payload()");
    }
    // Decoded once and kept; a failure fails the same way again.
    prop_assert_eq!(
        outcome(message.payload().cloned()).map_err(TestCaseError::fail)?,
        payload
    );
    let value = outcome(message.decode::<Value>()).map_err(TestCaseError::fail)?;
    if expected.value == Expected::Parsed {
        prop_assert!(
            matches!(value, Expected::Ok(_) | Expected::Decode),
            "decode(): {:?}",
            value
        );
    } else {
        prop_assert_eq!(&value, &expected.value, "decode::<Value>()");
    }
    if matches!(
        expected.payload,
        Expected::Ok(Payload::Bytes(_) | Payload::Text(_))
    ) {
        // A raw body decodes into bytes whatever it holds.
        prop_assert_eq!(message.decode::<Vec<u8>>()?, case.body.clone());
    }
    let runs = pickle_calls.load(Ordering::SeqCst);
    prop_assert_eq!(
        runs > 0,
        expected.pickle_runs,
        "the pickle decoder ran {} times",
        runs
    );

    // Whatever decoding did, the message is settled exactly once.
    prop_assert_eq!(message.state(), MessageState::Received);
    let (result, state) = match case.settle {
        Settle::Ack => (message.ack(), MessageState::Acknowledged),
        Settle::Reject => (message.reject(), MessageState::Rejected),
        Settle::Requeue => (message.requeue(), MessageState::Requeued),
    };
    result?;
    prop_assert_eq!(message.state(), state);
    for second in [message.ack(), message.reject(), message.requeue()] {
        let refused = matches!(second, Err(Error::AlreadyAcknowledged { .. }));
        prop_assert!(refused, "settled twice: {:?}", second);
    }
    let again = consumer.fetch().await?;
    match case.settle {
        Settle::Requeue => {
            let again = again.expect("a requeued message comes back");
            prop_assert!(again.redelivered());
            prop_assert_eq!(again.body(), &case.body[..]);
            again.ack()?;
        }
        _ => prop_assert!(again.is_none(), "an acked or rejected message is gone"),
    }
    consumer.close().await?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bodies_decode_as_the_model_says_and_settle_whatever_happened(case in case()) {
        runtime().block_on(run(&case))?;
    }

    /// `send` then `decode` is the identity on JSON data, floats to the last bit.
    #[test]
    fn json_data_comes_back_exactly(value in json()) {
        runtime().block_on(async {
            let conn = BrokerConnection::connect("memory://properties-json").await?;
            let queue = fresh_queue();
            let mut consumer = Consumer::builder(&conn).queue(&queue).build().await?;
            let publisher = Publisher::builder(&conn).routing_key(&queue).build().await?;
            publisher.send(&value).await?;
            let message = consumer.fetch().await?.expect("the message just sent");
            let back: Value = message.decode()?;
            prop_assert_eq!(&back, &value);
            prop_assert_eq!(message.payload()?, &Payload::Data(value.clone()));
            message.ack()?;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// Regression: with a pickle serializer registered, a consumer without an accept list decoded
/// pickle, although pickle must be named in the accept list to be decoded.
#[tokio::test]
async fn registered_pickle_needs_the_accept_list() -> carrot::Result<()> {
    let case = |accept: Option<Vec<String>>| Case {
        body: b"\x80\x04K\x01.".to_vec(),
        content_type: Some(PICKLE_CONTENT_TYPE.into()),
        content_encoding: Some("binary".into()),
        accept,
        pickle_registered: true,
        settle: Settle::Reject,
    };
    run(&case(None))
        .await
        .expect("pickle refused without an accept list");
    run(&case(Some(vec!["pickle".into()])))
        .await
        .expect("pickle decoded when accepted");
    Ok(())
}

/// Regression: a float that serde_json's default parser reads one ulp off.
#[tokio::test]
async fn a_float_that_used_to_come_back_one_ulp_off() -> carrot::Result<()> {
    let conn = BrokerConnection::connect("memory://properties-json").await?;
    let queue = fresh_queue();
    let mut consumer = Consumer::builder(&conn).queue(&queue).build().await?;
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .build()
        .await?;
    let sent = -1.3087734787291732e269_f64;
    publisher.send(&sent).await?;
    let message = consumer.fetch().await?.expect("the message just sent");
    assert_eq!(message.decode::<f64>()?.to_bits(), sent.to_bits());
    Ok(())
}

/// Regression: the sqlite broker stored a NaN or infinite header as `null` and then failed
/// every fetch of the message with `Error::Storage`.
#[tokio::test]
async fn headers_of_every_float_survive_the_sqlite_broker() -> carrot::Result<()> {
    let path = std::env::temp_dir().join(format!("carrot-properties-{}.db", std::process::id()));
    let floats = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        -1.3087734787291732e269,
    ];
    let result = async {
        let conn = BrokerConnection::connect(&format!("sqlite://{}", path.display())).await?;
        let mut consumer = Consumer::builder(&conn).queue("floats").build().await?;
        let publisher = Publisher::builder(&conn)
            .routing_key("floats")
            .build()
            .await?;
        let headers: carrot::FieldTable = floats
            .iter()
            .enumerate()
            .map(|(i, f)| (i.to_string(), FieldValue::Float(*f)))
            .collect();
        publisher
            .send_with(&1, SendOptions::new().headers(headers))
            .await?;
        let message = consumer.fetch().await?.expect("the message just sent");
        let headers = message.headers().expect("headers").clone();
        message.ack()?;
        conn.close().await?;
        Ok::<_, Error>(headers)
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let headers = result?;
    for (i, f) in floats.iter().enumerate() {
        match &headers[&i.to_string()] {
            FieldValue::Float(g) => {
                assert_eq!(g.to_bits(), f.to_bits(), "{f:?} came back as {g:?}")
            }
            other => panic!("{f:?} came back as {other:?}"),
        }
    }
    Ok(())
}
