//! Every serializer and every compression, both ways between carrot and Python's kombu through
//! RabbitMQ: json, msgpack, yaml, pickle, raw text and raw bytes, each uncompressed and under
//! gzip (zlib), bzip2, lzma, brotli and zstd; carrot publishes and kombu consumes, then kombu
//! publishes and carrot consumes. Each of the 72 cells checks the decoded body exactly (in
//! Python's data model: ints apart from floats, bytes apart from text, NaN, keys of any type),
//! the content type and encoding, the `compression` header and every message property. The
//! matrix is printed to stderr (`--nocapture`), then every cell must be ok.
//!
//! Why: a Rust service and its Python peers must read each other's messages whatever
//! serializer and compression the Python side was configured with; a format that differs in
//! one corner (a YAML string PyYAML reads as a bool, a float written without a dot, a NaN, a
//! bytes key) shows up as one failed cell.
//!
//! Also here, because they need the same peers: a pickle that runs a command when Python
//! unpickles it is refused by carrot even with pickle accepted, and a consumer's default
//! accept list refuses pickle, yaml and msgpack (both on the embedded `memory://` broker).
//!
//! The matrix runs through RabbitMQ and through `carrot serve` (memory:// and sqlite://).
//!
//! Needs `CARROT_TEST_AMQP_URL` and a Python 3 with kombu, msgpack, PyYAML, brotli and
//! backports.zstd (`pip install kombu msgpack pyyaml brotli backports.zstd`); the
//! interpreter is `CARROT_TEST_PYTHON`, `python3` by default. kombu's side is
//! `tests/interop/kombu_matrix.py`, whose docstring defines the canonical JSON both sides
//! compare bodies in.

mod amqp_support;
mod serve_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Duration;

use amqp_support::*;
use carrot::{
    table, BrokerConnection, Consumer, DeliveryMode, Error, FieldTable, FieldValue, Message,
    Publisher, QueueSpec, SendOptions, Value,
};
use serde_json::{json, Value as Json};
use tokio::io::AsyncWriteExt;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kombu_matrix.py");
const LIMIT: Duration = Duration::from_secs(300);
/// What the Python interpreter must import: kombu and the libraries of its serializers and
/// compressions (bz2 and lzma are in the standard library).
const PYTHON_NEEDS: &str = "import kombu, msgpack, yaml, brotli; from backports import zstd";
/// Every content type of the matrix, by name (carrot also takes the content types).
const ACCEPT_ALL: [&str; 5] = ["json", "raw", "msgpack", "yaml", "pickle"];

// ---------------------------------------------------------------------------------------------
// The matrix: formats, compressions, cells.

/// A serializer as kombu uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Msgpack,
    Yaml,
    Pickle,
    /// kombu's raw path with a str: `text/plain`, `utf-8`.
    Text,
    /// kombu's raw path with bytes: `application/data`, `binary`.
    Bytes,
}

const FORMATS: [Format; 6] = [
    Format::Json,
    Format::Msgpack,
    Format::Yaml,
    Format::Pickle,
    Format::Text,
    Format::Bytes,
];

/// Other spellings kombu (and carrot) take for a compression: an alias, and the content type
/// itself. The cells of each serializer name their compression one way (see
/// [`Cell::compression_spelling`]), so that every spelling crosses in both directions.
const ALIASES: [(&str, &str); 5] = [
    ("gzip", "zlib"),
    ("bzip2", "bzip"),
    ("lzma", "xz"),
    ("brotli", "brotli"),
    ("zstd", "zstandard"),
];

/// Each compression by the name the cells use, with the content type kombu writes into the
/// `compression` header.
const COMPRESSIONS: [(Option<&str>, Option<&str>); 6] = [
    (None, None),
    (Some("gzip"), Some("application/x-gzip")),
    (Some("bzip2"), Some("application/x-bz2")),
    (Some("lzma"), Some("application/x-lzma")),
    (Some("brotli"), Some("application/x-brotli")),
    (Some("zstd"), Some("application/zstd")),
];

impl Format {
    /// The name kombu_matrix.py takes.
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Msgpack => "msgpack",
            Format::Yaml => "yaml",
            Format::Pickle => "pickle",
            Format::Text => "text",
            Format::Bytes => "bytes",
        }
    }

    /// carrot's serializer for it.
    fn serializer(self) -> &'static str {
        match self {
            Format::Text | Format::Bytes => "raw",
            other => other.name(),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Msgpack => "application/x-msgpack",
            Format::Yaml => "application/x-yaml",
            Format::Pickle => "application/x-python-serialize",
            Format::Text => "text/plain",
            Format::Bytes => "application/data",
        }
    }

    fn content_encoding(self) -> &'static str {
        match self {
            Format::Msgpack | Format::Pickle | Format::Bytes => "binary",
            Format::Json | Format::Yaml | Format::Text => "utf-8",
        }
    }

    /// Whether the format writes NaN without its sign and payload (YAML's `.nan`): then any
    /// NaN reads back as the reader's NaN (PyYAML's has the sign bit set, Rust's does not),
    /// and bodies are compared with every NaN made one.
    fn nan_is_one_value(self) -> bool {
        self == Format::Yaml
    }

    /// The body of this format's cells: what the format carries as kombu uses it.
    fn body(self) -> Value {
        match self {
            // Left out of json: bytes (kombu's json writes them as a {"__type__": "bytes"}
            // object, not bytes), NaN and the infinities (not JSON; Python writes `NaN`,
            // which JSON parsers refuse), keys other than strings (JSON has none: Python writes
            // 1 as "1") and ints beyond 64 bits (serde_json reads them as floats).
            Format::Json => map(common()),
            // Left out of msgpack: keys other than str and bytes (kombu unpacks with msgpack's
            // default strict_map_key=True, which refuses them) and ints beyond 64 bits (not in
            // msgpack).
            Format::Msgpack => {
                let mut entries = common();
                entries.extend(binary_entries());
                entries.push((b(b"\x00\xffbytes key"), s("a bytes key")));
                map(entries)
            }
            Format::Yaml => {
                let mut entries = common();
                // Bytes go as !!binary, which PyYAML's safe_dump writes and safe_load reads.
                entries.extend(binary_entries());
                entries.push(entry("keys", keys()));
                entries.push(entry("ints_beyond_64_bits", big_ints()));
                // Strings that look like something else: PyYAML (YAML 1.1) reads `yes`, `on`,
                // `~`, `2001-12-14`, `190:20:30` unquoted as a bool, None, a date, an int, and
                // cannot read `=` or `<<` unquoted, so a writer must quote them; and PyYAML
                // writes `y`, `n`, `1e3`, `0o17` unquoted (strings in YAML 1.1, not in 1.2),
                // so a reader must read them as strings.
                entries.push(entry(
                    "strings_that_look_like_other_things",
                    list(YAML_LOOKALIKES.iter().map(|t| s(t))),
                ));
                map(entries)
            }
            // Left out of pickle: tuple keys (a tuple reads as a list, and a list written back
            // cannot be a key in Python), sets (they read as lists), and ints beyond 64 bits,
            // which carrot reads (tests/serializers.rs reads CPython's 2**70) but does not
            // write (serde-pickle writes 64-bit ints at most).
            Format::Pickle => {
                let mut entries = common();
                entries.extend(binary_entries());
                entries.push(entry("keys", keys()));
                entries.push((b(b"k\xff"), s("a bytes key")));
                map(entries)
            }
            Format::Text => s("grüße, 世界 ✓ 🥕 — plain text\nsecond line\r\nthird\t\u{0}end"),
            Format::Bytes => b(&(0..=255u8).chain((0..=255u8).rev()).collect::<Vec<_>>()),
        }
    }
}

/// Texts in every corner of Unicode and of escaping.
const UNICODE: [&str; 10] = [
    "héllo wörld",
    "日本語のテキスト",
    "🥕 emoji 👩‍👩‍👧",
    "\"quoted\" 'single' \\ back\nslash\ttab",
    "\u{0}nul \u{1}soh \u{7f}del",
    "\u{85}nel \u{2028}ls \u{2029}ps",
    "\u{feff}bom",
    "a\r\nb\rc",
    " leading and trailing ",
    "a: b # not a comment",
];

/// Strings that YAML 1.1 resolves to another type when unquoted, or cannot read unquoted.
const YAML_LOOKALIKES: [&str; 36] = [
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "n",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "",
    "1",
    "-1",
    "1.0",
    "1e3",
    "1.0e+3",
    ".5",
    "+1",
    "0x1F",
    "0o17",
    "012",
    "1_000",
    "190:20:30",
    ".inf",
    ".NaN",
    "2001-12-14",
    "2001-12-14 21:59:43.10 -5",
    "=",
    "<<",
    "- dash",
    "? question",
    ": colon",
    "#hash",
    "@at",
    "!bang",
];

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn b(bytes: &[u8]) -> Value {
    Value::Bytes(bytes.to_vec())
}

fn int(i: i128) -> Value {
    Value::Int(i)
}

fn float(f: f64) -> Value {
    Value::Float(f)
}

fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::List(items.into_iter().collect())
}

fn map(entries: impl IntoIterator<Item = (Value, Value)>) -> Value {
    Value::Map(entries.into_iter().collect())
}

fn entry(key: &str, value: Value) -> (Value, Value) {
    (s(key), value)
}

/// What every structured format carries: empty containers, nesting, text, 64-bit ints, finite
/// floats, None and booleans, under string keys.
fn common() -> Vec<(Value, Value)> {
    let mut deep = list([s("bottom")]);
    for level in 0..20 {
        deep = map([entry(&format!("level{level}"), list([deep, int(level)]))]);
    }
    vec![
        entry("empty_list", list([])),
        entry("empty_map", map([])),
        entry("empty_str", s("")),
        entry("none", Value::None),
        entry("true", Value::Bool(true)),
        entry("false", Value::Bool(false)),
        entry(
            "nested",
            map([
                entry(
                    "a",
                    list([
                        int(1),
                        list([int(2), list([int(3), map([]), list([])])]),
                        map([entry("b", Value::None)]),
                    ]),
                ),
                entry("deep", deep),
            ]),
        ),
        entry("unicode", list(UNICODE.iter().map(|t| s(t)))),
        (s("ключ 🔑"), s("a non-ASCII key")),
        entry(
            "ints",
            list(
                [
                    0,
                    1,
                    -1,
                    127,
                    128,
                    255,
                    256,
                    -32,
                    -33,
                    65_535,
                    65_536,
                    i128::from(i32::MAX),
                    i128::from(i32::MAX) + 1,
                    i128::from(i32::MIN),
                    i128::from(i32::MIN) - 1,
                    i128::from(u32::MAX) + 1,
                    i128::from(i64::MIN),
                    i128::from(i64::MAX),
                    i128::from(u64::MAX),
                ]
                .map(int),
            ),
        ),
        entry(
            "floats",
            list(
                [
                    0.0,
                    -0.0,
                    1.0,
                    2.5,
                    0.1,
                    -1.5e-10,
                    1e300,
                    -1e-300,
                    123456789.0,
                    1e16,
                    5e-324,
                    f64::MIN_POSITIVE,
                    f64::MAX,
                    f64::MIN,
                ]
                .map(float),
            ),
        ),
        entry("long_text", s(&"carrot 🥕 kombu, ".repeat(100))),
    ]
}

/// What msgpack, yaml and pickle carry beyond json: NaN and the infinities, bytes apart from
/// text.
fn binary_entries() -> Vec<(Value, Value)> {
    vec![
        entry(
            "not_finite",
            list([f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(float)),
        ),
        entry(
            "bytes",
            list([
                b(b""),
                b(&(0..=255u8).collect::<Vec<_>>()),
                b("🥕".as_bytes()),
            ]),
        ),
        entry("str_and_bytes", list([s("abc"), b(b"abc")])),
    ]
}

/// Keys of every type but str (yaml and pickle). No key 0 or 1 next to false or true:
/// Python's dict makes them one key.
fn keys() -> Value {
    map([
        (int(2), s("int key")),
        (int(-3), s("negative int key")),
        (s("2"), s("the str of the int key")),
        (Value::None, s("None key")),
        (Value::Bool(false), s("False key")),
        (float(1.5), s("float key")),
        (int(i128::from(u64::MAX)), s("u64::MAX key")),
    ])
}

/// Ints beyond 64 bits (yaml: Python's ints have any size; carrot's reach 128 bits).
fn big_ints() -> Value {
    list(
        [
            i128::from(u64::MAX) + 1,
            -i128::from(u64::MAX) - 1,
            1 << 100,
            -(1 << 100),
            i128::MAX,
            i128::MIN,
        ]
        .map(int),
    )
}

/// One message of the matrix: a format under a compression.
#[derive(Clone, Debug)]
struct Cell {
    index: usize,
    format: Format,
    compression: Option<&'static str>,
    compression_type: Option<&'static str>,
    /// Whether the message has an `expiration`: not on Redis, which has no message expiry
    /// (carrot refuses it there, kombu leaves it unused).
    expiring: bool,
}

/// The cells of the matrix for the broker at `url`.
fn cells(url: &str) -> Vec<Cell> {
    let expiring = !url.starts_with("redis");
    let mut cells = Vec::new();
    for format in FORMATS {
        for (compression, compression_type) in COMPRESSIONS {
            cells.push(Cell {
                index: cells.len(),
                format,
                compression,
                compression_type,
                expiring,
            });
        }
    }
    cells
}

impl Cell {
    /// `msgpack/zstd`, `json/none`: the `cell` header that matches a result to its cell.
    fn name(&self) -> String {
        format!(
            "{}/{}",
            self.format.name(),
            self.compression.unwrap_or("none")
        )
    }

    /// How the publisher names the compression: its name in the rows of json and pickle, an
    /// alias (`zlib`, `bzip`, `xz`, `zstandard`) in those of msgpack and text, the content type
    /// in those of yaml and bytes.
    fn compression_spelling(&self) -> Option<&'static str> {
        let name = self.compression?;
        Some(match self.index / COMPRESSIONS.len() % 3 {
            0 => name,
            1 => ALIASES
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(name, |(_, alias)| alias),
            _ => self.compression_type.unwrap_or(name),
        })
    }

    fn priority(&self) -> u8 {
        (self.index % 10) as u8
    }

    fn delivery_mode(&self) -> DeliveryMode {
        if self.index.is_multiple_of(2) {
            DeliveryMode::Persistent
        } else {
            DeliveryMode::Transient
        }
    }

    fn timestamp(&self) -> u64 {
        1_700_000_000 + self.index as u64
    }

    /// The headers the publisher sets, `cell` included (not `compression`).
    fn headers(&self, from: &str) -> FieldTable {
        table([
            ("cell", self.name().into()),
            ("x-source", from.into()),
            ("n", 7.into()),
            ("big", (-70_000_000_000i64).into()),
            ("flag", true.into()),
            ("text", "héllo ✓".into()),
        ])
    }

    /// Every property the publisher sets, as kombu_matrix.py takes and prints them.
    fn properties(&self, from: &str, user: &str) -> Json {
        let mut properties = json!({
            "correlation_id": format!("corr-{}", self.name()),
            "reply_to": "replies",
            // An hour: no message of the test expires before it is consumed.
            "expiration": "3600000",
            "message_id": format!("{from}-{}", self.name()),
            "timestamp": self.timestamp(),
            "type": "greeting",
            "user_id": user,
            "app_id": format!("{from}-matrix"),
            "priority": self.priority(),
            "delivery_mode": self.delivery_mode().as_u8(),
        });
        if !self.expiring {
            properties["expiration"] = Json::Null;
        }
        properties
    }

    /// What the consumer must report of this cell (the shape kombu_matrix.py prints).
    fn expected(&self, from: &str, user: &str) -> Json {
        let mut headers = table_json(&self.headers(from));
        if let Some(kind) = self.compression_type {
            headers["compression"] = json!(kind);
        }
        json!({
            "cell": self.name(),
            "body": canonical(&self.format.body()),
            "content_type": self.format.content_type(),
            "content_encoding": self.format.content_encoding(),
            "compression": self.compression_type,
            "properties": self.properties(from, user),
            "headers": headers,
        })
    }

    /// The line kombu_matrix.py publishes.
    fn peer_line(&self, user: &str) -> Json {
        let mut properties = self.properties("kombu", user);
        let mut headers = table_json(&self.headers("kombu"));
        headers.as_object_mut().expect("a table").remove("cell");
        properties["headers"] = headers;
        json!({
            "cell": self.name(),
            "serializer": self.format.name(),
            "compression": self.compression_spelling(),
            "body": canonical(&self.format.body()),
            "properties": properties,
        })
    }

    /// carrot's send options for this cell, every property set.
    fn send_options(&self, user: &str) -> SendOptions {
        let mut options = SendOptions::new()
            .serializer(self.format.serializer())
            .correlation_id(format!("corr-{}", self.name()))
            .reply_to("replies")
            .message_id(format!("carrot-{}", self.name()))
            .timestamp(self.timestamp())
            .message_type("greeting")
            .user_id(user)
            .app_id("carrot-matrix")
            .headers(self.headers("carrot"))
            .priority(self.priority())
            .delivery_mode(self.delivery_mode());
        if self.expiring {
            options = options.expiration("3600000");
        }
        match self.compression_spelling() {
            Some(compression) => options.compression(compression),
            None => options,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON (tests/interop/kombu_matrix.py defines it) and comparison.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical JSON of a value, as kombu_matrix.py's `to_canonical` writes it.
fn canonical(value: &Value) -> Json {
    match value {
        Value::None => Json::Null,
        Value::Bool(v) => json!(v),
        Value::Int(i) => json!({"$int": i.to_string()}),
        Value::Float(f) => json!({"$float": format!("{:016x}", f.to_bits())}),
        Value::Str(text) => json!(text),
        Value::Bytes(bytes) => json!({"$bytes": hex(bytes)}),
        Value::List(items) => Json::Array(items.iter().map(canonical).collect()),
        Value::Map(entries) => {
            let entries = entries
                .iter()
                .map(|(k, v)| json!([canonical(k), canonical(v)]))
                .collect();
            normalize(json!({ "$map": Json::Array(entries) }), false)
        }
        other => panic!("a carrot::Value this test does not know: {other:?}"),
    }
}

/// A canonical value made comparable whatever order the writer sorted map entries in (by
/// their key's compact JSON here), and, when `one_nan`, with every NaN the same.
fn normalize(value: Json, one_nan: bool) -> Json {
    match value {
        Json::Array(items) => {
            Json::Array(items.into_iter().map(|v| normalize(v, one_nan)).collect())
        }
        Json::Object(mut object) => {
            if one_nan {
                if let Some(Json::String(bits)) = object.get("$float") {
                    let nan =
                        u64::from_str_radix(bits, 16).is_ok_and(|b| f64::from_bits(b).is_nan());
                    if nan && object.len() == 1 {
                        return json!({"$float": format!("{:016x}", f64::NAN.to_bits())});
                    }
                }
            }
            if object.len() == 1 {
                if let Some(Json::Array(entries)) = object.remove("$map") {
                    let mut entries: Vec<Json> =
                        entries.into_iter().map(|e| normalize(e, one_nan)).collect();
                    entries
                        .sort_by_cached_key(|e| e.get(0).map(Json::to_string).unwrap_or_default());
                    return json!({ "$map": entries });
                }
            }
            Json::Object(
                object
                    .into_iter()
                    .map(|(k, v)| (k, normalize(v, one_nan)))
                    .collect(),
            )
        }
        other => other,
    }
}

/// A header value as JSON, as kombu_matrix.py prints headers.
fn field_json(value: &FieldValue) -> Json {
    match value {
        FieldValue::Void => Json::Null,
        FieldValue::Bool(v) => json!(v),
        FieldValue::Int(i) => json!(i),
        FieldValue::Float(f) => json!(f),
        FieldValue::String(text) => json!(text),
        FieldValue::Bytes(bytes) => json!({"$bytes": hex(bytes)}),
        FieldValue::Array(items) => Json::Array(items.iter().map(field_json).collect()),
        FieldValue::Table(t) => table_json(t),
        other => json!(format!("{other:?}")),
    }
}

fn table_json(t: &FieldTable) -> Json {
    Json::Object(t.iter().map(|(k, v)| (k.clone(), field_json(v))).collect())
}

fn shorten(value: &Json) -> String {
    let text = value.to_string();
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

/// An error on one line of at most 300 characters (YAML errors quote the document over
/// several lines).
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

/// At most this many differences are listed per field of a cell.
const MAX_DIFFERENCES: usize = 8;

/// Where two JSON values differ, each as `path: expected X, got Y`, into `found` (at most
/// [`MAX_DIFFERENCES`]). Map entries are named by their key: `body["ints"][3]`.
fn find_differences(path: &str, expected: &Json, got: &Json, found: &mut Vec<String>) {
    if expected == got || found.len() >= MAX_DIFFERENCES {
        return;
    }
    let entries = |v: &Json| v.get("$map").and_then(Json::as_array).cloned();
    match (expected, got) {
        (Json::Array(e), Json::Array(g)) if e.len() == g.len() => {
            for (i, (e, g)) in e.iter().zip(g).enumerate() {
                find_differences(&format!("{path}[{i}]"), e, g, found);
            }
            return;
        }
        (Json::Object(e), Json::Object(g)) if e.len() == 1 && g.len() == 1 => {
            if let (Some(e), Some(g)) = (entries(expected), entries(got)) {
                let keys =
                    |entries: &[Json]| entries.iter().map(|p| p[0].clone()).collect::<Vec<_>>();
                if keys(&e) == keys(&g) {
                    for (e, g) in e.iter().zip(&g) {
                        find_differences(
                            &format!("{path}[{}]", shorten(&e[0])),
                            &e[1],
                            &g[1],
                            found,
                        );
                    }
                    return;
                }
            }
        }
        (Json::Object(e), Json::Object(g)) if e.keys().eq(g.keys()) => {
            for (k, v) in e {
                find_differences(&format!("{path}.{k}"), v, &g[k], found);
            }
            return;
        }
        _ => {}
    }
    found.push(format!(
        "{path}: expected {}, got {}",
        shorten(expected),
        shorten(got)
    ));
}

/// What differs between what a cell's consumer reported and what it should have: empty when
/// the cell is ok.
fn differences(cell: &Cell, expected: &Json, got: &Json) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(error) = got.get("error") {
        found.push(format!(
            "decode failed: {}",
            one_line(error.as_str().unwrap_or("?"))
        ));
    } else {
        let one_nan = cell.format.nan_is_one_value();
        let want = normalize(expected["body"].clone(), one_nan);
        let have = normalize(got["body"].clone(), one_nan);
        find_differences("body", &want, &have, &mut found);
    }
    for field in [
        "content_type",
        "content_encoding",
        "compression",
        "properties",
        "headers",
    ] {
        let mut in_field = Vec::new();
        find_differences(field, &expected[field], &got[field], &mut in_field);
        found.extend(in_field);
    }
    found
}

/// The part of a difference the matrix shows: which field.
fn summary(found: &[String]) -> String {
    if found.is_empty() {
        return "ok".into();
    }
    let mut fields: Vec<&str> = found
        .iter()
        .map(|d| {
            if d.starts_with("decode failed") {
                "decode"
            } else if d.starts_with("not received") {
                "lost"
            } else if d.starts_with("publish failed") {
                "publish"
            } else {
                d.split([':', '.', '[']).next().unwrap_or(d)
            }
        })
        .collect();
    fields.dedup();
    fields.join("+")
}

// ---------------------------------------------------------------------------------------------
// The peers.

/// The Python interpreter, when it can import kombu and its serializers' and compressions'
/// libraries.
fn python() -> Option<String> {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python)
        .args(["-c", PYTHON_NEEDS])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => {
            skip_or_fail(&format!(
                "{python} cannot `{PYTHON_NEEDS}` ({}): pip install kombu msgpack pyyaml brotli backports.zstd",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
            ));
            None
        }
        Err(e) => {
            skip_or_fail(&format!(
                "cannot run {python} ({e}): install Python 3 and pip install kombu msgpack pyyaml brotli backports.zstd, or set CARROT_TEST_PYTHON"
            ));
            None
        }
    }
}

/// Runs a Python program (a file and its arguments, or `-c` and code) with this stdin; returns
/// its stdout.
async fn run_python(python: &str, args: &[&str], stdin: &str) -> String {
    let what = args.first().copied().unwrap_or(python);
    let mut child = tokio::process::Command::new(python)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {what}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write to {what}: {e}"));
    drop(input);
    let output = bounded(what, Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(
        output.status.success(),
        "{python} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("Python prints UTF-8")
}

/// The user of an amqp:// URL (RabbitMQ refuses a `user_id` property other than the
/// connection's user).
fn url_user(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or("");
    let Some((credentials, _host)) = authority.rsplit_once('@') else {
        return "guest".into();
    };
    let user = credentials.split(':').next().unwrap_or("");
    let mut decoded = Vec::new();
    let bytes = user.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], user.get(i + 1..i + 3)) {
            (b'%', Some(code)) if u8::from_str_radix(code, 16).is_ok() => {
                decoded.push(u8::from_str_radix(code, 16).unwrap());
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).expect("a UTF-8 user name")
}

/// What carrot reports of a message it consumed, in the shape kombu_matrix.py prints.
fn carrot_report(message: &Message) -> Json {
    let headers = message.headers();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(field_json);
    let p = message.properties();
    let mut report = json!({
        "cell": header("cell"),
        "content_type": message.content_type(),
        "content_encoding": message.content_encoding(),
        "compression": header("compression"),
        "properties": {
            "correlation_id": p.correlation_id(),
            "reply_to": p.reply_to(),
            "expiration": p.expiration(),
            "message_id": p.message_id(),
            "timestamp": p.timestamp(),
            "type": p.kind(),
            "user_id": p.user_id(),
            "app_id": p.app_id(),
            "priority": p.priority(),
            "delivery_mode": p.delivery_mode().map(DeliveryMode::as_u8),
        },
        "headers": headers.map_or(json!({}), table_json),
    });
    match message.decode::<Value>() {
        Ok(value) => report["body"] = canonical(&value),
        Err(e) => report["error"] = json!(e.to_string()),
    }
    report
}

/// Each cell with what its consumer reported, or why there is no report.
type Outcome = Vec<(Cell, Vec<String>)>;

fn judge(
    cells: &[Cell],
    from: &str,
    user: &str,
    mut reports: BTreeMap<String, Json>,
    mut failed: BTreeMap<String, String>,
) -> Outcome {
    cells
        .iter()
        .map(|cell| {
            let found = if let Some(error) = failed.remove(&cell.name()) {
                vec![format!("publish failed: {}", one_line(&error))]
            } else if let Some(report) = reports.remove(&cell.name()) {
                differences(cell, &cell.expected(from, user), &report)
            } else {
                vec!["not received".to_string()]
            };
            (cell.clone(), found)
        })
        .collect()
}

/// carrot publishes every cell; kombu consumes them.
async fn carrot_to_kombu(url: String, python: String, queue: String) -> Outcome {
    let user = url_user(&url);
    let conn = connect(&url).await;
    conn.declare_queue(&QueueSpec::new(&queue))
        .await
        .expect("declare the queue");
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .confirm_publish(true)
        .build()
        .await
        .expect("a publisher with confirms");
    let cells = cells(&url);
    let mut failed = BTreeMap::new();
    for cell in &cells {
        let body = cell.format.body();
        if let Err(e) = publisher.send_with(&body, cell.send_options(&user)).await {
            failed.insert(cell.name(), e.to_string());
        }
    }
    let _ = conn.close().await;

    let count = (cells.len() - failed.len()).to_string();
    let args = [
        PEER, "consume", "--url", &url, "--queue", &queue, "--count", &count,
    ];
    let out = run_python(&python, &args, "").await;
    let mut reports = BTreeMap::new();
    for line in out.lines() {
        let report: Json = serde_json::from_str(line).expect("kombu_matrix.py prints JSON lines");
        let name = report["cell"]
            .as_str()
            .unwrap_or("<no cell header>")
            .to_string();
        reports.insert(name, report);
    }
    judge(&cells, "carrot", &user, reports, failed)
}

/// kombu publishes every cell; carrot consumes them with an accept list naming every format.
async fn kombu_to_carrot(url: String, python: String, queue: String) -> Outcome {
    let user = url_user(&url);
    let cells = cells(&url);
    let stdin: String = cells
        .iter()
        .map(|cell| format!("{}\n", cell.peer_line(&user)))
        .collect();
    let out = run_python(
        &python,
        &[PEER, "publish", "--url", &url, "--queue", &queue],
        &stdin,
    )
    .await;
    assert_eq!(
        out.trim(),
        cells.len().to_string(),
        "kombu published: {out}"
    );

    let conn = connect(&url).await;
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .accept(ACCEPT_ALL)
        .build()
        .await
        .expect("a consumer of kombu's queue accepting every format");
    let mut reports = BTreeMap::new();
    for _ in &cells {
        let Some(message) = bounded("fetch", Duration::from_secs(30), consumer.fetch())
            .await
            .expect("fetch")
        else {
            break;
        };
        let report = carrot_report(&message);
        let name = report["cell"]
            .as_str()
            .unwrap_or("<no cell header>")
            .to_string();
        reports.insert(name, report);
        message.ack().expect("ack");
    }
    assert!(
        consumer.fetch().await.expect("fetch").is_none(),
        "kombu published {} messages only",
        cells.len()
    );
    let _ = conn.close().await;
    judge(&cells, "kombu", &user, reports, BTreeMap::new())
}

/// The matrix as text: one table per direction, then what differed in each failed cell.
fn matrix(directions: &[(&str, &Outcome)]) -> String {
    let mut text = String::new();
    for (direction, outcome) in directions {
        let _ = writeln!(text, "\n{direction}");
        let _ = write!(text, "| serializer |");
        for (compression, _) in COMPRESSIONS {
            let _ = write!(text, " {} |", compression.unwrap_or("none"));
        }
        let _ = write!(text, "\n| --- |");
        for _ in COMPRESSIONS {
            let _ = write!(text, " --- |");
        }
        for format in FORMATS {
            let _ = write!(text, "\n| {} |", format.name());
            for (compression, _) in COMPRESSIONS {
                let result = outcome
                    .iter()
                    .find(|(cell, _)| cell.format == format && cell.compression == compression)
                    .map_or("?".to_string(), |(_, found)| summary(found));
                let _ = write!(text, " {result} |");
            }
        }
        text.push('\n');
    }
    for (direction, outcome) in directions {
        for (cell, found) in *outcome {
            for difference in found {
                let _ = writeln!(text, "{direction}, {}: {difference}", cell.name());
            }
        }
    }
    text
}

/// The whole matrix, both ways, through the broker at `url`.
async fn matrix_through(url: String, python: String) {
    let to_kombu = unique("kombu_matrix", "to-kombu");
    let from_kombu = unique("kombu_matrix", "from-kombu");
    let body = {
        let (url, to_kombu, from_kombu) = (url.clone(), to_kombu.clone(), from_kombu.clone());
        async move {
            let sent = carrot_to_kombu(url.clone(), python.clone(), to_kombu).await;
            let received = kombu_to_carrot(url.clone(), python, from_kombu).await;
            let directions = [
                ("carrot → kombu (carrot publishes, kombu consumes)", &sent),
                (
                    "kombu → carrot (kombu publishes, carrot consumes)",
                    &received,
                ),
            ];
            eprintln!(
                "through {}:\n{}",
                url.split('@').next_back().unwrap_or(""),
                matrix(&directions)
            );
            let failed = sent
                .iter()
                .chain(&received)
                .filter(|(_, found)| !found.is_empty())
                .count();
            assert_eq!(
                failed,
                0,
                "{failed} of {} cells failed: see the matrix above",
                sent.len() + received.len()
            );
        }
    };
    run_then_delete_queues(&url, &[to_kombu, from_kombu], LIMIT, body).await;
}

#[tokio::test]
async fn every_serializer_and_compression_both_ways() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let Some(python) = python() else { return };
    matrix_through(url, python).await;
}

#[tokio::test]
async fn every_serializer_and_compression_both_ways_through_carrot_serve() {
    let Some(python) = python() else { return };
    let file = serve_support::sqlite_file("kombu-matrix");
    for broker in [
        "memory://kombu-matrix".to_string(),
        format!("sqlite://{}", file.display()),
    ] {
        matrix_through(serve_support::served(&broker), python.clone()).await;
    }
}

/// The matrix through Redis, kombu on its Redis transport and carrot on redis:// sharing the
/// same lists.
#[tokio::test]
async fn every_serializer_and_compression_both_ways_through_redis() {
    let Some(url) = setting("CARROT_TEST_REDIS_URL", "a redis:// URL") else {
        return;
    };
    let Some(python) = python() else { return };
    matrix_through(url, python).await;
}

// ---------------------------------------------------------------------------------------------
// Safety: what carrot refuses to decode.

/// A `memory://` broker of this test alone.
async fn memory_broker(test: &str) -> BrokerConnection {
    let url = format!("memory://{}", unique("kombu_matrix", test));
    BrokerConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Pickles of `{"greeting": "hello", "payload": X}` in every protocol Python has, where X
/// unpickles by calling `os.system("touch PATH")`; and, to show that they are what they
/// claim, one of them unpickled by Python, which touches `control`.
const EXPLOIT: &str = r#"
import os, pickle, sys

class Exploit:
    def __init__(self, command):
        self.command = command
    def __reduce__(self):
        return (os.system, (self.command,))

path, control = sys.argv[1], sys.argv[2]
pickle.loads(pickle.dumps(Exploit("touch " + control), protocol=4))
for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
    body = pickle.dumps({"greeting": "hello", "payload": Exploit("touch " + path)}, protocol=protocol)
    print(protocol, body.hex())
"#;

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

#[tokio::test]
async fn a_pickle_that_calls_a_function_is_refused_even_when_pickle_is_accepted() {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    if let Err(e) = std::process::Command::new(&python)
        .arg("--version")
        .output()
    {
        skip_or_fail(&format!(
            "cannot run {python} ({e}): this test builds its pickles with Python 3; install it or set CARROT_TEST_PYTHON"
        ));
        return;
    }
    let marker = std::env::temp_dir().join(unique("kombu_matrix", "pickle-ran"));
    let control = std::env::temp_dir().join(unique("kombu_matrix", "pickle-control"));
    let (path, control_path) = (marker.to_str().unwrap(), control.to_str().unwrap());
    let out = run_python(&python, &["-c", EXPLOIT, path, control_path], "").await;
    assert!(
        control.exists(),
        "Python runs the command when it unpickles such a pickle (the control file {control_path} exists)"
    );
    let _ = std::fs::remove_file(&control);
    let pickles: Vec<(String, Vec<u8>)> = out
        .lines()
        .map(|line| {
            let (protocol, body) = line.split_once(' ').expect("protocol and hex");
            (protocol.to_string(), unhex(body))
        })
        .collect();
    assert!(
        pickles.len() >= 5,
        "pickles of protocols 0 to 4 at least: {out}"
    );

    let conn = memory_broker("pickle").await;
    let mut consumer = Consumer::builder(&conn)
        .queue("exploits")
        .accept(["pickle"])
        .build()
        .await
        .expect("a consumer accepting pickle");
    let publisher = Publisher::builder(&conn)
        .routing_key("exploits")
        .build()
        .await
        .expect("a publisher");
    for (protocol, body) in &pickles {
        let options = SendOptions::new()
            .content_type("application/x-python-serialize")
            .content_encoding("binary")
            .headers(table([("protocol", protocol.as_str().into())]));
        publisher
            .send_with(body, options)
            .await
            .unwrap_or_else(|e| panic!("publish the protocol {protocol} pickle: {e}"));
    }
    for (protocol, body) in &pickles {
        let message = consumer
            .fetch()
            .await
            .expect("fetch")
            .unwrap_or_else(|| panic!("the protocol {protocol} pickle is in the queue"));
        assert_eq!(
            message.body(),
            &body[..],
            "protocol {protocol}: the body as sent"
        );
        assert_eq!(
            message.content_type(),
            Some("application/x-python-serialize")
        );
        match message.decode::<Value>() {
            Err(error @ Error::Decode { .. }) => {
                let text = error.to_string();
                assert!(
                    text.contains("system"),
                    "protocol {protocol}: the error names the callable it refused (posix.system): {text}"
                );
            }
            Err(other) => panic!("protocol {protocol}: a Decode error, not {other:?}"),
            Ok(value) => panic!("protocol {protocol}: the exploit decoded to {value:?}"),
        }
        assert!(
            message.decode::<serde_json::Value>().is_err(),
            "protocol {protocol}: refused into any type"
        );
        assert!(
            !marker.exists(),
            "protocol {protocol}: carrot ran the pickle's command ({path} exists)"
        );
        message
            .reject()
            .expect("the refused message can still be rejected");
    }
    assert!(
        consumer.fetch().await.expect("fetch").is_none(),
        "every pickle was taken"
    );
    assert!(
        !marker.exists(),
        "carrot ran a pickle's command ({path} exists)"
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn the_default_accept_list_refuses_pickle_yaml_and_msgpack() {
    let conn = memory_broker("default-accept").await;
    let mut consumer = Consumer::builder(&conn)
        .queue("untrusted")
        .build()
        .await
        .expect("a consumer with the default accept list");
    let publisher = Publisher::builder(&conn)
        .routing_key("untrusted")
        .build()
        .await
        .expect("a publisher");
    let data = map([entry("greeting", s("hello")), entry("n", int(1))]);
    let sent = [
        ("pickle", None, "application/x-python-serialize"),
        ("yaml", None, "application/x-yaml"),
        ("msgpack", None, "application/x-msgpack"),
        ("pickle", Some("gzip"), "application/x-python-serialize"),
        ("json", None, "application/json"),
    ];
    for (serializer, compression, _) in sent {
        let options = SendOptions::new().serializer(serializer);
        let options = match compression {
            Some(compression) => options.compression(compression),
            None => options,
        };
        publisher
            .send_with(&data, options)
            .await
            .unwrap_or_else(|e| panic!("publish with {serializer}: {e}"));
    }
    for (serializer, compression, content_type) in sent {
        let what = format!("{serializer} ({compression:?})");
        let message = consumer
            .fetch()
            .await
            .expect("fetch")
            .unwrap_or_else(|| panic!("the {what} message is in the queue"));
        assert_eq!(message.content_type(), Some(content_type), "{what}");
        if serializer == "json" {
            // The control: json is in the default accept list.
            assert_eq!(message.decode::<Value>().expect("json is accepted"), data);
            message.ack().expect("ack");
            continue;
        }
        match message.decode::<Value>() {
            Err(Error::ContentTypeNotAccepted { .. }) => {}
            Err(other) => panic!("{what}: ContentTypeNotAccepted, not {other:?}"),
            Ok(value) => panic!("{what}: decoded {value:?} with the default accept list"),
        }
        assert!(
            matches!(
                message.decode::<serde_json::Value>(),
                Err(Error::ContentTypeNotAccepted { .. })
            ),
            "{what}: refused into any type"
        );
        message
            .reject()
            .expect("the refused message can still be rejected");
    }
    assert!(
        consumer.fetch().await.expect("fetch").is_none(),
        "every message was taken"
    );
    let _ = conn.close().await;
}
