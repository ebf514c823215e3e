//! carrot and kombu (and Celery) on one Redis: carrot's `redis://` broker reads and writes
//! kombu's Redis transport format, so that the two share queues, exchanges and bindings.
//!
//! - the list element carrot pushes is the one kombu pushes, byte for byte (but for the
//!   delivery tag, a uuid4 each), with and without headers and extra properties;
//! - a kombu consumer and a carrot consumer compete for 10,000 messages: each is taken once;
//! - priorities: kombu's steps (0, 3, 6, 9; a lower number first, FIFO within a step) both
//!   ways, with headers of every JSON type crossing unchanged;
//! - topic routing through kombu's binding sets both ways (kombu matches the regular
//!   expression carrot stores), a fanout exchange carrot publishes on reaching kombu's
//!   PSUBSCRIBE, and kombu's fanout messages (Pub/Sub only) reaching carrot's fanout queues
//!   once each;
//! - Celery: a worker runs a protocol-2 task message carrot wrote, and carrot reads the
//!   message Celery's `send_task` wrote.
//!
//! Needs `CARROT_TEST_REDIS_URL` and a Python 3 with kombu and redis (and celery for the
//! Celery test); a failure under `CI=true` when missing, skipped elsewhere. kombu's side is
//! `tests/interop/kombu_redis.py`.

#![cfg(feature = "redis")]

mod amqp_support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use amqp_support::*;
use carrot::{
    table, BrokerConnection, Consumer, DeliveryMode, ExchangeSpec, ExchangeType, FieldTable,
    FieldValue, Publisher, Qos, QueueSpec, SendOptions,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/kombu_redis.py");
/// The longest any test may run (each takes a few seconds).
const LIMIT: Duration = Duration::from_secs(90);
/// The longest a peer process may run.
const PEER_LIMIT: Duration = Duration::from_secs(60);

fn redis_url() -> Option<String> {
    setting(
        "CARROT_TEST_REDIS_URL",
        "a redis:// URL of a Redis for the tests",
    )
}

fn kombu_python() -> Option<String> {
    python_with("import kombu, redis", "kombu redis")
}

fn peer(python: &str, args: &[&str]) -> Child {
    tokio::process::Command::new(python)
        .arg(PEER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {PEER}: {e}"))
}

/// Runs the peer to its end; its stdout's lines.
async fn peer_lines(python: &str, args: &[&str]) -> Vec<String> {
    let output = bounded(
        &format!("kombu_redis.py {}", args[0]),
        PEER_LIMIT,
        peer(python, args).wait_with_output(),
    )
    .await
    .expect("kombu_redis.py runs");
    assert!(output.status.success(), "kombu_redis.py {args:?} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs the peer to its end; its stdout's JSON lines.
async fn peer_json(python: &str, args: &[&str]) -> Vec<Value> {
    peer_lines(python, args)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line ({e}): {l}")))
        .collect()
}

/// Waits for a long-running peer's first line, which must be `ready`; its other lines.
async fn until_ready(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    let mut lines = BufReader::new(child.stdout.take().expect("the peer's stdout")).lines();
    let ready = bounded("the peer is ready", PEER_LIMIT, lines.next_line())
        .await
        .expect("the peer's stdout");
    assert_eq!(ready.as_deref(), Some("ready"), "the peer's first line");
    lines
}

/// Runs `body` (at most [`LIMIT`]), then deletes its queues and exchanges whatever happened,
/// then fails the way the body failed, if it did.
async fn run_then_clean<F>(url: &str, queues: Vec<String>, exchanges: Vec<String>, body: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let outcome = {
        let url = url.to_string();
        tokio::spawn(async move { run_then_delete_queues(&url, &queues, LIMIT, body).await }).await
    };
    if !exchanges.is_empty() {
        let cleanup = async {
            let Ok(conn) = BrokerConnection::connect(url).await else {
                return;
            };
            for exchange in &exchanges {
                let _ = conn.delete_exchange(exchange, Default::default()).await;
            }
            let _ = conn.close().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(20), cleanup).await;
    }
    if let Err(join) = outcome {
        if join.is_panic() {
            std::panic::resume_unwind(join.into_panic());
        }
        panic!("the test task failed: {join}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The envelope, byte for byte.

/// The list's elements (newest first), read by the peer with redis-py's LRANGE.
async fn raw_list(python: &str, url: &str, key: &str) -> Vec<String> {
    peer_json(python, &["raw", url, key])
        .await
        .into_iter()
        .map(|v| {
            v.as_str()
                .expect("a list element as a JSON string")
                .to_string()
        })
        .collect()
}

/// The envelope with the value of its string field `field` replaced by `<FIELD>`; the value.
fn masked(envelope: &str, field: &str) -> (String, String) {
    let key = format!("\"{field}\": \"");
    let start = envelope
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in {envelope}"))
        + key.len();
    let len = envelope[start..]
        .find('"')
        .unwrap_or_else(|| panic!("an unterminated {field} in {envelope}"));
    let value = envelope[start..start + len].to_string();
    let placeholder = format!("<{}>", field.to_uppercase());
    (
        format!(
            "{}{placeholder}{}",
            &envelope[..start],
            &envelope[start + len..]
        ),
        value,
    )
}

/// The envelope with its delivery tag (which must be a uuid4) replaced by `<DELIVERY_TAG>`.
fn without_tag(envelope: &str) -> String {
    let (masked, tag) = masked(envelope, "delivery_tag");
    let groups: Vec<usize> = tag.split('-').map(str::len).collect();
    assert!(
        groups == [8, 4, 4, 4, 12]
            && tag.as_bytes()[14] == b'4'
            && tag.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "the delivery tag {tag:?} is not a uuid4, in {envelope}"
    );
    masked
}

/// The body of an envelope, decoded from base64, as text.
fn body_text(envelope: &str) -> String {
    use base64::Engine;
    let (_, body) = masked(envelope, "body");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .unwrap_or_else(|e| panic!("the body {body:?} is not base64: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What each side pushed, carrot's first: the two elements of `queue` (kombu pushed last).
async fn both_envelopes(python: &str, url: &str, queue: &str) -> (String, String) {
    let raw = raw_list(python, url, queue).await;
    assert_eq!(
        raw.len(),
        2,
        "carrot's and kombu's messages on {queue}: {raw:?}"
    );
    (raw[1].clone(), raw[0].clone())
}

const CORRELATION_ID: &str = "a5c7e0a4-correlation";
const REPLY_TO: &str = "carrot-test.replies";

async fn same_bytes_as_kombu(url: &str, python: &str, plain: &str, extra: &str) {
    let conn = connect(url).await;
    for queue in [plain, extra] {
        conn.declare_queue(&QueueSpec::new(queue))
            .await
            .expect("the queue is declared");
    }
    let publisher = Publisher::builder(&conn)
        .exchange("")
        .routing_key(plain)
        .serializer("json")
        .delivery_mode(DeliveryMode::Persistent)
        .build()
        .await
        .expect("the publisher");

    // json, default exchange, persistent.
    publisher.send(&json!({"a": 1})).await.expect("sent");
    peer_lines(python, &["publish", url, plain, r#"{"a": 1}"#]).await;

    // With headers (non-ASCII), correlation_id and reply_to: kombu writes the extra
    // properties in the order of its call's keywords (correlation_id, then reply_to).
    let options = SendOptions::new()
        .routing_key(extra)
        .headers(table([("h", "é".into())]))
        .correlation_id(CORRELATION_ID)
        .reply_to(REPLY_TO);
    publisher
        .send_with(&json!({"a": 1}), options)
        .await
        .expect("sent");
    let args = [
        "publish",
        url,
        extra,
        r#"{"a": 1}"#,
        "--headers",
        r#"{"h": "é"}"#,
        "--correlation-id",
        CORRELATION_ID,
        "--reply-to",
        REPLY_TO,
    ];
    peer_lines(python, &args).await;

    let plain_pair = both_envelopes(python, url, plain).await;
    let extra_pair = both_envelopes(python, url, extra).await;
    // What kombu writes, as this test expects it.
    assert_eq!(
        without_tag(&plain_pair.1),
        format!(
            r#"{{"body": "eyJhIjogMX0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {{}}, "properties": {{"delivery_mode": 2, "delivery_info": {{"exchange": "", "routing_key": "{plain}"}}, "priority": 0, "body_encoding": "base64", "delivery_tag": "<DELIVERY_TAG>"}}}}"#
        ),
        "kombu's envelope"
    );
    assert_eq!(
        without_tag(&extra_pair.1),
        format!(
            r#"{{"body": "eyJhIjogMX0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {{"h": "\u00e9"}}, "properties": {{"correlation_id": "{CORRELATION_ID}", "reply_to": "{REPLY_TO}", "delivery_mode": 2, "delivery_info": {{"exchange": "", "routing_key": "{extra}"}}, "priority": 0, "body_encoding": "base64", "delivery_tag": "<DELIVERY_TAG>"}}}}"#
        ),
        "kombu's envelope with headers, correlation_id and reply_to"
    );

    let pairs = [
        ("plain", &plain_pair),
        ("with headers, correlation_id and reply_to", &extra_pair),
    ];
    // The envelope first (the Redis transport's part), the body aside (the serializer's)...
    for (what, (carrot, kombu)) in pairs {
        assert_eq!(
            masked(&without_tag(carrot), "body").0,
            masked(&without_tag(kombu), "body").0,
            "{what}: carrot's envelope (left) is kombu's (right), body aside"
        );
    }
    // ...then the whole list element, body included.
    for (what, (carrot, kombu)) in pairs {
        assert_eq!(
            without_tag(carrot),
            without_tag(kombu),
            "{what}: carrot's list element (left) is kombu's (right), byte for byte; the bodies: carrot's json serializer wrote {:?}, kombu's {:?}",
            body_text(carrot),
            body_text(kombu)
        );
    }
    let _ = conn.close().await;
}

#[tokio::test]
async fn carrot_pushes_kombus_envelope_byte_for_byte() {
    let Some(url) = redis_url() else { return };
    let Some(python) = kombu_python() else { return };
    let plain = unique("kombu_redis", "bytes");
    let extra = unique("kombu_redis", "bytes-properties");
    let body = {
        let (url, plain, extra) = (url.clone(), plain.clone(), extra.clone());
        async move { same_bytes_as_kombu(&url, &python, &plain, &extra).await }
    };
    run_then_clean(&url, vec![plain, extra], vec![], body).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Competing consumers.

const COMPETING: u64 = 10_000;

async fn compete_with_kombu(url: &str, python: &str, queue: &str) {
    let conn = connect(url).await;
    conn.declare_queue(&QueueSpec::new(queue))
        .await
        .expect("the queue is declared");
    let publisher = Publisher::builder(&conn)
        .exchange("")
        .routing_key(queue)
        .build()
        .await
        .expect("the publisher");
    let numbers: Vec<u64> = (0..COMPETING).collect();
    for outcome in publisher.send_batch(numbers.iter()).await {
        outcome.expect("published");
    }
    assert_eq!(
        conn.queue_info(queue)
            .await
            .expect("the queue")
            .message_count as u64,
        COMPETING
    );

    // kombu first (it takes from the moment it says ready), then carrot.
    let mut kombu = peer(python, &["consume", url, queue, "--idle", "1"]);
    let mut lines = until_ready(&mut kombu).await;
    let kombus = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().await.expect("kombu's stdout") {
            got.push(
                line.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("kombu printed {line:?}: {e}")),
            );
        }
        got
    });
    let mut consumer = Consumer::builder(&conn)
        .queue(queue)
        .build()
        .await
        .expect("the consumer");
    consumer
        .qos(Qos::new().prefetch_count(10))
        .await
        .expect("qos");
    let mut carrots = Vec::new();
    while let Some(message) = consumer
        .next_message_timeout(Duration::from_secs(1))
        .await
        .expect("a message or none")
    {
        carrots.push(message.decode::<u64>().expect("a number"));
        message.ack().expect("acked");
    }
    consumer.close().await.expect("the consumer closes");
    let status = bounded("kombu's consumer ends", PEER_LIMIT, kombu.wait())
        .await
        .expect("its status");
    assert!(status.success(), "kombu's consumer failed");
    let kombus = bounded("kombu's output", PEER_LIMIT, kombus)
        .await
        .expect("kombu's output read");

    eprintln!(
        "{COMPETING} messages: carrot took {}, kombu {}",
        carrots.len(),
        kombus.len()
    );
    let mut times = vec![0u32; COMPETING as usize];
    for n in carrots.iter().chain(&kombus) {
        times[usize::try_from(*n).expect("small")] += 1;
    }
    let lost: Vec<usize> = (0..times.len()).filter(|&n| times[n] == 0).collect();
    let doubled: Vec<usize> = (0..times.len()).filter(|&n| times[n] > 1).collect();
    assert!(
        lost.is_empty() && doubled.is_empty(),
        "lost {} (first {:?}), taken twice or more {} (first {:?})",
        lost.len(),
        &lost[..lost.len().min(10)],
        doubled.len(),
        &doubled[..doubled.len().min(10)]
    );
    assert_eq!(carrots.len() + kombus.len(), COMPETING as usize);
    assert!(
        !carrots.is_empty() && !kombus.is_empty(),
        "both consumers got a share: carrot {}, kombu {}",
        carrots.len(),
        kombus.len()
    );
    assert_eq!(
        conn.queue_info(queue)
            .await
            .expect("the queue")
            .message_count,
        0
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn a_kombu_consumer_and_a_carrot_consumer_share_10000_messages_exactly_once() {
    let Some(url) = redis_url() else { return };
    let Some(python) = kombu_python() else { return };
    let queue = unique("kombu_redis", "competing");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move { compete_with_kombu(&url, &python, &queue).await }
    };
    run_then_clean(&url, vec![queue], vec![], body).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Priorities and headers.

/// The priorities the messages `{"n": i}` are published with, in this order.
const PRIORITIES: [u8; 10] = [9, 3, 6, 0, 5, 1, 9, 0, 3, 6];

/// kombu's order: by step (0-2 -> 0, 3-5 -> 3, 6-8 -> 6, 9 -> 9), lower first, FIFO within.
fn kombus_order() -> Vec<u64> {
    let step = |p: u8| {
        [0u8, 3, 6, 9]
            .into_iter()
            .filter(|s| *s <= p)
            .max()
            .unwrap()
    };
    let mut order: Vec<u64> = (0..PRIORITIES.len() as u64).collect();
    order.sort_by_key(|&n| step(PRIORITIES[n as usize]));
    order
}

/// Headers of every JSON type, as kombu's JSON has them and as carrot's table.
fn typed_headers() -> (Value, FieldTable) {
    let json = json!({
        "int": 7,
        "negative": -12,
        "big": 1_099_511_627_776_i64,
        "float": 2.5,
        "tenth": 0.1,
        "yes": true,
        "no": false,
        "text": "é ü 😀",
        "nested": {"k": "v", "deeper": {"list": [1, "z"]}},
        "list": [1, 2.5, "a", true, {"in": "list"}],
    });
    let table = table([
        ("int", 7.into()),
        ("negative", (-12).into()),
        ("big", FieldValue::Int(1_099_511_627_776)),
        ("float", 2.5.into()),
        ("tenth", 0.1.into()),
        ("yes", true.into()),
        ("no", false.into()),
        ("text", "é ü 😀".into()),
        (
            "nested",
            table([
                ("k", "v".into()),
                (
                    "deeper",
                    table([("list", FieldValue::Array(vec![1.into(), "z".into()]))]).into(),
                ),
            ])
            .into(),
        ),
        (
            "list",
            FieldValue::Array(vec![
                1.into(),
                2.5.into(),
                "a".into(),
                true.into(),
                table([("in", "list".into())]).into(),
            ]),
        ),
    ]);
    (json, table)
}

async fn priorities_both_ways(url: &str, python: &str, queue: &str) {
    let (headers_json, headers) = typed_headers();
    let conn = connect(url).await;
    let mut consumer = Consumer::builder(&conn)
        .queue(queue)
        .build()
        .await
        .expect("the consumer");

    // kombu publishes, carrot fetches.
    let mut args = vec![
        "publish".to_string(),
        url.to_string(),
        queue.to_string(),
        "--headers".to_string(),
        headers_json.to_string(),
    ];
    for p in PRIORITIES {
        args.extend(["--priority".to_string(), p.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    peer_lines(python, &args).await;
    let mut got = Vec::new();
    while let Some(message) = consumer.fetch().await.expect("fetch") {
        let n = message.decode::<Value>().expect("json")["n"]
            .as_u64()
            .expect("{\"n\": i}");
        assert_eq!(
            message.priority(),
            Some(PRIORITIES[n as usize]),
            "message {n}'s priority"
        );
        assert_eq!(
            message.headers(),
            Some(&headers),
            "kombu's headers, as carrot reads them"
        );
        got.push(n);
        message.ack().expect("acked");
    }
    assert_eq!(
        got,
        kombus_order(),
        "carrot takes kombu's messages in kombu's priority order (priorities {PRIORITIES:?})"
    );

    // carrot publishes, kombu gets.
    let publisher = Publisher::builder(&conn)
        .exchange("")
        .routing_key(queue)
        .build()
        .await
        .expect("the publisher");
    for (n, p) in PRIORITIES.iter().enumerate() {
        let options = SendOptions::new().priority(*p).headers(headers.clone());
        publisher
            .send_with(&json!({"n": n}), options)
            .await
            .expect("sent");
    }
    let got = peer_json(python, &["get-all", url, queue]).await;
    let order: Vec<u64> = got
        .iter()
        .map(|m| m["body"]["n"].as_u64().expect("{\"n\": i}"))
        .collect();
    assert_eq!(
        order,
        kombus_order(),
        "kombu takes carrot's messages in its priority order (priorities {PRIORITIES:?})"
    );
    for m in &got {
        let n = m["body"]["n"].as_u64().unwrap() as usize;
        assert_eq!(
            m["priority"],
            json!(PRIORITIES[n]),
            "message {n}'s priority"
        );
        assert_eq!(
            m["headers"], headers_json,
            "carrot's headers, as kombu reads them"
        );
    }
    consumer.close().await.expect("closed");
    let _ = conn.close().await;
}

#[tokio::test]
async fn priorities_follow_kombus_steps_and_headers_of_every_type_cross_both_ways() {
    let Some(url) = redis_url() else { return };
    let Some(python) = kombu_python() else { return };
    let queue = unique("kombu_redis", "priorities");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move { priorities_both_ways(&url, &python, &queue).await }
    };
    run_then_clean(&url, vec![queue], vec![], body).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Topic routing through kombu's binding sets.

async fn topic_both_ways(url: &str, python: &str, exchange: &str, kombus: &str, carrots: &str) {
    // kombu's queue, bound with a.*.c and x.#.
    peer_lines(
        python,
        &["topic-bind", url, exchange, kombus, "a.*.c", "x.#"],
    )
    .await;
    let conn = connect(url).await;
    // kombu's Exchange defaults: durable, not auto-delete.
    let spec = ExchangeSpec::new(exchange, ExchangeType::Topic)
        .durable(true)
        .auto_delete(false);
    let publisher = Publisher::builder(&conn)
        .exchange_spec(spec.clone())
        .build()
        .await
        .expect("the publisher declares the exchange");
    for key in ["a.b.c", "x.y.z", "q.r"] {
        publisher
            .send_with(&json!({"key": key}), SendOptions::new().routing_key(key))
            .await
            .expect("sent");
    }
    let got = peer_json(python, &["get-all", url, kombus]).await;
    let keys: Vec<(&Value, &Value)> = got
        .iter()
        .map(|m| (&m["body"]["key"], &m["routing_key"]))
        .collect();
    assert_eq!(
        keys,
        [
            (&json!("a.b.c"), &json!("a.b.c")),
            (&json!("x.y.z"), &json!("x.y.z"))
        ],
        "kombu's queue (a.*.c, x.#) gets carrot's a.b.c and x.y.z, not q.r"
    );

    // carrot's queue, bound with k.*; kombu publishes k.v and m.n.
    let mut consumer = Consumer::builder(&conn)
        .queue(carrots)
        .exchange_spec(spec)
        .routing_key("k.*")
        .build()
        .await
        .expect("the consumer binds its queue");
    peer_lines(python, &["topic-publish", url, exchange, "k.v", "m.n"]).await;
    let mut got = Vec::new();
    while let Some(message) = consumer.fetch().await.expect("fetch") {
        got.push((
            message.decode::<Value>().expect("json"),
            message.routing_key().to_string(),
        ));
        message.ack().expect("acked");
    }
    assert_eq!(
        got,
        [(json!({"key": "k.v"}), "k.v".to_string())],
        "carrot's queue (k.*) gets kombu's k.v, not m.n"
    );
    assert!(
        peer_json(python, &["get-all", url, kombus])
            .await
            .is_empty(),
        "kombu's queue (a.*.c, x.#) gets neither k.v nor m.n"
    );
    consumer.close().await.expect("closed");
    let _ = conn.close().await;
}

#[tokio::test]
async fn topic_bindings_route_both_ways_through_kombus_binding_sets() {
    let Some(url) = redis_url() else { return };
    let Some(python) = kombu_python() else { return };
    let exchange = unique("kombu_redis", "topic");
    let kombus = unique("kombu_redis", "topic-kombu");
    let carrots = unique("kombu_redis", "topic-carrot");
    let body = {
        let (url, exchange, kombus, carrots) = (
            url.clone(),
            exchange.clone(),
            kombus.clone(),
            carrots.clone(),
        );
        async move { topic_both_ways(&url, &python, &exchange, &kombus, &carrots).await }
    };
    run_then_clean(&url, vec![kombus, carrots], vec![exchange], body).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Fanout, carrot to kombu.

async fn fanout_to_kombu(url: &str, python: &str, exchange: &str, queue: &str) {
    let mut kombu = peer(
        python,
        &[
            "fanout-consume",
            url,
            exchange,
            queue,
            "--count",
            "1",
            "--timeout",
            "20",
        ],
    );
    let mut lines = until_ready(&mut kombu).await;
    let conn = connect(url).await;
    let publisher = Publisher::builder(&conn)
        .exchange_spec(ExchangeSpec::new(exchange, ExchangeType::Fanout))
        .routing_key("")
        .build()
        .await
        .expect("the publisher declares the exchange");
    // Mandatory: carrot's PUBLISH reached a subscriber (kombu's PSUBSCRIBE), or it fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let options = SendOptions::new().mandatory(true);
        match publisher.send_with(&json!({"fanout": 1}), options).await {
            Ok(()) => break,
            Err(carrot::Error::Unroutable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the fanout message reached no subscriber: {e}"),
        }
    }
    let mut got = Vec::new();
    while let Some(line) = bounded("kombu's output", PEER_LIMIT, lines.next_line())
        .await
        .expect("kombu's stdout")
    {
        got.push(serde_json::from_str::<Value>(&line).expect("a JSON line"));
    }
    let status = bounded("kombu's consumer ends", PEER_LIMIT, kombu.wait())
        .await
        .expect("its status");
    assert!(status.success(), "kombu's fanout consumer failed");
    assert_eq!(
        got,
        [json!({"fanout": 1})],
        "kombu's fanout queue got carrot's message"
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn a_fanout_message_of_carrot_reaches_kombus_subscriber() {
    let Some(url) = redis_url() else { return };
    let Some(python) = kombu_python() else { return };
    let exchange = unique("kombu_redis", "fanout");
    let queue = unique("kombu_redis", "fanout-kombu");
    let body = {
        let (url, exchange, queue) = (url.clone(), exchange.clone(), queue.clone());
        async move { fanout_to_kombu(&url, &python, &exchange, &queue).await }
    };
    run_then_clean(&url, vec![queue], vec![exchange], body).await;
}

/// kombu publishes a fanout exchange's messages on Pub/Sub only; carrot's fanout queues (two,
/// each consumed on a connection of its own, both bridging) get each of them exactly once,
/// and each of carrot's own fanout messages exactly once too (the bridges skip those).
async fn fanout_from_kombu(url: &str, python: &str, exchange: &str, queues: [&str; 2]) {
    const KOMBUS: u64 = 20;
    const CARROTS: u64 = 5;
    let mut consumers = Vec::new();
    let mut conns = Vec::new();
    for queue in queues {
        let conn = connect(url).await;
        let consumer = Consumer::builder(&conn)
            .queue(queue)
            .exchange_spec(ExchangeSpec::new(exchange, ExchangeType::Fanout))
            .routing_key("")
            .build()
            .await
            .expect("the consumer declares and binds its queue");
        consumers.push(consumer);
        conns.push(conn);
    }
    for consumer in &mut consumers {
        consumer.consume().await.expect("consuming");
    }
    let numbers = KOMBUS.to_string();
    let _ = peer_lines(python, &["fanout-publish", url, exchange, &numbers]).await;
    let publisher = Publisher::builder(&conns[0])
        .exchange_spec(ExchangeSpec::new(exchange, ExchangeType::Fanout))
        .routing_key("")
        .build()
        .await
        .expect("carrot's publisher");
    for n in KOMBUS..KOMBUS + CARROTS {
        publisher.send(&json!({ "n": n })).await.expect("published");
    }
    for (queue, consumer) in queues.iter().zip(&mut consumers) {
        let mut got = Vec::new();
        while let Some(message) = consumer
            .next_message_timeout(Duration::from_secs(2))
            .await
            .expect("a message or none")
        {
            let body: Value = message.decode().expect("kombu's JSON");
            got.push(body["n"].as_u64().expect("a number"));
            message.ack().expect("acked");
        }
        got.sort_unstable();
        assert_eq!(
            got,
            (0..KOMBUS + CARROTS).collect::<Vec<_>>(),
            "{queue}: each fanout message once, kombu's and carrot's"
        );
    }
    for mut consumer in consumers {
        consumer.close().await.expect("the consumer closes");
    }
    for conn in conns {
        let _ = conn.close().await;
    }
}

#[tokio::test]
async fn kombus_fanout_messages_reach_carrots_fanout_queues_once() {
    let Some(url) = redis_url() else { return };
    let Some(python) = kombu_python() else { return };
    let exchange = unique("kombu_redis", "fanout-in");
    let queues = [
        unique("kombu_redis", "fanout-in-1"),
        unique("kombu_redis", "fanout-in-2"),
    ];
    let body = {
        let (url, exchange, queues) = (url.clone(), exchange.clone(), queues.clone());
        async move { fanout_from_kombu(&url, &python, &exchange, [&queues[0], &queues[1]]).await }
    };
    run_then_clean(&url, queues.to_vec(), vec![exchange], body).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Celery.

/// The Celery app of the worker: `tasks.add` writes its sum into the file
/// `CARROT_CELERY_RESULT` (written whole, then renamed).
const CELERY_APP: &str = r#"
import os

from celery import Celery

app = Celery("tasks", broker=os.environ["CARROT_CELERY_BROKER"])
app.conf.worker_enable_remote_control = False  # no pidbox queue left behind
app.conf.broker_connection_retry_on_startup = True


@app.task(name="tasks.add")
def add(x, y):
    path = os.environ["CARROT_CELERY_RESULT"]
    with open(path + ".part", "w") as out:
        out.write(str(x + y))
    os.replace(path + ".part", path)
    return x + y
"#;

/// A temporary folder, removed when the test ends (passed or failed).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A protocol-2 task message of Celery: its headers, properties and body.
async fn send_celery_task(publisher: &Publisher, queue: &str, id: &str) {
    let headers = table([
        ("lang", "py".into()),
        ("task", "tasks.add".into()),
        ("id", id.into()),
        ("root_id", id.into()),
        ("parent_id", FieldValue::Void),
        ("group", FieldValue::Void),
        ("argsrepr", "(2, 3)".into()),
        ("kwargsrepr", "{}".into()),
        ("origin", "carrot@kombu_redis".into()),
        ("retries", 0.into()),
        (
            "timelimit",
            FieldValue::Array(vec![FieldValue::Void, FieldValue::Void]),
        ),
        ("eta", FieldValue::Void),
        ("expires", FieldValue::Void),
    ]);
    let body =
        json!([[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]);
    let options = SendOptions::new()
        .routing_key(queue)
        .headers(headers)
        .correlation_id(id)
        .serializer("json");
    publisher.send_with(&body, options).await.expect("sent");
}

async fn celery_worker_runs_carrots_task(url: &str, python: &str, queue: &str) {
    let scratch = Scratch::new(&unique("kombu_redis", "celery-app"));
    std::fs::write(scratch.path().join("tasks.py"), CELERY_APP).expect("the app module");
    let result = scratch.path().join("result");

    let conn = connect(url).await;
    conn.declare_queue(&QueueSpec::new(queue))
        .await
        .expect("the queue is declared");
    let publisher = Publisher::builder(&conn)
        .exchange("")
        .routing_key(queue)
        .build()
        .await
        .expect("the publisher");
    let id = uuid::Uuid::new_v4().to_string();
    send_celery_task(&publisher, queue, &id).await;

    // The worker's output (its banner, its warning about running as root), shown on failure.
    let log_path = scratch.path().join("worker.log");
    let log = std::fs::File::create(&log_path).expect("the worker's log file");
    let mut worker = tokio::process::Command::new(python)
        .args(["-m", "celery", "-A", "tasks", "worker", "--pool", "solo"])
        .args(["--concurrency", "1", "-Q", queue, "--without-heartbeat"])
        .args(["--without-mingle", "--without-gossip", "-l", "warning"])
        .args(["-n", &format!("carrot-{}@%h", std::process::id())])
        .current_dir(scratch.path())
        .env("PYTHONPATH", scratch.path())
        .env("CARROT_CELERY_BROKER", url)
        .env("CARROT_CELERY_RESULT", &result)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("the log file")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true) // killed even when this test fails or times out
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start a Celery worker with {python}: {e}"));

    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        if let Ok(sum) = std::fs::read_to_string(&result) {
            break Ok(sum);
        }
        if let Some(status) = worker.try_wait().expect("the worker's status") {
            break Err(format!("the Celery worker ended early: {status}"));
        }
        if Instant::now() >= deadline {
            break Err("the Celery worker gave no result within 60 s".to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = worker.start_kill();
    let _ = bounded("the worker ends", Duration::from_secs(10), worker.wait()).await;
    let sum = outcome.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("{e}; the worker's output:\n{log}")
    });
    assert_eq!(
        sum.trim(),
        "5",
        "Celery's tasks.add(2, 3) of carrot's message"
    );
    let _ = conn.close().await;
}

async fn carrot_reads_celerys_task(url: &str, python: &str, queue: &str) {
    let conn = connect(url).await;
    let mut consumer = Consumer::builder(&conn)
        .queue(queue)
        .build()
        .await
        .expect("the consumer");
    let printed = peer_json(python, &["celery-send", url, queue]).await;
    let id = printed
        .first()
        .and_then(Value::as_str)
        .expect("the task's id")
        .to_string();
    let message = consumer
        .fetch()
        .await
        .expect("fetch")
        .expect("Celery's message on the queue");
    let headers = message.headers().expect("Celery's headers");
    assert_eq!(
        headers.get("task"),
        Some(&"tasks.add".into()),
        "{headers:?}"
    );
    assert_eq!(headers.get("id"), Some(&id.clone().into()), "{headers:?}");
    assert_eq!(headers.get("lang"), Some(&"py".into()), "{headers:?}");
    assert_eq!(
        headers.get("root_id"),
        Some(&id.clone().into()),
        "{headers:?}"
    );
    assert_eq!(
        message.properties().correlation_id(),
        Some(id.as_str()),
        "the id is the correlation_id"
    );
    assert_eq!(message.content_type(), Some("application/json"));
    assert_eq!(
        message.decode::<Value>().expect("json"),
        json!([[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])
    );
    message.ack().expect("acked");
    assert!(
        consumer.fetch().await.expect("fetch").is_none(),
        "one message"
    );
    consumer.close().await.expect("closed");
    let _ = conn.close().await;
}

#[tokio::test]
async fn celery_runs_carrots_task_and_carrot_reads_celerys() {
    let Some(url) = redis_url() else { return };
    let Some(python) = python_with("import kombu, redis, celery", "kombu redis celery") else {
        return;
    };
    let to_worker = unique("kombu_redis", "celery-worker");
    let from_celery = unique("kombu_redis", "celery-send");
    let body = {
        let (url, to_worker, from_celery) = (url.clone(), to_worker.clone(), from_celery.clone());
        async move {
            celery_worker_runs_carrots_task(&url, &python, &to_worker).await;
            carrot_reads_celerys_task(&url, &python, &from_celery).await;
        }
    };
    // The queues' exchanges are Celery's (direct, per process): only their binding sets,
    // which deleting the queues empties.
    run_then_clean(&url, vec![to_worker, from_celery], vec![], body).await;
}
