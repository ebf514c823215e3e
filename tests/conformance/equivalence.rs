//! Redeclaring an exclusive queue, or declaring exclusive a queue that is not: what RabbitMQ
//! compares and what it answers (its `rabbit_channel` and `rabbit_amqqueue:assert_equivalence`).
//!
//! - An exclusive queue is never durable: RabbitMQ declares it with
//!   `durable = durable andalso not exclusive`, so `durable(true)` on an exclusive queue is
//!   accepted, and means nothing, whether the queue is new or redeclared.
//! - Exclusivity is checked before any other setting, and strictly: redeclaring a queue with
//!   another `exclusive` than it has is 405 RESOURCE_LOCKED, from its own connection as from
//!   another, whichever way round.
//! - Arguments: an exchange redeclaration must repeat only `alternate-exchange`
//!   (`rabbit_exchange:assert_args_equivalence`), a queue redeclaration only RabbitMQ's declare
//!   arguments (`x-message-ttl`, `x-max-length`, ...; no `x-queue-type` means classic), in
//!   RabbitMQ's words.

use std::time::Duration;

use carrot::{Error, ExchangeSpec, ExchangeType, QueueSpec};

/// An exclusive, non-durable queue as the seed's consumers declare it.
fn exclusive(name: &str) -> QueueSpec {
    QueueSpec::new(name)
        .durable(false)
        .exclusive(true)
        .auto_delete(true)
}

/// The texts of the refusals compared across brokers (RabbitMQ prefixes the name of the reply
/// code, which lapin keeps).
fn reply_text(err: &Error) -> String {
    let text = match err {
        Error::ResourceLocked(text) | Error::PreconditionFailed(text) => text.as_str(),
        other => panic!("a refusal expected, got {other:?}"),
    };
    text.trim_start_matches("RESOURCE_LOCKED - ")
        .trim_start_matches("PRECONDITION_FAILED - ")
        .to_string()
}

conformance!(
    an_exclusive_queue_redeclared_durable_is_the_same_queue,
    |t| async move {
        let conn = t.connect().await?;
        let name = t.name("q");
        conn.declare_queue(&exclusive(&name)).await?;
        let info = conn.declare_queue(&exclusive(&name).durable(true)).await?;
        assert_eq!(info.name, name);
        // And the other way round: declared durable(true), it was made non-durable.
        let other = t.name("q2");
        conn.declare_queue(&exclusive(&other).durable(true)).await?;
        conn.declare_queue(&exclusive(&other)).await?;
        conn.declare_queue(&exclusive(&other).durable(true)).await?;
        // Every other setting is still compared.
        let err = conn
            .declare_queue(&exclusive(&name).durable(true).auto_delete(false))
            .await
            .unwrap_err();
        assert_eq!(err.reply_code(), Some(406), "{err:?}");
        assert!(
            reply_text(&err).contains("inequivalent arg 'auto_delete'"),
            "{err}"
        );
        Ok(())
    }
);

conformance!(
    an_exclusive_queue_redeclared_not_exclusive_is_locked,
    |t| async move {
        let conn = t.connect().await?;
        let name = t.name("q");
        conn.declare_queue(&exclusive(&name)).await?;
        for other in [
            exclusive(&name).exclusive(false),
            // Exclusivity is checked before durability.
            exclusive(&name).exclusive(false).durable(true),
        ] {
            let err = conn.declare_queue(&other).await.unwrap_err();
            assert!(
                matches!(err, Error::ResourceLocked(_)),
                "{other:?}: {err:?}"
            );
            assert_eq!(err.reply_code(), Some(405));
            // RabbitMQ cuts its reply text at 255 bytes, so only the start is compared.
            assert!(
                reply_text(&err).starts_with(&format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '/'. It could be originally declared on another connection or the exclusive property value"
                )),
                "{err}"
            );
        }
        // The queue is unchanged, and still this connection's.
        conn.declare_queue(&exclusive(&name)).await?;
        Ok(())
    }
);

conformance!(
    a_queue_that_is_not_exclusive_cannot_be_redeclared_exclusive,
    |t| async move {
        let conn = t.connect().await?;
        let other_conn = t.connect().await?;
        let name = t.name("q");
        let shared = QueueSpec::new(&name).durable(false);
        conn.declare_queue(&shared).await?;
        for who in [&conn, &other_conn] {
            let err = who
                .declare_queue(&shared.clone().exclusive(true))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::ResourceLocked(_)), "{err:?}");
            assert_eq!(err.reply_code(), Some(405));
            assert!(
                reply_text(&err).starts_with(&format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '/'"
                )),
                "{err}"
            );
        }
        // Nobody owns it: both connections may still use it as it is.
        conn.declare_queue(&shared).await?;
        other_conn.declare_queue(&shared).await?;
        Ok(())
    }
);

conformance!(
    a_redeclared_exchange_must_repeat_only_its_alternate_exchange,
    |t| async move {
        let conn = t.connect().await?;
        let name = t.name("x");
        let spec = || ExchangeSpec::new(&name, ExchangeType::Direct).durable(false);
        conn.declare_exchange(&spec().argument("x-carrot-note", 1))
            .await?;
        // RabbitMQ compares no other argument of an exchange.
        conn.declare_exchange(&spec().argument("x-carrot-note", 2))
            .await?;
        conn.declare_exchange(&spec()).await?;
        let other = t.name("ae");
        let declared = conn
            .declare_exchange(
                &ExchangeSpec::new(&other, ExchangeType::Fanout)
                    .durable(false)
                    .argument("alternate-exchange", "a"),
            )
            .await;
        if t.backend.redis {
            // kombu's Redis transport has no alternate exchange.
            assert_err!(declared, Error::Unsupported(_));
            return Ok(());
        }
        declared?;
        let redeclare = |ae: Option<&str>| {
            let spec = ExchangeSpec::new(&other, ExchangeType::Fanout).durable(false);
            match ae {
                Some(ae) => spec.argument("alternate-exchange", ae),
                None => spec,
            }
        };
        let err = conn
            .declare_exchange(&redeclare(Some("b")))
            .await
            .unwrap_err();
        assert_eq!(err.reply_code(), Some(406), "{err:?}");
        assert_eq!(
            reply_text(&err),
            format!("inequivalent arg 'alternate-exchange' for exchange '{other}' in vhost '/': received 'b' but current is 'a'")
        );
        let err = conn.declare_exchange(&redeclare(None)).await.unwrap_err();
        assert_eq!(
            reply_text(&err),
            format!("inequivalent arg 'alternate-exchange' for exchange '{other}' in vhost '/': received none but current is the value 'a' of type 'longstr'")
        );
        conn.declare_exchange(&redeclare(Some("a"))).await?;
        Ok(())
    }
);

conformance!(
    a_redeclared_queue_must_repeat_its_declare_arguments,
    |t| async move {
        let conn = t.connect().await?;
        let name = t.name("q");
        let spec = || QueueSpec::new(&name).durable(false);
        let declared = conn
            .declare_queue(&spec().message_ttl(Duration::from_millis(1000)))
            .await;
        if t.backend.redis {
            // kombu's Redis transport has no message TTL.
            assert_err!(declared, Error::Unsupported(_));
            return Ok(());
        }
        declared?;
        let err = conn
            .declare_queue(&spec().message_ttl(Duration::from_millis(2000)))
            .await
            .unwrap_err();
        assert_eq!(err.reply_code(), Some(406), "{err:?}");
        assert_eq!(
            reply_text(&err),
            format!("inequivalent arg 'x-message-ttl' for queue '{name}' in vhost '/': received '2000' but current is '1000'")
        );
        let err = conn.declare_queue(&spec()).await.unwrap_err();
        assert!(
            reply_text(&err).starts_with(&format!("inequivalent arg 'x-message-ttl' for queue '{name}' in vhost '/': received none but current is the value '1000' of type")),
            "{err}"
        );
        let err = conn
            .declare_queue(
                &spec()
                    .message_ttl(Duration::from_millis(1000))
                    .max_length(10),
            )
            .await
            .unwrap_err();
        assert!(
            reply_text(&err).starts_with(&format!("inequivalent arg 'x-max-length' for queue '{name}' in vhost '/': received the value '10' of type")),
            "{err}"
        );
        // A queue without x-queue-type is a classic queue.
        conn.declare_queue(
            &spec()
                .message_ttl(Duration::from_millis(1000))
                .argument("x-queue-type", "classic"),
        )
        .await?;
        conn.declare_queue(&spec().message_ttl(Duration::from_millis(1000)))
            .await?;
        Ok(())
    }
);
