//! Bad input is refused the same way on every broker, before anything reaches it, and never
//! panics: names over 255 bytes (AMQP short strings), header keys over 255 bytes, messages
//! over the maximum size; a body that cannot be decoded, or whose content type is not
//! accepted, leaves the message there to reject.

use carrot::{
    BrokerConnection, Consumer, Error, ExchangeSpec, ExchangeType, FieldTable, FieldValue,
    OutgoingMessage, Properties, Publisher, QueueSpec, SendOptions,
};

use crate::support::*;

fn long(name: &str) -> String {
    format!("{name}-{}", "x".repeat(300))
}

conformance!(
    names_over_255_bytes_are_refused_everywhere,
    |t| async move {
        let conn = t.connect().await?;
        let name = long(&t.scope);
        assert_err!(
            conn.declare_queue(&QueueSpec::new(&name)).await,
            Error::InvalidArgument(_)
        );
        assert_err!(
            conn.declare_exchange(&ExchangeSpec::new(&name, ExchangeType::Topic))
                .await,
            Error::InvalidArgument(_)
        );
        assert_err!(conn.queue_info(&name).await, Error::InvalidArgument(_));
        assert_err!(
            Consumer::builder(&conn).queue(&name).build().await,
            Error::InvalidArgument(_)
        );
        assert_err!(
            Publisher::builder(&conn).exchange(&name).build().await,
            Error::InvalidArgument(_)
        );
        // A routing key is a short string too.
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        assert_err!(
            publisher
                .send_with(&1, SendOptions::new().routing_key(long("key")))
                .await,
            Error::InvalidArgument(text) if text.contains("at most 255 bytes")
        );
        assert_err!(
            conn.bind(
                &t.name("q"),
                &t.name("ex"),
                &long("key"),
                &FieldTable::new()
            )
            .await,
            Error::InvalidArgument(_)
        );
        // Exactly 255 bytes is fine; nothing was declared or sent by the refused calls.
        let longest = format!("{}.{}", t.scope, "y".repeat(254 - t.scope.len()));
        assert_eq!(longest.len(), 255);
        t.name(&longest[t.scope.len() + 1..]);
        conn.declare_queue(&QueueSpec::new(&longest)).await?;
        publisher.send(&2).await?;
        assert_eq!(drain_numbers(&mut consumer).await?, vec![2]);
        Ok(())
    }
);

conformance!(header_keys_over_255_bytes_are_refused, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    let mut nested = FieldTable::new();
    nested.insert(long("key"), FieldValue::Int(1));
    let mut headers = FieldTable::new();
    headers.insert("outer".into(), FieldValue::Table(nested));
    assert_err!(
        publisher
            .send_with(&1, SendOptions::new().headers(headers))
            .await,
        Error::InvalidArgument(_)
    );
    assert!(consumer.fetch().await?.is_none(), "nothing was sent");
    Ok(())
});

conformance!(messages_over_the_maximum_size_are_refused, |t| async move {
    let conn = BrokerConnection::connect_with(
        BrokerConnection::builder()
            .url(t.url())
            .max_message_size(1024),
    )
    .await?;
    assert_eq!(conn.max_message_size(), 1024);
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).serializer("raw").build().await?;
    let big = vec![7u8; 1025];
    assert_err!(
        publisher.send(&big[..]).await,
        Error::MessageTooLarge {
            size: 1025,
            max: 1024
        }
    );
    publisher.send(&big[..1024]).await?;
    let message = consumer
        .fetch()
        .await?
        .expect("the message of the maximum size");
    assert_eq!(message.body().len(), 1024);
    message.ack()?;
    assert!(consumer.fetch().await?.is_none());
    // The default is RabbitMQ's: 128 MiB.
    assert_eq!(t.connect().await?.max_message_size(), 128 * 1024 * 1024);
    Ok(())
});

conformance!(
    an_undecodable_or_unaccepted_message_can_still_be_rejected,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).accept(["json"]).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let typed = |body: &[u8], content_type: &str| {
            OutgoingMessage::new(
                body.to_vec(),
                Properties::default()
                    .with_content_type(content_type)
                    .with_content_encoding("binary"),
            )
        };
        publisher
            .publish(
                typed(b"\xff{not json", "application/json"),
                &SendOptions::new(),
            )
            .await?;
        publisher
            .publish(
                typed(b"\x80\x04K\x01.", "application/x-unheard-of"),
                &SendOptions::new(),
            )
            .await?;
        let malformed = consumer.fetch().await?.expect("the malformed message");
        assert_err!(malformed.payload(), Error::Decode { .. });
        malformed.reject()?;
        let unknown = consumer.fetch().await?.expect("the unknown content type");
        assert_err!(
            unknown.payload(),
            Error::ContentTypeNotAccepted { content_type, .. } if content_type == "application/x-unheard-of"
        );
        unknown.requeue()?;
        let again = consumer.fetch().await?.expect("the requeued message");
        assert!(again.redelivered());
        again.ack()?;
        assert!(consumer.fetch().await?.is_none());
        Ok(())
    }
);
