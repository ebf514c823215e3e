//! Every method of the seed's classes (carrot.messaging's Publisher, Consumer, ConsumerSet and
//! Messaging) through the public API.

use std::sync::{Arc, Mutex};

use carrot::{
    table, Consumer, ConsumerSet, DeliveryMode, Error, ExchangeType, FetchOptions, FieldValue,
    MessageState, Messaging, OutgoingMessage, Payload, Properties, Publisher, SendOptions,
};
use serde_json::{json, Value};

use crate::support::*;

/// A list shared with callbacks.
type Shared<T> = Arc<Mutex<Vec<T>>>;

fn shared<T>() -> Shared<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(list: &Shared<T>) -> Vec<T> {
    list.lock().unwrap().clone()
}

/// A json body that no json decoder accepts.
fn undecodable() -> OutgoingMessage {
    OutgoingMessage::new(
        b"{not json".to_vec(),
        Properties::default()
            .with_content_type("application/json")
            .with_content_encoding("utf-8"),
    )
}

// Publisher ------------------------------------------------------------------------------------

conformance!(publisher_declare_creates_the_exchange, |t| async move {
    let conn = t.connect().await?;
    let publisher = t
        .publisher(&conn)
        .exchange_type(ExchangeType::Fanout)
        .auto_declare(false)
        .build()
        .await?;
    assert_err!(
        conn.exchange_exists(&t.name("ex")).await,
        Error::NotFound(_)
    );
    publisher.declare().await?;
    conn.exchange_exists(&t.name("ex")).await?;
    assert_eq!(publisher.exchange(), t.name("ex"));
    assert_eq!(publisher.exchange_type(), ExchangeType::Fanout);
    assert!(publisher.durable());
    assert_eq!(publisher.routing_key(), "k");
    assert_eq!(publisher.serializer(), "json");
    // Declaring twice is fine; the default exchange needs no declaration.
    publisher.declare().await?;
    Publisher::builder(&conn).build().await?.declare().await?;
    Ok(())
});

conformance!(
    publisher_create_message_sets_the_properties,
    |t| async move {
        let conn = t.connect().await?;
        let publisher = t.publisher(&conn).build().await?;
        let plain = publisher.create_message(&json!({"a": 1}), &SendOptions::new())?;
        // kombu's json serializer output, byte for byte (Python's `json.dumps`).
        assert_eq!(plain.body, br#"{"a": 1}"#.to_vec());
        let p = &plain.properties;
        assert_eq!(p.content_type(), Some("application/json"));
        assert_eq!(p.content_encoding(), Some("utf-8"));
        assert_eq!(p.delivery_mode(), Some(DeliveryMode::Persistent));
        assert_eq!((p.priority(), p.headers()), (None, None));

        let options = SendOptions::new()
            .priority(4)
            .delivery_mode(DeliveryMode::Transient)
            .headers(table([("h", "v".into())]))
            .serializer("raw");
        let made = publisher.create_message("hi", &options)?;
        assert_eq!(made.body, b"hi".to_vec());
        let p = &made.properties;
        assert_eq!(p.content_type(), Some("text/plain"));
        assert_eq!(p.content_encoding(), Some("utf-8"));
        assert_eq!(p.delivery_mode(), Some(DeliveryMode::Transient));
        assert_eq!(p.priority(), Some(4));
        assert_eq!(p.headers(), Some(&table([("h", "v".into())])));

        let typed = publisher.create_message(
            "<p>hi</p>",
            &SendOptions::new()
                .content_type("text/html")
                .content_encoding("latin-1"),
        )?;
        assert_eq!(typed.body, b"<p>hi</p>".to_vec());
        assert_eq!(typed.properties.content_type(), Some("text/html"));
        assert_eq!(typed.properties.content_encoding(), Some("latin-1"));

        // What create_message made is sent as it is.
        let mut consumer = t.consumer(&conn).build().await?;
        publisher.publish(made, &SendOptions::new()).await?;
        let message = consumer.fetch().await?.expect("the message");
        assert_eq!(message.body(), b"hi");
        assert_eq!(message.content_type(), Some("text/plain"));
        assert_eq!(message.delivery_mode(), Some(DeliveryMode::Transient));
        assert_eq!(message.priority(), Some(4));
        assert_eq!(
            message.headers().and_then(|h| h.get("h")),
            Some(&FieldValue::from("v"))
        );
        Ok(())
    }
);

conformance!(
    publisher_send_options_override_the_defaults,
    |t| async move {
        let conn = t.connect().await?;
        let mut default_queue = t.consumer(&conn).build().await?;
        let mut other_queue = Consumer::builder(&conn)
            .queue(t.name("other"))
            .exchange(t.name("ex"))
            .routing_key("other")
            .build()
            .await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher.send(&1).await?;
        publisher
            .send_with(
                &2,
                SendOptions::new()
                    .routing_key("other")
                    .delivery_mode(DeliveryMode::Transient)
                    .priority(7)
                    .headers(table([("trace", 42.into())])),
            )
            .await?;
        assert_eq!(drain_numbers(&mut default_queue).await?, vec![1]);
        let message = other_queue.fetch().await?.expect("the routed message");
        assert_eq!(num(&message), 2);
        assert_eq!(message.routing_key(), "other");
        assert_eq!(message.delivery_mode(), Some(DeliveryMode::Transient));
        assert_eq!(message.priority(), Some(7));
        assert_eq!(
            message.headers().and_then(|h| h.get("trace")),
            Some(&FieldValue::Int(42))
        );
        Ok(())
    }
);

// The seed: "If content_type is set, no serialization occurs".
conformance!(
    publisher_with_a_content_type_sends_data_as_it_is,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher
            .send_with(
                "<b>bold</b>",
                SendOptions::new()
                    .content_type("text/html")
                    .content_encoding("utf-8"),
            )
            .await?;
        publisher
            .send_with(
                &vec![0u8, 159, 255],
                SendOptions::new().content_type("image/x-test"),
            )
            .await?;
        assert_err!(
            publisher
                .send_with(
                    &json!({"a": 1}),
                    SendOptions::new().content_type("application/x-custom")
                )
                .await,
            Error::Encode { .. }
        );
        let html = consumer.fetch().await?.expect("the html message");
        assert_eq!(html.body(), b"<b>bold</b>");
        assert_eq!(html.content_type(), Some("text/html"));
        assert_eq!(html.decode::<String>()?, "<b>bold</b>");
        let image = consumer.fetch().await?.expect("the binary message");
        assert_eq!(image.body(), &[0u8, 159, 255]);
        assert_eq!(image.content_type(), Some("image/x-test"));
        assert_eq!(image.content_encoding(), Some("binary"));
        assert!(consumer.fetch().await?.is_none());
        Ok(())
    }
);

conformance!(publisher_serializer_default_and_override, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let raw = t.publisher(&conn).serializer("raw").build().await?;
    assert_eq!(raw.serializer(), "raw");
    raw.send("as text").await?;
    raw.send_with(&json!(["a"]), SendOptions::new().serializer("json"))
        .await?;
    let first = consumer.fetch().await?.expect("a message");
    assert_eq!(first.content_type(), Some("text/plain"));
    assert_eq!(first.body(), b"as text");
    let second = consumer.fetch().await?.expect("a message");
    assert_eq!(second.content_type(), Some("application/json"));
    assert_eq!(second.decode::<Value>()?, json!(["a"]));
    Ok(())
});

conformance!(publisher_exchange_override, |t| async move {
    let conn = t.connect().await?;
    let mut first = t.consumer(&conn).build().await?;
    let mut second = Consumer::builder(&conn)
        .queue(t.name("q2"))
        .exchange(t.name("ex2"))
        .routing_key("k")
        .build()
        .await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher
        .send_with(&1, SendOptions::new().exchange(t.name("ex2")))
        .await?;
    assert_err!(
        publisher
            .send_with(&2, SendOptions::new().exchange(t.name("undeclared")))
            .await,
        Error::NotFound(_)
    );
    assert!(first.fetch().await?.is_none());
    let message = second.fetch().await?.expect("the message");
    assert_eq!(num(&message), 1);
    assert_eq!(message.exchange(), t.name("ex2"));
    Ok(())
});

conformance!(publisher_close_closes_its_channel, |t| async move {
    let conn = t.connect().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    publisher.close().await?;
    assert_err!(publisher.send(&2).await, Error::ChannelClosed { .. });
    Ok(())
});

// Consumer -------------------------------------------------------------------------------------

conformance!(
    consumer_declare_declares_queue_exchange_and_binding,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).auto_declare(false).build().await?;
        assert_err!(conn.queue_info(&t.name("q")).await, Error::NotFound(_));
        let info = consumer.declare().await?;
        assert_eq!(info.name, t.name("q"));
        assert_eq!(info.message_count, 0);
        conn.exchange_exists(&t.name("ex")).await?;
        assert_eq!(consumer.queue(), t.name("q"));
        assert_eq!(consumer.exchange(), t.name("ex"));
        assert_eq!(consumer.routing_key(), "k");
        t.publisher(&conn).build().await?.send(&1).await?;
        // Declaring again is fine and reports the waiting message.
        assert_eq!(consumer.declare().await?.message_count, 1);
        assert_eq!(drain_numbers(&mut consumer).await?, vec![1]);
        Ok(())
    }
);

conformance!(
    consumer_fetch_takes_waiting_messages_in_order,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        assert!(consumer.fetch().await?.is_none());
        let publisher = t.publisher(&conn).build().await?;
        for i in 1..=3 {
            publisher.send(&i).await?;
        }
        let all = fetch_all(&mut consumer).await?;
        assert_eq!(all.iter().map(num).collect::<Vec<_>>(), vec![1, 2, 3]);
        let tags: std::collections::BTreeSet<u64> = all.iter().map(|m| m.delivery_tag()).collect();
        assert_eq!(tags.len(), 3, "delivery tags are distinct");
        assert!(all.iter().all(|m| m.consumer_tag().is_none()));
        Ok(())
    }
);

conformance!(consumer_fetch_with_no_ack, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    publisher.send(&2).await?;
    let forgotten = consumer
        .fetch_with(FetchOptions::new().no_ack(true))
        .await?
        .expect("a message");
    assert!(forgotten.acknowledged());
    assert_err!(
        forgotten.ack(),
        Error::AutoAcknowledged { mode: "no_ack", .. }
    );
    // The override was for one fetch: the next one needs an ack.
    let kept = consumer.fetch().await?.expect("a message");
    assert!(!kept.acknowledged());
    consumer.close().await?;
    let mut reader = t.reader(&conn).build().await?;
    assert_eq!(drain_numbers(&mut reader).await?, vec![2]);
    Ok(())
});

conformance!(consumer_fetch_with_auto_ack, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    let message = consumer
        .fetch_with(FetchOptions::new().auto_ack(true))
        .await?
        .expect("a message");
    assert_eq!(message.state(), MessageState::Acknowledged);
    assert_err!(
        message.ack(),
        Error::AutoAcknowledged {
            mode: "auto_ack",
            ..
        }
    );
    consumer.close().await?;
    let mut reader = t.reader(&conn).build().await?;
    assert!(reader.fetch().await?.is_none());

    // And the other way round: auto_ack(false) overrides a consumer's auto_ack.
    let mut auto = t.reader(&conn).auto_ack(true).build().await?;
    publisher.send(&2).await?;
    let manual = auto
        .fetch_with(FetchOptions::new().auto_ack(false))
        .await?
        .expect("a message");
    assert_eq!(manual.state(), MessageState::Received);
    manual.ack()?;
    Ok(())
});

conformance!(consumer_fetch_with_enable_callbacks, |t| async move {
    let conn = t.connect().await?;
    let seen: Shared<(Value, u64)> = shared();
    let record = seen.clone();
    let mut consumer = t
        .consumer(&conn)
        .callback(move |payload, message| {
            let data = payload.as_data().cloned().unwrap_or(Value::Null);
            record.lock().unwrap().push((data, message.delivery_tag()));
            Ok(())
        })
        .build()
        .await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&json!({"n": 1})).await?;
    publisher.send(&json!({"n": 2})).await?;
    let silent = consumer.fetch().await?.expect("a message");
    assert!(
        taken(&seen).is_empty(),
        "fetch runs no callbacks by default"
    );
    let called = consumer
        .fetch_with(FetchOptions::new().enable_callbacks(true))
        .await?
        .expect("a message");
    assert_eq!(taken(&seen), vec![(json!({"n": 2}), called.delivery_tag())]);
    silent.ack()?;
    called.ack()?;
    Ok(())
});

conformance!(consumer_iterconsume_stops_at_its_limit, |t| async move {
    let conn = t.connect().await?;
    let seen: Shared<Value> = shared();
    let record = seen.clone();
    let mut consumer = t.consumer(&conn).build().await?;
    consumer.register_callback(move |payload, message| {
        record
            .lock()
            .unwrap()
            .push(payload.as_data().cloned().unwrap_or(Value::Null));
        message.ack()
    });
    let publisher = t.publisher(&conn).build().await?;
    for i in 1..=3 {
        publisher.send(&i).await?;
    }
    let mut it = consumer.iterconsume(Some(2));
    let first = within("iterconsume", it.next()).await.expect("a message")?;
    let second = within("iterconsume", it.next()).await.expect("a message")?;
    assert!(it.next().await.is_none(), "the limit is reached");
    assert_eq!((num(&first), num(&second)), (1, 2));
    assert!(first.acknowledged() && second.acknowledged());
    assert_eq!(taken(&seen), vec![json!(1), json!(2)]);
    // The third message was not lost.
    let third = next(&mut consumer).await;
    assert_eq!(num(&third), 3);
    Ok(())
});

conformance!(consumer_iterqueue_ends_on_an_empty_queue, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    for i in 1..=5 {
        publisher.send(&i).await?;
    }
    let mut got = Vec::new();
    let mut it = consumer.iterqueue(carrot::IterQueueOptions::new().limit(2));
    while let Some(item) = it.next().await {
        let message = item?.expect("a message while the queue has some");
        got.push(num(&message));
        message.ack()?;
    }
    assert_eq!(got, vec![1, 2], "stops at the limit");
    let mut it = consumer.iterqueue(carrot::IterQueueOptions::new());
    while let Some(item) = it.next().await {
        let message = item?.expect("a message while the queue has some");
        got.push(num(&message));
        message.ack()?;
    }
    assert_eq!(got, vec![1, 2, 3, 4, 5], "stops when the queue is empty");
    Ok(())
});

conformance!(
    consumer_iterqueue_infinite_yields_none_for_an_empty_queue,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        t.publisher(&conn).build().await?.send("one").await?;
        let mut items = Vec::new();
        let mut it = consumer.iterqueue(carrot::IterQueueOptions::new().limit(3).infinite(true));
        while let Some(item) = it.next().await {
            items.push(item?.map(|m| text(&m)));
        }
        assert_eq!(items, vec![Some("one".to_string()), None, None]);
        Ok(())
    }
);

conformance!(consumer_wait_processes_limit_messages, |t| async move {
    let conn = t.connect().await?;
    let seen: Shared<i64> = shared();
    let record = seen.clone();
    let mut consumer = t.consumer(&conn).build().await?;
    consumer.register_callback(move |payload, message| {
        record
            .lock()
            .unwrap()
            .push(payload.as_data().and_then(Value::as_i64).unwrap_or(-1));
        message.ack()
    });
    let publisher = t.publisher(&conn).build().await?;
    for i in 1..=4 {
        publisher.send(&i).await?;
    }
    assert_eq!(within("wait", consumer.wait(Some(3))).await?, 3);
    assert_eq!(taken(&seen), vec![1, 2, 3]);
    Ok(())
});

// The seed raised NotImplementedError.
conformance!(consumer_without_callbacks_is_no_callbacks, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    t.publisher(&conn).build().await?.send(&1).await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_err!(consumer.receive(&message), Error::NoCallbacks);
    assert_err!(
        within("wait", consumer.wait(Some(1))).await,
        Error::NoCallbacks
    );
    let mut it = consumer.iterconsume(None);
    assert_err!(
        within("iterconsume", it.next())
            .await
            .expect("an error, not the end"),
        Error::NoCallbacks
    );
    message.requeue()?;
    assert_err!(
        consumer
            .fetch_with(FetchOptions::new().enable_callbacks(true))
            .await,
        Error::NoCallbacks
    );
    Ok(())
});

conformance!(consumer_runs_every_callback_in_order, |t| async move {
    let conn = t.connect().await?;
    let seen: Shared<String> = shared();
    let (a, b) = (seen.clone(), seen.clone());
    let mut consumer = t
        .consumer(&conn)
        .callback(move |payload, _| {
            a.lock().unwrap().push(format!("first {payload:?}"));
            Ok(())
        })
        .build()
        .await?;
    consumer.register_callback(move |_, message| {
        b.lock().unwrap().push("second".into());
        message.ack()
    });
    t.publisher(&conn).build().await?.send(&5).await?;
    let message = consumer.fetch().await?.expect("a message");
    consumer.receive(&message)?;
    assert_eq!(
        taken(&seen),
        vec![
            format!("first {:?}", Payload::Data(json!(5))),
            "second".to_string()
        ]
    );
    assert!(message.acknowledged());
    Ok(())
});

conformance!(consumer_callback_error_stops_wait, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    consumer.register_callback(|payload, _| match payload.as_data() {
        Some(v) if v == &json!(2) => Err(Error::InvalidArgument("two".into())),
        _ => Ok(()),
    });
    let publisher = t.publisher(&conn).build().await?;
    for i in 1..=3 {
        publisher.send(&i).await?;
    }
    assert_err!(
        within("wait", consumer.wait(Some(3))).await,
        Error::InvalidArgument(reason) if reason == "two"
    );
    Ok(())
});

conformance!(
    consumer_on_decode_error_gets_undecodable_messages,
    |t| async move {
        let conn = t.connect().await?;
        let failures: Shared<(Vec<u8>, bool)> = shared();
        let record = failures.clone();
        let good: Shared<Value> = shared();
        let record_good = good.clone();
        let mut consumer = t
            .consumer(&conn)
            .on_decode_error(move |message, error| {
                record.lock().unwrap().push((
                    message.body().to_vec(),
                    matches!(error, Error::Decode { .. }),
                ));
                message.reject().expect("reject the undecodable message");
            })
            .callback(move |payload, message| {
                record_good
                    .lock()
                    .unwrap()
                    .push(payload.as_data().cloned().unwrap_or(Value::Null));
                message.ack()
            })
            .build()
            .await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher
            .publish(undecodable(), &SendOptions::new())
            .await?;
        publisher.send(&1).await?;
        assert_eq!(within("wait", consumer.wait(Some(2))).await?, 2);
        assert_eq!(taken(&failures), vec![(b"{not json".to_vec(), true)]);
        assert_eq!(taken(&good), vec![json!(1)]);
        Ok(())
    }
);

conformance!(
    consumer_without_on_decode_error_returns_the_decode_error,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).callback(|_, _| Ok(())).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        publisher
            .publish(undecodable(), &SendOptions::new())
            .await?;
        assert_err!(
            within("wait", consumer.wait(Some(1))).await,
            Error::Decode { .. }
        );
        Ok(())
    }
);

conformance!(
    consumer_discard_all_drops_waiting_messages,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        for i in 0..5 {
            publisher.send(&i).await?;
        }
        assert_eq!(consumer.discard_all().await?, 5);
        assert!(consumer.fetch().await?.is_none());
        assert_eq!(consumer.discard_all().await?, 0);
        Ok(())
    }
);

// The seed's example filter; unlike the seed, the messages kept go back to the queue in order.
conformance!(
    consumer_discard_all_matching_keeps_the_others_in_order,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let kinds = ["feed", "mail", "feed", "mail", "other", "feed"];
        for (n, kind) in kinds.iter().enumerate() {
            publisher.send(&json!({"n": n, "type": kind})).await?;
        }
        let waiting_feeds_only = |message: &carrot::Message| {
            message
                .decode::<Value>()
                .map(|data| data["type"] == "feed")
                .unwrap_or(false)
        };
        assert_eq!(consumer.discard_all_matching(waiting_feeds_only).await?, 3);
        consumer.close().await?;
        let mut reader = t.reader(&conn).build().await?;
        let left: Vec<u64> = fetch_all(&mut reader)
            .await?
            .iter()
            .map(|m| m.decode::<Value>().unwrap()["n"].as_u64().unwrap())
            .collect();
        assert_eq!(left, vec![1, 3, 4]);
        Ok(())
    }
);

conformance!(consumer_cancel_stops_consuming, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    consumer.consume().await?;
    assert!(consumer.consumer_tag().is_some());
    assert_eq!(conn.queue_info(&t.name("q")).await?.consumer_count, 1);
    consumer.cancel().await?;
    assert!(consumer.consumer_tag().is_none());
    assert_eq!(conn.queue_info(&t.name("q")).await?.consumer_count, 0);
    t.publisher(&conn).build().await?.send(&1).await?;
    // Nobody consumes: the message waits in the queue.
    assert_eq!(conn.queue_info(&t.name("q")).await?.message_count, 1);
    consumer.cancel().await?; // cancelling twice is harmless
    Ok(())
});

conformance!(consumer_close_closes_its_channel, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    consumer.close().await?;
    assert_err!(consumer.fetch().await, Error::ChannelClosed { .. });
    Ok(())
});

conformance!(consumer_tag_is_chosen_by_the_builder, |t| async move {
    let conn = t.connect().await?;
    let tag = t.name("tag");
    let mut consumer = t.consumer(&conn).consumer_tag(&tag).build().await?;
    consumer.consume().await?;
    assert_eq!(consumer.consumer_tag(), Some(tag.as_str()));
    t.publisher(&conn).build().await?.send(&1).await?;
    assert_eq!(next(&mut consumer).await.consumer_tag(), Some(tag.as_str()));
    Ok(())
});

// ConsumerSet ----------------------------------------------------------------------------------

/// The seed's `from_dict` example, with names of this scenario.
fn seed_links_config(t: &Scenario) -> Value {
    json!({
        t.name("webshot"): {
            "exchange": t.name("link_exchange"),
            "exchange_type": "topic",
            "binding_key": "links.webshot",
            "default_routing_key": "links.webshot",
        },
        t.name("retrieve"): {
            "exchange": t.name("link_exchange"),
            "exchange_type": "topic",
            "binding_key": "links.*",
            "default_routing_key": "links.retrieve",
            "auto_delete": true,
        },
    })
}

/// Publishes `links.webshot` then `links.retrieve` to the example's exchange.
async fn publish_links(t: &Scenario, conn: &carrot::BrokerConnection) -> carrot::Result<()> {
    let publisher = Publisher::builder(conn)
        .exchange(t.name("link_exchange"))
        .exchange_type(ExchangeType::Topic)
        .auto_declare(false)
        .build()
        .await?;
    publisher
        .send_with("webshot", SendOptions::new().routing_key("links.webshot"))
        .await?;
    publisher
        .send_with("retrieve", SendOptions::new().routing_key("links.retrieve"))
        .await
}

/// Which queue got what, from a set's callbacks.
fn record_queues(set: &mut ConsumerSet) -> Shared<(String, String)> {
    let seen: Shared<(String, String)> = shared();
    let record = seen.clone();
    set.register_callback(move |payload, message| {
        let body = match payload.as_data() {
            Some(Value::String(s)) => s.clone(),
            other => format!("{other:?}"),
        };
        let key = message.routing_key().to_string();
        record.lock().unwrap().push((key, body));
        message.ack()
    });
    seen
}

conformance!(consumer_set_from_dict_seed_example, |t| async move {
    let conn = t.connect().await?;
    let mut set = ConsumerSet::new(&conn);
    set.from_dict(&seed_links_config(&t)).await?;
    assert_eq!(set.consumers().len(), 2);
    let seen = record_queues(&mut set);
    publish_links(&t, &conn).await?;
    // links.webshot reaches both queues, links.retrieve only "retrieve".
    assert_eq!(within("wait", set.wait(Some(3))).await?, 3);
    let mut got = taken(&seen);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("links.retrieve".to_string(), "retrieve".to_string()),
            ("links.webshot".to_string(), "webshot".to_string()),
            ("links.webshot".to_string(), "webshot".to_string()),
        ]
    );
    Ok(())
});

conformance!(
    consumer_set_add_consumer_from_dict_binds_as_told,
    |t| async move {
        let conn = t.connect().await?;
        let mut set = ConsumerSet::new(&conn);
        let mut config = seed_links_config(&t);
        for (queue, options) in config.as_object_mut().unwrap() {
            options.as_object_mut().unwrap().remove("auto_delete");
            set.add_consumer_from_dict(queue, options).await?;
        }
        let queues: Vec<&str> = set.consumers().iter().map(|c| c.queue()).collect();
        assert_eq!(queues.len(), 2);
        assert!(queues.contains(&t.name("webshot").as_str()));
        publish_links(&t, &conn).await?;
        let mut webshot = Consumer::builder(&conn)
            .queue(t.name("webshot"))
            .auto_declare(false)
            .build()
            .await?;
        let mut retrieve = Consumer::builder(&conn)
            .queue(t.name("retrieve"))
            .auto_declare(false)
            .build()
            .await?;
        assert_eq!(drain_texts(&mut webshot).await?, vec!["webshot"]);
        assert_eq!(
            drain_texts(&mut retrieve).await?,
            vec!["webshot", "retrieve"]
        );
        Ok(())
    }
);

conformance!(
    consumer_set_dict_errors_are_invalid_arguments,
    |t| async move {
        let conn = t.connect().await?;
        let mut set = ConsumerSet::new(&conn);
        let err = set
            .add_consumer_from_dict(
                &t.name("q"),
                &json!({"exchange": t.name("ex"), "routing_kye": "k"}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("routing_kye"), "{err}");
        assert_err!(conn.queue_info(&t.name("q")).await, Error::NotFound(_));
        assert_err!(
            set.add_consumer_from_dict(
                &t.name("q"),
                &json!({"exchange": t.name("ex"), "exchange_type": "carrier-pigeon"})
            )
            .await,
            Error::InvalidArgument(_)
        );
        assert_err!(
            set.from_dict(&json!(["not", "a", "dict"])).await,
            Error::InvalidArgument(_)
        );
        assert!(set.consumers().is_empty());
        Ok(())
    }
);

conformance!(consumer_set_add_consumer_and_set_auto_ack, |t| async move {
    let conn = t.connect().await?;
    let mut set = ConsumerSet::new(&conn);
    set.add_consumer(t.consumer(&conn).build().await?);
    set.set_auto_ack(true);
    set.add_consumer_from_dict(
        &t.name("q2"),
        &json!({"exchange": t.name("ex"), "routing_key": "k"}),
    )
    .await?;
    assert_eq!(set.consumers().len(), 2);
    let seen: Shared<(String, bool)> = shared();
    let record = seen.clone();
    set.register_callback(move |_, message| {
        record
            .lock()
            .unwrap()
            .push((message.routing_key().to_string(), message.acknowledged()));
        Ok(())
    });
    t.publisher(&conn).build().await?.send(&1).await?;
    assert_eq!(within("wait", set.wait(Some(2))).await?, 2);
    let mut acked: Vec<bool> = taken(&seen).into_iter().map(|(_, a)| a).collect();
    acked.sort();
    // The consumer built by hand acks by hand; the one from the dict got the set's auto_ack.
    assert_eq!(acked, vec![false, true]);
    Ok(())
});

conformance!(
    consumer_set_without_callbacks_is_no_callbacks,
    |t| async move {
        let conn = t.connect().await?;
        let mut set = ConsumerSet::new(&conn);
        set.add_consumer(t.consumer(&conn).build().await?);
        t.publisher(&conn).build().await?.send(&1).await?;
        assert_err!(within("wait", set.wait(Some(1))).await, Error::NoCallbacks);
        Ok(())
    }
);

conformance!(consumer_set_on_decode_error, |t| async move {
    let conn = t.connect().await?;
    let mut set = ConsumerSet::new(&conn);
    set.add_consumer(t.consumer(&conn).build().await?);
    let failures: Shared<bool> = shared();
    let record = failures.clone();
    set.set_on_decode_error(move |message, error| {
        record
            .lock()
            .unwrap()
            .push(matches!(error, Error::Decode { .. }));
        message.reject().expect("reject");
    });
    let good = record_queues(&mut set);
    let publisher = t.publisher(&conn).build().await?;
    publisher
        .publish(undecodable(), &SendOptions::new())
        .await?;
    publisher.send("fine").await?;
    assert_eq!(within("wait", set.wait(Some(2))).await?, 2);
    assert_eq!(taken(&failures), vec![true]);
    assert_eq!(taken(&good), vec![("k".to_string(), "fine".to_string())]);
    Ok(())
});

/// A set of two consumers on queues `a` and `b`, bound to `ex` with keys `a` and `b`, and a
/// publisher to `ex`.
async fn two_queue_set(
    t: &Scenario,
    conn: &carrot::BrokerConnection,
) -> carrot::Result<(ConsumerSet, Publisher)> {
    let mut set = ConsumerSet::new(conn);
    for key in ["a", "b"] {
        set.add_consumer(
            Consumer::builder(conn)
                .queue(t.name(key))
                .exchange(t.name("ex"))
                .routing_key(key)
                .build()
                .await?,
        );
    }
    let publisher = t.publisher(conn).build().await?;
    Ok((set, publisher))
}

conformance!(
    consumer_set_iterconsume_cycles_fairly_over_queues,
    |t| async move {
        let conn = t.connect().await?;
        let (mut set, publisher) = two_queue_set(&t, &conn).await?;
        for i in 0..12 {
            publisher
                .send_with(&i, SendOptions::new().routing_key("a"))
                .await?;
        }
        for i in 0..8 {
            publisher
                .send_with(&i, SendOptions::new().routing_key("b"))
                .await?;
        }
        set.register_callback(|_, message| message.ack());
        // Deliveries reach the client asynchronously on a network broker: start consuming and
        // wait until both queues have handed over their messages, so that both are waiting.
        set.consume().await?;
        let mut deadline = Deadline::new("both queues delivered");
        while conn.queue_info(&t.name("a")).await?.message_count > 0
            || conn.queue_info(&t.name("b")).await?.message_count > 0
        {
            deadline.tick().await;
        }
        // Handed over by the broker is not yet received here (the last ones may still be on
        // the wire, or in lapin): give them a moment.
        pause(QUIET).await;
        let mut order = Vec::new();
        let mut it = set.iterconsume(Some(20));
        while let Some(message) = within("iterconsume", it.next()).await {
            let message = message?;
            order.push(format!("{}{}", message.routing_key(), num(&message)));
        }
        assert_eq!(order.len(), 20);
        // While both queues hold messages, they alternate; each queue's order is kept.
        let (both, rest) = order.split_at(16);
        assert!(
            both.chunks(2).all(|pair| pair[0][..1] != pair[1][..1]),
            "{order:?}"
        );
        assert!(rest.iter().all(|m| m.starts_with('a')), "{order:?}");
        for queue in ["a", "b"] {
            let numbers: Vec<i64> = order
                .iter()
                .filter(|m| m.starts_with(queue))
                .map(|m| m[1..].parse().unwrap())
                .collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        }
        Ok(())
    }
);

conformance!(
    consumer_set_discard_all_empties_every_queue,
    |t| async move {
        let conn = t.connect().await?;
        let (mut set, publisher) = two_queue_set(&t, &conn).await?;
        for key in ["a", "a", "b"] {
            publisher
                .send_with(&1, SendOptions::new().routing_key(key))
                .await?;
        }
        assert_eq!(set.discard_all().await?, 3);
        for key in ["a", "b"] {
            assert_eq!(conn.queue_info(&t.name(key)).await?.message_count, 0);
        }
        Ok(())
    }
);

conformance!(consumer_set_qos_bounds_each_consumer, |t| async move {
    let conn = t.connect().await?;
    let (mut set, publisher) = two_queue_set(&t, &conn).await?;
    set.qos(carrot::Qos::new().prefetch_count(1)).await?;
    for i in 0..3 {
        publisher
            .send_with(&i, SendOptions::new().routing_key("a"))
            .await?;
    }
    set.register_callback(|_, _| Ok(())); // no ack
    let mut it = set.iterconsume(None);
    let first = within("iterconsume", it.next()).await.expect("a message")?;
    assert_eq!(num(&first), 0);
    assert!(
        tokio::time::timeout(QUIET, it.next()).await.is_err(),
        "prefetch 1: nothing more before an ack"
    );
    first.ack()?;
    let second = within("iterconsume", it.next()).await.expect("a message")?;
    assert_eq!(num(&second), 1);
    Ok(())
});

conformance!(consumer_set_flow_pauses_every_consumer, |t| async move {
    let conn = t.connect().await?;
    let (mut set, publisher) = two_queue_set(&t, &conn).await?;
    set.register_callback(|_, message| message.ack());
    set.flow(false).await?;
    for key in ["a", "b"] {
        publisher
            .send_with(&1, SendOptions::new().routing_key(key))
            .await?;
    }
    {
        let mut it = set.iterconsume(None);
        assert!(
            tokio::time::timeout(QUIET, it.next()).await.is_err(),
            "no delivery while flow is off"
        );
    }
    set.flow(true).await?;
    assert_eq!(within("wait", set.wait(Some(2))).await?, 2);
    Ok(())
});

conformance!(consumer_set_cancel_and_close, |t| async move {
    let conn = t.connect().await?;
    let (mut set, publisher) = two_queue_set(&t, &conn).await?;
    set.register_callback(|_, _| Ok(())); // no ack
    publisher
        .send_with(&1, SendOptions::new().routing_key("a"))
        .await?;
    let held = within("wait", set.wait(Some(1))).await?;
    assert_eq!(held, 1);
    for key in ["a", "b"] {
        assert_eq!(conn.queue_info(&t.name(key)).await?.consumer_count, 1);
    }
    set.cancel().await?;
    for key in ["a", "b"] {
        assert_eq!(conn.queue_info(&t.name(key)).await?.consumer_count, 0);
    }
    // Unacknowledged messages go back when the set closes.
    set.close().await?;
    let mut reader = Consumer::builder(&conn)
        .queue(t.name("a"))
        .auto_declare(false)
        .build()
        .await?;
    let back = reader.fetch().await?.expect("the unacknowledged message");
    assert_eq!(num(&back), 1);
    assert!(back.redelivered());
    Ok(())
});

// Messaging ------------------------------------------------------------------------------------

conformance!(messaging_sends_fetches_and_receives, |t| async move {
    let conn = t.connect().await?;
    let mut messaging = Messaging::builder(&conn)
        .exchange(t.name("ex"))
        .queue(t.name("q"))
        .routing_key("jobs")
        .build()
        .await?;
    assert_eq!(messaging.publisher().routing_key(), "jobs");
    assert_eq!(messaging.consumer().queue(), t.name("q"));
    messaging.send(&json!({"job": 1})).await?;
    let message = messaging.fetch().await?.expect("a message");
    assert_eq!(message.decode::<Value>()?, json!({"job": 1}));
    assert_err!(messaging.receive(&message), Error::NoCallbacks);
    message.ack()?;

    let seen: Shared<Value> = shared();
    let record = seen.clone();
    messaging.register_callback(move |payload, message| {
        record
            .lock()
            .unwrap()
            .push(payload.as_data().cloned().unwrap_or(Value::Null));
        message.ack()
    });
    messaging
        .send_with(&2, SendOptions::new().priority(3))
        .await?;
    let message = messaging
        .fetch_with(FetchOptions::new().enable_callbacks(true))
        .await?
        .expect("a message");
    assert_eq!(message.priority(), Some(3));
    messaging.send(&3).await?;
    assert_eq!(within("wait", messaging.wait(Some(1))).await?, 1);
    assert_eq!(taken(&seen), vec![json!(2), json!(3)]);

    messaging.close().await?;
    assert_err!(messaging.send(&4).await, Error::ChannelClosed { .. });
    assert_err!(messaging.fetch().await, Error::ChannelClosed { .. });
    Ok(())
});

conformance!(
    messaging_builder_settings_reach_both_sides,
    |t| async move {
        let conn = t.connect().await?;
        let mut messaging = Messaging::builder(&conn)
            .exchange(t.name("ex"))
            .exchange_type(ExchangeType::Topic)
            .queue(t.name("q"))
            .routing_key("jobs.#")
            .durable(false)
            .serializer("raw")
            .delivery_mode(DeliveryMode::Transient)
            .auto_ack(true)
            .build()
            .await?;
        assert_eq!(messaging.publisher().exchange_type(), ExchangeType::Topic);
        assert!(!messaging.publisher().durable());
        messaging
            .send_with("text", SendOptions::new().routing_key("jobs.a.b"))
            .await?;
        let message = messaging.fetch().await?.expect("a message");
        assert_eq!(message.content_type(), Some("text/plain"));
        assert_eq!(message.delivery_mode(), Some(DeliveryMode::Transient));
        assert!(message.acknowledged(), "auto_ack");
        Ok(())
    }
);
