//! AMQP transactions (`tx.select`, `tx.commit`, `tx.rollback`), as RabbitMQ has them: a
//! transactional publisher's messages are routed at its commit and dropped by a rollback; a
//! transactional consumer's acks and requeues are applied at its commit.

use carrot::{Error, SendOptions};

use crate::support::*;

conformance!(
    a_transactional_publisher_routes_at_commit_and_drops_at_rollback,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).transactional(true).build().await?;
        assert!(publisher.transactional() && !publisher.confirm_publish());
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        assert_eq!(
            conn.queue_info(&t.name("q")).await?.message_count,
            0,
            "held"
        );
        publisher.commit().await?;
        assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 2);
        publisher.send(&3).await?;
        publisher.rollback().await?;
        publisher.commit().await?; // nothing left to commit
        publisher.send(&4).await?;
        publisher.commit().await?;
        assert_eq!(drain_numbers(&mut consumer).await?, vec![1, 2, 4]);
        Ok(())
    }
);

conformance!(a_transactional_consumer_settles_at_commit, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).transactional(true).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    for n in 1..=4 {
        publisher.send(&n).await?;
    }
    let taken = fetch_all(&mut consumer).await?;
    assert_eq!(taken.iter().map(num).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    taken[0].ack()?;
    taken[1].requeue()?;
    taken[2].reject()?;
    // Held: all four still unacknowledged, none ready.
    assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);
    consumer.commit().await?;
    // 1 acknowledged, 2 back in the queue, 3 dropped; 4 still unacknowledged.
    let mut other = t.reader(&conn).build().await?;
    let again = other.fetch().await?.expect("the requeued message");
    assert_eq!((num(&again), again.redelivered()), (2, true));
    again.ack()?;
    assert!(other.fetch().await?.is_none());
    // A rollback drops the settlement: 4 stays unacknowledged, back when the channel closes.
    taken[3].ack()?;
    consumer.rollback().await?;
    consumer.close().await?;
    let back = other
        .fetch()
        .await?
        .expect("the message whose ack was rolled back");
    assert_eq!((num(&back), back.redelivered()), (4, true));
    back.ack()?;
    Ok(())
});

conformance!(
    transactions_are_refused_where_they_cannot_be,
    |t| async move {
        let conn = t.connect().await?;
        let plain = t.publisher(&conn).build().await?;
        assert_err!(plain.commit().await, Error::PreconditionFailed(_));
        assert_err!(
            t.publisher(&conn)
                .transactional(true)
                .confirm_publish(true)
                .build()
                .await,
            Error::InvalidArgument(_)
        );
        let transactional = t.publisher(&conn).transactional(true).build().await?;
        assert_err!(
            transactional
                .send_with(&1, SendOptions::new().mandatory(true))
                .await,
            Error::InvalidArgument(_)
        );
        // A publish to a missing exchange is refused: at the send on the embedded brokers, at
        // the commit on RabbitMQ (whose refusal closes the channel after the send returned:
        // the transaction is lost with it).
        let missing = t
            .publisher(&conn)
            .exchange(t.name("missing"))
            .auto_declare(false)
            .transactional(true)
            .build()
            .await?;
        let outcome = match missing.send(&1).await {
            Ok(()) => missing.commit().await,
            refused => refused,
        };
        assert!(
            matches!(
                outcome,
                Err(Error::NotFound(_)) | Err(Error::ChannelClosed { .. })
            ),
            "{outcome:?}"
        );
        Ok(())
    }
);
