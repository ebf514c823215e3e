//! Automatic recovery on RabbitMQ, proven by restarting the broker under the program:
//! nothing confirmed is lost, publishers and consumers carry on without a restart of the
//! program, what the connection declared is declared again, and what cannot be recovered is
//! a clear error.
//!
//! Needs `CARROT_TEST_AMQP_URL` and `CARROT_TEST_AMQP_RESTART` (`.ci/run` sets both). The
//! restarts close every connection to the broker, so the tests of this file run one at a
//! time ([`serial`]), and cargo runs test files one after another.

mod amqp_support;

use std::time::{Duration, Instant};

use amqp_support::stream::{self, Plan};
use amqp_support::*;
use carrot::{
    BrokerConnection, ConnectionEvent, ConnectionState, Consumer, Error, ExchangeType, Publisher,
    QueueSpec,
};
use tokio::io::AsyncBufReadExt;

/// One test at a time: each restarts the broker.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The settings, or `None` after saying why the test cannot run.
fn settings() -> Option<(String, String)> {
    let url = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ")?;
    let restart = setting(
        "CARROT_TEST_AMQP_RESTART",
        "a shell command that restarts RabbitMQ and returns once it answers",
    )?;
    Some((url, restart))
}

async fn restart_broker(command: &str) {
    shell(command, Duration::from_secs(120)).await;
}

/// Waits for a connection event matching `what`, at most `limit`.
async fn event(
    events: &mut carrot::ConnectionEvents,
    limit: Duration,
    what: impl Fn(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    bounded("a connection event", limit, async {
        loop {
            match events.recv().await {
                Some(e) if what(&e) => return e,
                Some(_) => continue,
                None => panic!("the connection's events ended"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_twice_under_load_loses_no_confirmed_message() {
    let Some((url, restart)) = settings() else {
        return;
    };
    let _alone = serial().await;
    let queue = unique("recovery", "stream");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let plan = Plan {
                total: 100_000,
                window: 256,
                prefetch: 500,
                queue: QueueSpec::new(&queue),
                limit: Duration::from_secs(400),
            };
            let (publishing, consuming) = (connect_quick(&url).await, connect_quick(&url).await);
            let total = plan.total;
            let counts = stream::run(publishing, consuming, plan, move |progress| async move {
                progress.consumed_at_least(total / 4).await;
                restart_broker(&restart).await;
                progress.consumed_at_least(total * 3 / 5).await;
                restart_broker(&restart).await;
            })
            .await;
            eprintln!("{}", counts.line("RabbitMQ restarted twice"));
            assert_eq!(counts.lost, 0, "confirmed messages were lost: {counts:?}");
            assert_eq!(counts.confirmed, total);
            assert_eq!(counts.consumed, total);
            assert!(
                counts.recoveries.len() >= 4,
                "both connections recover from both restarts: {:?}",
                counts.recoveries
            );
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(480), body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_declares_again_what_the_connection_declared_and_resumes_its_consumer() {
    let Some((url, restart)) = settings() else {
        return;
    };
    let _alone = serial().await;
    let (exchange, queue) = (unique("recovery", "ex"), unique("recovery", "q"));
    let body = {
        let (url, exchange, queue) = (url.clone(), exchange.clone(), queue.clone());
        async move {
            let conn = connect_quick(&url).await;
            let mut events = conn.events();
            // Transient entities: a restart drops them, only the recovery brings them back.
            let mut consumer = Consumer::builder(&conn)
                .queue(&queue)
                .durable(false)
                .exchange(&exchange)
                .exchange_type(ExchangeType::Topic)
                .exchange_durable(false)
                .routing_key("news.#")
                .build()
                .await
                .expect("a consumer of a transient queue bound to a transient exchange");
            consumer
                .qos(carrot::Qos::new().prefetch_count(10))
                .await
                .expect("qos");
            let publisher = Publisher::builder(&conn)
                .exchange(&exchange)
                .exchange_type(ExchangeType::Topic)
                .durable(false)
                .routing_key("news.today")
                .confirm_publish(true)
                .build()
                .await
                .expect("a publisher");
            publisher.send(&"before").await.expect("send before");
            let before = next(&mut consumer).await;
            assert_eq!(before.decode::<String>().unwrap(), "before");
            before.ack().expect("ack before the restart");
            // Delivered before the restart and not acknowledged: acking it after is an error.
            publisher.send(&"held").await.expect("send held");
            let held = next(&mut consumer).await;

            restart_broker(&restart).await;
            let lost = event(&mut events, Duration::from_secs(10), |e| {
                matches!(e, ConnectionEvent::Lost { .. })
            })
            .await;
            eprintln!("{lost:?}");
            let recovered = event(&mut events, Duration::from_secs(30), |e| {
                matches!(e, ConnectionEvent::Recovered { .. })
            })
            .await;
            eprintln!("{recovered:?}");
            assert_eq!(conn.state(), ConnectionState::Connected);
            match held.ack() {
                Err(Error::ChannelClosed {
                    reply_text: text, ..
                }) => {
                    assert!(text.contains("requeued"), "{text}")
                }
                other => panic!("acking a delivery of the lost connection: {other:?}"),
            }
            // The transient exchange, queue and binding are back, and so is the consumer.
            publisher
                .send(&"after")
                .await
                .expect("send after the restart");
            // "held" comes again (redelivered) before or after "after".
            loop {
                let message = next(&mut consumer).await;
                let text: String = message.decode().unwrap();
                message.ack().expect("ack after the restart");
                if text == "after" {
                    break;
                }
                assert_eq!(text, "held", "only the requeued message may come first");
            }
            let info = conn.queue_info(&queue).await.expect("the queue is back");
            assert_eq!(info.consumer_count, 1, "the consumer was resumed");
            drop(consumer);
            let _ = conn
                .delete_exchange(&exchange, carrot::DeleteExchangeOptions::new())
                .await;
            let _ = conn.close().await;
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(120), body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_named_queue_is_declared_again_under_a_new_name_and_says_so() {
    let Some((url, restart)) = settings() else {
        return;
    };
    let _alone = serial().await;
    let exchange = unique("recovery", "fanout");
    let body = {
        let (url, exchange) = (url.clone(), exchange.clone());
        async move {
            let conn = connect_quick(&url).await;
            let mut events = conn.events();
            let mut consumer = Consumer::builder(&conn)
                .queue("")
                .exclusive(true)
                .exchange(&exchange)
                .exchange_type(ExchangeType::Fanout)
                .build()
                .await
                .expect("an exclusive server-named queue");
            let old = consumer.queue().to_string();
            assert!(old.starts_with("amq.gen-"), "{old}");
            consumer.consume().await.expect("consume");
            restart_broker(&restart).await;
            let renamed = event(&mut events, Duration::from_secs(30), |e| {
                matches!(e, ConnectionEvent::QueueRenamed { .. })
            })
            .await;
            let ConnectionEvent::QueueRenamed { old: was, new } = renamed else {
                unreachable!()
            };
            assert_eq!(was, old);
            assert_ne!(new, old);
            event(&mut events, Duration::from_secs(30), |e| {
                matches!(e, ConnectionEvent::Recovered { .. })
            })
            .await;
            // The binding and the consumer follow the new name; the old name leads there too.
            let publisher = Publisher::builder(&conn)
                .exchange(&exchange)
                .exchange_type(ExchangeType::Fanout)
                .confirm_publish(true)
                .build()
                .await
                .expect("a publisher");
            publisher.send(&"to the new queue").await.expect("send");
            let message = next(&mut consumer).await;
            assert_eq!(message.decode::<String>().unwrap(), "to the new queue");
            message.ack().expect("ack");
            assert_eq!(conn.queue_info(&old).await.expect("old name").name, new);
            drop(consumer);
            let _ = conn
                .delete_exchange(&exchange, carrot::DeleteExchangeOptions::new())
                .await;
            let _ = conn.close().await;
        }
    };
    run_then_delete_queues(&url, &[], Duration::from_secs(120), body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recovery_a_lost_connection_is_an_error_never_a_silent_end() {
    let Some((url, restart)) = settings() else {
        return;
    };
    let _alone = serial().await;
    let queue = unique("recovery", "off");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let conn = BrokerConnection::builder()
                .url(&url)
                .recovery(false)
                .connect()
                .await
                .expect("connect");
            let mut consumer = Consumer::builder(&conn)
                .queue(&queue)
                .build()
                .await
                .expect("a consumer");
            consumer.register_callback(|_, message| message.ack());
            let waiting = tokio::spawn(async move { consumer.wait(None).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            restart_broker(&restart).await;
            let outcome = bounded("wait ends", Duration::from_secs(20), waiting)
                .await
                .expect("the waiting task");
            match outcome {
                Err(e) => assert!(e.is_connection_error(), "{e:?}"),
                Ok(n) => panic!("wait ended normally after {n} messages on a lost connection"),
            }
            assert!(
                matches!(conn.state(), ConnectionState::Failed { .. }),
                "{:?}",
                conn.state()
            );
            let publisher = Publisher::builder(&conn).routing_key(&queue).build().await;
            assert!(publisher.is_err(), "a failed connection refuses new work");
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(120), body).await;
}

/// `carrot consume` with no limit, left running while the broker restarts: it prints every
/// message sent before and after, and ends with status 0 on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrot_consume_keeps_consuming_through_a_restart() {
    let Some((url, restart)) = settings() else {
        return;
    };
    let _alone = serial().await;
    let queue = unique("recovery", "cli");
    let body = {
        let (url, queue) = (url.clone(), queue.clone());
        async move {
            let conn = connect_quick(&url).await;
            conn.declare_queue(&QueueSpec::new(&queue))
                .await
                .expect("declare the queue");
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carrot"))
                .args(["--url", &url, "consume", "--queue", &queue])
                .args(["--interval-start", "0.2", "--interval-step", "0.2"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start carrot consume");
            let stdout = child.stdout.take().expect("its stdout");
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let publisher = Publisher::builder(&conn)
                .routing_key(&queue)
                .serializer("raw")
                .confirm_publish(true)
                .build()
                .await
                .expect("a publisher");
            for n in 0..20 {
                publisher.send(&format!("m{n}")).await.expect("send");
            }
            let mut seen = std::collections::BTreeSet::new();
            while seen.len() < 20 {
                let line = bounded("a line", Duration::from_secs(20), lines.next_line())
                    .await
                    .expect("read");
                let Some(line) = line else {
                    let output = child
                        .wait_with_output()
                        .await
                        .expect("carrot consume's end");
                    panic!(
                        "carrot consume ended early ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    );
                };
                seen.insert(line);
            }
            restart_broker(&restart).await;
            let started = Instant::now();
            for n in 20..40 {
                publisher
                    .send(&format!("m{n}"))
                    .await
                    .expect("send after the restart");
            }
            while seen.len() < 40 {
                let line = bounded(
                    "a line after the restart",
                    Duration::from_secs(30),
                    lines.next_line(),
                )
                .await
                .expect("read");
                let Some(line) = line else {
                    let output = child
                        .wait_with_output()
                        .await
                        .expect("carrot consume's end");
                    panic!(
                        "carrot consume ended after the restart ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    );
                };
                seen.insert(line);
            }
            eprintln!("carrot consume resumed within {:?}", started.elapsed());
            let pid = child.id().expect("still running");
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let status = bounded(
                "carrot consume exits",
                Duration::from_secs(10),
                child.wait(),
            )
            .await
            .expect("wait for carrot consume");
            assert!(status.success(), "exit status {status} after Ctrl-C");
            let _ = conn.close().await;
        }
    };
    run_then_delete_queues(&url, &[queue], Duration::from_secs(120), body).await;
}

/// The next delivery of a consumer, within ten seconds.
async fn next(consumer: &mut Consumer) -> carrot::Message {
    bounded(
        "a delivery",
        Duration::from_secs(10),
        consumer.next_message(),
    )
    .await
    .unwrap_or_else(|e| panic!("next_message failed: {e}"))
    .expect("a message")
}
