//! Delivery: modes, acknowledgement exactly once, redelivery, qos, flow, mandatory, immediate,
//! priorities and competing consumers.

use std::collections::BTreeSet;
use std::time::Duration;

use carrot::{DeliveryMode, Error, ExchangeType, MessageState, Publisher, SendOptions};

use crate::support::*;

conformance_restart!(
    transient_messages_are_lost_on_restart_persistent_ones_kept,
    |t| async move {
        if !t.can_restart() {
            return Ok(());
        }
        let conn = t.connect().await?;
        let _declare = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let transient = SendOptions::new().delivery_mode(DeliveryMode::Transient);
        let persistent = SendOptions::new().delivery_mode(DeliveryMode::Persistent);
        publisher.send_with(&1, transient.clone()).await?;
        publisher.send(&2).await?; // persistent by default
        publisher.send_with(&3, transient).await?;
        publisher.send_with(&4, persistent).await?;
        t.publisher(&conn)
            .delivery_mode(DeliveryMode::Transient)
            .build()
            .await?
            .send(&5)
            .await?;

        t.restart();
        let conn = t.connect().await?;
        let mut consumer = t.reader(&conn).build().await?;
        // Redis keeps what its own persistence keeps (kombu has no delivery modes): all of them.
        let expected = if t.backend.redis {
            vec![1, 2, 3, 4, 5]
        } else {
            vec![2, 4]
        };
        assert_eq!(drain_numbers(&mut consumer).await?, expected);
        Ok(())
    }
);

conformance_restart!(
    unacknowledged_persistent_messages_survive_a_restart,
    |t| async move {
        if !t.can_restart() {
            return Ok(());
        }
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        t.publisher(&conn).build().await?.send(&1).await?;
        let held = consumer.fetch().await?.expect("a message");
        assert!(!held.redelivered());

        t.restart();
        if t.backend.redis {
            // The delivery's record survives in Redis and the connection recovers: the
            // delivery is still held, and requeuing it now gives it back.
            held.requeue()?;
        }
        let conn = t.connect().await?;
        let mut consumer = t.reader(&conn).build().await?;
        let message = consumer
            .fetch()
            .await?
            .expect("the message, back in its queue");
        assert_eq!(num(&message), 1);
        assert!(message.redelivered());
        Ok(())
    }
);

conformance!(messages_are_persistent_by_default, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    publisher
        .send_with(
            &2,
            SendOptions::new().delivery_mode(DeliveryMode::Transient),
        )
        .await?;
    let all = fetch_all(&mut consumer).await?;
    let modes: Vec<_> = all.iter().map(|m| m.delivery_mode()).collect();
    assert_eq!(
        modes,
        vec![
            Some(DeliveryMode::Persistent),
            Some(DeliveryMode::Transient)
        ]
    );
    Ok(())
});

conformance!(ack_is_exactly_once, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    t.publisher(&conn).build().await?.send(&1).await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_eq!(message.state(), MessageState::Received);
    assert!(!message.acknowledged());
    message.ack()?;
    assert_eq!(message.state(), MessageState::Acknowledged);
    assert!(message.acknowledged());
    for second in [message.ack(), message.reject(), message.requeue()] {
        assert_err!(
            second,
            Error::AlreadyAcknowledged {
                state: MessageState::Acknowledged,
                ..
            }
        );
    }
    // The broker forgot it: closing the consumer gives nothing back.
    consumer.close().await?;
    let mut reader = t.reader(&conn).build().await?;
    assert!(reader.fetch().await?.is_none());
    Ok(())
});

conformance!(
    reject_is_exactly_once_and_drops_the_message,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        t.publisher(&conn).build().await?.send(&1).await?;
        let message = consumer.fetch().await?.expect("a message");
        message.reject()?;
        assert_eq!(message.state(), MessageState::Rejected);
        let err = message.ack().unwrap_err();
        assert!(
            matches!(
                err,
                Error::AlreadyAcknowledged {
                    state: MessageState::Rejected,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_err!(message.requeue(), Error::AlreadyAcknowledged { .. });
        assert!(consumer.fetch().await?.is_none());
        consumer.close().await?;
        let mut reader = t.reader(&conn).build().await?;
        assert!(reader.fetch().await?.is_none());
        Ok(())
    }
);

conformance!(
    requeue_is_exactly_once_and_redelivers_first,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        let first = consumer.fetch().await?.expect("a message");
        assert!(!first.redelivered());
        first.requeue()?;
        assert_eq!(first.state(), MessageState::Requeued);
        assert_err!(
            first.ack(),
            Error::AlreadyAcknowledged {
                state: MessageState::Requeued,
                ..
            }
        );
        assert_err!(first.requeue(), Error::AlreadyAcknowledged { .. });
        let again = consumer.fetch().await?.expect("the requeued message");
        assert_eq!(num(&again), 1);
        assert!(again.redelivered());
        let second = consumer.fetch().await?.expect("the second message");
        assert_eq!(num(&second), 2);
        assert!(!second.redelivered());
        Ok(())
    }
);

conformance!(
    auto_ack_messages_cannot_be_acknowledged_by_hand,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).auto_ack(true).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        let fetched = consumer.fetch().await?.expect("a message");
        consumer.consume().await?;
        let consumed = next(&mut consumer).await;
        for message in [&fetched, &consumed] {
            assert!(message.acknowledged());
            for result in [message.ack(), message.reject(), message.requeue()] {
                assert_err!(
                    result,
                    Error::AutoAcknowledged {
                        mode: "auto_ack",
                        ..
                    }
                );
            }
        }
        // They were acknowledged: closing the consumer gives nothing back.
        consumer.close().await?;
        let mut reader = t.reader(&conn).build().await?;
        assert!(reader.fetch().await?.is_none());
        Ok(())
    }
);

conformance!(
    no_ack_messages_are_forgotten_by_the_broker,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).no_ack(true).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        let fetched = consumer.fetch().await?.expect("a message");
        consumer.consume().await?;
        let consumed = next(&mut consumer).await;
        assert_eq!((num(&fetched), num(&consumed)), (1, 2));
        for message in [&fetched, &consumed] {
            assert!(message.acknowledged());
            for result in [message.ack(), message.reject(), message.requeue()] {
                assert_err!(result, Error::AutoAcknowledged { mode: "no_ack", .. });
            }
        }
        consumer.close().await?;
        let mut reader = t.reader(&conn).build().await?;
        assert!(reader.fetch().await?.is_none());
        Ok(())
    }
);

conformance!(
    unacked_messages_return_redelivered_when_the_consumer_closes,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        for i in 1..=3 {
            publisher.send(&i).await?;
        }
        let held = fetch_all(&mut consumer).await?;
        assert_eq!(held.len(), 3);
        assert!(held.iter().all(|m| !m.redelivered()));
        consumer.close().await?;

        let mut reader = t.reader(&conn).build().await?;
        let back = fetch_all(&mut reader).await?;
        assert_eq!(back.iter().map(num).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(back.iter().all(|m| m.redelivered()));
        Ok(())
    }
);

conformance!(
    unacked_messages_return_redelivered_when_the_consumer_is_dropped,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        consumer.consume().await?;
        let first = next(&mut consumer).await;
        let second = next(&mut consumer).await;
        assert_eq!((num(&first), num(&second)), (1, 2));
        drop(consumer);

        let mut reader = t.reader(&conn).build().await?;
        let back = fetch_all(&mut reader).await?;
        assert_eq!(back.iter().map(num).collect::<Vec<_>>(), vec![1, 2]);
        assert!(back.iter().all(|m| m.redelivered()));
        Ok(())
    }
);

conformance!(
    unacked_messages_return_redelivered_when_the_connection_closes,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        let fetched = consumer.fetch().await?.expect("a message");
        consumer.consume().await?;
        let consumed = next(&mut consumer).await;
        assert_eq!((num(&fetched), num(&consumed)), (1, 2));
        conn.close().await?;

        let other = t.connect().await?;
        let mut reader = t.reader(&other).build().await?;
        let back = fetch_all(&mut reader).await?;
        assert_eq!(back.iter().map(num).collect::<Vec<_>>(), vec![1, 2]);
        assert!(back.iter().all(|m| m.redelivered()));
        Ok(())
    }
);

conformance!(
    messages_received_before_cancel_can_still_be_acked,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        t.publisher(&conn).build().await?.send(&1).await?;
        consumer.consume().await?;
        let message = next(&mut consumer).await;
        consumer.cancel().await?;
        message.ack()?;
        consumer.close().await?;
        let mut reader = t.reader(&conn).build().await?;
        assert!(reader.fetch().await?.is_none());
        Ok(())
    }
);

// A failed ack did not happen: the message is still unsettled and goes back to its queue.
conformance!(
    ack_on_a_closed_channel_fails_and_changes_nothing,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        t.publisher(&conn).build().await?.send(&1).await?;
        let message = consumer.fetch().await?.expect("a message");
        consumer.close().await?;
        assert_err!(message.ack(), Error::ChannelClosed { .. });
        assert_eq!(message.state(), MessageState::Received);
        assert!(!message.acknowledged());
        let mut reader = t.reader(&conn).build().await?;
        let back = reader
            .fetch()
            .await?
            .expect("the message, back in its queue");
        assert!(back.redelivered());
        Ok(())
    }
);

conformance!(
    qos_prefetch_count_bounds_unacked_deliveries_per_consumer,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        consumer.qos(carrot::Qos::new().prefetch_count(2)).await?;
        let publisher = t.publisher(&conn).build().await?;
        for i in 1..=5 {
            publisher.send(&i).await?;
        }
        let first = next(&mut consumer).await;
        let second = next(&mut consumer).await;
        assert_eq!((num(&first), num(&second)), (1, 2));
        assert_quiet(&mut consumer).await;
        first.ack()?;
        let third = next(&mut consumer).await;
        assert_eq!(num(&third), 3);
        assert_quiet(&mut consumer).await;
        // A reject frees a slot too.
        second.reject()?;
        third.ack()?;
        assert_eq!(num(&next(&mut consumer).await), 4);
        assert_eq!(num(&next(&mut consumer).await), 5);
        Ok(())
    }
);

conformance!(
    qos_apply_global_bounds_the_channel_at_once,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        // Consuming already: a channel-wide limit applies to existing consumers too.
        consumer.consume().await?;
        consumer
            .qos(carrot::Qos::new().prefetch_count(1).apply_global(true))
            .await?;
        let publisher = t.publisher(&conn).build().await?;
        for i in 1..=3 {
            publisher.send(&i).await?;
        }
        let first = next(&mut consumer).await;
        assert_eq!(num(&first), 1);
        assert_quiet(&mut consumer).await;
        first.ack()?;
        let second = next(&mut consumer).await;
        assert_eq!(num(&second), 2);
        assert_quiet(&mut consumer).await;
        second.ack()?;
        assert_eq!(num(&next(&mut consumer).await), 3);
        Ok(())
    }
);

conformance!(qos_prefetch_is_ignored_with_no_ack, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).no_ack(true).build().await?;
    consumer.qos(carrot::Qos::new().prefetch_count(1)).await?;
    let publisher = t.publisher(&conn).build().await?;
    for i in 1..=3 {
        publisher.send(&i).await?;
    }
    let got = [
        num(&next(&mut consumer).await),
        num(&next(&mut consumer).await),
        num(&next(&mut consumer).await),
    ];
    assert_eq!(got, [1, 2, 3]);
    Ok(())
});

conformance!(
    flow_pauses_deliveries_without_losing_or_reordering,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        consumer.consume().await?;
        consumer.flow(false).await?;
        let publisher = t.publisher(&conn).build().await?;
        for i in 1..=4 {
            publisher.send(&i).await?;
        }
        assert_quiet(&mut consumer).await;
        consumer.flow(true).await?;
        let mut got = Vec::new();
        for _ in 0..4 {
            let message = next(&mut consumer).await;
            got.push(num(&message));
            message.ack()?;
        }
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_quiet(&mut consumer).await;
        Ok(())
    }
);

conformance!(mandatory_unroutable_message_is_returned, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    let err = publisher
        .send_with(
            &1,
            SendOptions::new().routing_key("nowhere").mandatory(true),
        )
        .await
        .unwrap_err();
    match &err {
        Error::Unroutable {
            reply_code,
            exchange,
            routing_key,
            ..
        } => {
            assert_eq!(*reply_code, 312);
            assert_eq!(exchange, &t.name("ex"));
            assert_eq!(routing_key, "nowhere");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    assert_eq!(err.reply_code(), Some(312));
    // Routable mandatory messages go through.
    publisher
        .send_with(&2, SendOptions::new().mandatory(true))
        .await?;
    // Through the default exchange, a missing queue is unroutable too.
    let by_name = Publisher::builder(&conn).build().await?;
    assert_err!(
        by_name
            .send_with(
                &3,
                SendOptions::new()
                    .routing_key(t.name("no-such-queue"))
                    .mandatory(true)
            )
            .await,
        Error::Unroutable {
            reply_code: 312,
            ..
        }
    );
    // Dropped, with or without mandatory: the queue declared afterwards is empty (on Redis
    // the pushes, sent together, are taken back once they are found unroutable, whatever
    // list of priority steps they went to).
    for (n, priority) in [(4, 0u8), (5, 7), (6, 0)] {
        by_name
            .send_with(
                &n,
                SendOptions::new()
                    .routing_key(t.name("no-such-queue"))
                    .priority(priority),
            )
            .await?;
    }
    let late = t.name("no-such-queue");
    conn.declare_queue(&carrot::QueueSpec::new(&late)).await?;
    let count = conn.queue_info(&late).await?.message_count;
    conn.delete_queue(&late, carrot::DeleteQueueOptions::new())
        .await?;
    assert_eq!(
        count, 0,
        "an unroutable message reached a queue declared after it"
    );
    assert_eq!(drain_numbers(&mut consumer).await?, vec![2]);
    Ok(())
});

// Several channels of one connection publishing at once (on Redis their publishes share script
// calls): each publish gets its own answer, and each publisher's messages keep their order.
conformance!(
    concurrent_publishers_each_get_their_own_answer,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let mut running = Vec::new();
        for p in 0..4i64 {
            let publisher = t.publisher(&conn).build().await?;
            running.push(spawn(move || async move {
                let mut unroutable = 0;
                for i in 0..50i64 {
                    publisher
                        .send_with(&(p * 1000 + i), SendOptions::new().mandatory(true))
                        .await?;
                    if p % 2 == 1 {
                        let refused = publisher
                            .send_with(
                                &-1,
                                SendOptions::new().routing_key("nowhere").mandatory(true),
                            )
                            .await;
                        assert!(
                            matches!(refused, Err(Error::Unroutable { .. })),
                            "{refused:?}"
                        );
                        unroutable += 1;
                    }
                }
                Ok::<_, Error>(unroutable)
            }));
        }
        for (p, publishing) in running.into_iter().enumerate() {
            assert_eq!(publishing.join().await??, if p % 2 == 1 { 50 } else { 0 });
        }
        let got = drain_numbers(&mut consumer).await?;
        assert_eq!(got.len(), 200, "{got:?}");
        for p in 0..4i64 {
            let mine: Vec<i64> = got.iter().copied().filter(|n| n / 1000 == p).collect();
            assert_eq!(mine, (0..50).map(|i| p * 1000 + i).collect::<Vec<_>>());
        }
        Ok(())
    }
);

// Messages published without confirms through the default exchange, by two channels of one
// connection taking turns: every message arrives, each channel's in the order sent (on Redis
// they leave in batches while `send` returns at once), and the connection counts them all.
conformance!(
    unconfirmed_messages_arrive_complete_and_in_order,
    |t| async move {
        const EACH: i64 = 1500;
        let conn = t.connect().await?;
        let queue = t.name("q");
        conn.declare_queue(&carrot::QueueSpec::new(&queue)).await?;
        let first = Publisher::builder(&conn)
            .routing_key(&queue)
            .build()
            .await?;
        let second = Publisher::builder(&conn)
            .routing_key(&queue)
            .build()
            .await?;
        for i in 0..EACH {
            first.send(&i).await?;
            second.send(&(100_000 + i)).await?;
        }
        // A mandatory message waits for its routing, and comes after those sent before it on
        // its channel (on Redis, sent behind them, not on its own).
        first
            .send_with(&EACH, SendOptions::new().mandatory(true))
            .await?;
        // On Redis, once they are stored; elsewhere nothing to wait for.
        first.flush().await?;
        second.flush().await?;
        until_count(&conn, &queue, (2 * EACH + 1) as u32).await;
        let mut reader = t.reader(&conn).build().await?;
        let got = drain_numbers(&mut reader).await?;
        assert_eq!(got.len() as i64, 2 * EACH + 1);
        let firsts: Vec<i64> = got.iter().copied().filter(|n| *n < 100_000).collect();
        let seconds: Vec<i64> = got.iter().copied().filter(|n| *n >= 100_000).collect();
        assert_eq!(firsts, (0..=EACH).collect::<Vec<_>>());
        assert_eq!(seconds, (0..EACH).map(|i| 100_000 + i).collect::<Vec<_>>());
        first.close().await?;
        second.close().await?;
        Ok(())
    }
);

// Without mandatory, AMQP drops an unroutable message; the publisher is not told.
conformance!(
    unroutable_message_without_mandatory_is_dropped,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher
            .send_with(&1, SendOptions::new().routing_key("nowhere"))
            .await?;
        publisher.send(&2).await?;
        assert_eq!(drain_numbers(&mut consumer).await?, vec![2]);
        Ok(())
    }
);

conformance!(immediate_needs_a_ready_consumer, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    let immediate = || SendOptions::new().immediate(true);
    let result = publisher.send_with(&1, immediate()).await;
    if !t.backend.immediate {
        assert_err!(result, Error::Unsupported(_));
        return Ok(());
    }
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unroutable {
                reply_code: 313,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reply_code(), Some(313));
    // Returned, not queued.
    assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);

    consumer.qos(carrot::Qos::new().prefetch_count(1)).await?;
    consumer.consume().await?;
    publisher.send_with(&2, immediate()).await?;
    let message = next(&mut consumer).await;
    assert_eq!(num(&message), 2);
    // The consumer has no credit left: it is not ready.
    assert_err!(
        publisher.send_with(&3, immediate()).await,
        Error::Unroutable {
            reply_code: 313,
            ..
        }
    );
    message.ack()?;
    publisher.send_with(&4, immediate()).await?;
    assert_eq!(num(&next(&mut consumer).await), 4);
    Ok(())
});

/// kombu's Redis transport: the priority step of a priority, the highest of 0, 3, 6 and 9 at
/// most the priority.
fn kombu_step(priority: u8) -> u8 {
    [0, 3, 6, 9]
        .into_iter()
        .filter(|step| *step <= priority)
        .max()
        .unwrap_or(0)
}

/// The order in which kombu's Redis transport serves what was sent (body, priority) in this
/// order: a lower step first, in the order sent within a step.
fn kombu_order<T: Clone>(sent: &[(T, u8)]) -> Vec<T> {
    let mut order = sent.to_vec();
    order.sort_by_key(|(_, priority)| kombu_step(*priority)); // stable: FIFO within a step
    order.into_iter().map(|(body, _)| body).collect()
}

conformance!(
    priorities_are_honoured_on_queues_with_a_max_priority,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).max_priority(9).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let sent: [(i64, u8); 5] = [(1, 1), (2, 5), (3, 9), (4, 0), (5, 5)];
        for (body, priority) in sent {
            publisher
                .send_with(&body, SendOptions::new().priority(priority))
                .await?;
        }
        publisher.send(&6).await?; // no priority: 0
        let all = fetch_all(&mut consumer).await?;
        let got: Vec<i64> = all.iter().map(num).collect();
        if t.backend.redis {
            // kombu's Redis transport serves a lower priority step first.
            let sent: Vec<(i64, u8)> = sent.into_iter().chain([(6, 0)]).collect();
            assert_eq!(got, kombu_order(&sent));
            let first = sent.iter().find(|(body, _)| *body == got[0]);
            assert_eq!(all[0].priority(), first.map(|(_, priority)| *priority));
            return Ok(());
        }
        assert_eq!(got, vec![3, 2, 5, 1, 4, 6]);
        assert_eq!(all[0].priority(), Some(9));
        Ok(())
    }
);

// As RabbitMQ does, a priority above the queue's maximum counts as the maximum.
conformance!(priorities_above_the_max_count_as_the_max, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).max_priority(3).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    let sent: [(i64, u8); 4] = [(1, 1), (2, 9), (3, 3), (4, 7)];
    for (body, priority) in sent {
        publisher
            .send_with(&body, SendOptions::new().priority(priority))
            .await?;
    }
    let expected = if t.backend.redis {
        // kombu's Redis transport has its priority steps whatever the maximum, a lower one first.
        kombu_order(&sent)
    } else {
        vec![2, 3, 4, 1]
    };
    assert_eq!(drain_numbers(&mut consumer).await?, expected);
    Ok(())
});

conformance!(
    priorities_are_ignored_without_a_max_priority,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let sent: [(i64, u8); 4] = [(1, 1), (2, 9), (3, 0), (4, 5)];
        for (body, priority) in sent {
            publisher
                .send_with(&body, SendOptions::new().priority(priority))
                .await?;
        }
        let expected = if t.backend.redis {
            // kombu's Redis transport has priority steps on every queue, a lower one first.
            kombu_order(&sent)
        } else {
            vec![1, 2, 3, 4]
        };
        assert_eq!(drain_numbers(&mut consumer).await?, expected);
        Ok(())
    }
);

conformance!(requeued_messages_keep_their_priority, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).max_priority(5).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher
        .send_with(&1, SendOptions::new().priority(1))
        .await?;
    let low = consumer.fetch().await?.expect("a message");
    publisher
        .send_with(&2, SendOptions::new().priority(5))
        .await?;
    low.requeue()?;
    let expected = if t.backend.redis {
        // kombu's Redis transport serves a lower priority step first.
        kombu_order(&[(1, 1), (2, 5)])
    } else {
        vec![2, 1]
    };
    assert_eq!(drain_numbers(&mut consumer).await?, expected);
    Ok(())
});

/// The first `count` messages either consumer gets, by consumer, whichever asks first (as on
/// kombu's Redis transport, which has no round robin nor consumer priorities).
async fn taken_by_either(
    mut consumers: [&mut carrot::Consumer; 2],
    count: usize,
) -> carrot::Result<[Vec<carrot::Message>; 2]> {
    let mut got = [Vec::new(), Vec::new()];
    let mut deadline = Deadline::new(&format!("{count} messages across two consumers"));
    while got.iter().map(Vec::len).sum::<usize>() < count {
        for (consumer, got) in consumers.iter_mut().zip(got.iter_mut()) {
            let wait = Duration::from_millis(10);
            if let Some(message) = consumer.next_message_timeout(wait).await? {
                got.push(message);
            }
        }
        deadline.tick().await;
    }
    Ok(got)
}

conformance!(
    competing_consumers_get_distinct_messages_round_robin,
    |t| async move {
        let conn = t.connect().await?;
        let mut first = t.consumer(&conn).build().await?;
        let mut second = t.reader(&conn).build().await?;
        first.consume().await?;
        second.consume().await?;
        let publisher = t.publisher(&conn).build().await?;
        for i in 0..6 {
            publisher.send(&i).await?;
        }
        let mut got = [Vec::new(), Vec::new()];
        if t.backend.redis {
            // kombu's Redis transport has no round robin: whichever consumer asks first takes.
            let taken = taken_by_either([&mut first, &mut second], 6).await?;
            for (got, taken) in got.iter_mut().zip(taken) {
                for message in taken {
                    got.push(num(&message));
                    message.ack()?;
                }
            }
            assert_quiet(&mut first).await;
            assert_quiet(&mut second).await;
            assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 6, "{got:?}");
        } else {
            for (consumer, got) in [&mut first, &mut second].into_iter().zip(got.iter_mut()) {
                for _ in 0..3 {
                    let message = next(consumer).await;
                    got.push(num(&message));
                    message.ack()?;
                }
                assert_quiet(consumer).await;
            }
        }
        for list in &got {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        }
        let all: BTreeSet<i64> = got.iter().flatten().copied().collect();
        assert_eq!(all, (0..6).collect::<BTreeSet<i64>>(), "{got:?}");
        Ok(())
    }
);

conformance!(
    topic_publisher_and_consumer_deliver_end_to_end,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t
            .consumer(&conn)
            .exchange_type(ExchangeType::Topic)
            .routing_key("feed.#")
            .build()
            .await?;
        let publisher = t
            .publisher(&conn)
            .exchange_type(ExchangeType::Topic)
            .routing_key("feed.import")
            .build()
            .await?;
        consumer.consume().await?;
        publisher.send(&1).await?;
        let message = next(&mut consumer).await;
        assert_eq!(num(&message), 1);
        assert_eq!(message.routing_key(), "feed.import");
        assert_eq!(message.exchange(), t.name("ex"));
        assert!(message.consumer_tag().is_some());
        assert_eq!(message.consumer_tag(), consumer.consumer_tag());
        message.ack()?;
        Ok(())
    }
);

/// More messages than the embedded brokers hand a consumer before it takes them from its
/// stream (4,096), so that handing out stops and must resume as the consumer reads.
const BEYOND_THE_WINDOW: i64 = 10_000;

conformance!(
    a_consumer_that_pauses_gets_every_message_in_order,
    |t| async move {
        for no_ack in [true, false] {
            let conn = t.connect().await?;
            let mut consumer = t.consumer(&conn).no_ack(no_ack).build().await?;
            let publisher = t
                .publisher(&conn)
                .delivery_mode(DeliveryMode::Transient)
                .build()
                .await?;
            for n in 0..BEYOND_THE_WINDOW {
                publisher.send(&n).await?;
            }
            consumer.consume().await?;
            // The consumer does not read: the embedded brokers keep what does not fit its
            // window in the queue (RabbitMQ's client buffers it all).
            pause(QUIET).await;
            if matches!(t.backend.name, "memory" | "sqlite") {
                let ready = conn.queue_info(&t.name("q")).await?.message_count as i64;
                assert!(
                    ready >= BEYOND_THE_WINDOW - 4096,
                    "{ready} messages left in the queue for a consumer that does not read"
                );
            }
            for expected in 0..BEYOND_THE_WINDOW {
                let message = next(&mut consumer).await;
                assert_eq!(num(&message), expected);
                if !no_ack {
                    message.ack()?;
                }
                if expected % 3_000 == 2_999 {
                    pause(QUIET).await;
                }
            }
            consumer.cancel().await?;
            conn.close().await?;
        }
        Ok(())
    }
);

/// Fetches (basic.get) and acknowledges every waiting message: each body as a string, with
/// whether it came redelivered.
async fn drain_redelivered(consumer: &mut carrot::Consumer) -> carrot::Result<Vec<(String, bool)>> {
    let mut all = Vec::new();
    while let Some(message) = consumer.fetch().await? {
        all.push((text(&message), message.redelivered()));
        message.ack()?;
    }
    Ok(all)
}

// As RabbitMQ: a requeued message goes back to its place in the queue, whatever the order of
// the requeues, and so do the deliveries of a closed channel or connection.
conformance!(
    requeued_messages_go_back_to_their_place_in_the_queue,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        for body in ["1", "2", "3", "4"] {
            publisher.send(body).await?;
        }
        let taken = [
            consumer.fetch().await?.expect("1"),
            consumer.fetch().await?.expect("2"),
            consumer.fetch().await?.expect("3"),
        ];
        let requeues = [2, 0, 1];
        for i in requeues {
            taken[i].requeue()?;
        }
        let expected = vec![
            ("1".to_string(), true),
            ("2".to_string(), true),
            ("3".to_string(), true),
            ("4".to_string(), false),
        ];
        // kombu's Redis transport puts each requeued message at the head: the last one first.
        let mut at_head: Vec<(String, bool)> = requeues
            .iter()
            .rev()
            .map(|&i| (text(&taken[i]), true))
            .collect();
        at_head.push(("4".to_string(), false));
        let requeued = if t.backend.redis {
            at_head
        } else {
            expected.clone()
        };
        assert_eq!(drain_redelivered(&mut consumer).await?, requeued);

        // A channel closed with deliveries it took in another order than the queue's.
        for body in ["1", "2", "3", "4"] {
            publisher.send(body).await?;
        }
        let mut first = t.reader(&conn).build().await?;
        let mut second = t.reader(&conn).build().await?;
        let one = first.fetch().await?.expect("1");
        let two = second.fetch().await?.expect("2");
        let three = first.fetch().await?.expect("3");
        second.close().await?;
        first.close().await?;
        // kombu's Redis transport gives a closed channel's deliveries back at the head, in their
        // order: those of the channel closed last (first) come first.
        let mut at_head: Vec<(String, bool)> =
            [&one, &three, &two].map(|m| (text(m), true)).to_vec();
        at_head.push(("4".to_string(), false));
        drop(one);
        let closed = if t.backend.redis {
            at_head
        } else {
            expected.clone()
        };
        assert_eq!(drain_redelivered(&mut consumer).await?, closed);

        // A connection closed with deliveries (on Redis too: one channel keeps their order).
        for body in ["1", "2", "3", "4"] {
            publisher.send(body).await?;
        }
        let other = t.connect().await?;
        let mut reader = t.reader(&other).build().await?;
        for _ in 0..3 {
            reader.fetch().await?.expect("a message");
        }
        other.close().await?;
        drop(reader);
        let mut deadline = Deadline::new("the closed connection's deliveries back");
        while conn.queue_info(&t.name("q")).await?.message_count < 4 {
            deadline.tick().await;
        }
        assert_eq!(drain_redelivered(&mut consumer).await?, expected);
        Ok(())
    }
);

conformance!(
    requeued_messages_of_a_priority_queue_go_back_in_priority_order,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).max_priority(9).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let sent: [(&str, u8); 5] = [("a0", 0), ("b5", 5), ("c0", 0), ("d9", 9), ("e5", 5)];
        for (body, priority) in sent {
            publisher
                .send_with(body, SendOptions::new().priority(priority))
                .await?;
        }
        let mut taken = Vec::new();
        for _ in 0..4 {
            taken.push(consumer.fetch().await?.expect("a message"));
        }
        let order: Vec<String> = taken.iter().map(text).collect();
        // kombu's Redis transport serves a lower priority step first.
        let served = kombu_order(&sent);
        if t.backend.redis {
            assert_eq!(order, served[..4]);
        } else {
            assert_eq!(order, ["d9", "b5", "e5", "a0"]);
        }
        let requeues = [2, 3, 0, 1];
        for i in requeues {
            taken[i].requeue()?;
        }
        let got = drain_redelivered(&mut consumer).await?;
        if t.backend.redis {
            // kombu's Redis transport puts a requeued message at the head of its step's list: in
            // each step, the last requeued first, then the untaken.
            let priority = |body: &str| sent.iter().find(|(b, _)| *b == body).map_or(0, |s| s.1);
            let requeued = requeues.iter().rev().map(|&i| order[i].as_str());
            let queue: Vec<((String, bool), u8)> = requeued
                .map(|b| ((b.to_string(), true), priority(b)))
                .chain(
                    served[4..]
                        .iter()
                        .map(|b| ((b.to_string(), false), priority(b))),
                )
                .collect();
            assert_eq!(got, kombu_order(&queue));
            return Ok(());
        }
        let expected: Vec<(String, bool)> = [
            ("d9", true),
            ("b5", true),
            ("e5", true),
            ("a0", true),
            ("c0", false),
        ]
        .iter()
        .map(|(b, r)| (b.to_string(), *r))
        .collect();
        assert_eq!(got, expected);
        Ok(())
    }
);

// RabbitMQ's consumer priorities (`x-priority`): the highest priority with room takes the
// messages; a lower one takes what it cannot take now.
conformance!(
    consumers_of_a_higher_priority_are_served_first,
    |t| async move {
        let conn = t.connect().await?;
        let mut low = t.consumer(&conn).build().await?;
        let mut high = t.reader(&conn).priority(10).build().await?;
        assert_eq!((low.priority(), high.priority()), (0, 10));
        high.qos(carrot::Qos::new().prefetch_count(2)).await?;
        low.qos(carrot::Qos::new().prefetch_count(10)).await?;
        if t.backend.redis {
            // Consumers of a Redis list take first come, first served: a priority is refused,
            // and the consumer without one still works.
            assert_err!(high.consume().await, Error::Unsupported(_));
            low.consume().await?;
            let publisher = t.publisher(&conn).build().await?;
            publisher.send(&1).await?;
            assert_eq!(num(&next(&mut low).await), 1);
            return Ok(());
        }
        high.consume().await?;
        low.consume().await?;
        let publisher = t.publisher(&conn).build().await?;
        for n in 1..=5 {
            publisher.send(&n).await?;
        }
        let first = next(&mut high).await;
        let second = next(&mut high).await;
        assert_eq!((num(&first), num(&second)), (1, 2));
        assert_quiet(&mut high).await;
        let mut rest = Vec::new();
        for _ in 0..3 {
            let message = next(&mut low).await;
            rest.push(num(&message));
            message.ack()?;
        }
        assert_eq!(rest, vec![3, 4, 5]);
        // Room again at the higher priority: it takes the next message.
        first.ack()?;
        publisher.send(&6).await?;
        assert_eq!(num(&next(&mut high).await), 6);
        assert_quiet(&mut low).await;
        Ok(())
    }
);
