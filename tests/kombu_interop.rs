//! Wire compatibility with Python's kombu through RabbitMQ: what carrot publishes, kombu decodes
//! unchanged, and the reverse — json (with non-ASCII text), raw text and raw bytes, with headers,
//! priority and both delivery modes.
//!
//! Both run through RabbitMQ and through `carrot serve` over memory:// and sqlite://.
//!
//! Needs `CARROT_TEST_AMQP_URL` and a Python 3 with kombu (`pip install kombu`); the
//! interpreter is `CARROT_TEST_PYTHON`, `python3` by default. kombu's side is
//! `tests/interop/kombu_peer.py`.

mod amqp_support;
mod serve_support;

use std::process::Stdio;
use std::time::Duration;

use amqp_support::*;
use carrot::{
    table, Consumer, DeliveryMode, FieldTable, Payload, Publisher, QueueSpec, SendOptions,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kombu_peer.py");
const MAX_PRIORITY: u8 = 9;
const PRIORITY: u8 = 5;
const LIMIT: Duration = Duration::from_secs(120);

/// A message body of each kind carrot and kombu share.
#[derive(Clone, Debug)]
enum Body {
    /// `application/json`, `utf-8`.
    Json(Value),
    /// `text/plain`, `utf-8`.
    Text(String),
    /// `application/data`, `binary`.
    Bytes(Vec<u8>),
}

impl Body {
    fn content_type(&self) -> &'static str {
        match self {
            Body::Json(_) => "application/json",
            Body::Text(_) => "text/plain",
            Body::Bytes(_) => "application/data",
        }
    }

    fn content_encoding(&self) -> &'static str {
        match self {
            Body::Bytes(_) => "binary",
            _ => "utf-8",
        }
    }
}

/// Every kind of body in both delivery modes.
fn messages() -> Vec<(Body, DeliveryMode)> {
    let bodies = [
        Body::Json(json!({
            "text": "héllo wörld ✓ 日本語 🥕",
            "quote": "\"quoted\" \\ back\nslash",
            "n": 42,
            "negative": -7,
            "float": 2.5,
            "list": [1, "two", null, true, false],
            "nested": {"k": "v", "empty": {}},
        })),
        Body::Text("grüße, 世界 ✓ — plain text\nsecond line".into()),
        Body::Bytes((0..=255u8).collect()),
    ];
    bodies
        .into_iter()
        .flat_map(|body| {
            [
                (body.clone(), DeliveryMode::Persistent),
                (body, DeliveryMode::Transient),
            ]
        })
        .collect()
}

fn headers_from(source: &str) -> FieldTable {
    table([("x-source", source.into()), ("n", 7.into())])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Python interpreter, when it can import kombu.
fn python() -> Option<String> {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python)
        .args(["-c", "import kombu"])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => {
            skip_or_fail(&format!(
                "{python} cannot import kombu ({}): pip install kombu pika",
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
                "cannot run {python} ({e}): install Python 3 and pip install kombu pika, or set CARROT_TEST_PYTHON"
            ));
            None
        }
    }
}

/// Runs kombu_peer.py with these arguments and stdin; returns its stdout.
async fn kombu_peer(python: &str, args: &[&str], stdin: &str) -> String {
    let mut child = tokio::process::Command::new(python)
        .arg(PEER)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {PEER}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write to kombu_peer.py");
    drop(input);
    let output = bounded(
        "kombu_peer.py",
        Duration::from_secs(60),
        child.wait_with_output(),
    )
    .await
    .expect("kombu_peer.py runs");
    assert!(
        output.status.success(),
        "kombu_peer.py {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kombu_peer.py prints UTF-8")
}

async fn carrot_to_kombu(url: String, python: String, queue: String) {
    let conn = connect(&url).await;
    conn.declare_queue(&QueueSpec::new(&queue).max_priority(MAX_PRIORITY))
        .await
        .expect("declare the queue with x-max-priority");
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .confirm_publish(true)
        .build()
        .await
        .expect("a publisher with confirms");
    let sent = messages();
    for (body, mode) in &sent {
        let options = SendOptions::new()
            .priority(PRIORITY)
            .delivery_mode(*mode)
            .headers(headers_from("carrot"));
        let result = match body {
            Body::Json(value) => publisher.send_with(value, options).await,
            Body::Text(text) => {
                publisher
                    .send_with(text.as_str(), options.serializer("raw"))
                    .await
            }
            Body::Bytes(bytes) => publisher.send_with(bytes, options.serializer("raw")).await,
        };
        result.unwrap_or_else(|e| panic!("publish {body:?}: {e}"));
    }
    let _ = conn.close().await;

    let count = sent.len().to_string();
    let max_priority = MAX_PRIORITY.to_string();
    let args = [
        "consume",
        "--url",
        &url,
        "--queue",
        &queue,
        "--count",
        &count,
        "--max-priority",
        &max_priority,
    ];
    let out = kombu_peer(&python, &args, "").await;
    let received: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("kombu_peer.py prints JSON lines"))
        .collect();
    assert_eq!(received.len(), sent.len(), "kombu received: {out}");
    for ((body, mode), got) in sent.iter().zip(&received) {
        let (kind, expected_body) = match body {
            Body::Json(value) => ("data", value.clone()),
            Body::Text(text) => ("text", json!(text)),
            Body::Bytes(bytes) => ("bytes", json!(hex(bytes))),
        };
        let expected = json!({
            "body_kind": kind,
            "body": expected_body,
            "content_type": body.content_type(),
            "content_encoding": body.content_encoding(),
            "headers": {"x-source": "carrot", "n": 7},
            "priority": PRIORITY,
            "delivery_mode": mode.as_u8(),
        });
        assert_eq!(got, &expected, "what kombu received of {body:?}");
    }
}

async fn kombu_to_carrot(url: String, python: String, queue: String) {
    let sent = messages();
    let mut stdin = String::new();
    for (body, mode) in &sent {
        let (kind, body) = match body {
            Body::Json(value) => ("json", value.clone()),
            Body::Text(text) => ("text", json!(text)),
            Body::Bytes(bytes) => ("bytes", json!(hex(bytes))),
        };
        let line = json!({
            "kind": kind,
            "body": body,
            "headers": {"x-source": "kombu", "n": 7},
            "priority": PRIORITY,
            "delivery_mode": mode.as_u8(),
        });
        stdin.push_str(&line.to_string());
        stdin.push('\n');
    }
    let max_priority = MAX_PRIORITY.to_string();
    let args = [
        "publish",
        "--url",
        &url,
        "--queue",
        &queue,
        "--max-priority",
        &max_priority,
    ];
    let out = kombu_peer(&python, &args, &stdin).await;
    assert_eq!(out.trim(), sent.len().to_string(), "kombu published: {out}");

    let conn = connect(&url).await;
    // Declared as kombu declared it: the same arguments, or RabbitMQ refuses.
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .max_priority(MAX_PRIORITY)
        .build()
        .await
        .expect("a consumer of kombu's queue");
    for (body, mode) in &sent {
        let message = consumer
            .fetch()
            .await
            .expect("fetch")
            .unwrap_or_else(|| panic!("kombu's message {body:?} is in the queue"));
        assert_eq!(
            message.content_type(),
            Some(body.content_type()),
            "{body:?}"
        );
        assert_eq!(
            message.content_encoding(),
            Some(body.content_encoding()),
            "{body:?}"
        );
        assert_eq!(message.headers(), Some(&headers_from("kombu")), "{body:?}");
        assert_eq!(message.priority(), Some(PRIORITY), "{body:?}");
        assert_eq!(message.delivery_mode(), Some(*mode), "{body:?}");
        match body {
            Body::Json(value) => {
                assert_eq!(&message.decode::<Value>().expect("json"), value);
                assert_eq!(
                    message.payload().expect("payload"),
                    &Payload::Data(value.clone())
                );
            }
            Body::Text(text) => {
                assert_eq!(&message.decode::<String>().expect("text"), text);
                assert_eq!(
                    message.payload().expect("payload"),
                    &Payload::Text(text.clone())
                );
            }
            Body::Bytes(bytes) => {
                assert_eq!(message.body(), &bytes[..]);
                assert_eq!(&message.decode::<Vec<u8>>().expect("bytes"), bytes);
                assert_eq!(
                    message.payload().expect("payload"),
                    &Payload::Bytes(bytes.clone())
                );
            }
        }
        message.ack().expect("ack");
    }
    assert!(
        consumer.fetch().await.expect("fetch").is_none(),
        "kombu published {} messages only",
        sent.len()
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn kombu_decodes_what_carrot_publishes() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let Some(python) = python() else { return };
    let queue = unique("kombu_interop", "to-kombu");
    let body = carrot_to_kombu(url.clone(), python, queue.clone());
    run_then_delete_queues(&url, &[queue], LIMIT, body).await;
}

#[tokio::test]
async fn carrot_decodes_what_kombu_publishes() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let Some(python) = python() else { return };
    let queue = unique("kombu_interop", "from-kombu");
    let body = kombu_to_carrot(url.clone(), python, queue.clone());
    run_then_delete_queues(&url, &[queue], LIMIT, body).await;
}

/// The URLs of `carrot serve` over memory:// and over sqlite:// (started in this process).
fn served_urls() -> Vec<String> {
    serve_support::served_urls("kombu-interop")
}

#[tokio::test]
async fn kombu_decodes_what_carrot_publishes_through_carrot_serve() {
    let Some(python) = python() else { return };
    for url in served_urls() {
        let queue = unique("kombu_interop", "serve-to-kombu");
        let body = carrot_to_kombu(url.clone(), python.clone(), queue.clone());
        run_then_delete_queues(&url, &[queue], LIMIT, body).await;
    }
}

#[tokio::test]
async fn carrot_decodes_what_kombu_publishes_through_carrot_serve() {
    let Some(python) = python() else { return };
    for url in served_urls() {
        let queue = unique("kombu_interop", "serve-from-kombu");
        let body = kombu_to_carrot(url.clone(), python.clone(), queue.clone());
        run_then_delete_queues(&url, &[queue], LIMIT, body).await;
    }
}
