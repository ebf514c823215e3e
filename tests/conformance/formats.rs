//! kombu's serializers and compressions through every broker: msgpack, yaml and pickle
//! bodies, each compression, every message property, the default accept list, and bodies
//! that would inflate past the maximum message size.

use carrot::{
    table, BrokerConnection, Compression, DeliveryMode, Error, OutgoingMessage, Properties,
    SendOptions, Value,
};

use crate::support::*;

const METHODS: [Compression; 5] = [
    Compression::Gzip,
    Compression::Bzip2,
    Compression::Lzma,
    Compression::Brotli,
    Compression::Zstd,
];

fn data() -> Value {
    Value::Map(vec![
        (Value::Str("text".into()), Value::Str("grüße ✓ 🥕".into())),
        (Value::Str("n".into()), Value::Int(-(1 << 40))),
        (Value::Str("max".into()), Value::Int(u64::MAX.into())),
        (Value::Str("f".into()), Value::Float(2.5)),
        (Value::Str("none".into()), Value::None),
        (
            Value::Str("list".into()),
            Value::List(vec![Value::Bool(true), Value::List(vec![])]),
        ),
    ])
}

conformance!(
    every_serializer_and_compression_round_trips_with_every_property,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t
            .consumer(&conn)
            .accept(["json", "msgpack", "yaml", "pickle"])
            .build()
            .await?;
        let publisher = t.publisher(&conn).build().await?;
        // kombu's Redis transport has no message expiry: refused, and the rest checked without.
        let expiration = (!t.backend.redis).then_some("600000");
        if t.backend.redis {
            assert_err!(
                publisher
                    .send_with(&data(), SendOptions::new().expiration("600000"))
                    .await,
                Error::Unsupported(_)
            );
        }
        let mut sent = Vec::new();
        for serializer in ["json", "msgpack", "yaml", "pickle"] {
            for method in std::iter::once(None).chain(METHODS.map(Some)) {
                let mut options = SendOptions::new()
                    .serializer(serializer)
                    .correlation_id(format!("{serializer}/{method:?}"))
                    .reply_to("replies")
                    .message_id("m-1")
                    .timestamp(1_700_000_000u64)
                    .message_type("greeting")
                    .app_id("carrot-conformance")
                    .priority(3)
                    .delivery_mode(DeliveryMode::Persistent)
                    .headers(table([("x-cell", serializer.into())]));
                if let Some(expiration) = expiration {
                    options = options.expiration(expiration);
                }
                if let Some(method) = method {
                    options = options.compression(method.name());
                }
                publisher.send_with(&data(), options).await?;
                sent.push((serializer, method));
            }
        }
        let registry = carrot::serialization::Registry::default();
        for (serializer, method) in sent {
            let message = next(&mut consumer).await;
            let cell = format!("{serializer}/{method:?}");
            assert_eq!(
                message.content_type(),
                Some(registry.content_type_of(serializer)?),
                "{cell}"
            );
            assert_eq!(
                message.compression(),
                method.map(|m| m.content_type()),
                "{cell}"
            );
            assert_eq!(message.decode::<Value>()?, data(), "{cell}");
            let p = message.properties();
            assert_eq!(p.correlation_id(), Some(cell.as_str()));
            assert_eq!(p.reply_to(), Some("replies"), "{cell}");
            assert_eq!(p.expiration(), expiration, "{cell}");
            assert_eq!(p.message_id(), Some("m-1"), "{cell}");
            assert_eq!(p.timestamp(), Some(1_700_000_000), "{cell}");
            assert_eq!(p.kind(), Some("greeting"), "{cell}");
            assert_eq!(p.app_id(), Some("carrot-conformance"), "{cell}");
            assert_eq!(p.priority(), Some(3), "{cell}");
            assert_eq!(
                message.headers().and_then(|h| h.get("x-cell")),
                Some(&serializer.into()),
                "{cell}"
            );
            message.ack()?;
        }
        Ok(())
    }
);

conformance!(
    the_default_accept_list_refuses_msgpack_yaml_and_pickle_and_they_can_be_rejected,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        for serializer in ["msgpack", "yaml", "pickle"] {
            publisher
                .send_with(&data(), SendOptions::new().serializer(serializer))
                .await?;
        }
        for serializer in ["msgpack", "yaml", "pickle"] {
            let message = next(&mut consumer).await;
            let err = message.decode::<Value>().unwrap_err();
            assert!(
                matches!(&err, Error::ContentTypeNotAccepted { allow, .. } if allow == serializer),
                "{serializer}: {err:?}"
            );
            assert!(err.to_string().contains("accept"), "{err}");
            assert_err!(message.payload(), Error::ContentTypeNotAccepted { .. });
            message.reject()?;
        }
        assert_quiet(&mut consumer).await;
        Ok(())
    }
);

conformance!(
    a_small_body_that_inflates_past_the_maximum_size_is_refused,
    |t| async move {
        let conn = BrokerConnection::connect_with(
            BrokerConnection::builder()
                .url(t.url())
                .max_message_size(64 * 1024),
        )
        .await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        // A megabyte of zeros is about 1 KiB compressed: small enough to send, too large to
        // inflate under this connection's limit.
        let zeros = vec![0u8; 1 << 20];
        for method in METHODS {
            let body = method.compress(&zeros)?;
            assert!(body.len() <= 2048, "{method}: {} bytes", body.len());
            let mut headers = carrot::FieldTable::new();
            headers.insert("compression".into(), method.content_type().into());
            let message = OutgoingMessage::new(
                body,
                Properties::default()
                    .with_content_type("application/data")
                    .with_content_encoding("binary")
                    .with_headers(headers),
            );
            publisher.publish(message, &SendOptions::new()).await?;
            let received = next(&mut consumer).await;
            let err = received.decode::<Vec<u8>>().unwrap_err();
            assert!(
                matches!(&err, Error::Decode { .. })
                    && err.to_string().contains("maximum message size"),
                "{method}: {err}"
            );
            received.reject()?;
        }
        Ok(())
    }
);
