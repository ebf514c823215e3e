//! carrot's `SimpleQueue` and RPC against kombu's, both ways, on RabbitMQ and on `carrot serve`
//! over memory:// and sqlite://: a kombu `SimpleQueue` and a carrot one share a queue, a kombu
//! RPC client (kombu's RPC pattern: `reply_to` and `correlation_id`) gets carrot's
//! `RpcServer`'s replies, and carrot's `RpcClient` (direct reply-to) gets a kombu server's.
//!
//! Needs `CARROT_TEST_AMQP_URL` and a Python 3 with kombu; kombu's side is
//! `tests/interop/kombu_services.py`.

mod amqp_support;
mod serve_support;

use std::process::Stdio;
use std::time::Duration;

use amqp_support::*;
use carrot::{CancellationToken, RpcClient, RpcServer, SimpleQueue};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/kombu_services.py"
);
const LIMIT: Duration = Duration::from_secs(120);
const COUNT: usize = 3;

fn python() -> Option<String> {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python)
        .args(["-c", "import kombu"])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        _ => {
            skip_or_fail(&format!("{python} cannot import kombu: pip install kombu"));
            None
        }
    }
}

fn peer(python: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(python)
        .arg(PEER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {PEER}: {e}"))
}

/// Runs the peer to its end; its stdout's JSON lines.
async fn peer_output(python: &str, args: &[&str]) -> Vec<Value> {
    let output = bounded(
        "kombu_services.py",
        LIMIT,
        peer(python, args).wait_with_output(),
    )
    .await
    .expect("kombu_services.py runs");
    assert!(output.status.success(), "kombu_services.py {args:?} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

async fn simple_queue_both_ways(url: &str, python: &str, name: &str) {
    let conn = connect(url).await;
    let queue = SimpleQueue::open(&conn, name).await.expect("the queue");
    for n in 0..COUNT {
        queue
            .put(&json!({"from": "carrot", "n": n}))
            .await
            .expect("put");
    }
    let count = COUNT.to_string();
    let got = peer_output(python, &["simple-get", url, name, &count]).await;
    let expected: Vec<Value> = (0..COUNT)
        .map(|n| json!({"from": "carrot", "n": n}))
        .collect();
    assert_eq!(got, expected, "kombu's SimpleQueue reads carrot's");
    peer_output(python, &["simple-put", url, name, &count]).await;
    for n in 0..COUNT {
        let message = queue
            .get(Some(Duration::from_secs(20)))
            .await
            .expect("kombu's message");
        assert_eq!(
            message.decode::<Value>().expect("json"),
            json!({"from": "kombu", "n": n})
        );
        message.ack().expect("ack");
    }
    queue.close().await.expect("closed");
    let _ = conn.delete_exchange(name, Default::default()).await;
}

async fn rpc_both_ways(url: &str, python: &str, queue: &str) {
    let conn = connect(url).await;
    // A kombu client, a carrot server.
    let mut server = RpcServer::new(&conn, queue).await.expect("the server");
    let stop = CancellationToken::new();
    let serving = tokio::spawn({
        let stop = stop.clone();
        async move {
            server
                .serve(
                    |request| async move {
                        let n = request.decode::<Value>()?["n"].as_i64().unwrap_or(-1);
                        Ok::<_, carrot::BoxError>(json!({"n": n * 2}))
                    },
                    stop,
                )
                .await
        }
    });
    let count = COUNT.to_string();
    let got = peer_output(python, &["rpc-call", url, queue, &count]).await;
    let expected: Vec<Value> = (0..COUNT as i64).map(|n| json!({"n": n * 2})).collect();
    assert_eq!(got, expected, "kombu's client gets carrot's replies");
    stop.cancel();
    let answered = bounded("the server's end", LIMIT, serving)
        .await
        .expect("the server task")
        .expect("served");
    assert_eq!(answered, COUNT as u64);

    // A carrot client, a kombu server.
    let mut kombu = peer(python, &["rpc-serve", url, queue, &count]);
    let mut lines = BufReader::new(kombu.stdout.take().expect("stdout")).lines();
    let ready = bounded("kombu's server ready", LIMIT, lines.next_line())
        .await
        .expect("its stdout");
    assert_eq!(ready.as_deref(), Some("ready"));
    let client = RpcClient::new(&conn).await.expect("the client");
    for n in 0..COUNT as i64 {
        let reply = client
            .call(queue, &json!({"n": n}), Duration::from_secs(20))
            .await
            .expect("kombu's reply");
        assert_eq!(reply.decode::<Value>().expect("json"), json!({"n": n * 2}));
    }
    let status = bounded("kombu's server ends", LIMIT, kombu.wait())
        .await
        .expect("its status");
    assert!(status.success(), "kombu's server failed");
}

/// RabbitMQ (when set) and both serves.
fn urls() -> Vec<String> {
    let mut urls = serve_support::served_urls("kombu-services");
    if let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") {
        urls.insert(0, url);
    }
    urls
}

#[tokio::test]
async fn simple_queue_is_shared_with_kombu_on_rabbitmq_and_serve() {
    let Some(python) = python() else { return };
    for url in urls() {
        let name = unique("kombu_services", "simple");
        let body = {
            let (url, python, name) = (url.clone(), python.clone(), name.clone());
            async move { simple_queue_both_ways(&url, &python, &name).await }
        };
        run_then_delete_queues(&url, &[name], LIMIT, body).await;
    }
}

#[tokio::test]
async fn rpc_answers_kombu_and_is_answered_by_kombu_on_rabbitmq_and_serve() {
    let Some(python) = python() else { return };
    for url in urls() {
        let queue = unique("kombu_services", "rpc");
        let body = {
            let (url, python, queue) = (url.clone(), python.clone(), queue.clone());
            async move { rpc_both_ways(&url, &python, &queue).await }
        };
        run_then_delete_queues(&url, &[queue], LIMIT, body).await;
    }
}
