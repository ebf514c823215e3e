//! The `carrot` command-line tool, run as a process: exit statuses, what it prints, and what it
//! does to the broker.
//!
//! Scenarios that publish in one process and consume in the next run on every durable backend
//! (`durable!`: RabbitMQ from `CARROT_TEST_AMQP_URL`, and later SQLite); single-process ones run
//! on memory:// too (`everywhere!`). See `cli_support` for the backends and the clean-up.

#![cfg(feature = "cli")]

#[macro_use]
mod cli_support;
mod serve_support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use cli_support::{bodies, carrot, fails, json_lines, last_line, lines, ok, Scope};

/// A publish of BODY to queue `q` through the default exchange.
fn send(s: &Scope, q: &str, body: &str, extra: &[&str]) {
    let mut args = vec!["publish", "--exchange", "", "--routing-key", q];
    args.extend(extra);
    args.push(body);
    s.ok(&args);
}

/// A publish of each line of `input` to queue `q` through the default exchange.
fn send_lines(s: &Scope, q: &str, input: &str, extra: &[&str]) {
    let mut args = vec!["publish", "--exchange", "", "--routing-key", q];
    args.extend(extra);
    ok(s.carrot().args(&args).write_stdin(input));
}

/// A fresh durable queue of the scope.
fn declare_queue(s: &Scope, local: &str, extra: &[&str]) -> String {
    let q = s.queue(local);
    let mut args = vec!["declare", "queue", q.as_str()];
    args.extend(extra);
    let info: Value = serde_json::from_str(s.ok(&args).trim()).expect("declare queue prints JSON");
    assert_eq!(
        info,
        json!({"name": q, "message_count": 0, "consumer_count": 0})
    );
    q
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// A command redis:// refuses, as kombu's Redis transport has no such thing: exit 1,
/// `unsupported` on stderr.
fn refused_on_redis(s: &Scope, args: &[&str]) {
    let stderr = s.fails(1, args);
    assert!(stderr.contains("unsupported"), "{args:?}: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// Usage errors: exit 2, before or without any broker.

#[test]
fn help_lists_every_subcommand() {
    let out = ok(carrot().arg("--help"));
    for sub in [
        "publish", "consume", "discard", "declare", "delete", "bench",
    ] {
        assert!(out.contains(sub), "--help does not mention {sub}: {out}");
    }
    for sub in ["publish", "consume", "discard", "bench"] {
        ok(carrot().args([sub, "--help"]));
    }
    for sub in ["declare", "delete"] {
        for what in ["exchange", "queue"] {
            ok(carrot().args([sub, what, "--help"]));
        }
    }
    ok(carrot().args(["declare", "bind", "--help"]));
    ok(carrot().args(["delete", "binding", "--help"]));
}

#[test]
fn command_line_mistakes_exit_2() {
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &[],
        &["publish", "body-without-exchange"],
        &["consume"],
        &["consume", "--queue", "q", "--reject", "--requeue"],
        &["consume", "--queue", "q", "--no-ack", "--reject"],
        &["consume", "--queue", "q", "--output", "xml"],
        &["consume", "--queue", "q", "--timeout", "-1"],
        &["consume", "--queue", "q", "--timeout", "soon"],
        &["consume", "--queue", "q", "--routing-key", "k"],
        &[
            "publish",
            "--exchange",
            "e",
            "--header",
            "no-equals-sign",
            "b",
        ],
        &["publish", "--exchange", "e", "--header", "=v", "b"],
        &["publish", "--exchange", "e", "--priority", "256", "b"],
        &[
            "publish",
            "--exchange",
            "e",
            "--exchange-type",
            "circular",
            "b",
        ],
        &[
            "publish",
            "--exchange",
            "e",
            "--serializer",
            "json",
            "--content-type",
            "text/plain",
            "b",
        ],
        &["declare", "queue", "q", "--queue-type", "stack"],
        &["declare", "thing", "x"],
        &["delete", "queue"],
        &["bench", "--messages", "many"],
    ];
    for args in cases {
        let stderr = fails(2, carrot().args(*args));
        assert!(
            stderr.starts_with("error: ") || stderr.contains("Usage:"),
            "{args:?}: not clap's message: {stderr}"
        );
    }
}

#[test]
fn malformed_url_exits_2() {
    for url in ["amqp://[bad", "foo://x", "amqp://host:notaport/"] {
        let stderr = fails(2, carrot().args(["--url", url, "discard", "--queue", "q"]));
        assert!(
            last_line(&stderr).starts_with("carrot: invalid broker URL"),
            "{url}: {stderr}"
        );
    }
    // The same from CARROT_URL: the environment is read.
    let stderr = fails(
        2,
        carrot()
            .env("CARROT_URL", "foo://x")
            .args(["discard", "--queue", "q"]),
    );
    assert!(stderr.contains("foo://x"), "{stderr}");
}

#[test]
fn unreachable_broker_exits_1_with_one_line_and_no_password() {
    let url = "amqp://guest:s3cr3t-pw@127.0.0.1:1/%2F";
    for args in [
        &["discard", "--queue", "q"][..],
        &["publish", "--exchange", "", "--routing-key", "q", "x"],
        &["consume", "--queue", "q", "--timeout", "0.1"],
        &["declare", "queue", "q"],
    ] {
        let started = Instant::now();
        let stderr = fails(1, carrot().arg("--url").arg(url).args(args));
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("carrot: "), "{stderr}");
        assert!(!stderr.contains("s3cr3t-pw"), "password shown: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?} to fail",
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Single-process scenarios, on every backend (memory:// included).

everywhere!(publish_to_missing_exchange_fails_with_hint, |s| {
    let missing = s.exchange("missing");
    let stderr = s.fails(1, &["publish", "--exchange", &missing, "hello"]);
    let line = last_line(&stderr);
    assert!(contains_ci(line, "not found"), "{stderr}");
    assert!(line.contains(&missing), "{stderr}");
    assert!(
        line.contains("carrot declare exchange"),
        "no hint: {stderr}"
    );
});

everywhere!(consume_missing_queue_fails_with_hint, |s| {
    let missing = s.queue("missing");
    let stderr = s.fails(1, &["consume", "--queue", &missing, "--timeout", "0.1"]);
    let line = last_line(&stderr);
    assert!(contains_ci(line, "not found"), "{stderr}");
    assert!(line.contains(&missing), "{stderr}");
    assert!(line.contains("carrot declare queue"), "no hint: {stderr}");
    // discard has no hint but fails the same way.
    s.fails(1, &["discard", "--queue", &missing]);
});

everywhere!(publish_mandatory_unroutable_fails, |s| {
    let ex = s.exchange("nowhere");
    let publish = |mandatory: bool| {
        let mut args = vec![
            "publish",
            "--exchange",
            &ex,
            "--exchange-type",
            "direct",
            "--routing-key",
            "no-queue-bound",
        ];
        if mandatory {
            args.push("--mandatory");
        }
        args.push("lost");
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    // Without --mandatory an unroutable message is dropped silently.
    ok(s.carrot().args(publish(false)));
    let stderr = fails(1, s.carrot().args(publish(true)));
    assert!(last_line(&stderr).contains("312"), "{stderr}");
    assert!(last_line(&stderr).contains("no-queue-bound"), "{stderr}");
    // Also with confirms, and to the default exchange with no such queue.
    let mut confirmed = publish(true);
    confirmed.insert(1, "--confirm".into());
    fails(1, s.carrot().args(confirmed));
    let q = s.queue("absent");
    s.fails(
        1,
        &[
            "publish",
            "--exchange",
            "",
            "--routing-key",
            &q,
            "--mandatory",
            "x",
        ],
    );
});

everywhere!(publish_invalid_json_is_usage_error, |s| {
    let q = s.queue("json");
    let stderr = s.fails(
        2,
        &[
            "publish",
            "--exchange",
            "",
            "--routing-key",
            &q,
            "--serializer",
            "json",
            "{\"a\":",
        ],
    );
    assert!(last_line(&stderr).contains("not valid JSON"), "{stderr}");
    let stderr = fails(
        2,
        s.carrot()
            .args(["publish", "--exchange", "", "--routing-key", &q])
            .args(["--serializer", "json"])
            .write_stdin("{\"ok\": 1}\n[1, 2\n3\n"),
    );
    assert!(last_line(&stderr).contains("line 2"), "{stderr}");
});

everywhere!(publish_unknown_serializer_is_usage_error, |s| {
    let q = s.queue("ser");
    let stderr = s.fails(
        2,
        &[
            "publish",
            "--exchange",
            "",
            "--routing-key",
            &q,
            "--serializer",
            "toml",
            "x",
        ],
    );
    assert!(last_line(&stderr).contains("toml"), "{stderr}");
    // Checked before stdin is read: no input needed to fail.
    fails(
        2,
        s.carrot()
            .args(["publish", "--exchange", "", "--routing-key", &q])
            .args(["--serializer", "protobuf"]),
    );
});

everywhere!(declare_server_named_exclusive_queue, |s| {
    let out = s.ok(&["declare", "queue", "", "--transient", "--exclusive"]);
    let info: Value = serde_json::from_str(out.trim()).expect("JSON");
    let name = info["name"].as_str().expect("a name");
    assert!(!name.is_empty(), "{out}");
    assert_eq!(info["message_count"], 0, "{out}");
    assert_eq!(info["consumer_count"], 0, "{out}");
});

// ---------------------------------------------------------------------------------------------
// bench

/// Checks a `bench --json` line against the arguments it ran with, and what any run must
/// satisfy; returns it.
fn check_bench(stdout: &str, expected: Value) -> Value {
    let all = json_lines(stdout);
    assert_eq!(all.len(), 1, "bench --json prints one line: {stdout}");
    let r = all.into_iter().next().expect("one line");
    for (key, value) in expected.as_object().expect("an object") {
        assert_eq!(&r[key], value, "{key} in {r}");
    }
    let num = |key: &str| {
        r[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {r}"))
    };
    let messages = num("messages");
    let published_per_s = num("published_per_s");
    let consumed_per_s = num("consumed_per_s");
    let elapsed = num("elapsed_s");
    assert!(published_per_s > 0.0, "{r}");
    assert!(consumed_per_s > 0.0, "{r}");
    assert!(elapsed > 0.0, "{r}");
    // consumed_per_s is messages over elapsed_s, rounded.
    assert!(
        (messages / elapsed - consumed_per_s).abs() <= 1.0,
        "consumed_per_s {consumed_per_s} != {messages} / {elapsed} s: {r}"
    );
    let latency = |q: &str| {
        r["latency_ms"][q]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{q} is not a number in {r}"))
    };
    let (p50, p99, max) = (latency("p50"), latency("p99"), latency("max"));
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= max,
        "latencies out of order: {r}"
    );
    if cfg!(target_os = "linux") {
        assert!(num("peak_rss_mb") > 0.0, "{r}");
    }
    r
}

/// The last message consumed was sent before publishing ended, so it waited at least from the
/// end of publishing to the end of consuming: the maximum latency cannot be less.
fn check_latency_covers_backlog(r: &Value) {
    let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("not a number in {r}"));
    let elapsed = num(&r["elapsed_s"]);
    let published_s = num(&r["messages"]) / num(&r["published_per_s"]);
    let max = num(&r["latency_ms"]["max"]);
    let backlog_ms = (elapsed - published_s) * 1000.0;
    let tolerance_ms = 1.0 + elapsed * 10.0;
    assert!(
        max >= backlog_ms - tolerance_ms,
        "latency_ms.max is {max} ms, but consuming ended {backlog_ms:.1} ms after publishing \
         did, so the last message waited at least that long: {r}"
    );
}

/// Asserts that a command's stderr carries no terminal control sequence (no progress bar).
fn assert_no_escape_codes(stderr: &[u8]) {
    assert!(
        !stderr.contains(&0x1b) && !stderr.contains(&b'\r'),
        "control characters on stderr: {:?}",
        String::from_utf8_lossy(stderr)
    );
}

#[test]
fn bench_on_default_memory_broker() {
    let output = carrot()
        .args(["bench", "--messages", "5000", "--json"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    // Piped stdout and stderr: no progress bars, nothing at all on stderr.
    assert_no_escape_codes(&output.stderr);
    assert!(output.stderr.is_empty(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    check_bench(
        &stdout,
        json!({
            "url": "memory://", "messages": 5000, "size": 100, "producers": 1, "consumers": 1,
            "persistent": false, "confirm": false, "prefetch": 1000,
        }),
    );
}

#[test]
fn bench_table_output() {
    let out = ok(carrot().args(["bench", "--messages", "1000", "--size", "16"]));
    for label in [
        "broker",
        "workload",
        "published",
        "consumed",
        "latency",
        "peak RSS",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(label)),
            "no {label:?} line: {out}"
        );
    }
    assert!(out.contains("1000 x 16 bytes"), "{out}");
    assert!(
        !out.trim_start().starts_with('{'),
        "a table, not JSON: {out}"
    );
}

#[test]
fn bench_latency_counts_time_spent_queued() {
    // Four producers outrun one consumer that takes one message at a time: messages queue up
    // for tens of milliseconds on memory://, and the latency must say so (at least the gap
    // between the end of publishing and the end of consuming).
    let out = ok(carrot().args([
        "bench",
        "--messages",
        "20000",
        "--size",
        "8",
        "--producers",
        "4",
        "--prefetch",
        "1",
        "--json",
    ]));
    let r = check_bench(
        &out,
        json!({"messages": 20000, "size": 8, "producers": 4, "prefetch": 1}),
    );
    check_latency_covers_backlog(&r);
}

#[test]
fn bench_usage_errors_exit_2() {
    for args in [
        &["bench", "--size", "4"][..],
        &["bench", "--size", "7"],
        &["bench", "--producers", "0", "--messages", "10"],
        &["bench", "--consumers", "0", "--messages", "10"],
    ] {
        let stderr = fails(2, carrot().args(args));
        assert!(
            last_line(&stderr).starts_with("carrot: --"),
            "{args:?}: {stderr}"
        );
    }
    // 8 bytes is enough.
    let out = ok(carrot().args(["bench", "--size", "8", "--messages", "10", "--json"]));
    check_bench(&out, json!({"size": 8, "messages": 10}));
}

#[test]
fn bench_progress_never_reaches_stdout() {
    // stderr on a terminal (progress bars may be drawn there), stdout redirected to a file:
    // the file holds the JSON line and nothing else.
    let script_ok = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("util-linux")
        });
    if !script_ok {
        eprintln!("skipped: needs util-linux `script` for a pseudo-terminal");
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("carrot");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let out_file = std::env::temp_dir().join(format!(
        "carrot-cli-bench-{}-{nanos:x}.json",
        std::process::id()
    ));
    let shell = format!(
        "'{}' bench --messages 30000 --json > '{}'",
        bin.display(),
        out_file.display()
    );
    let status = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &shell, "/dev/null"])
        .env_remove("CARROT_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs script");
    let written = std::fs::read(&out_file);
    let _ = std::fs::remove_file(&out_file);
    assert!(status.status.success(), "{status:?}");
    let written = written.expect("bench wrote its output");
    assert_no_escape_codes(&written);
    check_bench(
        &String::from_utf8(written).expect("UTF-8"),
        json!({"messages": 30000}),
    );
}

everywhere!(bench_json_on_every_backend, |s| {
    let out = s.ok(&["bench", "--messages", "2000", "--json"]);
    let r = check_bench(
        &out,
        json!({"messages": 2000, "producers": 1, "consumers": 1, "persistent": false, "confirm": false}),
    );
    // The URL is shown without its password.
    let url = r["url"].as_str().expect("url");
    if let Some((_, rest)) = s.url().split_once("://") {
        if let Some((userinfo, _)) = rest.split_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                assert!(!url.contains(&format!(":{password}@")), "{url}");
            }
        }
    }
});

everywhere!(bench_persistent_confirm, |s| {
    let out = s.ok(&[
        "bench",
        "--messages",
        "1000",
        "--persistent",
        "--confirm",
        "--json",
    ]);
    check_bench(
        &out,
        json!({"messages": 1000, "persistent": true, "confirm": true}),
    );
});

everywhere!(bench_producers_and_consumers, |s| {
    // 2001 does not split evenly between 2 producers: every message must still arrive.
    let out = s.ok(&[
        "bench",
        "--messages",
        "2001",
        "--size",
        "64",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--prefetch",
        "50",
        "--json",
    ]);
    check_bench(
        &out,
        json!({"messages": 2001, "size": 64, "producers": 2, "consumers": 2, "prefetch": 50}),
    );
});

// ---------------------------------------------------------------------------------------------
// Publish then consume, in separate processes, on the durable backends.

durable!(publish_consume_json_round_trip, |s| {
    let q = declare_queue(s, "rt", &[]);
    let ex = s.exchange("rt");
    s.ok(&["declare", "exchange", &ex]);
    s.ok(&[
        "declare",
        "bind",
        "--queue",
        &q,
        "--exchange",
        &ex,
        "--routing-key",
        "rk",
    ]);
    // A publish to a durable broker prints nothing at all.
    s.carrot()
        .args(["publish", "--exchange", &ex, "--routing-key", "rk"])
        .args([
            "--header", "n=42", "--header", "neg=-3", "--header", "yes=true",
        ])
        .args([
            "--header",
            "no=false",
            "--header",
            "who=ann",
            "--header",
            "ratio=1.5",
        ])
        .args([
            "--header", "dup=1", "--header", "dup=2", "--header", "eq=a=b",
        ])
        .args(["--priority", "7", "--content-type", "text/csv"])
        .arg("x,y")
        .assert()
        .success()
        .stdout("")
        .stderr("");
    s.ok(&["publish", "--exchange", &ex, "--routing-key", "rk", "plain"]);

    let got = s.drain_json(&q, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    // redis:// serves kombu's lower priority step first: "plain" (0) before "x,y" (7: step 6).
    let (first, second) = if s.backend.redis {
        (&got[1], &got[0])
    } else {
        (&got[0], &got[1])
    };
    assert_eq!(first["body"], "x,y");
    assert_eq!(first["content_type"], "text/csv");
    assert_eq!(
        first["headers"],
        json!({"n": 42, "neg": -3, "yes": true, "no": false, "who": "ann", "ratio": "1.5", "dup": 2, "eq": "a=b"})
    );
    assert_eq!(first["priority"], 7);
    assert_eq!(first["delivery_mode"], 2, "persistent by default");
    assert_eq!(first["exchange"], ex.as_str());
    assert_eq!(first["routing_key"], "rk");
    assert_eq!(first["redelivered"], false);
    assert!(first.get("body_encoding").is_none(), "{first}");

    assert_eq!(second["body"], "plain");
    assert_eq!(second["content_type"], "text/plain");
    assert_eq!(second["content_encoding"], "utf-8");
    assert_eq!(second["headers"], json!({}));
    // kombu's envelope on redis:// always has a priority: 0 when none was given.
    let no_priority = if s.backend.redis {
        json!(0)
    } else {
        Value::Null
    };
    assert_eq!(second["priority"], no_priority);
    assert_eq!(second["delivery_mode"], 2);
    assert_eq!(second["redelivered"], false);
    let tag = |m: &Value| m["delivery_tag"].as_u64().expect("delivery_tag");
    assert!(tag(&got[1]) > tag(&got[0]), "{got:?}");
    // Acknowledged: gone.
    assert_eq!(s.message_count(&q), 0);
});

durable!(publish_stdin_lines_and_count, |s| {
    let q = declare_queue(s, "lines", &[]);
    send_lines(s, &q, "one\ntwo\r\nthree", &["--count", "2"]);
    s.expect_bodies(&q, &["one", "one", "two", "two", "three", "three"]);
    // --count with a BODY, --output body is the default.
    send(s, &q, "again", &["--count", "3"]);
    s.expect_bodies(&q, &["again"; 3]);
    // --count 0 sends nothing.
    send(s, &q, "never", &["--count", "0"]);
    assert_eq!(s.message_count(&q), 0);
});

durable!(publish_json_serializer_round_trip, |s| {
    let q = declare_queue(s, "json", &[]);
    let data = json!({"n": 1, "list": [1, "a", null], "nested": {"ok": true}});
    send(s, &q, &data.to_string(), &["--serializer", "json"]);
    send_lines(s, &q, "1\n\"s\"\n[true]\n", &["--serializer", "json"]);
    let got = s.drain_json(&q, 4);
    assert_eq!(
        bodies(&got),
        vec![data.clone(), json!(1), json!("s"), json!([true])]
    );
    for m in &got {
        assert_eq!(m["content_type"], "application/json", "{m}");
    }
    // A JSON message printed as its body is its JSON text.
    send(s, &q, &data.to_string(), &["--serializer", "json"]);
    let text = s.consume_bodies(&q, &["--limit", "1", "--timeout", cli_support::WAIT]);
    assert_eq!(text.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&text[0]).expect("JSON text"),
        data
    );
    // Invalid JSON on line 2: line 1 was sent, nothing after it.
    fails(
        2,
        s.carrot()
            .args(["publish", "--exchange", "", "--routing-key", &q])
            .args(["--serializer", "json"])
            .write_stdin("{\"first\": 1}\nnope\n3\n"),
    );
    assert_eq!(bodies(&s.drain_json(&q, 1)), vec![json!({"first": 1})]);
});

durable!(publish_confirm, |s| {
    let q = declare_queue(s, "confirm", &[]);
    send(s, &q, "sure", &["--confirm", "--count", "3"]);
    // Confirmed means the broker has them.
    assert_eq!(s.message_count(&q), 3);
    send_lines(s, &q, "a\nb\n", &["--confirm", "--mandatory"]);
    assert_eq!(s.message_count(&q), 5);
    s.expect_bodies(&q, &["sure", "sure", "sure", "a", "b"]);
});

durable!(priority_queue_delivers_highest_first, |s| {
    let q = declare_queue(s, "prio", &["--max-priority", "9"]);
    send(s, &q, "low", &["--priority", "1"]);
    send(s, &q, "none", &[]);
    send(s, &q, "high", &["--priority", "9"]);
    send(s, &q, "mid", &["--priority", "5"]);
    let got = s.drain_json(&q, 4);
    if s.backend.redis {
        // kombu's steps on redis://, the lower first: 0 (1, none), then 3 (5), then 9 (9).
        assert_eq!(
            bodies(&got),
            vec![json!("low"), json!("none"), json!("mid"), json!("high")]
        );
        assert_eq!(got[3]["priority"], 9);
        assert_eq!(got[2]["priority"], 5);
        return;
    }
    assert_eq!(
        bodies(&got),
        vec![json!("high"), json!("mid"), json!("low"), json!("none")]
    );
    assert_eq!(got[0]["priority"], 9);
    assert_eq!(got[1]["priority"], 5);
});

durable!(consume_limit_prints_exactly_n, |s| {
    let q = declare_queue(s, "limit", &[]);
    send_lines(s, &q, "m1\nm2\nm3\nm4\nm5\n", &[]);
    assert_eq!(s.consume_bodies(&q, &["--limit", "2"]), strs(&["m1", "m2"]));
    // --limit 0 takes nothing.
    assert_eq!(
        s.consume_bodies(&q, &["--limit", "0"]),
        Vec::<String>::new()
    );
    // The rest is still there, in order.
    assert_eq!(
        s.consume_bodies(&q, &["--limit", "3", "--timeout", "5"]),
        strs(&["m3", "m4", "m5"])
    );
    assert_eq!(s.message_count(&q), 0);
});

durable!(consume_timeout_ends_quietly, |s| {
    let q = declare_queue(s, "timeout", &[]);
    let started = Instant::now();
    let out = s.ok(&["consume", "--queue", &q, "--timeout", "0.5"]);
    let took = started.elapsed();
    assert_eq!(out, "", "nothing to print");
    assert!(took >= Duration::from_millis(500), "ended after {took:?}");
    assert!(took < Duration::from_secs(5), "ended after {took:?}");
    // With messages: each one, then the timeout.
    send(s, &q, "m", &["--count", "3"]);
    let started = Instant::now();
    assert_eq!(s.consume_bodies(&q, &["--timeout", "0.5"]), strs(&["m"; 3]));
    assert!(started.elapsed() < Duration::from_secs(5));
});

durable!(consume_no_ack_removes_messages, |s| {
    let q = declare_queue(s, "noack", &[]);
    send_lines(s, &q, "a\nb\n", &[]);
    let got = s.consume_json(&q, &["--no-ack", "--timeout", "0.5"]);
    assert_eq!(bodies(&got), vec![json!("a"), json!("b")]);
    assert_eq!(s.message_count(&q), 0);
});

durable!(consume_no_ack_with_limit_keeps_the_rest, |s| {
    // --limit 1 takes one message: the others must stay in the queue, not be delivered without
    // acknowledgement to a consumer that exits without printing them.
    let q = declare_queue(s, "noack-limit", &[]);
    send_lines(s, &q, "a\nb\nc\n", &[]);
    assert_eq!(
        s.consume_bodies(&q, &["--no-ack", "--limit", "1"]),
        strs(&["a"])
    );
    s.expect_bodies(&q, &["b", "c"]);
});

durable!(consume_reject_drops_message, |s| {
    let q = declare_queue(s, "reject", &[]);
    send_lines(s, &q, "bad\ngood\n", &[]);
    assert_eq!(
        s.consume_bodies(&q, &["--limit", "1", "--reject"]),
        strs(&["bad"])
    );
    s.expect_bodies(&q, &["good"]);
});

durable!(consume_reject_dead_letters, |s| {
    let dlx = s.exchange("dlx");
    s.ok(&["declare", "exchange", &dlx]);
    let dlq = declare_queue(s, "dlq", &[]);
    s.ok(&[
        "declare",
        "bind",
        "--queue",
        &dlq,
        "--exchange",
        &dlx,
        "--routing-key",
        "dead",
    ]);
    let dead_letter = [
        "--dead-letter-exchange",
        dlx.as_str(),
        "--dead-letter-routing-key",
        "dead",
    ];
    let q = if s.backend.redis {
        // redis:// has no dead-lettering: refused; without it a rejected message is dropped.
        let q = s.queue("work");
        refused_on_redis(
            s,
            &[&["declare", "queue", q.as_str()][..], &dead_letter].concat(),
        );
        s.ok(&["declare", "queue", &q]);
        q
    } else {
        declare_queue(s, "work", &dead_letter)
    };
    send(s, &q, "poison", &[]);
    assert_eq!(
        s.consume_bodies(&q, &["--limit", "1", "--reject"]),
        strs(&["poison"])
    );
    if s.backend.redis {
        assert_eq!(s.message_count(&dlq), 0);
        assert_eq!(s.message_count(&q), 0);
        return;
    }
    let dead = s.drain_json(&dlq, 1);
    assert_eq!(bodies(&dead), vec![json!("poison")]);
    assert_eq!(dead[0]["routing_key"], "dead");
    assert_eq!(dead[0]["exchange"], dlx.as_str());
    assert_eq!(dead[0]["headers"]["x-death"][0]["reason"], "rejected");
    assert_eq!(dead[0]["headers"]["x-death"][0]["queue"], q.as_str());
    assert_eq!(s.message_count(&q), 0);
});

durable!(consume_requeue_keeps_message, |s| {
    let q = declare_queue(s, "requeue", &[]);
    send(s, &q, "again", &[]);
    let first = s.consume_json(&q, &["--limit", "1", "--requeue"]);
    assert_eq!(bodies(&first), vec![json!("again")]);
    assert_eq!(first[0]["redelivered"], false);
    let second = s.consume_json(&q, &["--limit", "1", "--timeout", "5"]);
    assert_eq!(bodies(&second), vec![json!("again")]);
    assert_eq!(second[0]["redelivered"], true);
    // Acknowledged this time.
    assert_eq!(
        s.consume_bodies(&q, &["--timeout", "0.3"]),
        Vec::<String>::new()
    );
});

durable!(consume_requeue_with_timeout_shows_each_message_once, |s| {
    // `--requeue --timeout` is how one looks at a queue without taking from it: each message
    // is printed once and the command ends, leaving the queue as it was.
    let q = declare_queue(s, "peek", &[]);
    send_lines(s, &q, "a\nb\n", &[]);
    let output = s
        .carrot()
        .args(["consume", "--queue", &q, "--requeue", "--timeout", "0.5"])
        .timeout(Duration::from_secs(5))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let printed = stdout.lines().count();
    assert!(
        output.status.success(),
        "did not end by itself within 5 s ({printed} lines printed, first: {:?}): {:?}",
        stdout.lines().take(4).collect::<Vec<_>>(),
        output.status
    );
    assert_eq!(lines(&stdout), strs(&["a", "b"]));
    // redis:// puts each requeued message next out: a, then b, so b comes first.
    let left = if s.backend.redis {
        ["b", "a"]
    } else {
        ["a", "b"]
    };
    s.expect_bodies(&q, &left);
});

durable!(headers_exchange_bind_header, |s| {
    let ex = s.exchange("headers");
    let all = s.queue("all");
    let any = s.queue("any");
    for (q, mode) in [(&all, "x-match=all"), (&any, "x-match=any")] {
        // --exchange declares the exchange and the queue, and binds them.
        let consume = [
            "consume",
            "--queue",
            q,
            "--exchange",
            &ex,
            "--exchange-type",
            "headers",
            "--bind-header",
            mode,
            "--bind-header",
            "a=1",
            "--bind-header",
            "b=x",
            "--timeout",
            "0.1",
        ];
        if s.backend.redis {
            // redis:// has no headers exchanges: refused.
            refused_on_redis(s, &consume);
        } else {
            s.ok(&consume);
        }
    }
    if s.backend.redis {
        // Nothing was declared in its name.
        let stderr = s.fails(1, &["publish", "--exchange", &ex, "x"]);
        assert!(contains_ci(last_line(&stderr), "not found"), "{stderr}");
        return;
    }
    let publish = |headers: &[&str], body: &str| {
        let mut args = vec!["publish", "--exchange", ex.as_str()];
        for h in headers {
            args.extend(["--header", h]);
        }
        args.push(body);
        s.ok(&args);
    };
    publish(&["a=1", "b=x"], "both");
    publish(&["a=1"], "a-only");
    publish(&["a=1", "b=y"], "a-and-other-b");
    publish(&["b=x", "c=true"], "b-only");
    publish(&["a=one"], "string-a");
    publish(&[], "no-headers");
    s.expect_bodies(&all, &["both"]);
    s.expect_bodies(&any, &["both", "a-only", "a-and-other-b", "b-only"]);
});

durable!(topic_routing, |s| {
    let ex = s.exchange("topic");
    let star = s.queue("star");
    let hash = s.queue("hash");
    let usd = s.queue("usd");
    for (q, key) in [(&star, "stock.*"), (&hash, "stock.#"), (&usd, "*.usd")] {
        s.ok(&[
            "consume",
            "--queue",
            q,
            "--exchange",
            &ex,
            "--exchange-type",
            "topic",
            "--routing-key",
            key,
            "--timeout",
            "0.1",
        ]);
    }
    for (key, body) in [
        ("stock.usd", "1"),
        ("stock.eur.nyse", "2"),
        ("news.usd", "3"),
        ("stock", "4"),
    ] {
        s.ok(&[
            "publish",
            "--exchange",
            &ex,
            "--exchange-type",
            "topic",
            "--routing-key",
            key,
            body,
        ]);
    }
    s.expect_bodies(&star, &["1"]);
    s.expect_bodies(&hash, &["1", "2", "4"]);
    s.expect_bodies(&usd, &["1", "3"]);
    // The exchange is a topic exchange: declaring it as fanout is refused.
    let stderr = s.fails(
        1,
        &[
            "publish",
            "--exchange",
            &ex,
            "--exchange-type",
            "fanout",
            "x",
        ],
    );
    assert!(contains_ci(&stderr, "precondition"), "{stderr}");
});

durable!(discard_prints_count_and_empties, |s| {
    let q = declare_queue(s, "discard", &[]);
    send(s, &q, "x", &["--count", "4"]);
    assert_eq!(s.ok(&["discard", "--queue", &q]).trim(), "4");
    assert_eq!(s.message_count(&q), 0);
    assert_eq!(s.ok(&["discard", "--queue", &q]).trim(), "0");
    assert_eq!(
        s.consume_bodies(&q, &["--timeout", "0.3"]),
        Vec::<String>::new()
    );
});

durable!(declare_exchange_options, |s| {
    let ex = s.exchange("topic");
    assert_eq!(s.ok(&["declare", "exchange", &ex, "--type", "topic"]), "");
    // The same declaration again is fine; another type or durability is refused.
    s.ok(&["declare", "exchange", &ex, "--type", "topic"]);
    for other in [
        &["--type", "fanout"][..],
        &["--type", "topic", "--transient"],
    ] {
        let mut args = vec!["declare", "exchange", ex.as_str()];
        args.extend(other);
        let stderr = s.fails(1, &args);
        assert!(
            contains_ci(last_line(&stderr), "precondition"),
            "{other:?}: {stderr}"
        );
    }

    // --argument reaches the broker: the same argument again is fine, another value is
    // refused (alternate-exchange is an argument RabbitMQ compares too).
    let main = s.exchange("main");
    let first = format!("alternate-exchange={}", s.exchange("alternate-1"));
    let second = format!("alternate-exchange={}", s.exchange("alternate-2"));
    if s.backend.redis {
        // redis:// has no alternate exchanges: refused.
        refused_on_redis(s, &["declare", "exchange", &main, "--argument", &first]);
    } else {
        s.ok(&["declare", "exchange", &main, "--argument", &first]);
        s.ok(&["declare", "exchange", &main, "--argument", &first]);
        let stderr = s.fails(1, &["declare", "exchange", &main, "--argument", &second]);
        assert!(contains_ci(last_line(&stderr), "precondition"), "{stderr}");
    }

    // --auto-delete: gone with its last binding.
    let fleeting = s.exchange("fleeting");
    s.ok(&["declare", "exchange", &fleeting, "--auto-delete"]);
    let q = declare_queue(s, "bound", &[]);
    let bind = [
        "--queue",
        q.as_str(),
        "--exchange",
        fleeting.as_str(),
        "--routing-key",
        "k",
    ];
    s.ok(&[&["declare", "bind"][..], &bind].concat());
    s.ok(&[
        "publish",
        "--exchange",
        &fleeting,
        "--routing-key",
        "k",
        "--mandatory",
        "x",
    ]);
    s.ok(&[&["delete", "binding"][..], &bind].concat());
    let stderr = s.fails(1, &["publish", "--exchange", &fleeting, "x"]);
    assert!(contains_ci(last_line(&stderr), "not found"), "{stderr}");
});

durable!(declare_queue_options_and_mismatch, |s| {
    let q = declare_queue(s, "prio", &["--max-priority", "5"]);
    send(s, &q, "x", &["--count", "2"]);
    // Redeclared with the same settings: prints the counts.
    let info: Value = serde_json::from_str(
        s.ok(&["declare", "queue", &q, "--max-priority", "5"])
            .trim(),
    )
    .expect("JSON");
    assert_eq!(
        info,
        json!({"name": q, "message_count": 2, "consumer_count": 0})
    );
    for other in [
        &["--max-priority", "6"][..],
        &["--max-priority", "5", "--transient"],
    ] {
        let mut args = vec!["declare", "queue", q.as_str()];
        args.extend(other);
        let stderr = s.fails(1, &args);
        assert!(
            contains_ci(last_line(&stderr), "precondition"),
            "{other:?}: {stderr}"
        );
    }
    // The queue and its messages are untouched.
    assert_eq!(s.message_count(&q), 2);

    if s.backend.redis {
        // redis:// has no quorum queues: refused.
        let quorum = s.queue("quorum");
        refused_on_redis(s, &["declare", "queue", &quorum, "--queue-type", "quorum"]);
        return;
    }
    let quorum = declare_queue(s, "quorum", &["--queue-type", "quorum"]);
    s.ok(&["declare", "queue", &quorum, "--queue-type", "quorum"]);
    let stderr = s.fails(1, &["declare", "queue", &quorum, "--queue-type", "classic"]);
    assert!(contains_ci(last_line(&stderr), "precondition"), "{stderr}");
});

durable!(declare_queue_arguments_take_effect, |s| {
    if s.backend.redis {
        // redis:// has no length limit, message TTL or queue expiry: each is refused.
        for (local, arguments) in [
            ("maxlen", ["--max-length", "2"]),
            ("typed", ["--argument", "x-max-length=1"]),
            ("ttl", ["--message-ttl", "0.1"]),
            ("expires", ["--expires", "0.2"]),
        ] {
            let q = s.queue(local);
            refused_on_redis(
                s,
                &[&["declare", "queue", q.as_str()][..], &arguments].concat(),
            );
        }
        return;
    }
    let short = declare_queue(s, "maxlen", &["--max-length", "2"]);
    send_lines(s, &short, "m1\nm2\nm3\n", &[]);
    s.expect_bodies(&short, &["m2", "m3"]);

    // --argument values that look like integers are integers (RabbitMQ refuses a string here).
    let typed = declare_queue(s, "typed", &["--argument", "x-max-length=1"]);
    send_lines(s, &typed, "first\nlast\n", &[]);
    s.expect_bodies(&typed, &["last"]);

    let ttl = declare_queue(s, "ttl", &["--message-ttl", "0.1"]);
    send(s, &ttl, "stale", &[]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        s.consume_bodies(&ttl, &["--timeout", "0.3"]),
        Vec::<String>::new()
    );

    // --expires: the unused queue goes by itself (each look uses it: wait longer in between).
    let expiring = declare_queue(s, "expires", &["--expires", "0.2"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let output = s
            .carrot()
            .args(["consume", "--queue", &expiring, "--timeout", "0.1"])
            .output()
            .expect("runs");
        if output.status.code() == Some(1) {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(contains_ci(last_line(&stderr), "not found"), "{stderr}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not expire: {output:?}"
        );
    }
});

durable!(declare_bind_and_delete_binding, |s| {
    let ex = s.exchange("direct");
    s.ok(&["declare", "exchange", &ex]);
    let q = declare_queue(s, "bound", &[]);
    let publish = [
        "publish",
        "--exchange",
        ex.as_str(),
        "--routing-key",
        "k",
        "--mandatory",
        "x",
    ];
    s.fails(1, &publish);
    let bind = [
        "--queue",
        q.as_str(),
        "--exchange",
        ex.as_str(),
        "--routing-key",
        "k",
    ];
    assert_eq!(s.ok(&[&["declare", "bind"][..], &bind].concat()), "");
    s.ok(&publish);
    assert_eq!(s.message_count(&q), 1);
    assert_eq!(s.ok(&[&["delete", "binding"][..], &bind].concat()), "");
    s.fails(1, &publish);
    assert_eq!(s.message_count(&q), 1);

    // Headers bindings: --header on bind and unbind.
    let hx = s.exchange("headers");
    if s.backend.redis {
        // redis:// has no headers exchanges: refused, and so is a binding to amq.headers.
        refused_on_redis(s, &["declare", "exchange", &hx, "--type", "headers"]);
        let hq = declare_queue(s, "headers", &[]);
        refused_on_redis(
            s,
            &[
                "declare",
                "bind",
                "--queue",
                &hq,
                "--exchange",
                "amq.headers",
                "--header",
                "kind=7",
            ],
        );
        return;
    }
    s.ok(&["declare", "exchange", &hx, "--type", "headers"]);
    let hq = declare_queue(s, "headers", &[]);
    let hbind = [
        "--queue",
        hq.as_str(),
        "--exchange",
        hx.as_str(),
        "--header",
        "x-match=any",
        "--header",
        "kind=7",
    ];
    s.ok(&[&["declare", "bind"][..], &hbind].concat());
    let hpublish = [
        "publish",
        "--exchange",
        hx.as_str(),
        "--header",
        "kind=7",
        "--mandatory",
        "h",
    ];
    s.ok(&hpublish);
    s.fails(
        1,
        &[
            "publish",
            "--exchange",
            &hx,
            "--header",
            "kind=8",
            "--mandatory",
            "h",
        ],
    );
    s.ok(&[&["delete", "binding"][..], &hbind].concat());
    s.fails(1, &hpublish);
    s.expect_bodies(&hq, &["h"]);
});

durable!(delete_queue_prints_count, |s| {
    let q = declare_queue(s, "doomed", &[]);
    send(s, &q, "x", &["--count", "2"]);
    let stderr = s.fails(1, &["delete", "queue", &q, "--if-empty"]);
    assert!(contains_ci(last_line(&stderr), "precondition"), "{stderr}");
    assert_eq!(s.message_count(&q), 2);

    // --if-unused while a consumer is attached (--no-ack: it takes both messages for good).
    let bin = assert_cmd::cargo::cargo_bin("carrot");
    let mut consumer = std::process::Command::new(bin)
        .args([
            "--url",
            s.url(),
            "consume",
            "--queue",
            &q,
            "--no-ack",
            "--timeout",
            "20",
        ])
        .env_remove("CARROT_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts a consumer");
    let deadline = Instant::now() + Duration::from_secs(10);
    let attached = loop {
        let info: Value =
            serde_json::from_str(s.ok(&["declare", "queue", &q]).trim()).expect("JSON");
        if info["consumer_count"] == 1 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let in_use = attached.then(|| s.fails(1, &["delete", "queue", &q, "--if-unused"]));
    let _ = consumer.kill();
    let _ = consumer.wait();
    assert!(attached, "the consumer never showed up");
    let in_use = in_use.unwrap_or_default();
    assert!(contains_ci(last_line(&in_use), "precondition"), "{in_use}");

    // delete queue prints how many messages went with the queue.
    let q2 = declare_queue(s, "doomed2", &[]);
    send(s, &q2, "y", &["--count", "3"]);
    assert_eq!(s.ok(&["delete", "queue", &q2]).trim(), "3");
    let stderr = s.fails(1, &["consume", "--queue", &q2, "--timeout", "0.1"]);
    assert!(contains_ci(last_line(&stderr), "not found"), "{stderr}");
    // The consumer took the two messages without acknowledgement: none left.
    assert_eq!(s.ok(&["delete", "queue", &q]).trim(), "0");
});

durable!(delete_exchange_if_unused, |s| {
    let ex = s.exchange("used");
    s.ok(&["declare", "exchange", &ex]);
    let q = declare_queue(s, "user", &[]);
    let bind = [
        "--queue",
        q.as_str(),
        "--exchange",
        ex.as_str(),
        "--routing-key",
        "k",
    ];
    s.ok(&[&["declare", "bind"][..], &bind].concat());
    let stderr = s.fails(1, &["delete", "exchange", &ex, "--if-unused"]);
    assert!(contains_ci(last_line(&stderr), "precondition"), "{stderr}");
    s.ok(&[
        "publish",
        "--exchange",
        &ex,
        "--routing-key",
        "k",
        "--mandatory",
        "still",
    ]);
    s.ok(&[&["delete", "binding"][..], &bind].concat());
    assert_eq!(s.ok(&["delete", "exchange", &ex, "--if-unused"]), "");
    let stderr = s.fails(1, &["publish", "--exchange", &ex, "x"]);
    assert!(contains_ci(last_line(&stderr), "not found"), "{stderr}");
    s.expect_bodies(&q, &["still"]);
});

durable!(exclusive_queue_goes_with_its_command, |s| {
    let q = s.queue("exclusive");
    s.ok(&["declare", "queue", &q, "--exclusive", "--transient"]);
    // Gone once its connection closed (RabbitMQ may take a moment to notice).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let output = s
            .carrot()
            .args(["consume", "--queue", &q, "--timeout", "0.1"])
            .output()
            .expect("runs");
        if output.status.code() == Some(1) {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(contains_ci(last_line(&stderr), "not found"), "{stderr}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exclusive queue outlived its command: {output:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
});

durable!(binary_body_is_base64_in_json, |s| {
    let q = declare_queue(s, "binary", &[]);
    let bytes: Vec<u8> = vec![0x00, 0x9f, 0x92, 0x96, 0xff, b'a', 0xc3, 0x28];
    let url = s.url().to_string();
    let (queue, body) = (q.clone(), bytes.clone());
    cli_support::block_on(async move {
        let conn = carrot::BrokerConnection::connect(&url).await?;
        let publisher = carrot::Publisher::builder(&conn)
            .routing_key(&queue)
            .serializer("raw")
            .auto_declare(false)
            .build()
            .await?;
        for _ in 0..2 {
            let properties = carrot::Properties::default()
                .with_content_type("application/octet-stream")
                .with_content_encoding("binary")
                .with_delivery_mode(carrot::DeliveryMode::Persistent);
            publisher
                .publish(
                    carrot::OutgoingMessage::new(body.clone(), properties),
                    &carrot::SendOptions::new(),
                )
                .await?;
        }
        publisher.close().await?;
        conn.close().await
    })
    .expect("publishes the binary messages");

    let got = s.consume_json(&q, &["--limit", "1", "--timeout", cli_support::WAIT]);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m["body_encoding"], "base64", "{m}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(m["body"].as_str().expect("a base64 string"))
        .expect("valid base64");
    assert_eq!(decoded, bytes);
    assert_eq!(m["content_type"], "application/octet-stream");
    assert_eq!(m["content_encoding"], "binary");

    // --output body writes the bytes as they are.
    let output = s
        .carrot()
        .args(["consume", "--queue", &q, "--limit", "1", "--timeout"])
        .arg(cli_support::WAIT)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, [bytes.as_slice(), b"\n"].concat());

    // A body its content type cannot decode is base64 too; text is text.
    send(s, &q, "not json", &["--content-type", "application/json"]);
    send(
        s,
        &q,
        "plain text",
        &["--content-type", "application/octet-stream"],
    );
    let got = s.drain_json(&q, 2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["body_encoding"], "base64", "{}", got[0]);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(got[0]["body"].as_str().expect("string"))
            .expect("base64"),
        b"not json"
    );
    assert_eq!(got[1]["body"], "plain text");
    assert!(got[1].get("body_encoding").is_none(), "{}", got[1]);
});

durable!(url_from_carrot_url_env, |s| {
    let q = s.queue("env");
    ok(carrot()
        .env("CARROT_URL", s.url())
        .args(["declare", "queue", &q]));
    ok(carrot().env("CARROT_URL", s.url()).args([
        "publish",
        "--exchange",
        "",
        "--routing-key",
        &q,
        "via env",
    ]));
    // Declared and published on the broker of CARROT_URL, not on memory://.
    assert_eq!(s.message_count(&q), 1);
    // --url wins over CARROT_URL.
    ok(carrot().env("CARROT_URL", "foo://not-used").args([
        "--url",
        s.url(),
        "discard",
        "--queue",
        &q,
    ]));
    assert_eq!(s.message_count(&q), 0);
});

durable!(verbose_success_logs_no_error, |s| {
    // -v logs on stderr; a command that succeeds has no ERROR to report.
    let q = declare_queue(s, "verbose", &[]);
    for _ in 0..8 {
        let output = s
            .carrot()
            .args(["-v", "declare", "queue", &q])
            .output()
            .expect("runs");
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("ERROR"),
            "a successful command logged an error: {stderr}"
        );
    }
});

durable!(consume_streams_until_interrupted, |s| {
    // Without --limit or --timeout, consume prints each message as it comes, and Ctrl-C
    // (SIGINT) ends it cleanly with status 0. A transient message is published while the
    // consumer runs (a sqlite broker drops transient messages when its last process exits).
    use std::io::BufRead as _;
    let q = declare_queue(s, "stream", &[]);
    send(s, &q, "first", &[]);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("carrot"))
        .args([
            "--url",
            s.url(),
            "consume",
            "--queue",
            &q,
            "--output",
            "json",
        ])
        .env_remove("CARROT_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts a consumer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || match lines_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => line.expect("a line of stdout"),
        Err(e) => panic!("no line from the running consumer: {e}"),
    };
    let got_first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(next_line));
    let got_second = got_first.is_ok().then(|| {
        send(s, &q, "second", &["--transient"]);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(next_line))
    });
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait().expect("waits for the consumer") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let parse = |line: String| -> Value { serde_json::from_str(&line).expect("a JSON line") };
    let first = parse(got_first.expect("the first message is printed"));
    let second = parse(
        got_second
            .expect("the second message is sent")
            .expect("the second message is printed while the consumer runs"),
    );
    assert_eq!(first["body"], "first");
    assert_eq!(first["delivery_mode"], 2, "{first}");
    assert_eq!(second["body"], "second");
    assert_eq!(second["delivery_mode"], 1, "--transient: {second}");
    assert!(interrupted.is_ok_and(|st| st.success()), "kill -INT failed");
    let status = status.expect("consume ended within 10 s of SIGINT");
    assert_eq!(status.code(), Some(0), "{status:?}");
    // Both were acknowledged.
    assert_eq!(s.message_count(&q), 0);
});

durable!(
    publish_every_serializer_and_compression_and_consume_with_accept,
    |s| {
        let q = declare_queue(s, "formats", &[]);
        let data = json!({"text": "grüße ✓", "n": -7, "big": u64::MAX, "list": [1.5, null, true], "nested": {}});
        let cells = [
            ("json", "application/json", "gzip", "application/x-gzip"),
            (
                "msgpack",
                "application/x-msgpack",
                "bzip2",
                "application/x-bz2",
            ),
            ("yaml", "application/x-yaml", "xz", "application/x-lzma"),
            (
                "pickle",
                "application/x-python-serialize",
                "brotli",
                "application/x-brotli",
            ),
            ("json", "application/json", "zstd", "application/zstd"),
        ];
        for (serializer, _, compression, _) in cells {
            send(
                s,
                &q,
                &data.to_string(),
                &["--serializer", serializer, "--compression", compression],
            );
        }
        // The default accept list decodes json only: the others are shown as refused, and are
        // still acknowledged (the queue is empty afterwards).
        let got = s.drain_json(&q, cells.len());
        assert_eq!(got.len(), cells.len());
        for (m, (serializer, content_type, _, header)) in got.iter().zip(cells) {
            assert_eq!(m["content_type"], content_type, "{m}");
            assert_eq!(m["compression"], header, "{m}");
            assert_eq!(m["headers"]["compression"], header, "{m}");
            if serializer == "json" {
                assert_eq!(m["body"], data, "{m}");
                assert!(m.get("refused").is_none(), "{m}");
            } else {
                let refused = m["refused"].as_str().unwrap_or_default();
                assert!(refused.contains(&format!("--accept {serializer}")), "{m}");
            }
        }
        // Named with --accept, each is decoded (and decompressed) to the same data.
        for (serializer, _, compression, _) in cells {
            send(
                s,
                &q,
                &data.to_string(),
                &["--serializer", serializer, "--compression", compression],
            );
        }
        let got = s.consume_json(
            &q,
            &[
                "--limit",
                "5",
                "--timeout",
                cli_support::WAIT,
                "--accept",
                "msgpack",
                "--accept",
                "application/x-yaml",
                "--accept",
                "pickle",
            ],
        );
        assert_eq!(got.len(), cells.len());
        for m in &got {
            assert_eq!(m["body"], data, "{m}");
        }
    }
);

durable!(publish_sets_every_property_and_text_in_its_charset, |s| {
    let q = declare_queue(s, "properties", &[]);
    let mut properties = vec![
        "--content-encoding",
        "latin-1",
        "--correlation-id",
        "c-1",
        "--reply-to",
        "replies",
        "--expiration",
        "600000",
        "--message-id",
        "m-1",
        "--timestamp",
        "1700000000",
        "--type",
        "greeting",
        "--app-id",
        "carrot-cli",
    ];
    if s.backend.redis {
        // redis:// has no per-message TTL: refused, nothing sent; the rest go without it.
        let mut publish = vec!["publish", "--exchange", "", "--routing-key", q.as_str()];
        publish.extend(&properties);
        publish.push("grüße");
        refused_on_redis(s, &publish);
        assert_eq!(s.message_count(&q), 0);
        properties.retain(|p| !["--expiration", "600000"].contains(p));
    }
    send(s, &q, "grüße", &properties);
    let got = s.drain_json(&q, 1);
    let m = &got[0];
    assert_eq!(m["body"], "grüße", "{m}");
    assert_eq!(m["content_type"], "text/plain", "{m}");
    assert_eq!(m["content_encoding"], "latin-1", "{m}");
    for (name, value) in [
        ("correlation_id", json!("c-1")),
        ("reply_to", json!("replies")),
        (
            "expiration",
            if s.backend.redis {
                Value::Null
            } else {
                json!("600000")
            },
        ),
        ("message_id", json!("m-1")),
        ("timestamp", json!(1_700_000_000u64)),
        ("type", json!("greeting")),
        ("app_id", json!("carrot-cli")),
    ] {
        assert_eq!(m[name], value, "{name}: {m}");
    }
    // The body went out in latin-1: one byte per character.
    send(s, &q, "grüße", &["--content-encoding", "latin-1"]);
    let raw = s.ok(&[
        "consume",
        "--queue",
        &q,
        "--limit",
        "1",
        "--timeout",
        cli_support::WAIT,
    ]);
    assert_eq!(raw.trim_end(), "grüße");
    // Text latin-1 cannot hold is refused before anything is sent.
    let stderr = s.fails(
        1,
        &[
            "publish",
            "--exchange",
            "",
            "--routing-key",
            &q,
            "--content-encoding",
            "latin-1",
            "日本",
        ],
    );
    assert!(stderr.contains("latin-1"), "{stderr}");
    assert_eq!(s.message_count(&q), 0);
});

/// `carrot vhost` and `carrot definitions` on a sqlite file: what one file exports, another
/// imports, vhosts and users included, and `carrot serve` over it serves them.
#[cfg(feature = "serve")]
#[test]
fn vhosts_and_definitions_move_between_broker_files() {
    let dir = std::env::temp_dir().join(format!("carrot-cli-defs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a folder");
    let from = format!("sqlite://{}", dir.join("from.db").display());
    let to = format!("sqlite://{}", dir.join("to.db").display());
    ok(carrot().args([
        "--url",
        &from,
        "vhost",
        "add",
        "prod",
        "--description",
        "production",
    ]));
    ok(carrot().args([
        "--url", &from, "declare", "exchange", "--type", "topic", "orders",
    ]));
    ok(carrot().args(["--url", &from, "declare", "queue", "billing"]));
    ok(carrot().args([
        "--url",
        &from,
        "declare",
        "bind",
        "--queue",
        "billing",
        "--exchange",
        "orders",
        "--routing-key",
        "order.#",
    ]));
    let listed = ok(carrot().args(["--url", &from, "vhost", "list"]));
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["/", "prod"]);
    let file = dir.join("definitions.json");
    ok(carrot()
        .args(["--url", &from, "definitions", "export"])
        .arg(&file));
    let exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("written")).expect("JSON");
    assert!(
        exported["queues"]
            .as_array()
            .is_some_and(|q| q.iter().any(|q| q["name"] == "billing")),
        "{exported}"
    );
    assert!(
        exported["bindings"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["routing_key"] == "order.#")),
        "{exported}"
    );
    assert!(
        exported["users"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["name"] == "guest"
                && u["password_hash"].as_str().is_some_and(|h| h.len() > 40))),
        "{exported}"
    );
    ok(carrot()
        .args(["--url", &to, "definitions", "import"])
        .arg(&file));
    let listed = ok(carrot().args(["--url", &to, "vhost", "list"]));
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec!["/", "prod"]);
    // The binding came along: a message to the exchange reaches the queue.
    ok(carrot().args([
        "--url",
        &to,
        "publish",
        "--exchange",
        "orders",
        "--exchange-type",
        "topic",
        "--routing-key",
        "order.new",
        "hello",
    ]));
    let counts = ok(carrot().args(["--url", &to, "declare", "queue", "billing"]));
    assert!(counts.contains("\"message_count\":1"), "{counts}");
    ok(carrot().args(["--url", &to, "vhost", "delete", "prod"]));
    let missing = fails(1, carrot().args(["--url", &to, "vhost", "delete", "prod"]));
    assert!(missing.contains("no vhost"), "{missing}");
    let refused = fails(
        2,
        carrot().args(["--url", "amqp://127.0.0.1:1/", "vhost", "list"]),
    );
    assert!(refused.contains("rabbitmqctl"), "{refused}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"users\": 3}").expect("written");
    let error = fails(
        2,
        carrot()
            .args(["--url", &to, "definitions", "import"])
            .arg(&bad),
    );
    assert!(error.contains("definitions"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
