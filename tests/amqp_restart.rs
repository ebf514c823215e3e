//! A RabbitMQ restart: durable queues keep their persistent messages; transient messages and
//! transient queues are gone.
//!
//! Needs `CARROT_TEST_AMQP_URL` and `CARROT_TEST_AMQP_RESTART`, a shell command that restarts
//! RabbitMQ and returns once it answers again (`.ci/run` and `.ci/rabbitmq.sh` set both). The
//! restart closes every connection to the broker, so this file holds one test only: cargo runs
//! test files one after another, never two at once.

mod amqp_support;

use std::time::Duration;

use amqp_support::*;
use carrot::{Consumer, DeliveryMode, Error, Publisher, QueueSpec, SendOptions};
use serde_json::{json, Value};

async fn restart_broker(command: &str) {
    let mut child = tokio::process::Command::new("sh");
    child.arg("-c").arg(command).kill_on_drop(true);
    let status = bounded(
        "CARROT_TEST_AMQP_RESTART",
        Duration::from_secs(120),
        child.status(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run CARROT_TEST_AMQP_RESTART ({command}): {e}"));
    assert!(
        status.success(),
        "CARROT_TEST_AMQP_RESTART ({command}) failed: {status}"
    );
}

async fn durable_queue_keeps_persistent_messages(
    url: String,
    restart: String,
    durable: String,
    transient: String,
) {
    let conn = connect(&url).await;
    conn.declare_queue(&QueueSpec::new(&durable))
        .await
        .expect("declare a durable queue");
    conn.declare_queue(&QueueSpec::new(&transient).durable(false))
        .await
        .expect("declare a transient queue");
    let publisher = Publisher::builder(&conn)
        .confirm_publish(true)
        .build()
        .await
        .expect("a publisher with confirms");
    let to = |queue: &str, mode| SendOptions::new().routing_key(queue).delivery_mode(mode);
    let kept = json!({"kept": "persistent", "text": "überlebt ✓"});
    publisher
        .send_with(&kept, to(&durable, DeliveryMode::Persistent))
        .await
        .expect("publish a persistent message");
    publisher
        .send_with(
            &json!({"lost": "transient message"}),
            to(&durable, DeliveryMode::Transient),
        )
        .await
        .expect("publish a transient message");
    publisher
        .send_with(
            &json!({"lost": "transient queue"}),
            to(&transient, DeliveryMode::Persistent),
        )
        .await
        .expect("publish to the transient queue");
    // Confirmed, so counted.
    assert_eq!(conn.queue_info(&durable).await.unwrap().message_count, 2);
    assert_eq!(conn.queue_info(&transient).await.unwrap().message_count, 1);
    drop(publisher);
    let _ = conn.close().await;

    restart_broker(&restart).await;

    let conn = connect_retrying(&url, Duration::from_secs(30)).await;
    let info = conn
        .queue_info(&durable)
        .await
        .expect("the durable queue survives the restart");
    assert_eq!(
        info.message_count, 1,
        "only the persistent message survives the restart"
    );
    let mut consumer = Consumer::builder(&conn)
        .queue(&durable)
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer of the durable queue");
    let message = consumer
        .fetch()
        .await
        .expect("fetch after the restart")
        .expect("the persistent message");
    assert_eq!(message.decode::<Value>().expect("json"), kept);
    assert_eq!(message.delivery_mode(), Some(DeliveryMode::Persistent));
    message.ack().expect("ack");
    assert!(consumer.fetch().await.expect("fetch").is_none());

    match conn.queue_info(&transient).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("the transient queue should be gone after the restart: {other:?}"),
    }
    let _ = conn.close().await;
}

#[tokio::test]
async fn restart_keeps_durable_queues_and_persistent_messages_only() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let Some(restart) = setting(
        "CARROT_TEST_AMQP_RESTART",
        "a shell command that restarts RabbitMQ and returns once it answers",
    ) else {
        return;
    };
    let durable = unique("amqp_restart", "durable");
    let transient = unique("amqp_restart", "transient");
    let body = durable_queue_keeps_persistent_messages(
        url.clone(),
        restart,
        durable.clone(),
        transient.clone(),
    );
    run_then_delete_queues(&url, &[durable, transient], Duration::from_secs(240), body).await;
}
