//! The blocking facade: same behaviour as the async API, with real iterators.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use carrot::blocking::{BrokerConnection, Consumer, ConsumerSet, Messaging, Publisher};
use carrot::{Error, ExchangeType, FetchOptions, MessageState};
use serde_json::json;

/// The embedded brokers a scenario runs on (RabbitMQ has its own scenario below): a named
/// memory broker, and a sqlite file of its own (deleted afterwards).
fn connections(scope: &str) -> Vec<(BrokerConnection, Option<std::path::PathBuf>)> {
    let memory =
        BrokerConnection::connect(&format!("memory://blocking-{scope}")).expect("memory broker");
    let path =
        std::env::temp_dir().join(format!("carrot-blocking-{scope}-{}.db", std::process::id()));
    let sqlite =
        BrokerConnection::connect(&format!("sqlite://{}", path.display())).expect("sqlite broker");
    vec![(memory, None), (sqlite, Some(path))]
}

/// A scenario run on every embedded broker: `embedded!(name, |conn| { ... })`.
macro_rules! embedded {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            for (conn, path) in connections(stringify!($name)) {
                let scenario: fn(BrokerConnection) = $scenario;
                scenario(conn);
                if let Some(path) = path {
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                    }
                }
            }
        }
    };
}

embedded!(
    iterqueue_is_an_iterator_that_ends_on_an_empty_queue,
    |conn| {
        let mut consumer = Consumer::builder(&conn)
            .queue("q")
            .exchange("x")
            .routing_key("k")
            .build()
            .unwrap();
        let publisher = Publisher::builder(&conn)
            .exchange("x")
            .routing_key("k")
            .build()
            .unwrap();
        for i in 0..5 {
            publisher.send(&i).unwrap();
        }
        let got: Vec<i64> = consumer
            .iterqueue(carrot::IterQueueOptions::new())
            .map(|m| {
                let m = m.unwrap().expect("a message while the queue has some");
                m.ack().unwrap();
                m.decode::<i64>().unwrap()
            })
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(consumer.fetch().unwrap().is_none());
    }
);

embedded!(iterqueue_limit_and_infinite, |conn| {
    let mut consumer = Consumer::builder(&conn).queue("q").build().unwrap();
    let publisher = Publisher::builder(&conn).routing_key("q").build().unwrap();
    publisher.send("one").unwrap();
    let items: Vec<Option<String>> = consumer
        .iterqueue(carrot::IterQueueOptions::new().limit(3).infinite(true))
        .map(|m| m.unwrap().map(|m| m.decode::<String>().unwrap()))
        .collect();
    assert_eq!(items, vec![Some("one".to_string()), None, None]);
});

embedded!(iterconsume_runs_callbacks_and_yields_each_message, |conn| {
    let mut consumer = Consumer::builder(&conn)
        .queue("q")
        .exchange("x")
        .routing_key("k")
        .build()
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    consumer.register_callback(move |payload, message| {
        assert_eq!(
            payload.as_data().unwrap()["n"],
            counter.load(Ordering::SeqCst)
        );
        counter.fetch_add(1, Ordering::SeqCst);
        message.ack()
    });
    let publisher = Publisher::builder(&conn)
        .exchange("x")
        .routing_key("k")
        .build()
        .unwrap();
    for n in 0..4 {
        publisher.send(&json!({ "n": n })).unwrap();
    }
    let states: Vec<MessageState> = consumer
        .iterconsume(Some(4))
        .map(|m| m.unwrap().state())
        .collect();
    assert_eq!(states, vec![MessageState::Acknowledged; 4]);
    assert_eq!(seen.load(Ordering::SeqCst), 4);
});

embedded!(
    iterconsume_without_callbacks_is_no_callbacks_and_takes_nothing,
    |conn| {
        let mut consumer = Consumer::builder(&conn).queue("q").build().unwrap();
        Publisher::builder(&conn)
            .routing_key("q")
            .build()
            .unwrap()
            .send(&1)
            .unwrap();
        let results: Vec<_> = consumer.iterconsume(Some(3)).collect();
        assert_eq!(results.len(), 1);
        assert!(matches!(results[0], Err(Error::NoCallbacks)));
        assert!(
            consumer.fetch().unwrap().is_some(),
            "the message is still in the queue"
        );
    }
);

embedded!(fetch_with_auto_ack_and_callbacks, |conn| {
    let mut consumer = Consumer::builder(&conn).queue("q").build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    consumer.register_callback(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    Publisher::builder(&conn)
        .routing_key("q")
        .build()
        .unwrap()
        .send(&1)
        .unwrap();
    let m = consumer
        .fetch_with(FetchOptions::new().auto_ack(true).enable_callbacks(true))
        .unwrap()
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(m.ack(), Err(Error::AutoAcknowledged { .. })));
    assert_eq!(conn.queue_info("q").unwrap().message_count, 0);
});

embedded!(consumer_set_and_messaging, |conn| {
    let mut set = ConsumerSet::new(&conn);
    set.from_dict(&json!({
        "webshot": {"exchange": "link_exchange", "exchange_type": "topic", "binding_key": "links.webshot"},
        "retrieve": {"exchange": "link_exchange", "exchange_type": "topic", "binding_key": "links.*"},
    }))
    .unwrap();
    let queues = Arc::new(std::sync::Mutex::new(Vec::new()));
    let q = queues.clone();
    set.register_callback(move |_, message| {
        q.lock().unwrap().push(message.routing_key().to_string());
        message.ack()
    });
    let publisher = Publisher::builder(&conn)
        .exchange("link_exchange")
        .exchange_type(ExchangeType::Topic)
        .routing_key("links.webshot")
        .build()
        .unwrap();
    publisher.send("http://example.org").unwrap();
    assert_eq!(
        set.wait(Some(2)).unwrap(),
        2,
        "both queues match links.webshot"
    );
    assert_eq!(queues.lock().unwrap().len(), 2);

    let mut m = Messaging::builder(&conn)
        .exchange("jobs")
        .queue("jobs")
        .routing_key("jobs")
        .build()
        .unwrap();
    m.send(&json!([1, 2, 3])).unwrap();
    let message = m.fetch().unwrap().unwrap();
    assert_eq!(message.decode::<Vec<i32>>().unwrap(), vec![1, 2, 3]);
    message.ack().unwrap();
    m.close().unwrap();
});

embedded!(discard_all_matching_keeps_the_rest_in_order, |conn| {
    let mut consumer = Consumer::builder(&conn).queue("q").build().unwrap();
    let publisher = Publisher::builder(&conn).routing_key("q").build().unwrap();
    for n in 0..6 {
        publisher
            .send(&json!({"type": if n % 2 == 0 { "feed" } else { "other" }, "n": n}))
            .unwrap();
    }
    let dropped = consumer
        .discard_all_matching(|m| {
            m.decode::<serde_json::Value>()
                .map(|v| v["type"] == "feed")
                .unwrap_or(false)
        })
        .unwrap();
    assert_eq!(dropped, 3);
    let left: Vec<i64> = consumer
        .iterqueue(carrot::IterQueueOptions::new())
        .map(|m| {
            let m = m.unwrap().unwrap();
            m.ack().unwrap();
            m.decode::<serde_json::Value>().unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(left, vec![1, 3, 5]);
});

embedded!(
    the_administrative_twins_act_as_their_async_methods,
    |conn| {
        use carrot::{
            DeleteExchangeOptions, DeleteQueueOptions, ExchangeSpec, FieldTable, QueueSpec,
        };
        assert_err_not_found(conn.exchange_exists("admin-x"));
        conn.declare_exchange(&ExchangeSpec::new("admin-x", ExchangeType::Direct))
            .unwrap();
        conn.exchange_exists("admin-x").unwrap();
        conn.declare_queue(&QueueSpec::new("admin-q")).unwrap();
        conn.bind("admin-q", "admin-x", "k", &FieldTable::new())
            .unwrap();
        let publisher = Publisher::builder(&conn)
            .exchange("admin-x")
            .routing_key("k")
            .auto_declare(false)
            .build()
            .unwrap();
        publisher.send(&1).unwrap();
        assert_eq!(conn.queue_info("admin-q").unwrap().message_count, 1);
        // Bound: the exchange is in use, the queue holds a message.
        assert!(matches!(
            conn.delete_exchange("admin-x", DeleteExchangeOptions::new().if_unused(true)),
            Err(Error::PreconditionFailed(_))
        ));
        assert!(matches!(
            conn.delete_queue("admin-q", DeleteQueueOptions::new().if_empty(true)),
            Err(Error::PreconditionFailed(_))
        ));
        conn.unbind("admin-q", "admin-x", "k", &FieldTable::new())
            .unwrap();
        publisher.send(&2).unwrap(); // routed nowhere now
        assert_eq!(conn.queue_info("admin-q").unwrap().message_count, 1);
        conn.delete_exchange("admin-x", DeleteExchangeOptions::new().if_unused(true))
            .unwrap();
        assert_err_not_found(conn.exchange_exists("admin-x"));
        assert_eq!(
            conn.delete_queue("admin-q", DeleteQueueOptions::new())
                .unwrap(),
            1
        );
        assert_eq!(conn.urls(), std::slice::from_ref(conn.url()));
    }
);

fn assert_err_not_found(result: carrot::Result<()>) {
    assert!(
        matches!(result, Err(Error::NotFound(_))),
        "expected NotFound, got {result:?}"
    );
}

embedded!(
    the_consumer_and_messaging_twins_act_as_their_async_methods,
    |conn| {
        let mut consumer = Consumer::builder(&conn)
            .queue_spec(carrot::QueueSpec::new("twins-q").durable(false))
            .exchange_spec(carrot::ExchangeSpec::new("twins-x", ExchangeType::Fanout))
            .exclusive(true)
            .auto_delete(false)
            .build()
            .unwrap();
        assert!(consumer.exclusive() && consumer.auto_delete() && !consumer.durable());
        assert_eq!(consumer.exchange(), "twins-x");
        assert_eq!(consumer.exchange_type(), ExchangeType::Fanout);
        // consume() subscribes at once: the broker counts the consumer before any message.
        assert_eq!(consumer.consumer_tag(), None);
        consumer.consume().unwrap();
        assert!(consumer.consumer_tag().is_some());
        assert_eq!(conn.queue_info("twins-q").unwrap().consumer_count, 1);
        // An undecodable body goes to the decode-error handler instead of failing wait().
        let decode_errors = Arc::new(AtomicUsize::new(0));
        let d = decode_errors.clone();
        consumer.set_on_decode_error(move |m, _| {
            d.fetch_add(1, Ordering::SeqCst);
            m.ack().unwrap();
        });
        consumer.register_callback(|_, m| m.ack());
        let publisher = Publisher::builder(&conn)
            .exchange("twins-x")
            .exchange_type(ExchangeType::Fanout)
            .build()
            .unwrap();
        assert_eq!(publisher.exchange_type(), ExchangeType::Fanout);
        assert!(publisher.durable());
        publisher
            .send_with(
                "{not json",
                carrot::SendOptions::new().content_type("application/json"),
            )
            .unwrap();
        assert_eq!(consumer.wait(Some(1)).unwrap(), 1);
        assert_eq!(decode_errors.load(Ordering::SeqCst), 1);
        // begin_publish: the message goes now, its confirm is waited for later.
        let message = publisher
            .create_message(&7, &carrot::SendOptions::new())
            .unwrap();
        let pending = publisher
            .begin_publish(message, &carrot::SendOptions::new())
            .unwrap();
        assert!(pending.is_ready()); // an embedded broker stored it already
        pending.wait().unwrap();
        assert_eq!(consumer.wait(Some(1)).unwrap(), 1);
        consumer.cancel().unwrap();

        let mut m = Messaging::builder(&conn)
            .exchange(String::from("twins-m"))
            .queue("twins-m")
            .routing_key("twins-m")
            .build()
            .unwrap();
        assert_eq!(
            (m.exchange(), m.queue(), m.routing_key()),
            ("twins-m", "twins-m", "twins-m")
        );
        m.send(&5).unwrap();
        let message = m
            .fetch_with(FetchOptions::new().auto_ack(true))
            .unwrap()
            .expect("a message");
        assert!(message.acknowledged());
        assert_eq!(message.decode::<i32>().unwrap(), 5);
        assert_eq!(m.publisher().routing_key(), "twins-m");
        assert_eq!(m.consumer().queue(), "twins-m");
    }
);

/// The blocking facade on RabbitMQ: its runtime keeps the connection's I/O going between calls.
#[test]
fn blocking_api_on_rabbitmq() {
    let Some(url) = std::env::var("CARROT_TEST_AMQP_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs CARROT_TEST_AMQP_URL"
        );
        eprintln!("skipped: set CARROT_TEST_AMQP_URL to run against RabbitMQ");
        return;
    };
    let conn = BrokerConnection::connect(&url).unwrap();
    let queue = format!("blocking-{}", std::process::id());
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .durable(false)
        .auto_delete(true)
        .build()
        .unwrap();
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .confirm_publish(true)
        .build()
        .unwrap();
    for n in 0..3 {
        publisher.send(&n).unwrap();
    }
    let got: Vec<i64> = consumer
        .iterqueue(carrot::IterQueueOptions::new())
        .map(|m| {
            let m = m.unwrap().unwrap();
            m.ack().unwrap();
            m.decode::<i64>().unwrap()
        })
        .collect();
    assert_eq!(got, vec![0, 1, 2]);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    consumer.register_callback(move |_, m| {
        s.fetch_add(1, Ordering::SeqCst);
        m.ack()
    });
    publisher.send(&3).unwrap();
    assert_eq!(consumer.wait(Some(1)).unwrap(), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    consumer.close().unwrap();
    conn.close().unwrap();
}
