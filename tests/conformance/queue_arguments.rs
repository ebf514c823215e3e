//! Queue arguments declared through `QueueSpec`: max length, message TTL, dead-lettering,
//! expiry and queue types, with RabbitMQ's semantics on every backend.

use std::time::Duration;

use carrot::{
    Error, ExchangeSpec, ExchangeType, FetchOptions, FieldTable, OutgoingMessage, Properties,
    QueueSpec, QueueType, SendOptions,
};

use crate::support::*;

/// A reader of the scenario's queue `name`, which it does not redeclare.
async fn reader_of(
    t: &Scenario,
    conn: &carrot::BrokerConnection,
    name: &str,
) -> carrot::Result<carrot::Consumer> {
    carrot::Consumer::builder(conn)
        .queue(t.name(name))
        .auto_declare(false)
        .build()
        .await
}

conformance!(max_length_drops_the_oldest_messages, |t| async move {
    let conn = t.connect().await?;
    let q = t.name("q");
    let declared = conn.declare_queue(&QueueSpec::new(&q).max_length(2)).await;
    if t.backend.redis {
        // kombu's Redis transport has no length limit.
        assert_err!(declared, Error::Unsupported(_));
        return Ok(());
    }
    declared?;
    let publisher = carrot::Publisher::builder(&conn)
        .routing_key(&q)
        .build()
        .await?;
    for n in 0..3 {
        publisher.send(&n).await?;
    }
    let mut reader = t.reader(&conn).build().await?;
    assert_eq!(drain_numbers(&mut reader).await?, vec![1, 2]);
    Ok(())
});

/// A queue `q` whose dead letters go through exchange `dlx` (key "dead") to queue `dead`.
async fn dead_letter_setup(
    t: &Scenario,
    conn: &carrot::BrokerConnection,
    spec: QueueSpec,
) -> carrot::Result<()> {
    let dlx = t.name("dlx");
    conn.declare_exchange(&ExchangeSpec::new(&dlx, ExchangeType::Direct))
        .await?;
    conn.declare_queue(&QueueSpec::new(t.name("dead"))).await?;
    conn.bind(&t.name("dead"), &dlx, "dead", &FieldTable::new())
        .await?;
    conn.declare_queue(
        &spec
            .dead_letter_exchange(&dlx)
            .dead_letter_routing_key("dead"),
    )
    .await?;
    Ok(())
}

conformance!(expired_messages_are_dead_lettered, |t| async move {
    let conn = t.connect().await?;
    let spec = QueueSpec::new(t.name("q")).message_ttl(Duration::from_millis(30));
    let declared = dead_letter_setup(&t, &conn, spec).await;
    if t.backend.redis {
        // kombu's Redis transport has no message TTL nor dead-lettering.
        assert_err!(declared, Error::Unsupported(_));
        return Ok(());
    }
    declared?;
    let publisher = carrot::Publisher::builder(&conn)
        .routing_key(t.name("q"))
        .build()
        .await?;
    publisher.send(&"expires").await?;
    // Nobody reads `q`: the broker expires the message by itself.
    until_count(&conn, &t.name("dead"), 1).await;
    assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);
    let mut dead = reader_of(&t, &conn, "dead").await?;
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
    Ok(())
});

conformance!(rejected_messages_are_dead_lettered, |t| async move {
    let conn = t.connect().await?;
    let declared = dead_letter_setup(&t, &conn, QueueSpec::new(t.name("q"))).await;
    if t.backend.redis {
        // kombu's Redis transport has no dead-lettering.
        assert_err!(declared, Error::Unsupported(_));
        return Ok(());
    }
    declared?;
    let publisher = carrot::Publisher::builder(&conn)
        .routing_key(t.name("q"))
        .build()
        .await?;
    publisher.send(&1).await?;
    publisher.send(&2).await?;
    let mut consumer = t.reader(&conn).build().await?;
    consumer.fetch().await?.expect("1").reject()?;
    consumer.fetch().await?.expect("2").requeue()?;
    until_count(&conn, &t.name("dead"), 1).await;
    let mut dead = reader_of(&t, &conn, "dead").await?;
    assert_eq!(
        drain_numbers(&mut dead).await?,
        vec![1],
        "only the rejected one"
    );
    let again = consumer
        .fetch_with(FetchOptions::new())
        .await?
        .expect("the requeued one");
    assert_eq!(num(&again), 2);
    Ok(())
});

conformance!(
    per_message_expiration_and_overflow_are_dead_lettered,
    |t| async move {
        let conn = t.connect().await?;
        let spec = QueueSpec::new(t.name("q")).max_length(1);
        let declared = dead_letter_setup(&t, &conn, spec).await;
        if t.backend.redis {
            // kombu's Redis transport has no length limit nor dead-lettering.
            assert_err!(declared, Error::Unsupported(_));
            return Ok(());
        }
        declared?;
        let publisher = carrot::Publisher::builder(&conn)
            .routing_key(t.name("q"))
            .build()
            .await?;
        // Overflow: the older message is pushed out.
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        until_count(&conn, &t.name("dead"), 1).await;
        let mut dead = reader_of(&t, &conn, "dead").await?;
        let first = dead.fetch().await?.expect("the overflowed message");
        assert_eq!(num(&first), 1);
        let reason = first
            .headers()
            .and_then(|h| h.get("x-first-death-reason"))
            .cloned();
        assert_eq!(reason, Some("maxlen".into()));
        first.ack()?;
        let mut reader = t.reader(&conn).build().await?;
        assert_eq!(drain_numbers(&mut reader).await?, vec![2]);
        // A message with its own expiration and no queue TTL dies at the head of the queue.
        let expiring = OutgoingMessage::new(
            b"4".to_vec(),
            Properties::default()
                .with_content_type("application/json")
                .with_expiration("0"),
        );
        publisher.publish(expiring, &SendOptions::new()).await?;
        until_count(&conn, &t.name("dead"), 1).await;
        let message = dead.fetch().await?.expect("the expired message");
        assert_eq!(num(&message), 4);
        assert_eq!(
            message.properties().expiration(),
            None,
            "expiration is removed"
        );
        Ok(())
    }
);

conformance!(unused_queues_expire, |t| async move {
    let conn = t.connect().await?;
    let q = t.name("q");
    let declared = conn
        .declare_queue(&QueueSpec::new(&q).expires(Duration::from_millis(100)))
        .await;
    if t.backend.redis {
        // kombu's Redis transport has no queue expiry.
        assert_err!(declared, Error::Unsupported(_));
        return Ok(());
    }
    declared?;
    // Looking at the queue (a passive declare) counts as using it, so look once, well after
    // it should have expired.
    pause(Duration::from_millis(800)).await;
    assert_err!(conn.queue_info(&q).await, Error::NotFound(_));
    Ok(())
});

conformance!(quorum_queues_work_and_must_be_durable, |t| async move {
    let conn = t.connect().await?;
    let q = t.name("q");
    let declared = conn
        .declare_queue(&QueueSpec::new(&q).queue_type(QueueType::Quorum))
        .await;
    if t.backend.redis {
        // kombu's Redis transport has only its lists: no quorum queues (a bad one is still 406).
        assert_err!(declared, Error::Unsupported(_));
    } else {
        declared?;
        let publisher = carrot::Publisher::builder(&conn)
            .routing_key(&q)
            .build()
            .await?;
        publisher
            .send_with(&7, SendOptions::new().mandatory(true))
            .await?;
        let mut reader = t.reader(&conn).build().await?;
        assert_eq!(drain_numbers(&mut reader).await?, vec![7]);
    }
    assert_err!(
        conn.declare_queue(
            &QueueSpec::new(t.name("transient"))
                .durable(false)
                .queue_type(QueueType::Quorum)
        )
        .await,
        Error::PreconditionFailed(_)
    );
    Ok(())
});

conformance!(unknown_queue_types_are_refused, |t| async move {
    let conn = t.connect().await?;
    let result = conn
        .declare_queue(&QueueSpec::new(t.name("q")).argument("x-queue-type", "no-such-type"))
        .await;
    assert_err!(result, Error::PreconditionFailed(_));
    Ok(())
});
