//! `Transport::topology` on the embedded brokers, through the public API: the same
//! declarations give the same exchanges, queues (with their counts) and bindings on both.

use crate::backend::{BindingEntry, QueueEntry, Topology};
use crate::{
    table, BrokerConnection, Consumer, ConsumerSet, ExchangeSpec, ExchangeType, FieldTable,
    FieldValue, Publisher, QueueSpec,
};

/// Declares exchanges, queues and bindings of every kind, publishes two messages, takes one
/// without acknowledging it and subscribes a consumer; then checks the whole topology.
async fn declared_topology_is_listed(url: &str) {
    let conn = BrokerConnection::connect(url).await.expect("a connection");
    let none = FieldTable::new();
    let events = ExchangeSpec::new("tt.events", ExchangeType::Topic);
    let audit = ExchangeSpec::new("tt.audit", ExchangeType::Fanout)
        .durable(false)
        .auto_delete(true)
        .internal(true);
    let matching = ExchangeSpec::new("tt.match", ExchangeType::Headers)
        .argument("alternate-exchange", "tt.events");
    for spec in [&events, &audit, &matching] {
        conn.declare_exchange(spec).await.expect("an exchange");
    }
    let jobs = QueueSpec::new("tt.jobs").argument("x-max-length", 100);
    let log = QueueSpec::new("tt.log").durable(false);
    let private = QueueSpec::new("tt.private").durable(false).exclusive(true);
    for spec in [&jobs, &log, &private] {
        conn.declare_queue(spec).await.expect("a queue");
    }
    let kind_a = table([
        ("x-match", FieldValue::from("all")),
        ("kind", FieldValue::from("a")),
    ]);
    let kind_b = table([
        ("x-match", FieldValue::from("any")),
        ("kind", FieldValue::from("b")),
    ]);
    conn.bind("tt.jobs", "tt.events", "job.#", &none)
        .await
        .expect("bound");
    conn.bind("tt.log", "tt.audit", "", &none)
        .await
        .expect("bound");
    conn.bind("tt.private", "tt.match", "", &kind_a)
        .await
        .expect("bound");
    conn.bind_exchange("tt.audit", "tt.events", "#", &none)
        .await
        .expect("bound");
    conn.bind_exchange("tt.audit", "tt.match", "", &kind_b)
        .await
        .expect("bound");

    let publisher = Publisher::builder(&conn)
        .exchange_spec(events.clone())
        .routing_key("job.a")
        .auto_declare(false)
        .build()
        .await
        .expect("a publisher");
    publisher.send(&1).await.expect("sent");
    publisher.send(&2).await.expect("sent");
    let mut taker = Consumer::builder(&conn)
        .queue("tt.jobs")
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer");
    let taken = taker.fetch().await.expect("a get").expect("a message");
    let mut subscribed = ConsumerSet::new(&conn);
    subscribed.add_consumer(
        Consumer::builder(&conn)
            .queue("tt.private")
            .auto_declare(false)
            .build()
            .await
            .expect("a consumer"),
    );
    subscribed.consume().await.expect("consuming");

    let Topology {
        exchanges,
        queues,
        bindings,
    } = conn.topology().await.expect("the topology");

    let predeclared = |name: &str, kind| ExchangeSpec::new(name, kind);
    assert_eq!(
        exchanges,
        [
            predeclared("", ExchangeType::Direct),
            predeclared("amq.direct", ExchangeType::Direct),
            predeclared("amq.fanout", ExchangeType::Fanout),
            predeclared("amq.headers", ExchangeType::Headers),
            predeclared("amq.match", ExchangeType::Headers),
            predeclared("amq.topic", ExchangeType::Topic),
            audit,
            events,
            matching,
        ],
        "{url}"
    );
    let entry = |spec: QueueSpec, ready, unacked, consumers| QueueEntry {
        exclusive_owner: spec.exclusive,
        spec,
        ready,
        unacked,
        consumers,
    };
    assert_eq!(
        queues,
        [
            entry(jobs, 1, 1, 0),
            entry(log, 2, 0, 0),
            entry(private, 0, 0, 1),
        ],
        "{url}"
    );
    let binding = |source: &str, destination: &str, to_queue, key: &str, arguments: &FieldTable| {
        BindingEntry {
            source: source.into(),
            destination: destination.into(),
            destination_is_queue: to_queue,
            routing_key: key.into(),
            arguments: arguments.clone(),
        }
    };
    assert_eq!(
        bindings,
        [
            binding("tt.audit", "tt.log", true, "", &none),
            binding("tt.events", "tt.audit", false, "#", &none),
            binding("tt.events", "tt.jobs", true, "job.#", &none),
            binding("tt.match", "tt.audit", false, "", &kind_b),
            binding("tt.match", "tt.private", true, "", &kind_a),
        ],
        "{url}"
    );
    drop(taken);
    conn.close().await.expect("closed");
}

#[tokio::test]
async fn memory_topology_lists_exchanges_queues_and_bindings() {
    declared_topology_is_listed("memory://topology-test").await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_topology_lists_exchanges_queues_and_bindings() {
    let path = std::env::temp_dir().join(format!("carrot-topology-{}.db", std::process::id()));
    let remove = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    };
    remove();
    declared_topology_is_listed(&format!("sqlite://{}", path.display())).await;
    remove();
}
