//! A consumer ends normally only when the application cancels or closes it. Deleting its queue
//! under it (the broker cancels it) ends `wait`, `iterconsume` and `next_message` with a clear
//! error, never a silent end that looks like success.

use carrot::{ConnectionState, Error};

use crate::support::*;

conformance!(
    deleting_the_queue_under_a_consumer_ends_wait_with_an_error,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        consumer.register_callback(|_, message| message.ack());
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        let waiting = spawn(move || async move {
            let outcome = consumer.wait(None).await;
            (consumer, outcome)
        });
        // Let it take the message and start waiting for the next.
        pause(QUIET).await;
        let admin = t.connect().await?;
        admin
            .delete_queue(&t.name("q"), carrot::DeleteQueueOptions::new())
            .await?;
        let (mut consumer, outcome) = waiting.join().await?;
        assert_err!(
            outcome,
            Error::ConsumerCancelled { queue, .. } if queue == t.name("q")
        );
        // The consumer is not consuming any more; consuming again finds no queue.
        assert!(consumer.consumer_tag().is_none());
        assert_err!(consumer.next_message().await, Error::NotFound(_));
        assert_eq!(conn.state(), ConnectionState::Connected);
        Ok(())
    }
);

conformance!(cancel_ends_a_consumer_without_an_error, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    let message = next(&mut consumer).await;
    message.ack()?;
    consumer.cancel().await?;
    assert!(consumer.consumer_tag().is_none());
    // Consuming again picks up where it was.
    publisher.send(&2).await?;
    assert_eq!(num(&next(&mut consumer).await), 2);
    Ok(())
});
