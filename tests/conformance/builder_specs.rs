//! Builders given whole declarations (`QueueSpec`, `ExchangeSpec`) declare exactly them on
//! every broker, the seed's keywords set one entity each, what a builder was given can be
//! read back from what it built, and an exclusive queue is auto-delete whatever the order of
//! the builder calls.

use std::time::Duration;

use carrot::{
    Consumer, ConsumerSet, Error, ExchangeSpec, ExchangeType, Messaging, Publisher, QueueSpec,
};

use crate::support::*;

/// Redeclaring with `spec` is accepted and with `other` refused: the broker holds `spec`.
async fn queue_is_declared_as(
    conn: &carrot::BrokerConnection,
    spec: &QueueSpec,
    other: &QueueSpec,
) -> TestResult {
    conn.declare_queue(spec).await?;
    assert_err!(
        conn.declare_queue(other).await,
        Error::PreconditionFailed(_)
    );
    Ok(())
}

conformance!(
    a_consumer_builder_declares_its_queue_spec_with_ttl_and_dead_letter_exchange,
    |t| async move {
        let conn = t.connect().await?;
        let dlx = ExchangeSpec::new(t.name("dlx"), ExchangeType::Direct);
        // The dead-letter queue, declared and bound through a builder too.
        let mut dead = Consumer::builder(&conn)
            .queue_spec(QueueSpec::new(t.name("dead")))
            .exchange_spec(dlx.clone())
            .routing_key("dead")
            .build()
            .await?;
        let spec = QueueSpec::new(t.name("q"))
            .message_ttl(Duration::from_millis(30))
            .dead_letter_exchange(&dlx.name)
            .dead_letter_routing_key("dead");
        let exchange = ExchangeSpec::new(t.name("ex"), ExchangeType::Topic).durable(false);
        let built = Consumer::builder(&conn)
            .queue_spec(spec.clone())
            .exchange_spec(exchange.clone())
            .routing_key("jobs.#")
            .build()
            .await;
        if t.backend.redis {
            // kombu's Redis transport has no message TTL nor dead-lettering.
            assert_err!(built, Error::Unsupported(_));
            return Ok(());
        }
        let consumer = built?;

        // What the builder was given reads back.
        assert_eq!(consumer.queue_spec(), &spec);
        assert_eq!(consumer.exchange_spec(), &exchange);
        assert_eq!(consumer.queue(), t.name("q"));
        assert_eq!(consumer.exchange(), t.name("ex"));
        assert_eq!(consumer.exchange_type(), ExchangeType::Topic);
        assert_eq!(consumer.routing_key(), "jobs.#");
        assert!(consumer.durable() && !consumer.auto_delete() && !consumer.exclusive());
        assert!(!consumer.no_ack() && !consumer.auto_ack());

        // The broker holds the spec: the same is accepted, another TTL or none is refused,
        // and the exchange is not durable.
        queue_is_declared_as(
            &conn,
            &spec,
            &QueueSpec::new(t.name("q"))
                .dead_letter_exchange(&dlx.name)
                .dead_letter_routing_key("dead"),
        )
        .await?;
        queue_is_declared_as(
            &conn,
            &spec,
            &spec.clone().message_ttl(Duration::from_millis(31)),
        )
        .await?;
        assert_err!(
            conn.declare_exchange(&exchange.clone().durable(true)).await,
            Error::PreconditionFailed(_)
        );

        // And acts on it: nobody reads `q`, its message expires into the dead-letter queue.
        let publisher = Publisher::builder(&conn)
            .exchange_spec(exchange.clone())
            .routing_key("jobs.import")
            .build()
            .await?;
        assert_eq!(publisher.exchange_spec(), &exchange);
        assert_eq!(publisher.exchange(), t.name("ex"));
        assert_eq!(publisher.exchange_type(), ExchangeType::Topic);
        assert!(!publisher.durable() && !publisher.auto_delete());
        assert_eq!(publisher.routing_key(), "jobs.import");
        publisher.send(&"expires").await?;
        until_count(&conn, &t.name("dead"), 1).await;
        assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);
        let message = dead.fetch().await?.expect("the dead letter");
        assert_eq!(message.decode::<String>()?, "expires");
        assert_eq!(message.routing_key(), "dead");
        let deaths = message
            .headers()
            .and_then(|h| h.get("x-death"))
            .expect("x-death header");
        let text = format!("{deaths:?}");
        assert!(
            text.contains("expired") && text.contains(&t.name("q")),
            "{text}"
        );
        message.ack()?;
        Ok(())
    }
);

conformance!(
    keywords_after_a_spec_change_its_fields_and_each_names_one_entity,
    |t| async move {
        let conn = t.connect().await?;
        let builder = |spec: QueueSpec, exchange_arguments: carrot::FieldTable| {
            Consumer::builder(&conn)
                .queue_spec(spec)
                .exchange_spec(ExchangeSpec::new(t.name("ex"), ExchangeType::Fanout))
                .durable(false)
                .exchange_durable(true)
                .exchange_arguments(exchange_arguments)
        };
        let max_length = QueueSpec::new(t.name("q")).max_length(5);
        let ae = carrot::table([("alternate-exchange", t.name("ae").into())]);
        let consumer = if t.backend.redis {
            // kombu's Redis transport has no length limit nor alternate exchange: each refused,
            // and the keywords checked without them.
            let none = carrot::FieldTable::new;
            assert_err!(
                builder(max_length, none()).build().await,
                Error::Unsupported(_)
            );
            assert_err!(
                builder(QueueSpec::new(t.name("q")), ae).build().await,
                Error::Unsupported(_)
            );
            builder(QueueSpec::new(t.name("q")), none()).build().await?
        } else {
            builder(max_length, ae).build().await?
        };
        // `durable` is the queue's on a consumer; the exchange keeps its own.
        assert!(!consumer.durable() && !consumer.queue_spec().durable);
        assert!(consumer.exchange_spec().durable);
        if t.backend.redis {
            queue_is_declared_as(
                &conn,
                &QueueSpec::new(t.name("q")).durable(false),
                &QueueSpec::new(t.name("q")),
            )
            .await?;
        } else {
            assert!(consumer.queue_spec().arguments.contains_key("x-max-length"));
            assert!(consumer
                .exchange_spec()
                .arguments
                .contains_key("alternate-exchange"));
            queue_is_declared_as(
                &conn,
                &QueueSpec::new(t.name("q")).max_length(5).durable(false),
                &QueueSpec::new(t.name("q")).max_length(5),
            )
            .await?;
            let exchange = ExchangeSpec::new(t.name("ex"), ExchangeType::Fanout)
                .argument("alternate-exchange", t.name("ae"));
            conn.declare_exchange(&exchange).await?;
            assert_err!(
                conn.declare_exchange(&ExchangeSpec::new(t.name("ex"), ExchangeType::Fanout))
                    .await,
                Error::PreconditionFailed(_)
            );
        }

        // On Messaging, `exchange_durable` and `queue_durable` set one entity each.
        let messaging = Messaging::builder(&conn)
            .exchange(t.name("ex2"))
            .queue(t.name("q2"))
            .routing_key("k")
            .exchange_durable(false)
            .queue_durable(true)
            .build()
            .await?;
        assert!(!messaging.exchange_spec().durable && !messaging.publisher().durable());
        assert!(messaging.queue_spec().durable);
        assert_eq!(messaging.queue(), t.name("q2"));
        assert_eq!(messaging.exchange(), t.name("ex2"));
        assert_eq!(messaging.routing_key(), "k");
        assert_err!(
            conn.declare_exchange(&ExchangeSpec::new(t.name("ex2"), ExchangeType::Direct))
                .await,
            Error::PreconditionFailed(_)
        );
        conn.declare_queue(&QueueSpec::new(t.name("q2"))).await?;

        // A ConsumerSet dictionary reaches the exchange's arguments too.
        let mut set = ConsumerSet::new(&conn);
        let added = set
            .add_consumer_from_dict(
                &t.name("q3"),
                &serde_json::json!({
                    "exchange": t.name("ex3"), "exchange_type": "topic", "routing_key": "a.*",
                    "exchange_arguments": {"alternate-exchange": t.name("ae")},
                }),
            )
            .await;
        if t.backend.redis {
            // kombu's Redis transport has no alternate exchange.
            assert_err!(added, Error::Unsupported(_));
            return Ok(());
        }
        added?;
        let declared = set.consumers()[0].exchange_spec().clone();
        assert_eq!(
            declared,
            ExchangeSpec::new(t.name("ex3"), ExchangeType::Topic)
                .argument("alternate-exchange", t.name("ae"))
        );
        conn.declare_exchange(&declared).await?;
        assert_err!(
            conn.declare_exchange(&ExchangeSpec::new(t.name("ex3"), ExchangeType::Topic))
                .await,
            Error::PreconditionFailed(_)
        );
        Ok(())
    }
);

conformance!(
    an_exclusive_queue_is_auto_delete_whatever_the_order_of_the_calls,
    |t| async move {
        let conn = t.connect().await?;
        let builders = [
            (
                "exclusive first",
                Consumer::builder(&conn)
                    .queue(t.name("q1"))
                    .exclusive(true)
                    .auto_delete(false),
            ),
            (
                "auto_delete first",
                Consumer::builder(&conn)
                    .queue(t.name("q2"))
                    .auto_delete(false)
                    .exclusive(true),
            ),
            (
                "spec",
                Consumer::builder(&conn).queue_spec(
                    QueueSpec::new(t.name("q3"))
                        .exclusive(true)
                        .auto_delete(false),
                ),
            ),
        ];
        for (how, builder) in builders {
            let mut consumer = builder.build().await?;
            assert!(consumer.exclusive(), "{how}");
            assert!(consumer.auto_delete(), "{how}");
            assert!(consumer.queue_spec().auto_delete, "{how}");
            let queue = consumer.queue().to_string();
            // The broker holds an auto-delete queue: it goes with its last consumer.
            consumer.consume().await?;
            assert_eq!(conn.queue_info(&queue).await?.consumer_count, 1, "{how}");
            consumer.cancel().await?;
            queue_gone(&conn, &queue).await;
        }

        // The same rule on Messaging and on ConsumerSet dictionaries.
        let messaging = Messaging::builder(&conn)
            .queue(t.name("q4"))
            .exclusive(true)
            .auto_delete(false)
            .build()
            .await?;
        assert!(messaging.queue_spec().exclusive && messaging.queue_spec().auto_delete);
        let mut set = ConsumerSet::new(&conn);
        set.add_consumer_from_dict(
            &t.name("q5"),
            &serde_json::json!({"exclusive": true, "auto_delete": false}),
        )
        .await?;
        assert!(set.consumers()[0].exclusive() && set.consumers()[0].auto_delete());
        set.consume().await?;
        set.cancel().await?;
        queue_gone(&conn, &t.name("q5")).await;
        Ok(())
    }
);
