//! RabbitMQ's memory alarm (`connection.blocked`), raised mid-stream by setting the memory
//! high watermark to 0 and cleared by setting it back: sends report the block within their
//! timeout, the connection shows it as its state, and the stream completes after the alarm
//! clears with nothing confirmed lost.
//!
//! Needs `CARROT_TEST_AMQP_URL` and `CARROT_TEST_AMQP_CTL`, a command that runs `rabbitmqctl`
//! against the test broker (`.ci/run` sets both).

mod amqp_support;

use std::time::{Duration, Instant};

use amqp_support::stream::{self, Plan};
use amqp_support::*;
use carrot::{BrokerConnection, ConnectionState, QueueSpec, Timeouts};

const SEND_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_blocks_sends_within_their_timeout_and_the_stream_completes_after_it() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let Some(ctl) = setting(
        "CARROT_TEST_AMQP_CTL",
        "a command that runs rabbitmqctl against the test broker",
    ) else {
        return;
    };
    let queue = unique("alarm", "stream");
    let body = {
        let (url, queue, ctl) = (url.clone(), queue.clone(), ctl.clone());
        async move {
            let publishing = connect_with(
                BrokerConnection::builder()
                    .url(&url)
                    .retry_policy(quick_retries())
                    .timeouts(Timeouts::default().send(SEND_TIMEOUT)),
            )
            .await;
            let consuming = connect_with(
                BrokerConnection::builder()
                    .url(&url)
                    .retry_policy(quick_retries())
                    .timeouts(Timeouts::default().send(SEND_TIMEOUT)),
            )
            .await;
            let watched = publishing.clone();
            let plan = Plan {
                total: 100_000,
                window: 64,
                prefetch: 200,
                queue: QueueSpec::new(&queue),
                limit: Duration::from_secs(300),
            };
            let total = plan.total;
            let (raised_tx, raised_rx) = tokio::sync::oneshot::channel();
            let counts = stream::run(publishing, consuming, plan, move |progress| async move {
                // Early in the stream: rabbitmqctl takes seconds to start, and RabbitMQ blocks a
                // connection only when it publishes, so the publisher must still be sending.
                progress.consumed_at_least(total / 20).await;
                let raised = Instant::now();
                shell(
                    &format!("{ctl} set_vm_memory_high_watermark 0"),
                    Duration::from_secs(30),
                )
                .await;
                let blocked = bounded(
                    "the connection shows the block",
                    Duration::from_secs(10),
                    async {
                        loop {
                            if let ConnectionState::Blocked { reason } = watched.state() {
                                return reason;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    },
                )
                .await;
                let blocked_at = Instant::now();
                eprintln!(
                    "blocked {:?} after the rabbitmqctl call began: {blocked}",
                    raised.elapsed()
                );
                // Long enough for sends to give up a few times.
                tokio::time::sleep(SEND_TIMEOUT * 3).await;
                shell(
                    &format!("{ctl} set_vm_memory_high_watermark 0.4"),
                    Duration::from_secs(30),
                )
                .await;
                let _ = raised_tx.send(blocked_at);
            })
            .await;
            eprintln!("{}", counts.line("memory alarm raised, then cleared"));
            let blocked_at = raised_rx.await.expect("the alarm was raised");
            assert_eq!(counts.lost, 0, "{counts:?}");
            assert_eq!(counts.consumed, total);
            assert!(
                counts
                    .resent
                    .iter()
                    .any(|e| e.contains("blocks publishing")),
                "a send reported the block: {:?}",
                counts.resent
            );
            let first = counts.first_resend.expect("a send failed during the alarm");
            // From the moment the broker's connection.blocked arrived (rabbitmqctl itself
            // takes seconds to start).
            let reported = first.saturating_duration_since(blocked_at);
            eprintln!("the first send reported the block {reported:?} after the broker blocked the connection");
            assert!(
                reported <= SEND_TIMEOUT + Duration::from_secs(2),
                "sends must report the block within their timeout: {reported:?}"
            );
        }
    };
    // Whatever happens, the alarm must not outlive the test.
    let outcome = tokio::spawn(async move {
        run_then_delete_queues(&url, &[queue], Duration::from_secs(240), body).await
    })
    .await;
    shell(
        &format!("{ctl} set_vm_memory_high_watermark 0.4"),
        Duration::from_secs(30),
    )
    .await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
