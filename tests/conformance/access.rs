//! Virtual hosts, users and permissions, as RabbitMQ has them (measured on 3.10): on the brokers
//! that have them (RabbitMQ, `carrot serve`), with the users and vhost of
//! `tests/fixtures/access-definitions.json`:
//! - `carrot-limited` (password `carrot-limited-pw`) may configure, write and read, in vhost
//!   `/`, only what is named `carrot-limited.*`, and may not open any other vhost;
//! - `carrot-monitor` (tag monitoring) may not open any vhost;
//! - guest may do everything in `/` and in `carrot-test-vhost`.
//!
//! What needs which permission (RabbitMQ's `rabbit_channel`): declaring and deleting a queue or
//! an exchange needs configure on it (a server-named queue: on the name generated for it); a
//! passive declaration needs nothing; publishing needs write on the exchange (`amq.default`
//! for the default one), not on the queues it routes to; fetching, consuming and purging need
//! read on the queue; a binding needs write on its destination (checked first) and read on its
//! source. A refused operation is 403 ACCESS_REFUSED on its channel, which RabbitMQ closes:
//! each refusal here is on a fresh consumer or publisher (the connection's own operations open
//! another channel). A connection to a missing or forbidden vhost is refused at
//! `connection.open` (530 NOT_ALLOWED), a wrong login at the start (403 ACCESS_REFUSED); carrot
//! reports both as [`Error::AccessRefused`], with the broker's text.

use carrot::{
    BrokerConnection, Consumer, Error, ExchangeSpec, ExchangeType, FieldTable, Publisher, QueueSpec,
};

use crate::backends::with_login;
use crate::support::*;

/// The user whose permissions cover only the names that start with `carrot-limited.` in `/`.
const LIMITED: &str = "carrot-limited";
/// Its password.
const LIMITED_PASSWORD: &str = "carrot-limited-pw";
/// The vhost besides `/`, where guest may do everything.
const VHOST: &str = "carrot-test-vhost";

/// The text of a refusal on a channel (403 ACCESS_REFUSED), without the name of the reply code
/// that RabbitMQ puts first.
fn refusal<T: std::fmt::Debug>(result: carrot::Result<T>) -> String {
    match result {
        Err(Error::AccessRefused(text)) => text.trim_start_matches("ACCESS_REFUSED - ").to_string(),
        other => panic!("expected Err(AccessRefused(_)), got {other:?}"),
    }
}

/// RabbitMQ's text for `carrot-limited` refused access to `name`, a `kind` (queue or exchange)
/// of vhost `/`.
fn denied(kind: &str, name: &str) -> String {
    format!("access to {kind} '{name}' in vhost '/' refused for user '{LIMITED}'")
}

/// The error of a connection that must be refused.
fn refused_connection(result: carrot::Result<BrokerConnection>) -> Error {
    match result {
        Ok(_) => panic!("the connection was accepted"),
        Err(error) => error,
    }
}

conformance!(vhosts_keep_their_entities_apart, |t| async move {
    if !t.has_access_control() {
        return Ok(());
    }
    let root = t.connect().await?;
    let other = BrokerConnection::connect(&with_login(t.url(), "guest", "guest", VHOST)).await?;
    let (queue, exchange) = (t.name("q"), t.name("ex"));
    // The same queue name in both vhosts, a message of its own in each.
    for (conn, n) in [(&root, 1), (&other, 2)] {
        conn.declare_queue(&QueueSpec::new(&queue)).await?;
        Publisher::builder(conn)
            .routing_key(&queue)
            .build()
            .await?
            .send(&n)
            .await?;
    }
    assert_eq!(root.queue_info(&queue).await?.message_count, 1);
    assert_eq!(other.queue_info(&queue).await?.message_count, 1);
    let mut in_root = Consumer::builder(&root)
        .queue(&queue)
        .auto_declare(false)
        .build()
        .await?;
    assert_eq!(drain_numbers(&mut in_root).await?, vec![1]);
    assert_eq!(other.queue_info(&queue).await?.message_count, 1);
    // Deleting it in one vhost leaves the other's.
    root.delete_queue(&queue, carrot::DeleteQueueOptions::new())
        .await?;
    assert_err!(root.queue_info(&queue).await, Error::NotFound(_));
    assert_eq!(other.queue_info(&queue).await?.message_count, 1);
    let mut in_other = Consumer::builder(&other)
        .queue(&queue)
        .auto_declare(false)
        .build()
        .await?;
    assert_eq!(drain_numbers(&mut in_other).await?, vec![2]);
    assert_eq!(
        other
            .delete_queue(&queue, carrot::DeleteQueueOptions::new())
            .await?,
        0
    );
    assert_err!(other.queue_info(&queue).await, Error::NotFound(_));

    // The same exchange name with another type in each vhost: no conflict.
    root.declare_exchange(&ExchangeSpec::new(&exchange, ExchangeType::Direct))
        .await?;
    other
        .declare_exchange(&ExchangeSpec::new(&exchange, ExchangeType::Fanout))
        .await?;
    root.declare_exchange(&ExchangeSpec::new(&exchange, ExchangeType::Direct))
        .await?;
    // Each vhost's exchange keeps its own type.
    assert_err!(
        other
            .declare_exchange(&ExchangeSpec::new(&exchange, ExchangeType::Direct))
            .await,
        Error::PreconditionFailed(_)
    );
    root.delete_exchange(&exchange, carrot::DeleteExchangeOptions::new())
        .await?;
    assert_err!(root.exchange_exists(&exchange).await, Error::NotFound(_));
    other.exchange_exists(&exchange).await?;
    other
        .delete_exchange(&exchange, carrot::DeleteExchangeOptions::new())
        .await?;
    assert_err!(other.exchange_exists(&exchange).await, Error::NotFound(_));
    Ok(())
});

conformance!(a_missing_or_forbidden_vhost_is_refused, |t| async move {
    if !t.has_access_control() {
        return Ok(());
    }
    let missing = format!("{}.nowhere", t.scope);
    let err = refused_connection(
        BrokerConnection::connect(&with_login(t.url(), "guest", "guest", &missing)).await,
    );
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("NOT_ALLOWED - vhost {missing} not found")),
        "{text}"
    );
    // A vhost the user has no permission in.
    for (user, password, vhost) in [
        (LIMITED, LIMITED_PASSWORD, VHOST),
        ("carrot-monitor", "carrot-monitor-pw", "/"),
    ] {
        let err = refused_connection(
            BrokerConnection::connect(&with_login(t.url(), user, password, vhost)).await,
        );
        assert!(matches!(err, Error::AccessRefused(_)), "{user}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'"
            )),
            "{user}: {text}"
        );
    }
    // The vhosts they may open.
    BrokerConnection::connect(&with_login(t.url(), LIMITED, LIMITED_PASSWORD, "/"))
        .await?
        .close()
        .await?;
    BrokerConnection::connect(&with_login(t.url(), "guest", "guest", VHOST))
        .await?
        .close()
        .await?;
    Ok(())
});

conformance!(
    a_wrong_password_or_unknown_user_is_refused,
    |t| async move {
        if !t.has_access_control() {
            return Ok(());
        }
        let unknown = format!("{}.nobody", t.scope);
        for (user, password) in [
            (LIMITED, "not-the-password"),
            ("carrot-monitor", LIMITED_PASSWORD),
            (unknown.as_str(), "guest"),
        ] {
            let err = refused_connection(
                BrokerConnection::connect(&with_login(t.url(), user, password, "/")).await,
            );
            assert!(matches!(err, Error::AccessRefused(_)), "{user}: {err:?}");
            assert_eq!(err.reply_code(), Some(403));
            let text = err.to_string();
            assert!(
            text.contains(
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
            ),
            "{user}: {text}"
        );
        }
        Ok(())
    }
);

conformance!(
    declaring_and_deleting_need_the_configure_permission,
    |t| async move {
        if !t.has_access_control() {
            return Ok(());
        }
        let guest = t.connect().await?;
        let limited =
            BrokerConnection::connect(&with_login(t.url(), LIMITED, LIMITED_PASSWORD, "/")).await?;
        let (own_q, own_x) = (t.name_after(LIMITED, "q"), t.name_after(LIMITED, "ex"));
        let (other_q, other_x) = (t.name("q"), t.name("ex"));
        let delete_queue = carrot::DeleteQueueOptions::new;
        let delete_exchange = carrot::DeleteExchangeOptions::new;

        // Its own names.
        limited.declare_queue(&QueueSpec::new(&own_q)).await?;
        limited
            .declare_exchange(&ExchangeSpec::new(&own_x, ExchangeType::Direct))
            .await?;
        guest.queue_info(&own_q).await?;
        guest.exchange_exists(&own_x).await?;

        // Others: refused, and nothing is declared.
        assert_eq!(
            refusal(limited.declare_queue(&QueueSpec::new(&other_q)).await),
            denied("queue", &other_q)
        );
        assert_err!(guest.queue_info(&other_q).await, Error::NotFound(_));
        assert_eq!(
            refusal(
                limited
                    .declare_exchange(&ExchangeSpec::new(&other_x, ExchangeType::Direct))
                    .await
            ),
            denied("exchange", &other_x)
        );
        assert_err!(guest.exchange_exists(&other_x).await, Error::NotFound(_));

        // A server-named queue: the name generated for it is not the user's.
        let text = refusal(limited.declare_queue(&QueueSpec::new("")).await);
        let generated = text
            .strip_prefix("access to queue '")
            .and_then(|rest| rest.strip_suffix("' in vhost '/' refused for user 'carrot-limited'"))
            .unwrap_or_else(|| panic!("a refusal for a generated name expected: {text}"));
        assert!(generated.starts_with("amq.gen-"), "{text}");
        assert_err!(guest.queue_info(generated).await, Error::NotFound(_));

        // A passive declaration checks no permission: a missing queue is not found, another's
        // queue and exchange are there.
        assert_err!(
            limited.queue_info(&t.name("missing-q")).await,
            Error::NotFound(_)
        );
        assert_err!(
            limited.exchange_exists(&t.name("missing-ex")).await,
            Error::NotFound(_)
        );
        guest.declare_queue(&QueueSpec::new(&other_q)).await?;
        guest
            .declare_exchange(&ExchangeSpec::new(&other_x, ExchangeType::Direct))
            .await?;
        assert_eq!(limited.queue_info(&other_q).await?.message_count, 0);
        limited.exchange_exists(&other_x).await?;

        // Deleting another's is refused and leaves it.
        assert_eq!(
            refusal(limited.delete_queue(&other_q, delete_queue()).await),
            denied("queue", &other_q)
        );
        guest.queue_info(&other_q).await?;
        assert_eq!(
            refusal(limited.delete_exchange(&other_x, delete_exchange()).await),
            denied("exchange", &other_x)
        );
        guest.exchange_exists(&other_x).await?;

        // Its own: deleted.
        assert_eq!(limited.delete_queue(&own_q, delete_queue()).await?, 0);
        limited.delete_exchange(&own_x, delete_exchange()).await?;
        assert_err!(guest.queue_info(&own_q).await, Error::NotFound(_));
        assert_err!(guest.exchange_exists(&own_x).await, Error::NotFound(_));
        Ok(())
    }
);

conformance!(
    publishing_needs_the_write_permission_on_the_exchange,
    |t| async move {
        if !t.has_access_control() {
            return Ok(());
        }
        let guest = t.connect().await?;
        let limited =
            BrokerConnection::connect(&with_login(t.url(), LIMITED, LIMITED_PASSWORD, "/")).await?;
        let (own_q, own_x) = (t.name_after(LIMITED, "q"), t.name_after(LIMITED, "ex"));
        let (other_q, other_x) = (t.name("q"), t.name("ex"));
        let none = FieldTable::new();
        guest.declare_queue(&QueueSpec::new(&other_q)).await?;
        guest
            .declare_exchange(&ExchangeSpec::new(&other_x, ExchangeType::Direct))
            .await?;
        guest.bind(&other_q, &other_x, "k", &none).await?;
        limited.declare_queue(&QueueSpec::new(&own_q)).await?;
        limited
            .declare_exchange(&ExchangeSpec::new(&own_x, ExchangeType::Direct))
            .await?;
        limited.bind(&own_q, &own_x, "k", &none).await?;

        // The default exchange is amq.default, not the user's: even to its own queue.
        let to_default = Publisher::builder(&limited)
            .routing_key(&own_q)
            .build()
            .await?;
        assert_eq!(
            refusal(to_default.send(&1).await),
            denied("exchange", "amq.default")
        );
        // Another's exchange (not declared: that would need configure).
        let to_other = Publisher::builder(&limited)
            .exchange(&other_x)
            .auto_declare(false)
            .routing_key("k")
            .build()
            .await?;
        assert_eq!(
            refusal(to_other.send(&2).await),
            denied("exchange", &other_x)
        );
        assert_eq!(guest.queue_info(&own_q).await?.message_count, 0);
        assert_eq!(guest.queue_info(&other_q).await?.message_count, 0);

        // Its own exchange: routed to every queue bound to it, another's too (routing needs no
        // permission on the queues).
        guest.bind(&other_q, &own_x, "k", &none).await?;
        let to_own = Publisher::builder(&limited)
            .exchange(&own_x)
            .exchange_type(ExchangeType::Direct)
            .routing_key("k")
            .build()
            .await?;
        to_own.send(&3).await?;
        assert_eq!(guest.queue_info(&own_q).await?.message_count, 1);
        assert_eq!(guest.queue_info(&other_q).await?.message_count, 1);

        limited
            .delete_queue(&own_q, carrot::DeleteQueueOptions::new())
            .await?;
        limited
            .delete_exchange(&own_x, carrot::DeleteExchangeOptions::new())
            .await?;
        Ok(())
    }
);

conformance!(
    fetching_consuming_and_purging_need_the_read_permission,
    |t| async move {
        if !t.has_access_control() {
            return Ok(());
        }
        let guest = t.connect().await?;
        let limited =
            BrokerConnection::connect(&with_login(t.url(), LIMITED, LIMITED_PASSWORD, "/")).await?;
        let (own_q, other_q) = (t.name_after(LIMITED, "q"), t.name("q"));
        guest.declare_queue(&QueueSpec::new(&other_q)).await?;
        limited.declare_queue(&QueueSpec::new(&own_q)).await?;
        // guest may publish through the default exchange to both.
        let to_queue = |queue: &str| Publisher::builder(&guest).routing_key(queue).build();
        to_queue(&other_q).await?.send(&1).await?;
        to_queue(&own_q).await?.send(&2).await?;

        // Another's queue: each refusal on a fresh consumer (RabbitMQ closes its channel).
        let intruder = || {
            Consumer::builder(&limited)
                .queue(&other_q)
                .auto_declare(false)
                .build()
        };
        assert_eq!(
            refusal(intruder().await?.fetch().await),
            denied("queue", &other_q)
        );
        assert_eq!(
            refusal(intruder().await?.consume().await),
            denied("queue", &other_q)
        );
        assert_eq!(
            refusal(limited.purge(&other_q).await),
            denied("queue", &other_q)
        );
        let info = guest.queue_info(&other_q).await?;
        assert_eq!((info.message_count, info.consumer_count), (1, 0));

        // Its own queue: fetched, consumed, purged.
        let mut own = Consumer::builder(&limited)
            .queue(&own_q)
            .auto_declare(false)
            .build()
            .await?;
        assert_eq!(drain_numbers(&mut own).await?, vec![2]);
        to_queue(&own_q).await?.send(&3).await?;
        own.consume().await?;
        let message = next(&mut own).await;
        assert_eq!(num(&message), 3);
        message.ack()?;
        own.cancel().await?;
        to_queue(&own_q).await?.send(&4).await?;
        assert_eq!(limited.purge(&own_q).await?, 1);

        limited
            .delete_queue(&own_q, carrot::DeleteQueueOptions::new())
            .await?;
        Ok(())
    }
);

conformance!(
    binding_needs_write_on_the_destination_and_read_on_the_source,
    |t| async move {
        if !t.has_access_control() {
            return Ok(());
        }
        let guest = t.connect().await?;
        let limited =
            BrokerConnection::connect(&with_login(t.url(), LIMITED, LIMITED_PASSWORD, "/")).await?;
        let (own_q, own_x) = (t.name_after(LIMITED, "q"), t.name_after(LIMITED, "ex"));
        let (other_q, other_x) = (t.name("q"), t.name("ex"));
        let none = FieldTable::new();
        guest.declare_queue(&QueueSpec::new(&other_q)).await?;
        guest
            .declare_exchange(&ExchangeSpec::new(&other_x, ExchangeType::Direct))
            .await?;
        limited.declare_queue(&QueueSpec::new(&own_q)).await?;
        limited
            .declare_exchange(&ExchangeSpec::new(&own_x, ExchangeType::Direct))
            .await?;

        // Its own queue to its own exchange.
        limited.bind(&own_q, &own_x, "k", &none).await?;
        limited.unbind(&own_q, &own_x, "k", &none).await?;
        // Reading from an exchange that is not its own (amq.direct, another's).
        assert_eq!(
            refusal(limited.bind(&own_q, "amq.direct", "k", &none).await),
            denied("exchange", "amq.direct")
        );
        assert_eq!(
            refusal(limited.bind(&own_q, &other_x, "k", &none).await),
            denied("exchange", &other_x)
        );
        // Writing to a queue that is not its own; checked before the exchange.
        assert_eq!(
            refusal(limited.bind(&other_q, &own_x, "k", &none).await),
            denied("queue", &other_q)
        );
        assert_eq!(
            refusal(limited.bind(&other_q, &other_x, "k", &none).await),
            denied("queue", &other_q)
        );
        // Unbinding checks the same.
        guest.bind(&own_q, &other_x, "k", &none).await?;
        guest.bind(&other_q, &own_x, "k", &none).await?;
        assert_eq!(
            refusal(limited.unbind(&own_q, &other_x, "k", &none).await),
            denied("exchange", &other_x)
        );
        assert_eq!(
            refusal(limited.unbind(&other_q, &own_x, "k", &none).await),
            denied("queue", &other_q)
        );
        // Exchange to exchange: write on the destination, read on the source.
        let own_x2 = t.name_after(LIMITED, "ex2");
        limited
            .declare_exchange(&ExchangeSpec::new(&own_x2, ExchangeType::Fanout))
            .await?;
        limited.bind_exchange(&own_x2, &own_x, "k", &none).await?;
        assert_eq!(
            refusal(limited.bind_exchange(&own_x2, &other_x, "k", &none).await),
            denied("exchange", &other_x)
        );
        assert_eq!(
            refusal(limited.bind_exchange(&other_x, &own_x, "k", &none).await),
            denied("exchange", &other_x)
        );
        // The refused bindings were not made: what guest publishes to other_x reaches own_q
        // through guest's binding only, and nothing reaches other_q from own_x but guest's.
        Publisher::builder(&guest)
            .exchange(&other_x)
            .auto_declare(false)
            .routing_key("k")
            .build()
            .await?
            .send(&1)
            .await?;
        assert_eq!(guest.queue_info(&own_q).await?.message_count, 1);
        assert_eq!(guest.queue_info(&other_q).await?.message_count, 0);

        limited
            .delete_queue(&own_q, carrot::DeleteQueueOptions::new())
            .await?;
        for exchange in [&own_x, &own_x2] {
            limited
                .delete_exchange(exchange, carrot::DeleteExchangeOptions::new())
                .await?;
        }
        Ok(())
    }
);
