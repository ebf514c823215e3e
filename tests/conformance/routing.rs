//! Exchanges route as AMQP 0-9-1 says: direct, fanout, topic, headers, and the default exchange;
//! exchange-to-exchange bindings and internal exchanges as RabbitMQ does.

use std::collections::BTreeMap;

use carrot::{
    table, Consumer, Error, ExchangeSpec, ExchangeType, FieldTable, FieldValue, Publisher,
    QueueSpec, SendOptions,
};

use crate::support::*;

/// What each queue received, by local queue name, in order.
type Routed = BTreeMap<String, Vec<String>>;

fn routed(expected: &[(&str, &[&str])]) -> Routed {
    expected
        .iter()
        .map(|(q, keys)| (q.to_string(), keys.iter().map(|k| k.to_string()).collect()))
        .collect()
}

/// Declares an exchange of `kind`, the queues of `bindings` bound with their keys, publishes
/// one message per key of `keys` (its body is the key) and returns what each queue got.
async fn route(
    t: &Scenario,
    kind: ExchangeType,
    bindings: &[(&str, &str)],
    keys: &[&str],
) -> carrot::Result<Routed> {
    let conn = t.connect().await?;
    let exchange = t.name("ex");
    conn.declare_exchange(&ExchangeSpec::new(&exchange, kind))
        .await?;
    let mut queues: Vec<&str> = Vec::new();
    for (queue, key) in bindings {
        if !queues.contains(queue) {
            queues.push(queue);
            conn.declare_queue(&QueueSpec::new(t.name(queue))).await?;
        }
        conn.bind(&t.name(queue), &exchange, key, &FieldTable::new())
            .await?;
    }
    let publisher = Publisher::builder(&conn)
        .exchange(&exchange)
        .exchange_type(kind)
        .build()
        .await?;
    for key in keys {
        publisher
            .send_with(key, SendOptions::new().routing_key(*key))
            .await?;
    }
    let mut got = Routed::new();
    for queue in queues {
        let mut consumer = Consumer::builder(&conn)
            .queue(t.name(queue))
            .auto_declare(false)
            .build()
            .await?;
        got.insert(queue.to_string(), drain_texts(&mut consumer).await?);
    }
    Ok(got)
}

/// Like [`route`] for a headers exchange: bindings carry arguments, messages carry headers
/// and their body is their label.
async fn route_headers(
    t: &Scenario,
    bindings: &[(&str, FieldTable)],
    messages: &[(&str, FieldTable)],
) -> carrot::Result<Routed> {
    let conn = t.connect().await?;
    let exchange = t.name("headers");
    conn.declare_exchange(&ExchangeSpec::new(&exchange, ExchangeType::Headers))
        .await?;
    for (queue, arguments) in bindings {
        conn.declare_queue(&QueueSpec::new(t.name(queue))).await?;
        conn.bind(&t.name(queue), &exchange, "", arguments).await?;
    }
    let publisher = Publisher::builder(&conn)
        .exchange(&exchange)
        .exchange_type(ExchangeType::Headers)
        .build()
        .await?;
    for (label, headers) in messages {
        publisher
            .send_with(label, SendOptions::new().headers(headers.clone()))
            .await?;
    }
    let mut got = Routed::new();
    for (queue, _) in bindings {
        let mut consumer = Consumer::builder(&conn)
            .queue(t.name(queue))
            .auto_declare(false)
            .build()
            .await?;
        got.insert(queue.to_string(), drain_texts(&mut consumer).await?);
    }
    Ok(got)
}

conformance!(
    direct_routes_when_the_key_equals_the_binding_key,
    |t| async move {
        let got = route(
            &t,
            ExchangeType::Direct,
            &[("q1", "a"), ("q2", "b"), ("q3", "a")],
            &["a", "b", "c", "A", "", "a.b"],
        )
        .await?;
        assert_eq!(
            got,
            routed(&[("q1", &["a"]), ("q2", &["b"]), ("q3", &["a"])])
        );
        Ok(())
    }
);

conformance!(direct_queue_bound_with_two_keys_gets_both, |t| async move {
    let got = route(
        &t,
        ExchangeType::Direct,
        &[("q", "a"), ("q", "b")],
        &["a", "b", "c"],
    )
    .await?;
    assert_eq!(got, routed(&[("q", &["a", "b"])]));
    Ok(())
});

conformance!(
    direct_empty_binding_key_matches_only_the_empty_key,
    |t| async move {
        let got = route(&t, ExchangeType::Direct, &[("q", "")], &["", "a"]).await?;
        assert_eq!(got, routed(&[("q", &[""])]));
        Ok(())
    }
);

conformance!(
    fanout_reaches_every_bound_queue_whatever_the_key,
    |t| async move {
        let got = route(
            &t,
            ExchangeType::Fanout,
            &[("q1", "x"), ("q2", "")],
            &["a", "", "x", "some.long.key"],
        )
        .await?;
        let all: &[&str] = &["a", "", "x", "some.long.key"];
        assert_eq!(got, routed(&[("q1", all), ("q2", all)]));
        Ok(())
    }
);

conformance!(
    fanout_delivers_one_copy_to_a_queue_bound_twice,
    |t| async move {
        let got = route(&t, ExchangeType::Fanout, &[("q", "x"), ("q", "y")], &["z"]).await?;
        assert_eq!(got, routed(&[("q", &["z"])]));
        Ok(())
    }
);

// The seed's example: "*.stock.#" matches "usd.stock" and "eur.stock.db" but not "stock.nasdaq".
conformance!(topic_seed_example, |t| async move {
    let got = route(
        &t,
        ExchangeType::Topic,
        &[("q", "*.stock.#")],
        &[
            "usd.stock",
            "eur.stock.db",
            "stock.nasdaq",
            "usd.stocks",
            "a.b.stock",
        ],
    )
    .await?;
    assert_eq!(got, routed(&[("q", &["usd.stock", "eur.stock.db"])]));
    Ok(())
});

conformance!(topic_star_matches_exactly_one_word, |t| async move {
    let got = route(
        &t,
        ExchangeType::Topic,
        &[("q", "a.*"), ("mid", "a.*.c")],
        &["a", "a.b", "a.b.c", "b.a", "a.x.c"],
    )
    .await?;
    assert_eq!(
        got,
        routed(&[("q", &["a.b"]), ("mid", &["a.b.c", "a.x.c"])])
    );
    Ok(())
});

conformance!(topic_hash_matches_zero_or_more_words, |t| async move {
    let got = route(
        &t,
        ExchangeType::Topic,
        &[("tail", "a.#"), ("head", "#.a"), ("middle", "a.#.b")],
        &["a", "a.b", "a.b.c", "b.a", "x.y.a", "a.x.y.b", "b"],
    )
    .await?;
    assert_eq!(
        got,
        routed(&[
            ("tail", &["a", "a.b", "a.b.c", "a.x.y.b"]),
            ("head", &["a", "b.a", "x.y.a"]),
            ("middle", &["a.b", "a.x.y.b"]),
        ])
    );
    Ok(())
});

conformance!(topic_hash_hash_matches_like_hash, |t| async move {
    let got = route(
        &t,
        ExchangeType::Topic,
        &[("hh", "#.#"), ("h", "#"), ("hah", "#.a.#")],
        &["", "a", "b.c", "x.a.y", "b"],
    )
    .await?;
    assert_eq!(
        got,
        routed(&[
            ("hh", &["", "a", "b.c", "x.a.y", "b"]),
            ("h", &["", "a", "b.c", "x.a.y", "b"]),
            ("hah", &["a", "x.a.y"]),
        ])
    );
    Ok(())
});

// An empty key has zero words: `#` and the empty pattern match it, `*` does not.
conformance!(topic_empty_keys_have_zero_words, |t| async move {
    let got = route(
        &t,
        ExchangeType::Topic,
        &[("hash", "#"), ("star", "*"), ("empty", "")],
        &["", "a"],
    )
    .await?;
    assert_eq!(
        got,
        routed(&[("hash", &["", "a"]), ("star", &["a"]), ("empty", &[""])])
    );
    Ok(())
});

// `a..b` has three words, the middle one empty; `.` has two empty words.
conformance!(topic_empty_words_are_words, |t| async move {
    let got = route(
        &t,
        ExchangeType::Topic,
        &[
            ("mid", "a.*.b"),
            ("two", "*.*"),
            ("one", "*"),
            ("lit", "a..b"),
        ],
        &["a..b", ".", "a.b", "a"],
    )
    .await?;
    assert_eq!(
        got,
        routed(&[
            ("mid", &["a..b"]),
            ("two", &[".", "a.b"]),
            ("one", &["a"]),
            ("lit", &["a..b"]),
        ])
    );
    Ok(())
});

conformance!(
    topic_delivers_one_copy_when_several_bindings_match,
    |t| async move {
        let got = route(
            &t,
            ExchangeType::Topic,
            &[("q", "a.*"), ("q", "#"), ("q", "a.b")],
            &["a.b"],
        )
        .await?;
        assert_eq!(got, routed(&[("q", &["a.b"])]));
        Ok(())
    }
);

conformance!(headers_x_match_all_is_the_default, |t| async move {
    let binding = table([("format", "pdf".into()), ("type", "report".into())]);
    let got = route_headers(
        &t,
        &[("q", binding)],
        &[
            (
                "both",
                table([("format", "pdf".into()), ("type", "report".into())]),
            ),
            (
                "both-and-more",
                table([
                    ("format", "pdf".into()),
                    ("type", "report".into()),
                    ("extra", 1.into()),
                ]),
            ),
            ("one", table([("format", "pdf".into())])),
            (
                "other-value",
                table([("format", "zip".into()), ("type", "report".into())]),
            ),
            ("none", FieldTable::new()),
        ],
    )
    .await;
    if t.backend.redis {
        // kombu's Redis transport has no headers exchange.
        assert_err!(got, Error::Unsupported(_));
        return Ok(());
    }
    assert_eq!(got?, routed(&[("q", &["both", "both-and-more"])]));
    Ok(())
});

conformance!(headers_x_match_any_needs_one_header, |t| async move {
    let binding = table([
        ("x-match", "any".into()),
        ("format", "pdf".into()),
        ("type", "report".into()),
    ]);
    let got = route_headers(
        &t,
        &[("q", binding)],
        &[
            ("format", table([("format", "pdf".into())])),
            (
                "type",
                table([("format", "zip".into()), ("type", "report".into())]),
            ),
            ("neither", table([("format", "zip".into())])),
            ("none", FieldTable::new()),
        ],
    )
    .await;
    if t.backend.redis {
        // kombu's Redis transport has no headers exchange.
        assert_err!(got, Error::Unsupported(_));
        return Ok(());
    }
    assert_eq!(got?, routed(&[("q", &["format", "type"])]));
    Ok(())
});

conformance!(headers_x_keys_are_ignored_when_matching, |t| async move {
    let all = table([
        ("x-match", "all".into()),
        ("x-custom", "ignored".into()),
        ("format", "pdf".into()),
    ]);
    let got = route_headers(
        &t,
        &[("q", all)],
        &[
            ("pdf", table([("format", "pdf".into())])),
            (
                "pdf-with-x",
                table([("format", "pdf".into()), ("x-custom", "other".into())]),
            ),
            ("x-only", table([("x-custom", "ignored".into())])),
        ],
    )
    .await;
    if t.backend.redis {
        // kombu's Redis transport has no headers exchange.
        assert_err!(got, Error::Unsupported(_));
        return Ok(());
    }
    assert_eq!(got?, routed(&[("q", &["pdf", "pdf-with-x"])]));
    Ok(())
});

conformance!(headers_values_must_be_equal, |t| async move {
    let binding = table([("n", FieldValue::Int(1)), ("flag", true.into())]);
    let got = route_headers(
        &t,
        &[("q", binding)],
        &[
            ("equal", table([("n", 1.into()), ("flag", true.into())])),
            ("other-n", table([("n", 2.into()), ("flag", true.into())])),
            (
                "other-flag",
                table([("n", 1.into()), ("flag", false.into())]),
            ),
        ],
    )
    .await;
    if t.backend.redis {
        // kombu's Redis transport has no headers exchange.
        assert_err!(got, Error::Unsupported(_));
        return Ok(());
    }
    assert_eq!(got?, routed(&[("q", &["equal"])]));
    Ok(())
});

conformance!(
    headers_binding_through_the_consumer_builder,
    |t| async move {
        let conn = t.connect().await?;
        let built = Consumer::builder(&conn)
            .queue(t.name("q"))
            .exchange(t.name("headers"))
            .exchange_type(ExchangeType::Headers)
            .binding_arguments(table([("x-match", "any".into()), ("kind", "a".into())]))
            .build()
            .await;
        if t.backend.redis {
            // kombu's Redis transport has no headers exchange; amq.headers exists, unbindable.
            assert_err!(built, Error::Unsupported(_));
            conn.declare_queue(&QueueSpec::new(t.name("q"))).await?;
            let arguments = table([("x-match", "any".into()), ("kind", "a".into())]);
            assert_err!(
                conn.bind(&t.name("q"), "amq.headers", "", &arguments).await,
                Error::Unsupported(_)
            );
            return Ok(());
        }
        let mut consumer = built?;
        let publisher = Publisher::builder(&conn)
            .exchange(t.name("headers"))
            .exchange_type(ExchangeType::Headers)
            .build()
            .await?;
        publisher
            .send_with(
                &1,
                SendOptions::new().headers(table([("kind", "b".into())])),
            )
            .await?;
        publisher
            .send_with(
                &2,
                SendOptions::new().headers(table([("kind", "a".into())])),
            )
            .await?;
        let message = consumer.fetch().await?.expect("the matching message");
        assert_eq!(num(&message), 2);
        assert_eq!(
            message.headers().and_then(|h| h.get("kind")),
            Some(&FieldValue::from("a"))
        );
        message.ack()?;
        assert!(consumer.fetch().await?.is_none());
        Ok(())
    }
);

conformance!(default_exchange_routes_by_queue_name, |t| async move {
    let conn = t.connect().await?;
    let queue = t.name("q");
    let mut consumer = Consumer::builder(&conn).queue(&queue).build().await?;
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .build()
        .await?;
    assert_eq!(publisher.exchange(), "");
    publisher.send(&1).await?;
    publisher
        .send_with(&2, SendOptions::new().routing_key(t.name("no-such-queue")))
        .await?;
    let message = consumer.fetch().await?.expect("routed by queue name");
    assert_eq!(num(&message), 1);
    assert_eq!(message.exchange(), "");
    assert_eq!(message.routing_key(), queue);
    message.ack()?;
    assert!(consumer.fetch().await?.is_none());
    Ok(())
});

conformance!(default_exchange_cannot_be_bound_to, |t| async move {
    let conn = t.connect().await?;
    let queue = t.name("q");
    conn.declare_queue(&QueueSpec::new(&queue)).await?;
    let err = conn
        .bind(&queue, "", "anything", &FieldTable::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    assert_eq!(err.reply_code(), Some(403));
    Ok(())
});

conformance!(predeclared_amq_exchanges_exist_and_route, |t| async move {
    let conn = t.connect().await?;
    for name in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        conn.exchange_exists(name).await?;
    }
    // amq.topic is shared by every scenario on a broker: bind with a key of this scope.
    let queue = t.name("q");
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .exchange("amq.topic")
        .exchange_type(ExchangeType::Topic)
        .routing_key(format!("{}.#", t.scope))
        .build()
        .await?;
    let publisher = Publisher::builder(&conn)
        .exchange("amq.topic")
        .exchange_type(ExchangeType::Topic)
        .build()
        .await?;
    publisher
        .send_with(
            &1,
            SendOptions::new().routing_key(format!("{}.x.y", t.scope)),
        )
        .await?;
    publisher
        .send_with(
            &2,
            SendOptions::new().routing_key(format!("other-{}", t.scope)),
        )
        .await?;
    assert_eq!(drain_numbers(&mut consumer).await?, vec![1]);
    conn.unbind(
        &queue,
        "amq.topic",
        &format!("{}.#", t.scope),
        &FieldTable::new(),
    )
    .await?;
    Ok(())
});

conformance!(unbind_stops_routing, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    conn.unbind(&t.name("q"), &t.name("ex"), "k", &FieldTable::new())
        .await?;
    publisher.send(&2).await?;
    assert_eq!(drain_numbers(&mut consumer).await?, vec![1]);
    Ok(())
});

// Exchange-to-exchange bindings (RabbitMQ's extension, kombu's `Exchange.bind_to`).
conformance!(
    exchanges_bound_to_exchanges_route_on_with_the_same_key,
    |t| async move {
        let conn = t.connect().await?;
        let none = FieldTable::new();
        let (events, audit, dead_end) = (t.name("events"), t.name("audit"), t.name("dead-end"));
        conn.declare_exchange(&ExchangeSpec::new(&events, ExchangeType::Topic))
            .await?;
        conn.declare_exchange(&ExchangeSpec::new(&audit, ExchangeType::Direct))
            .await?;
        conn.declare_exchange(&ExchangeSpec::new(&dead_end, ExchangeType::Fanout))
            .await?;
        let bound = conn.bind_exchange(&audit, &events, "user.#", &none).await;
        if t.backend.redis {
            // kombu's Redis transport has no exchange-to-exchange bindings.
            assert_err!(bound, Error::Unsupported(_));
            assert_err!(
                conn.unbind_exchange(&audit, &events, "user.#", &none).await,
                Error::Unsupported(_)
            );
            return Ok(());
        }
        bound?;
        conn.bind_exchange(&audit, &events, "user.#", &none).await?; // twice is once
        conn.bind_exchange(&dead_end, &events, "#", &none).await?;
        let (logins, all) = (t.name("logins"), t.name("all"));
        conn.declare_queue(&QueueSpec::new(&logins)).await?;
        conn.declare_queue(&QueueSpec::new(&all)).await?;
        // The key goes on unchanged: audit (direct) matches it exactly.
        conn.bind(&logins, &audit, "user.login", &none).await?;
        // Two paths to one queue: events -> all, and events -> audit -> all.
        conn.bind(&all, &events, "#", &none).await?;
        conn.bind(&all, &audit, "user.login", &none).await?;
        let publisher = Publisher::builder(&conn)
            .exchange(&events)
            .exchange_type(ExchangeType::Topic)
            .auto_declare(false)
            .build()
            .await?;
        for key in ["user.login", "user.logout", "order.paid"] {
            publisher
                .send_with(key, SendOptions::new().routing_key(key))
                .await?;
        }
        let mut logins_reader = Consumer::builder(&conn)
            .queue(&logins)
            .auto_declare(false)
            .build()
            .await?;
        let mut all_reader = Consumer::builder(&conn)
            .queue(&all)
            .auto_declare(false)
            .build()
            .await?;
        assert_eq!(drain_texts(&mut logins_reader).await?, ["user.login"]);
        assert_eq!(
            drain_texts(&mut all_reader).await?,
            ["user.login", "user.logout", "order.paid"],
            "one copy per queue, whatever the number of paths"
        );
        // Unbinding stops the flow; unbinding what is not bound is not an error.
        conn.unbind_exchange(&audit, &events, "user.#", &none)
            .await?;
        conn.unbind_exchange(&audit, &events, "user.#", &none)
            .await?;
        publisher
            .send_with(&"again", SendOptions::new().routing_key("user.login"))
            .await?;
        assert!(drain_texts(&mut logins_reader).await?.is_empty());
        assert_eq!(drain_texts(&mut all_reader).await?, ["again"]);
        // Missing exchanges are 404, the default exchange 403.
        let missing = t.name("missing");
        assert_err!(
            conn.bind_exchange(&missing, &events, "k", &none).await,
            Error::NotFound(_)
        );
        assert_err!(
            conn.bind_exchange(&audit, &missing, "k", &none).await,
            Error::NotFound(_)
        );
        assert_err!(
            conn.bind_exchange("", &events, "k", &none).await,
            Error::AccessRefused(_)
        );
        Ok(())
    }
);

conformance!(
    a_cycle_of_exchange_bindings_ends_and_delivers_once,
    |t| async move {
        let conn = t.connect().await?;
        let none = FieldTable::new();
        let (a, b, c) = (t.name("a"), t.name("b"), t.name("c"));
        for x in [&a, &b, &c] {
            conn.declare_exchange(&ExchangeSpec::new(x, ExchangeType::Fanout))
                .await?;
        }
        let bound = conn.bind_exchange(&b, &a, "", &none).await;
        if t.backend.redis {
            // kombu's Redis transport has no exchange-to-exchange bindings.
            assert_err!(bound, Error::Unsupported(_));
            return Ok(());
        }
        bound?;
        conn.bind_exchange(&c, &b, "", &none).await?;
        conn.bind_exchange(&a, &c, "", &none).await?;
        conn.bind_exchange(&a, &a, "", &none).await?;
        let q = t.name("q");
        conn.declare_queue(&QueueSpec::new(&q)).await?;
        conn.bind(&q, &b, "", &none).await?;
        conn.bind(&q, &c, "", &none).await?;
        let publisher = Publisher::builder(&conn)
            .exchange(&a)
            .exchange_type(ExchangeType::Fanout)
            .auto_declare(false)
            .build()
            .await?;
        publisher.send("round").await?;
        let mut reader = Consumer::builder(&conn)
            .queue(&q)
            .auto_declare(false)
            .build()
            .await?;
        assert_eq!(drain_texts(&mut reader).await?, ["round"]);
        Ok(())
    }
);

conformance!(
    an_internal_exchange_refuses_publishers_and_takes_from_exchanges,
    |t| async move {
        let conn = t.connect().await?;
        let none = FieldTable::new();
        let (front, inner) = (t.name("front"), t.name("inner"));
        conn.declare_exchange(&ExchangeSpec::new(&front, ExchangeType::Fanout))
            .await?;
        let internal = ExchangeSpec::new(&inner, ExchangeType::Fanout).internal(true);
        conn.declare_exchange(&internal).await?;
        conn.declare_exchange(&internal).await?; // the same again is fine
        let err = conn
            .declare_exchange(&ExchangeSpec::new(&inner, ExchangeType::Fanout))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
        assert!(err.to_string().contains("internal"), "{err}");
        let bound = conn.bind_exchange(&inner, &front, "", &none).await;
        if t.backend.redis {
            // kombu's Redis transport has no exchange-to-exchange bindings: an internal exchange
            // there only refuses publishers.
            assert_err!(bound, Error::Unsupported(_));
        } else {
            bound?;
        }
        let q = t.name("q");
        conn.declare_queue(&QueueSpec::new(&q)).await?;
        conn.bind(&q, &inner, "", &none).await?;
        let direct = Publisher::builder(&conn)
            .exchange(&inner)
            .auto_declare(false)
            .build()
            .await?;
        let err = direct.send(&1).await.unwrap_err();
        assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
        assert_eq!(err.reply_code(), Some(403));
        if t.backend.redis {
            return Ok(());
        }
        let publisher = Publisher::builder(&conn)
            .exchange(&front)
            .auto_declare(false)
            .build()
            .await?;
        publisher.send(&2).await?;
        let mut reader = Consumer::builder(&conn)
            .queue(&q)
            .auto_declare(false)
            .build()
            .await?;
        assert_eq!(drain_numbers(&mut reader).await?, vec![2]);
        Ok(())
    }
);

conformance!(
    deleting_an_exchange_removes_the_bindings_to_it_and_auto_deletes_sources,
    |t| async move {
        let conn = t.connect().await?;
        let none = FieldTable::new();
        let (source, other, destination) =
            (t.name("source"), t.name("other"), t.name("destination"));
        conn.declare_exchange(&ExchangeSpec::new(&source, ExchangeType::Topic).auto_delete(true))
            .await?;
        conn.declare_exchange(&ExchangeSpec::new(&other, ExchangeType::Topic).auto_delete(true))
            .await?;
        conn.declare_exchange(&ExchangeSpec::new(&destination, ExchangeType::Fanout))
            .await?;
        let bound = conn.bind_exchange(&destination, &source, "#", &none).await;
        if t.backend.redis {
            // kombu's Redis transport has no exchange-to-exchange bindings.
            assert_err!(bound, Error::Unsupported(_));
            return Ok(());
        }
        bound?;
        conn.bind_exchange(&destination, &other, "#", &none).await?;
        // An auto-delete source goes with its last binding, removed by hand...
        conn.unbind_exchange(&destination, &other, "#", &none)
            .await?;
        assert_err!(conn.exchange_exists(&other).await, Error::NotFound(_));
        // ... or with the exchange it was bound to.
        conn.delete_exchange(&destination, carrot::DeleteExchangeOptions::new())
            .await?;
        assert_err!(conn.exchange_exists(&source).await, Error::NotFound(_));
        Ok(())
    }
);
