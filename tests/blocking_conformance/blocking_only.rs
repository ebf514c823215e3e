//! What only the blocking API has, on every backend: real `Iterator`s (`iterqueue`,
//! `iterconsume`, a set's `iterconsume`), `next_message_timeout` as a blocking program's bounded
//! wait, and the seed's documented examples written as the blocking program they were.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrot::blocking::{Consumer, ConsumerSet, Messaging, Publisher};
use carrot::{Error, ExchangeType, FetchOptions, IterQueueOptions, MessageState};
use serde_json::json;

use crate::support::*;

conformance!(iterqueue_is_an_iterator_that_ends_on_an_empty_queue, |t| {
    let conn = t.connect()?;
    let mut consumer = t.consumer(&conn).build()?;
    let publisher = t.publisher(&conn).build()?;
    for i in 0..5 {
        publisher.send(&i)?;
    }
    let got = consumer
        .iterqueue(IterQueueOptions::new())
        .map(|m| {
            let m = m?.expect("a message while the queue has some");
            m.ack()?;
            m.decode::<i64>()
        })
        .collect::<carrot::Result<Vec<i64>>>()?;
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    // The iterator is gone after its last use: the consumer is free again.
    assert!(consumer.fetch()?.is_none());
    Ok(())
});

conformance!(
    iterqueue_stops_at_its_limit_and_goes_on_when_infinite,
    |t| {
        let conn = t.connect()?;
        let mut consumer = t.consumer(&conn).build()?;
        t.publisher(&conn).build()?.send("one")?;
        let items = consumer
            .iterqueue(IterQueueOptions::new().limit(3).infinite(true))
            .map(|m| m?.map(|m| m.decode::<String>()).transpose())
            .collect::<carrot::Result<Vec<Option<String>>>>()?;
        assert_eq!(items, vec![Some("one".to_string()), None, None]);
        Ok(())
    }
);

conformance!(
    iterconsume_runs_the_callbacks_and_yields_each_message,
    |t| {
        let conn = t.connect()?;
        let mut consumer = t.consumer(&conn).build()?;
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        consumer.register_callback(move |payload, message| {
            let n = payload.as_data().map(|d| d["n"].clone());
            assert_eq!(n, Some(json!(counter.load(Ordering::SeqCst))));
            counter.fetch_add(1, Ordering::SeqCst);
            message.ack()
        });
        let publisher = t.publisher(&conn).build()?;
        for n in 0..4 {
            publisher.send(&json!({ "n": n }))?;
        }
        let states = consumer
            .iterconsume(Some(4))
            .map(|m| m.map(|m| m.state()))
            .collect::<carrot::Result<Vec<MessageState>>>()?;
        assert_eq!(states, vec![MessageState::Acknowledged; 4]);
        assert_eq!(seen.load(Ordering::SeqCst), 4);
        Ok(())
    }
);

conformance!(
    iterconsume_without_callbacks_ends_with_no_callbacks_and_takes_nothing,
    |t| {
        let conn = t.connect()?;
        let mut consumer = t.consumer(&conn).build()?;
        t.publisher(&conn).build()?.send(&1)?;
        let results: Vec<_> = consumer.iterconsume(Some(3)).collect();
        assert_eq!(results.len(), 1, "{results:?}");
        assert!(matches!(results[0], Err(Error::NoCallbacks)));
        assert_eq!(conn.queue_info(&t.name("q"))?.message_count, 1);
        Ok(())
    }
);

conformance!(
    next_message_timeout_bounds_the_wait_and_goes_on_consuming,
    |t| {
        let conn = t.connect()?;
        let mut consumer = t.consumer(&conn).build()?;
        assert!(consumer
            .next_message_timeout(Duration::from_millis(50))?
            .is_none());
        assert!(consumer.consumer_tag().is_some(), "it consumes meanwhile");
        t.publisher(&conn).build()?.send(&1)?;
        let message = consumer
            .next_message_timeout(ARRIVES)?
            .expect("the message sent after the first wait");
        assert_eq!(num(&message), 1);
        message.ack()?;
        Ok(())
    }
);

conformance!(fetch_with_auto_ack_runs_the_callbacks, |t| {
    let conn = t.connect()?;
    let mut consumer = t.consumer(&conn).build()?;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    consumer.register_callback(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    t.publisher(&conn).build()?.send(&1)?;
    let m = consumer
        .fetch_with(FetchOptions::new().auto_ack(true).enable_callbacks(true))?
        .expect("the message");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(m.ack(), Err(Error::AutoAcknowledged { .. })));
    assert_eq!(conn.queue_info(&t.name("q"))?.message_count, 0);
    Ok(())
});

// The seed's Consumer example: register_callback, then wait() as the receive loop.
conformance!(the_seeds_consumer_example, |t| {
    let conn = t.connect()?;
    let foo = t.name("foo");
    let mut consumer = Consumer::builder(&conn)
        .queue(&foo)
        .exchange(&foo)
        .routing_key("foo")
        .build()?;
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    consumer.register_callback(move |message_data, message| {
        let data = message_data.as_data().cloned();
        seen.lock().unwrap_or_else(|p| p.into_inner()).push(data);
        message.ack()
    });
    Publisher::builder(&conn)
        .exchange(&foo)
        .routing_key("foo")
        .build()?
        .send(&json!({"import_feed": "http://cnn.com/rss/edition.rss"}))?;
    assert_eq!(consumer.wait(Some(1))?, 1); // the receive loop, for one message
    let got = got.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        got,
        vec![Some(
            json!({"import_feed": "http://cnn.com/rss/edition.rss"})
        )]
    );
    Ok(())
});

// The seed's discard_all example: discard the waiting feeds only (carrot keeps the others in
// their order, where the seed left them unacknowledged).
conformance!(the_seeds_discard_all_example, |t| {
    let conn = t.connect()?;
    let mut consumer = t.consumer(&conn).build()?;
    let publisher = t.publisher(&conn).build()?;
    for n in 0..6 {
        let kind = if n % 2 == 0 { "feed" } else { "other" };
        publisher.send(&json!({"type": kind, "n": n}))?;
    }
    let waiting_feeds_only = |message: &carrot::Message| {
        message
            .decode::<serde_json::Value>()
            .is_ok_and(|data| data["type"] == "feed")
    };
    assert_eq!(consumer.discard_all_matching(waiting_feeds_only)?, 3);
    let left = consumer
        .iterqueue(IterQueueOptions::new())
        .map(|m| {
            let m = m?.expect("a message");
            m.ack()?;
            Ok(m.decode::<serde_json::Value>()?["n"].as_i64())
        })
        .collect::<carrot::Result<Vec<Option<i64>>>>()?;
    assert_eq!(left, vec![Some(1), Some(3), Some(5)]);
    Ok(())
});

// The seed's ConsumerSet example (from_dict), then Messaging, received through the set's
// iterator.
conformance!(the_seeds_consumer_set_example, |t| {
    let conn = t.connect()?;
    let (links, webshot, retrieve) = (
        t.name("link_exchange"),
        t.name("webshot"),
        t.name("retrieve"),
    );
    let mut set = ConsumerSet::new(&conn);
    let mut config = serde_json::Map::new();
    config.insert(
        webshot.clone(),
        json!({"exchange": links, "exchange_type": "topic", "binding_key": "links.webshot"}),
    );
    config.insert(
        retrieve.clone(),
        json!({"exchange": links, "exchange_type": "topic", "binding_key": "links.*", "auto_delete": true}),
    );
    set.from_dict(&serde_json::Value::Object(config))?;
    let queues = Arc::new(Mutex::new(Vec::new()));
    let q = queues.clone();
    set.register_callback(move |_, message| {
        q.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.routing_key().to_string());
        message.ack()
    });
    Publisher::builder(&conn)
        .exchange(&links)
        .exchange_type(ExchangeType::Topic)
        .routing_key("links.webshot")
        .build()?
        .send("http://example.org")?;
    let states = set
        .iterconsume(Some(2))
        .map(|m| m.map(|m| m.state()))
        .collect::<carrot::Result<Vec<MessageState>>>()?;
    assert_eq!(
        states,
        vec![MessageState::Acknowledged; 2],
        "both queues match"
    );
    assert_eq!(queues.lock().unwrap_or_else(|p| p.into_inner()).len(), 2);

    let jobs = t.name("jobs");
    let mut m = Messaging::builder(&conn)
        .exchange(&jobs)
        .queue(&jobs)
        .routing_key("jobs")
        .build()?;
    m.send(&json!([1, 2, 3]))?;
    let message = m.fetch()?.expect("the message");
    assert_eq!(message.decode::<Vec<i32>>()?, vec![1, 2, 3]);
    message.ack()?;
    m.close()?;
    Ok(())
});

conformance!(rpc_calls_from_threads_get_their_own_replies, |t| {
    use carrot::blocking::{RpcClient, RpcServer};
    let conn = t.connect()?;
    let queue = t.name("rpc");
    let mut server = RpcServer::new(&conn, &queue)?;
    let stop = carrot::CancellationToken::new();
    let serving = {
        let stop = stop.clone();
        std::thread::spawn(move || server.serve(|request| Ok(request.decode::<i64>()? + 1), stop))
    };
    let client = Arc::new(RpcClient::new(&t.connect()?)?);
    let callers: Vec<_> = (0..8i64)
        .map(|n| {
            let (client, queue) = (client.clone(), queue.clone());
            std::thread::spawn(move || -> carrot::Result<i64> {
                client.call(&queue, &n, ARRIVES)?.decode::<i64>()
            })
        })
        .collect();
    for (n, caller) in callers.into_iter().enumerate() {
        let reply = caller.join().map_err(|_| "a caller panicked")??;
        assert_eq!(reply, n as i64 + 1);
    }
    stop.cancel();
    let answered = serving.join().map_err(|_| "the server panicked")??;
    assert_eq!(answered, 8);
    Ok(())
});

conformance!(a_blocking_worker_decodes_and_reports_what_it_cannot, |t| {
    use carrot::blocking::Worker;
    let conn = t.connect()?;
    t.consumer(&conn).build()?.close()?;
    let publisher = t.publisher(&conn).build()?;
    publisher.send_with("not json", carrot::SendOptions::new().serializer("raw"))?;
    publisher.send(&2)?;
    let undecodable = Arc::new(AtomicUsize::new(0));
    let worker = Worker::builder(&conn);
    let stop = worker.shutdown_token();
    let worker = {
        let undecodable = undecodable.clone();
        worker
            .on_decode_error(move |_message, _error| {
                undecodable.fetch_add(1, Ordering::SeqCst);
            })
            .decoded(t.consumer(&conn), move |n: i64, _message| {
                assert_eq!(n, 2);
                stop.cancel();
                Ok(())
            })
    };
    let report = worker.run()?;
    assert_eq!((report.handled(), report.failed()), (1, 1));
    assert_eq!(undecodable.load(Ordering::SeqCst), 1);
    Ok(())
});
