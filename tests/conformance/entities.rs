//! Exchanges and queues: durability, auto-delete, exclusivity, redeclaration, reserved and
//! missing names.

use carrot::{
    Consumer, Error, ExchangeSpec, ExchangeType, FieldTable, Publisher, QueueSpec, SendOptions,
};

use crate::support::*;

conformance_restart!(
    durable_entities_survive_a_restart_transient_ones_do_not,
    |t| async move {
        if !t.can_restart() {
            return Ok(());
        }
        let conn = t.connect().await?;
        conn.declare_exchange(&ExchangeSpec::new(
            t.name("durable-ex"),
            ExchangeType::Topic,
        ))
        .await?;
        conn.declare_exchange(
            &ExchangeSpec::new(t.name("transient-ex"), ExchangeType::Topic).durable(false),
        )
        .await?;
        conn.declare_queue(&QueueSpec::new(t.name("durable-q")))
            .await?;
        conn.declare_queue(&QueueSpec::new(t.name("transient-q")).durable(false))
            .await?;
        // Closed first: a connection left open would be recovered after the restart and
        // declare its transient entities again (what recovery is for).
        conn.close().await?;

        t.restart();
        let conn = t.connect().await?;
        conn.exchange_exists(&t.name("durable-ex")).await?;
        conn.queue_info(&t.name("durable-q")).await?;
        if t.backend.redis {
            // Redis keeps what its own persistence keeps: kombu has no durability of entities.
            conn.exchange_exists(&t.name("transient-ex")).await?;
            conn.queue_info(&t.name("transient-q")).await?;
            return Ok(());
        }
        assert_err!(
            conn.exchange_exists(&t.name("transient-ex")).await,
            Error::NotFound(_)
        );
        assert_err!(
            conn.queue_info(&t.name("transient-q")).await,
            Error::NotFound(_)
        );
        Ok(())
    }
);

conformance_restart!(
    bindings_between_durable_entities_survive_a_restart,
    |t| async move {
        if !t.can_restart() {
            return Ok(());
        }
        let conn = t.connect().await?;
        conn.declare_exchange(&ExchangeSpec::new(t.name("ex"), ExchangeType::Topic))
            .await?;
        conn.declare_queue(&QueueSpec::new(t.name("q"))).await?;
        conn.bind(&t.name("q"), &t.name("ex"), "a.#", &FieldTable::new())
            .await?;

        t.restart();
        let conn = t.connect().await?;
        let publisher = Publisher::builder(&conn)
            .exchange(t.name("ex"))
            .exchange_type(ExchangeType::Topic)
            .build()
            .await?;
        publisher
            .send_with(&1, SendOptions::new().routing_key("a.b"))
            .await?;
        let mut consumer = t.reader(&conn).build().await?;
        assert_eq!(drain_numbers(&mut consumer).await?, vec![1]);
        Ok(())
    }
);

conformance!(
    auto_delete_queue_goes_with_its_last_consumer,
    |t| async move {
        let conn = t.connect().await?;
        let queue = t.name("q");
        let mut first = Consumer::builder(&conn)
            .queue(&queue)
            .auto_delete(true)
            .build()
            .await?;
        let mut second = Consumer::builder(&conn)
            .queue(&queue)
            .auto_delete(true)
            .build()
            .await?;
        // Never consumed from: an auto-delete queue stays until it had a consumer.
        assert_eq!(conn.queue_info(&queue).await?.consumer_count, 0);
        first.consume().await?;
        second.consume().await?;
        assert_eq!(conn.queue_info(&queue).await?.consumer_count, 2);
        first.cancel().await?;
        assert_eq!(conn.queue_info(&queue).await?.consumer_count, 1);
        second.cancel().await?;
        assert_err!(conn.queue_info(&queue).await, Error::NotFound(_));
        Ok(())
    }
);

conformance!(
    auto_delete_queue_goes_when_its_consumer_is_dropped,
    |t| async move {
        let conn = t.connect().await?;
        let queue = t.name("q");
        let mut consumer = Consumer::builder(&conn)
            .queue(&queue)
            .auto_delete(true)
            .build()
            .await?;
        consumer.consume().await?;
        conn.queue_info(&queue).await?;
        drop(consumer);
        queue_gone(&conn, &queue).await;
        Ok(())
    }
);

conformance!(
    auto_delete_exchange_goes_with_its_last_binding,
    |t| async move {
        let conn = t.connect().await?;
        let exchange = t.name("ex");
        let none = FieldTable::new();
        conn.declare_exchange(
            &ExchangeSpec::new(&exchange, ExchangeType::Direct).auto_delete(true),
        )
        .await?;
        conn.declare_queue(&QueueSpec::new(t.name("q1"))).await?;
        conn.declare_queue(&QueueSpec::new(t.name("q2"))).await?;
        // Never bound: it stays.
        conn.exchange_exists(&exchange).await?;
        conn.bind(&t.name("q1"), &exchange, "a", &none).await?;
        conn.bind(&t.name("q2"), &exchange, "b", &none).await?;
        conn.unbind(&t.name("q1"), &exchange, "a", &none).await?;
        conn.exchange_exists(&exchange).await?;
        conn.unbind(&t.name("q2"), &exchange, "b", &none).await?;
        assert_err!(conn.exchange_exists(&exchange).await, Error::NotFound(_));
        Ok(())
    }
);

conformance!(
    auto_delete_exchange_goes_when_its_last_bound_queue_is_deleted,
    |t| async move {
        let conn = t.connect().await?;
        let exchange = t.name("ex");
        conn.declare_exchange(
            &ExchangeSpec::new(&exchange, ExchangeType::Fanout).auto_delete(true),
        )
        .await?;
        conn.declare_queue(&QueueSpec::new(t.name("q"))).await?;
        conn.bind(&t.name("q"), &exchange, "", &FieldTable::new())
            .await?;
        conn.delete_queue(&t.name("q"), carrot::DeleteQueueOptions::new())
            .await?;
        assert_err!(conn.exchange_exists(&exchange).await, Error::NotFound(_));
        Ok(())
    }
);

conformance!(
    auto_delete_consumer_takes_its_exchange_along,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t
            .consumer(&conn)
            .auto_delete(true)
            .exchange_auto_delete(true)
            .build()
            .await?;
        consumer.consume().await?;
        conn.exchange_exists(&t.name("ex")).await?;
        consumer.cancel().await?;
        assert_err!(conn.queue_info(&t.name("q")).await, Error::NotFound(_));
        assert_err!(
            conn.exchange_exists(&t.name("ex")).await,
            Error::NotFound(_)
        );
        Ok(())
    }
);

conformance!(
    exclusive_queue_is_locked_to_other_connections,
    |t| async move {
        let owner_conn = t.connect().await?;
        let other_conn = t.connect().await?;
        let queue = t.name("q");
        let mut owner = Consumer::builder(&owner_conn)
            .queue(&queue)
            .exclusive(true)
            .build()
            .await?;

        let err = Consumer::builder(&other_conn)
            .queue(&queue)
            .exclusive(true)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ResourceLocked(_)), "{err:?}");
        assert_eq!(err.reply_code(), Some(405));
        assert_err!(
            Consumer::builder(&other_conn).queue(&queue).build().await,
            Error::ResourceLocked(_)
        );
        assert_err!(
            other_conn.queue_info(&queue).await,
            Error::ResourceLocked(_)
        );
        // Each refusal on a fresh consumer: on RabbitMQ a refusal closes the channel.
        let intruder = || {
            Consumer::builder(&other_conn)
                .queue(&queue)
                .auto_declare(false)
                .build()
        };
        assert_err!(intruder().await?.fetch().await, Error::ResourceLocked(_));
        assert_err!(intruder().await?.consume().await, Error::ResourceLocked(_));
        assert_err!(other_conn.purge(&queue).await, Error::ResourceLocked(_));

        // Exclusivity is about consuming: anyone may publish to the queue.
        Publisher::builder(&other_conn)
            .routing_key(&queue)
            .build()
            .await?
            .send(&7)
            .await?;
        // The owner, on another channel of its connection, may use it.
        assert_eq!(owner_conn.queue_info(&queue).await?.message_count, 1);
        assert_eq!(drain_numbers(&mut owner).await?, vec![7]);
        Ok(())
    }
);

conformance!(
    exclusive_queue_is_deleted_when_its_connection_closes,
    |t| async move {
        let owner_conn = t.connect().await?;
        let other_conn = t.connect().await?;
        let queue = t.name("q");
        let _owner = Consumer::builder(&owner_conn)
            .queue(&queue)
            .exclusive(true)
            .build()
            .await?;
        assert_err!(
            other_conn.queue_info(&queue).await,
            Error::ResourceLocked(_)
        );
        owner_conn.close().await?;
        queue_gone(&other_conn, &queue).await;
        // Free again: another connection may declare it now.
        Consumer::builder(&other_conn)
            .queue(&queue)
            .exclusive(true)
            .build()
            .await?;
        Ok(())
    }
);

conformance!(exclusive_implies_auto_delete, |t| async move {
    let conn = t.connect().await?;
    let queue = t.name("q");
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .exclusive(true)
        .build()
        .await?;
    consumer.consume().await?;
    consumer.cancel().await?;
    assert_err!(conn.queue_info(&queue).await, Error::NotFound(_));
    Ok(())
});

conformance!(
    redeclaring_a_queue_with_other_settings_fails,
    |t| async move {
        let conn = t.connect().await?;
        let name = t.name("q");
        conn.declare_queue(&QueueSpec::new(&name)).await?;
        // The same settings again are fine.
        conn.declare_queue(&QueueSpec::new(&name)).await?;
        for other in [
            QueueSpec::new(&name).durable(false),
            QueueSpec::new(&name).auto_delete(true),
            QueueSpec::new(&name).max_priority(5),
        ] {
            let err = conn.declare_queue(&other).await.unwrap_err();
            assert!(
                matches!(err, Error::PreconditionFailed(_)),
                "{other:?}: {err:?}"
            );
            assert_eq!(err.reply_code(), Some(406));
        }
        // The queue is unchanged.
        conn.declare_queue(&QueueSpec::new(&name)).await?;
        Ok(())
    }
);

conformance!(
    redeclaring_an_exchange_with_other_settings_fails,
    |t| async move {
        let conn = t.connect().await?;
        let name = t.name("ex");
        conn.declare_exchange(&ExchangeSpec::new(&name, ExchangeType::Topic))
            .await?;
        conn.declare_exchange(&ExchangeSpec::new(&name, ExchangeType::Topic))
            .await?;
        for other in [
            ExchangeSpec::new(&name, ExchangeType::Direct),
            ExchangeSpec::new(&name, ExchangeType::Topic).durable(false),
            ExchangeSpec::new(&name, ExchangeType::Topic).auto_delete(true),
        ] {
            let err = conn.declare_exchange(&other).await.unwrap_err();
            assert!(
                matches!(err, Error::PreconditionFailed(_)),
                "{other:?}: {err:?}"
            );
            assert_eq!(err.reply_code(), Some(406));
        }
        Ok(())
    }
);

conformance!(
    publisher_and_consumer_disagreeing_on_an_exchange_fail,
    |t| async move {
        let conn = t.connect().await?;
        t.publisher(&conn)
            .exchange_type(ExchangeType::Topic)
            .build()
            .await?;
        assert_err!(
            t.consumer(&conn).build().await,
            Error::PreconditionFailed(_)
        );
        Ok(())
    }
);

conformance!(reserved_amq_names_are_refused, |t| async move {
    let conn = t.connect().await?;
    let reserved = format!("amq.{}", t.scope);
    let err = conn
        .declare_exchange(&ExchangeSpec::new(&reserved, ExchangeType::Direct))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    assert_eq!(err.reply_code(), Some(403));
    assert_err!(
        conn.declare_queue(&QueueSpec::new(&reserved)).await,
        Error::AccessRefused(_)
    );
    assert_err!(
        Publisher::builder(&conn).exchange(&reserved).build().await,
        Error::AccessRefused(_)
    );
    assert_err!(
        conn.delete_exchange("amq.direct", carrot::DeleteExchangeOptions::new())
            .await,
        Error::AccessRefused(_)
    );
    conn.exchange_exists("amq.direct").await?;
    Ok(())
});

conformance!(missing_exchanges_and_queues_are_not_found, |t| async move {
    let conn = t.connect().await?;
    let missing_exchange = t.name("no-such-exchange");
    let missing_queue = t.name("no-such-queue");
    let err = conn.exchange_exists(&missing_exchange).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(err.reply_code(), Some(404));
    assert_err!(conn.queue_info(&missing_queue).await, Error::NotFound(_));

    conn.declare_queue(&QueueSpec::new(t.name("q"))).await?;
    assert_err!(
        conn.bind(&t.name("q"), &missing_exchange, "k", &FieldTable::new())
            .await,
        Error::NotFound(_)
    );
    conn.declare_exchange(&ExchangeSpec::new(t.name("ex"), ExchangeType::Direct))
        .await?;
    assert_err!(
        conn.bind(&missing_queue, &t.name("ex"), "k", &FieldTable::new())
            .await,
        Error::NotFound(_)
    );

    let mut consumer = Consumer::builder(&conn)
        .queue(&missing_queue)
        .auto_declare(false)
        .build()
        .await?;
    assert_err!(consumer.fetch().await, Error::NotFound(_));

    let publisher = Publisher::builder(&conn)
        .exchange(&missing_exchange)
        .auto_declare(false)
        .build()
        .await?;
    assert_err!(publisher.send(&1).await, Error::NotFound(_));
    Ok(())
});

conformance!(
    a_queue_declared_without_a_name_gets_one_from_the_broker,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = Consumer::builder(&conn)
            .exchange(t.name("ex"))
            .routing_key("k")
            .build()
            .await?;
        let name = consumer.queue().to_string();
        assert!(name.starts_with("amq.gen-"), "{name}");
        conn.queue_info(&name).await?;
        t.publisher(&conn).build().await?.send(&1).await?;
        assert_eq!(drain_numbers(&mut consumer).await?, vec![1]);
        Ok(())
    }
);

conformance!(queue_info_counts_messages_and_consumers, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    for i in 0..3 {
        publisher.send(&i).await?;
    }
    let info = conn.queue_info(&t.name("q")).await?;
    assert_eq!(
        (info.name.as_str(), info.message_count, info.consumer_count),
        (t.name("q").as_str(), 3, 0)
    );
    let message = consumer.fetch().await?.expect("a message");
    // An unacknowledged message is not ready, so not counted.
    assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 2);
    message.ack()?;
    consumer.consume().await?;
    assert_eq!(conn.queue_info(&t.name("q")).await?.consumer_count, 1);
    Ok(())
});

conformance!(delete_queue_if_unused_and_if_empty, |t| async move {
    let conn = t.connect().await?;
    let queue = t.name("q");
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    publisher.send(&2).await?;
    consumer.consume().await?;
    assert_err!(
        conn.delete_queue(&queue, carrot::DeleteQueueOptions::new().if_unused(true))
            .await,
        Error::PreconditionFailed(_)
    );
    // Closing the consumer puts the messages it was given back.
    consumer.close().await?;
    assert_err!(
        conn.delete_queue(&queue, carrot::DeleteQueueOptions::new().if_empty(true))
            .await,
        Error::PreconditionFailed(_)
    );
    assert_eq!(
        conn.delete_queue(&queue, carrot::DeleteQueueOptions::new().if_unused(true))
            .await?,
        2
    );
    assert_err!(conn.queue_info(&queue).await, Error::NotFound(_));
    Ok(())
});

conformance!(delete_exchange_if_unused, |t| async move {
    let conn = t.connect().await?;
    let _consumer = t.consumer(&conn).build().await?;
    assert_err!(
        conn.delete_exchange(
            &t.name("ex"),
            carrot::DeleteExchangeOptions::new().if_unused(true)
        )
        .await,
        Error::PreconditionFailed(_)
    );
    conn.delete_exchange(&t.name("ex"), carrot::DeleteExchangeOptions::new())
        .await?;
    assert_err!(
        conn.exchange_exists(&t.name("ex")).await,
        Error::NotFound(_)
    );
    Ok(())
});

conformance!(purge_drops_waiting_messages, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    for i in 0..4 {
        publisher.send(&i).await?;
    }
    assert_eq!(conn.purge(&t.name("q")).await?, 4);
    assert!(consumer.fetch().await?.is_none());
    Ok(())
});

// RabbitMQ answers delete-ok for what does not exist (kombu and pika rely on it when they
// clean up); only the default and amq. exchanges are refused.
conformance!(
    deleting_what_does_not_exist_is_not_an_error,
    |t| async move {
        let conn = t.connect().await?;
        let (exchange, queue) = (t.name("never-declared-ex"), t.name("never-declared-q"));
        conn.delete_exchange(&exchange, carrot::DeleteExchangeOptions::new())
            .await?;
        conn.delete_exchange(
            &exchange,
            carrot::DeleteExchangeOptions::new().if_unused(true),
        )
        .await?;
        assert_eq!(
            conn.delete_queue(&queue, carrot::DeleteQueueOptions::new())
                .await?,
            0
        );
        let strict = carrot::DeleteQueueOptions::new()
            .if_unused(true)
            .if_empty(true);
        assert_eq!(conn.delete_queue(&queue, strict).await?, 0);
        // Deleting twice: the second finds nothing and says so the same way.
        conn.declare_queue(&QueueSpec::new(&queue)).await?;
        assert_eq!(
            conn.delete_queue(&queue, carrot::DeleteQueueOptions::new())
                .await?,
            0
        );
        assert_eq!(
            conn.delete_queue(&queue, carrot::DeleteQueueOptions::new())
                .await?,
            0
        );
        assert_err!(conn.queue_info(&queue).await, Error::NotFound(_));
        for reserved in ["", "amq.direct"] {
            let err = conn
                .delete_exchange(reserved, carrot::DeleteExchangeOptions::new())
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::AccessRefused(_)),
                "{reserved:?}: {err:?}"
            );
            assert_eq!(err.reply_code(), Some(403));
        }
        // The connection (and its channel) go on as before.
        conn.exchange_exists("amq.direct").await?;
        Ok(())
    }
);
