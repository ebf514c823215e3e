//! Broken connections between carrot and RabbitMQ, injected by a TCP proxy the test runs on
//! 127.0.0.1 ([`proxy::Proxy`]): every connection cut mid-stream, every connection
//! black-holed mid-stream (only heartbeats can tell), and a broker that never comes back.
//! Nothing confirmed is lost, a silent peer is found within two heartbeat intervals, and a
//! policy that gives up says so, in the library and in the `carrot` command.
//!
//! Needs `CARROT_TEST_AMQP_URL` (`.ci/run` sets it).

mod amqp_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqp_support::proxy::Proxy;
use amqp_support::stream::{self, Plan};
use amqp_support::*;
use carrot::{
    BrokerConnection, ConnectionEvent, ConnectionState, Consumer, Error, Publisher, QueueSpec,
    RetryPolicy,
};
use tokio::io::AsyncWriteExt;

/// The test broker's URL and its address (loopback).
fn broker() -> Option<(String, SocketAddr)> {
    let url = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ")?;
    let authority = url
        .split_once('@')
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split('/').next())
        .expect("CARROT_TEST_AMQP_URL has user@host:port");
    let address: SocketAddr = authority
        .parse()
        .unwrap_or_else(|e| panic!("CARROT_TEST_AMQP_URL's host:port {authority}: {e}"));
    Some((url, address))
}

/// Records when each connection reported its loss.
fn losses(conn: &BrokerConnection) -> Arc<Mutex<Vec<Instant>>> {
    let at = Arc::new(Mutex::new(Vec::new()));
    let mut events = conn.events();
    let seen = at.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if matches!(event, ConnectionEvent::Lost { .. }) {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Instant::now());
            }
        }
    });
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_cut_mid_stream_loses_no_confirmed_message() {
    let Some((url, upstream)) = broker() else {
        return;
    };
    let queue = unique("faults", "cut");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let proxy = Arc::new(Proxy::start(upstream).await);
            let through = proxy.url(&url, upstream);
            let publishing = connect_quick(&through).await;
            let consuming = connect_quick(&through).await;
            let plan = Plan {
                total: 100_000,
                window: 256,
                prefetch: 500,
                queue: QueueSpec::new(&queue),
                limit: Duration::from_secs(300),
            };
            let total = plan.total;
            let cutter = proxy.clone();
            let counts = stream::run(publishing, consuming, plan, move |progress| async move {
                progress.consumed_at_least(total / 3).await;
                cutter.cut();
                progress.consumed_at_least(total * 2 / 3).await;
                cutter.cut();
            })
            .await;
            eprintln!("{}", counts.line("every connection cut twice (proxy)"));
            assert_eq!(counts.lost, 0, "{counts:?}");
            assert_eq!(counts.consumed, total);
            assert!(counts.recoveries.len() >= 4, "{:?}", counts.recoveries);
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(360), body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_is_found_within_two_heartbeats_and_recovered() {
    let Some((url, upstream)) = broker() else {
        return;
    };
    let queue = unique("faults", "black-hole");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let heartbeat = Duration::from_secs(2);
            let proxy = Arc::new(Proxy::start(upstream).await);
            let through = proxy.url(&url, upstream);
            let publishing = connect_with(
                BrokerConnection::builder()
                    .url(&through)
                    .retry_policy(quick_retries())
                    .heartbeat(heartbeat),
            )
            .await;
            let consuming = connect_with(
                BrokerConnection::builder()
                    .url(&through)
                    .retry_policy(quick_retries())
                    .heartbeat(heartbeat),
            )
            .await;
            let lost = [losses(&publishing), losses(&consuming)];
            let plan = Plan {
                total: 100_000,
                window: 256,
                prefetch: 500,
                queue: QueueSpec::new(&queue),
                limit: Duration::from_secs(300),
            };
            let total = plan.total;
            let holes = Arc::new(Mutex::new(Vec::new()));
            let (hole, made) = (proxy.clone(), holes.clone());
            let counts = stream::run(publishing, consuming, plan, move |progress| async move {
                progress.consumed_at_least(total / 2).await;
                made.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Instant::now());
                hole.black_hole();
            })
            .await;
            eprintln!(
                "{}",
                counts.line("every connection black-holed (proxy, heartbeat 2 s)")
            );
            assert_eq!(counts.lost, 0, "{counts:?}");
            assert_eq!(counts.consumed, total);
            let holed = holes.lock().unwrap_or_else(|p| p.into_inner())[0];
            for (side, at) in ["publishing", "consuming"].iter().zip(&lost) {
                let at = at.lock().unwrap_or_else(|p| p.into_inner());
                let found = at
                    .iter()
                    .find(|t| **t >= holed)
                    .unwrap_or_else(|| panic!("the {side} connection never reported the loss"));
                let after = found.duration_since(holed);
                eprintln!("the {side} connection found the black hole after {after:?}");
                assert!(
                    after <= heartbeat * 2,
                    "the {side} connection took {after:?} to find a silent peer (heartbeat {heartbeat:?})"
                );
            }
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(360), body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_comes_back_ends_consumers_and_sends_with_the_policys_error() {
    let Some((url, upstream)) = broker() else {
        return;
    };
    let queue = unique("faults", "gone");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let proxy = Proxy::start(upstream).await;
            let through = proxy.url(&url, upstream);
            let told = Arc::new(Mutex::new(Vec::new()));
            let heard = told.clone();
            let policy = RetryPolicy::default()
                .max_retries(Some(3))
                .interval_start(Duration::from_millis(100))
                .interval_step(Duration::from_millis(100))
                .on_retry(move |error, next| {
                    heard
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((error.to_string(), next));
                });
            let conn = BrokerConnection::builder()
                .url(&through)
                .retry_policy(policy)
                .connect()
                .await
                .expect("connect through the proxy");
            let mut consumer = Consumer::builder(&conn)
                .queue(&queue)
                .build()
                .await
                .expect("a consumer");
            consumer.register_callback(|_, message| message.ack());
            let publisher = Publisher::builder(&conn)
                .routing_key(&queue)
                .confirm_publish(true)
                .build()
                .await
                .expect("a publisher");
            publisher
                .send(&1)
                .await
                .expect("send while the broker is there");
            let waiting = tokio::spawn(async move { consumer.wait(None).await });
            tokio::time::sleep(Duration::from_millis(500)).await;
            // The proxy goes: every connection is cut and nothing listens there any more.
            drop(proxy);
            let outcome = bounded("wait ends", Duration::from_secs(20), waiting)
                .await
                .expect("the waiting task");
            match outcome {
                Err(Error::RetriesExhausted { attempts, last, .. }) => {
                    assert_eq!(attempts, 4, "one attempt and three retries");
                    assert!(last.is_connection_error(), "{last:?}");
                }
                other => panic!("wait must end with the policy's error, got {other:?}"),
            }
            let sent = bounded("send fails", Duration::from_secs(10), publisher.send(&2)).await;
            assert!(
                matches!(sent, Err(Error::RetriesExhausted { .. })),
                "{sent:?}"
            );
            assert!(
                matches!(conn.state(), ConnectionState::Failed { .. }),
                "{:?}",
                conn.state()
            );
            let told = told.lock().unwrap_or_else(|p| p.into_inner()).clone();
            assert!(
                told.len() >= 3,
                "the callback hears of each retry: {told:?}"
            );
            assert!(
                told.iter().all(|(e, _)| e.contains("127.0.0.1")),
                "{told:?}"
            );
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(60), body).await;
}

/// `carrot publish` reading stdin with --confirm goes on through a cut connection; `carrot
/// consume` exits with status 1 and one line once the policy gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_retries_and_exits_non_zero_only_when_the_policy_gives_up() {
    let Some((url, upstream)) = broker() else {
        return;
    };
    let queue = unique("faults", "cli");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let conn = connect_quick(&url).await;
            conn.declare_queue(&QueueSpec::new(&queue))
                .await
                .expect("declare the queue");
            let proxy = Proxy::start(upstream).await;
            let through = proxy.url(&url, upstream);
            let carrot = env!("CARGO_BIN_EXE_carrot");
            let mut publish = tokio::process::Command::new(carrot)
                .args(["--url", &through, "--interval-start", "0.1", "publish"])
                .args(["--exchange", "", "--routing-key", &queue, "--confirm"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start carrot publish");
            let mut stdin = publish.stdin.take().expect("its stdin");
            for n in 0..10 {
                stdin
                    .write_all(format!("line {n}\n").as_bytes())
                    .await
                    .expect("write");
            }
            stdin.flush().await.expect("flush");
            let before = proxy.accepted();
            let waited = bounded(
                "the first ten lines published",
                Duration::from_secs(30),
                async {
                    while conn
                        .queue_info(&queue)
                        .await
                        .expect("queue_info")
                        .message_count
                        < 10
                    {
                        if let Ok(Some(status)) = publish.try_wait() {
                            return Err(status);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(())
                },
            )
            .await;
            if let Err(status) = waited {
                let mut stderr = String::new();
                if let Some(mut e) = publish.stderr.take() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr).await;
                }
                panic!("carrot publish ended early ({status}): {stderr}");
            }
            proxy.cut();
            for n in 10..20 {
                stdin
                    .write_all(format!("line {n}\n").as_bytes())
                    .await
                    .expect("write");
            }
            drop(stdin);
            let output = bounded(
                "carrot publish",
                Duration::from_secs(60),
                publish.wait_with_output(),
            )
            .await
            .expect("wait for carrot publish");
            assert!(
                output.status.success(),
                "carrot publish through a cut: {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(proxy.accepted() > before, "carrot publish reconnected");
            let count = conn
                .queue_info(&queue)
                .await
                .expect("queue_info")
                .message_count;
            assert!(count >= 20, "every line was published: {count}");

            let consume = tokio::process::Command::new(carrot)
                .args(["--url", &through, "consume", "--queue", &queue])
                .args([
                    "--max-retries",
                    "2",
                    "--interval-start",
                    "0.1",
                    "--interval-step",
                    "0",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start carrot consume");
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(proxy);
            let output = bounded(
                "carrot consume gives up",
                Duration::from_secs(30),
                consume.wait_with_output(),
            )
            .await
            .expect("carrot consume's output");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("gave up after 3 attempt"), "{stderr}");
            let _ = conn.close().await;
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(120), body).await;
}

/// Two URLs (two proxies in front of the same broker): a connect skips one where nothing
/// listens, and a lost connection moves on to the other URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_urls_are_tried_in_turn_on_connect_and_on_recovery() {
    let Some((url, upstream)) = broker() else {
        return;
    };
    let queue = unique("faults", "failover");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let dead = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                listener.local_addr().expect("address").port()
            };
            let (first, second) = (Proxy::start(upstream).await, Proxy::start(upstream).await);
            let nowhere = url.replacen(&format!("@{upstream}"), &format!("@127.0.0.1:{dead}"), 1);
            let urls = format!(
                "{nowhere};{};{}",
                first.url(&url, upstream),
                second.url(&url, upstream)
            );
            let conn = BrokerConnection::builder()
                .url(&urls)
                .retry_policy(quick_retries())
                .connect()
                .await
                .expect("the first URL that answers");
            assert_eq!(conn.urls().len(), 3);
            assert_eq!(conn.current_url().to_string(), conn.urls()[1].to_string());
            let mut consumer = Consumer::builder(&conn)
                .queue(&queue)
                .build()
                .await
                .expect("a consumer");
            consumer.consume().await.expect("consume");
            let publisher = Publisher::builder(&conn)
                .routing_key(&queue)
                .confirm_publish(true)
                .build()
                .await
                .expect("a publisher");
            // The URL in use goes away for good: the next one in turn takes over.
            drop(first);
            publisher
                .send(&"after the failover")
                .await
                .expect("send after the failover");
            assert_eq!(conn.current_url().to_string(), conn.urls()[2].to_string());
            let message = bounded(
                "a delivery",
                Duration::from_secs(10),
                consumer.next_message(),
            )
            .await
            .expect("next_message")
            .expect("a message");
            assert_eq!(
                message.decode::<String>().expect("text"),
                "after the failover"
            );
            message.ack().expect("ack");
            assert!(second.accepted() >= 1);
            drop(consumer);
            let _ = conn.close().await;
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(60), body).await;
}
