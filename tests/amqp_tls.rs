//! RabbitMQ over TLS (`amqps://`): certificates checked against the CA of the URL's
//! `cacertfile`, and clear errors when they do not match or the file is missing.
//!
//! Needs `CARROT_TEST_AMQPS_URL` (with `?cacertfile=` naming the CA of the broker's certificate)
//! and `CARROT_TEST_AMQPS_WRONG_CA` (another CA), as `.ci/run` and `.ci/rabbitmq.sh` set them.

mod amqp_support;

use std::time::Duration;

use amqp_support::*;
use carrot::{BrokerConnection, Consumer, Publisher, QueueSpec};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

fn amqps_url() -> Option<String> {
    setting(
        "CARROT_TEST_AMQPS_URL",
        "an amqps:// URL of RabbitMQ with ?cacertfile=CA.pem",
    )
}

/// Connects, publishes with confirms and fetches the message back, all over TLS.
async fn round_trip(url: String, queue: String) {
    let conn = connect(&url).await;
    assert_eq!(conn.url().scheme(), "amqps");
    conn.declare_queue(&QueueSpec::new(&queue).durable(false))
        .await
        .expect("declare a queue over TLS");
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .confirm_publish(true)
        .build()
        .await
        .expect("a publisher with confirms over TLS");
    let data = json!({"over": "tls", "ok": true, "n": [1, 2, 3]});
    publisher.send(&data).await.expect("a confirmed publish");

    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer over TLS");
    // The broker confirmed the message, so it is in the queue now.
    let message = consumer
        .fetch()
        .await
        .expect("fetch over TLS")
        .expect("the confirmed message is in the queue");
    assert_eq!(message.decode::<Value>().expect("json"), data);
    message.ack().expect("ack over TLS");
    assert!(consumer.fetch().await.expect("fetch").is_none());
    conn.close().await.expect("close a TLS connection");
}

#[tokio::test]
async fn amqps_publishes_with_confirms_and_fetches_back() {
    let Some(url) = amqps_url() else { return };
    let queue = unique("amqp_tls", "round-trip");
    let body = round_trip(url.clone(), queue.clone());
    run_then_delete_queues(&url, &[queue], LIMIT, body).await;
}

#[tokio::test]
async fn amqps_checks_an_ip_host_against_the_certificates_ip_address() {
    let Some(url) = amqps_url() else { return };
    // The broker's certificate names DNS:localhost and IP:127.0.0.1: both must verify.
    let by_ip = url.replacen("@localhost:", "@127.0.0.1:", 1);
    let queue = unique("amqp_tls", "by-ip");
    let body = round_trip(by_ip, queue.clone());
    run_then_delete_queues(&url, &[queue], LIMIT, body).await;
}

#[tokio::test]
async fn amqps_with_a_ca_that_did_not_sign_the_server_certificate_is_refused() {
    let Some(url) = amqps_url() else { return };
    let Some(wrong_ca) = setting(
        "CARROT_TEST_AMQPS_WRONG_CA",
        "a PEM file of a CA that did not sign the broker's certificate",
    ) else {
        return;
    };
    let wrong = with_query_option(&url, "cacertfile", &wrong_ca);
    let result = bounded(
        "connect with the wrong CA",
        Duration::from_secs(30),
        BrokerConnection::connect(&wrong),
    )
    .await;
    match result {
        Ok(_) => panic!(
            "connected over TLS trusting {wrong_ca}, which did not sign the broker's certificate"
        ),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.to_lowercase().contains("certificate"),
                "the error should say that the certificate was refused: {text} ({error:?})"
            );
            eprintln!("refused as it should be: {text}");
        }
    }
}

#[tokio::test]
async fn amqps_with_a_missing_cacertfile_is_an_error_naming_the_file() {
    let Some(url) = amqps_url() else { return };
    let missing = format!(
        "{}/carrot-no-such-dir-{}/ca.pem",
        std::env::temp_dir().display(),
        std::process::id()
    );
    let result = bounded(
        "connect with a missing cacertfile",
        Duration::from_secs(30),
        BrokerConnection::connect(&with_query_option(&url, "cacertfile", &missing)),
    )
    .await;
    match result {
        Ok(_) => panic!("connected although the cacertfile {missing} does not exist"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains(&missing),
                "the error should name the missing file {missing}: {text} ({error:?})"
            );
            eprintln!("refused as it should be: {text}");
        }
    }
}
