//! Sends whose confirms are awaited later (pipelined): `begin_send` hands the message over and
//! returns a `PendingConfirm`, `send_batch` keeps a whole batch in flight. Each message is
//! reported confirmed, refused or returned, as a plain `send` reports it.

use carrot::{Error, Publisher, SendOptions};

use crate::support::*;

conformance!(pipelined_confirms_report_every_message, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).confirm_publish(true).build().await?;
    let mut pending = Vec::new();
    for n in 0..200 {
        pending.push(publisher.begin_send(&n).await?);
    }
    for confirm in pending {
        within("a confirm", confirm.wait()).await?;
    }
    let got = drain_numbers(&mut consumer).await?;
    assert_eq!(got, (0..200).collect::<Vec<i64>>(), "all, in order");
    Ok(())
});

conformance!(send_batch_reports_each_outcome_in_order, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).confirm_publish(true).build().await?;
    let numbers: Vec<i64> = (0..50).collect();
    let outcomes = within("the batch", publisher.send_batch(&numbers)).await;
    assert_eq!(outcomes.len(), 50);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(drain_numbers(&mut consumer).await?, numbers);
    Ok(())
});

conformance!(
    a_pipelined_unroutable_mandatory_message_is_returned,
    |t| async move {
        let conn = t.connect().await?;
        let _consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).confirm_publish(true).build().await?;
        let routed = publisher.begin_send(&1).await?;
        let lost = publisher
            .begin_send_with(
                &2,
                SendOptions::new().routing_key("nowhere").mandatory(true),
            )
            .await;
        within("the routed confirm", routed.wait()).await?;
        // Embedded brokers know at once (the send itself fails); RabbitMQ says so in the confirm.
        let outcome = match lost {
            Ok(pending) => within("the returned confirm", pending.wait()).await,
            Err(e) => Err(e),
        };
        assert_err!(
            outcome,
            Error::Unroutable {
                reply_code: 312,
                ..
            }
        );
        Ok(())
    }
);

conformance!(
    without_confirms_a_pending_confirm_is_ready_at_once,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        // The default exchange, by queue name: no confirm mode on this publisher.
        let publisher = Publisher::builder(&conn)
            .routing_key(t.name("q"))
            .confirm_publish(false)
            .build()
            .await?;
        let pending = publisher.begin_send(&7).await?;
        assert!(pending.is_ready());
        pending.wait().await?;
        let mut deadline = Deadline::new("the message");
        let message = loop {
            if let Some(m) = consumer.fetch().await? {
                break m;
            }
            deadline.tick().await;
        };
        assert_eq!(num(&message), 7);
        message.ack()?;
        Ok(())
    }
);

// RabbitMQ acknowledges several messages at once; the return of an unroutable mandatory
// message among many in flight must be reported on that message, and on no other.
conformance!(
    returns_among_pipelined_sends_are_reported_on_their_own_message,
    |t| async move {
        let conn = t.connect().await?;
        let _consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).confirm_publish(true).build().await?;
        let mut sent = Vec::new();
        for n in 0..120 {
            let unroutable = n % 7 == 3;
            let options = match unroutable {
                true => SendOptions::new()
                    .routing_key(format!("nowhere.{n}"))
                    .mandatory(true),
                false => SendOptions::new().mandatory(n % 2 == 0),
            };
            sent.push((n, unroutable, publisher.begin_send_with(&n, options).await));
        }
        for (n, unroutable, begun) in sent {
            let outcome = match begun {
                Ok(pending) => within("a confirm", pending.wait()).await,
                Err(e) => Err(e),
            };
            match (unroutable, outcome) {
                (false, Ok(())) => {}
                (true, Err(Error::Unroutable { routing_key, .. }))
                    if routing_key == format!("nowhere.{n}") => {}
                (_, other) => panic!("message {n} (unroutable: {unroutable}): {other:?}"),
            }
        }
        let got = drain_numbers(&mut t.reader(&conn).build().await?).await?;
        let routed: Vec<i64> = (0..120).filter(|n| n % 7 != 3).collect();
        assert_eq!(got, routed);
        Ok(())
    }
);
