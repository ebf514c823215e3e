//! The worker loop (kombu's `ConsumerMixin`): handlers at most N at once, acks after success,
//! the failure policy, and a graceful shutdown that requeues what it did not start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrot::{CancellationToken, Consumer, Error, OnError, QueueSpec, Worker};

use crate::support::*;

/// Declares the queue `q` and its binding before the worker does, so that what is sent before
/// the worker runs is kept.
async fn declare(t: &Scenario, conn: &carrot::BrokerConnection) -> carrot::Result<()> {
    t.consumer(conn).build().await?.close().await
}

conformance!(a_worker_handles_and_acks_every_message, |t| async move {
    let conn = t.connect().await?;
    declare(&t, &conn).await?;
    let publisher = t.publisher(&conn).build().await?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let busy = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let worker = {
        let (seen, busy, most, stop) = (seen.clone(), busy.clone(), most.clone(), stop.clone());
        Worker::builder(&conn)
            .concurrency(3)
            .shutdown(stop.clone())
            .queue_blocking(t.consumer(&conn), move |message| {
                let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                busy.fetch_sub(1, Ordering::SeqCst);
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.push(message.decode::<i64>()?);
                if seen.len() == 30 {
                    stop.cancel();
                }
                Ok(())
            })
    };
    let stats = worker.stats();
    for n in 0..30 {
        publisher.send(&n).await?;
    }
    let running = spawn(move || async move { worker.run().await });
    let report = running.join().await??;
    assert_eq!(report.handled(), 30);
    assert_eq!(
        (stats.failed(), stats.in_flight(), stats.abandoned()),
        (0, 0, 0)
    );
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&most),
        "{most} handlers at once, at most 3"
    );
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..30).collect::<Vec<_>>());
    // Every message was acknowledged: nothing comes back once the worker's channels close.
    let mut reader = t.reader(&conn).build().await?;
    assert!(reader.fetch().await?.is_none());
    assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);
    Ok(())
});

conformance!(
    a_failing_message_is_requeued_once_then_dead_lettered,
    |t| async move {
        let conn = t.connect().await?;
        let dead = t.name("dead");
        let mut dead_letters = Consumer::builder(&conn)
            .queue(t.name("dlq"))
            .exchange(&dead)
            .routing_key("k")
            .build()
            .await?;
        let mut spec = QueueSpec::new(t.name("q")).dead_letter_exchange(&dead);
        if t.backend.redis {
            // kombu's Redis transport has no dead-lettering: refused, and without it a message
            // rejected for good is dropped.
            let built = t.consumer(&conn).queue_spec(spec).build().await;
            assert_err!(built, Error::Unsupported(_));
            spec = QueueSpec::new(t.name("q"));
        }
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let worker = {
            let (attempts, stop) = (attempts.clone(), stop.clone());
            Worker::builder(&conn)
                .shutdown(stop.clone())
                .on_error(OnError::RequeueOnce)
                .queue_blocking(t.consumer(&conn).queue_spec(spec.clone()), move |message| {
                    let n = message.decode::<i64>()?;
                    let mut attempts = attempts.lock().unwrap_or_else(|p| p.into_inner());
                    attempts.push((n, message.redelivered()));
                    if attempts.len() == 3 {
                        stop.cancel();
                    }
                    if n == 1 {
                        return Err("one always fails".into());
                    }
                    Ok(())
                })
        };
        t.consumer(&conn)
            .queue_spec(spec)
            .build()
            .await?
            .close()
            .await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher.send(&2).await?;
        let running = spawn(move || async move { worker.run().await });
        let report = running.join().await??;
        let attempts = attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ones: Vec<_> = attempts.iter().filter(|(n, _)| *n == 1).collect();
        assert_eq!(ones, [&(1, false), &(1, true)]);
        assert_eq!(report.failed(), 2);
        if t.backend.redis {
            assert_quiet(&mut dead_letters).await;
            assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);
            return Ok(());
        }
        // Rejected after its second failure: dead-lettered, never acked.
        let dead = next(&mut dead_letters).await;
        assert_eq!(num(&dead), 1);
        dead.ack()?;
        Ok(())
    }
);

conformance!(
    a_worker_shutdown_finishes_running_handlers_and_requeues_the_rest,
    |t| async move {
        let conn = t.connect().await?;
        declare(&t, &conn).await?;
        let publisher = t.publisher(&conn).build().await?;
        for n in 0..10 {
            publisher.send(&n).await?;
        }
        let started = Arc::new(AtomicUsize::new(0));
        let worker = {
            let started = started.clone();
            Worker::builder(&conn)
                .concurrency(2)
                .grace(Duration::from_secs(5))
                .queue_blocking(t.consumer(&conn), move |_message| {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
        };
        let stop = worker.shutdown_token();
        let stats = worker.stats();
        let running = spawn(move || async move { worker.run().await });
        let mut deadline = Deadline::new("two handlers started");
        while started.load(Ordering::SeqCst) < 2 {
            deadline.tick().await;
        }
        stop.cancel();
        let report = running.join().await??;
        let handled = report.handled();
        assert_eq!(handled, started.load(Ordering::SeqCst) as u64);
        assert!((2..10).contains(&handled), "{handled} handled");
        assert_eq!((stats.in_flight(), stats.abandoned()), (0, 0));
        // The rest, not started, are back in the queue; none is lost, none handled twice.
        until_count(&conn, &t.name("q"), 10 - handled as u32).await;
        Ok(())
    }
);

conformance!(
    handlers_past_the_grace_period_are_stopped_and_their_messages_come_back,
    |t| async move {
        let conn = t.connect().await?;
        declare(&t, &conn).await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        let started = Arc::new(AtomicUsize::new(0));
        let worker = {
            let started = started.clone();
            Worker::builder(&conn)
                .grace(Duration::from_millis(100))
                .queue(t.consumer(&conn), move |_message| {
                    started.fetch_add(1, Ordering::SeqCst);
                    let forever = Duration::from_secs(3600);
                    async move {
                        tokio::time::sleep(forever).await;
                        Ok(())
                    }
                })
        };
        let stop = worker.shutdown_token();
        let running = tokio::spawn(worker.run());
        let mut deadline = Deadline::new("the handler started");
        while started.load(Ordering::SeqCst) < 1 {
            deadline.tick().await;
        }
        stop.cancel();
        let report = within("the worker's end", running).await??;
        assert_eq!((report.handled(), report.abandoned()), (0, 1));
        let mut reader = t.reader(&conn).build().await?;
        let back = next(&mut reader).await;
        assert_eq!((num(&back), back.redelivered()), (1, true));
        back.ack()?;
        Ok(())
    }
);

conformance!(
    an_undecodable_message_goes_to_the_hook_and_is_rejected,
    |t| async move {
        let conn = t.connect().await?;
        declare(&t, &conn).await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher
            .send_with("not json", carrot::SendOptions::new().serializer("raw"))
            .await?;
        publisher.send(&2).await?;
        let undecodable = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let worker = {
            let (undecodable, stop) = (undecodable.clone(), stop.clone());
            let handled_stop = stop.clone();
            Worker::builder(&conn)
                .shutdown(stop)
                .on_decode_error(move |_message, _error| {
                    undecodable.fetch_add(1, Ordering::SeqCst);
                })
                .decoded(t.consumer(&conn), move |n: i64, _message| {
                    assert_eq!(n, 2);
                    handled_stop.cancel();
                    async { Ok(()) }
                })
        };
        let report = within("the worker's end", worker.run()).await?;
        assert_eq!((report.handled(), report.failed()), (1, 1));
        assert_eq!(undecodable.load(Ordering::SeqCst), 1);
        assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 0);
        Ok(())
    }
);
