//! Serializers: the content types Python's carrot and kombu use, custom serializers, decode
//! errors, accept lists and pickle.

use carrot::serialization::Serializer;
use carrot::{BoxError, Error, OutgoingMessage, Payload, Properties, SendOptions};
use serde_json::{json, Value};

use crate::support::*;

/// JSON written backwards: a toy format for custom serializers.
struct Reversed;

impl Serializer for Reversed {
    fn encode(&self, value: &Value) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?.into_iter().rev().collect())
    }
    fn decode(&self, body: &[u8]) -> Result<Value, BoxError> {
        let forward: Vec<u8> = body.iter().rev().copied().collect();
        Ok(serde_json::from_slice(&forward)?)
    }
}

fn with_type(body: &[u8], content_type: &str, content_encoding: &str) -> OutgoingMessage {
    OutgoingMessage::new(
        body.to_vec(),
        Properties::default()
            .with_content_type(content_type)
            .with_content_encoding(content_encoding),
    )
}

conformance!(
    json_is_the_default_with_kombus_content_type,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let data = json!({"url": "https://example.org", "n": [1, 2.5, null], "ok": true});
        t.publisher(&conn).build().await?.send(&data).await?;
        let message = consumer.fetch().await?.expect("a message");
        assert_eq!(message.content_type(), Some("application/json"));
        assert_eq!(message.content_encoding(), Some("utf-8"));
        assert_eq!(serde_json::from_slice::<Value>(message.body())?, data);
        assert_eq!(message.decode::<Value>()?, data);
        assert_eq!(message.payload()?, &Payload::Data(data));
        Ok(())
    }
);

conformance!(json_decodes_into_typed_data, |t| async move {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Job {
        id: u32,
        tags: Vec<String>,
    }
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let job = Job {
        id: 7,
        tags: vec!["a".into()],
    };
    t.publisher(&conn).build().await?.send(&job).await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_eq!(message.decode::<Job>()?, job);
    assert_err!(message.decode::<Vec<u8>>(), Error::Decode { .. });
    Ok(())
});

conformance!(raw_bytes_are_application_data_binary, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let bytes: Vec<u8> = vec![0, 1, 254, 255];
    t.publisher(&conn)
        .build()
        .await?
        .send_with(&bytes, SendOptions::new().serializer("raw"))
        .await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_eq!(message.content_type(), Some("application/data"));
    assert_eq!(message.content_encoding(), Some("binary"));
    assert_eq!(message.body(), &bytes[..]);
    assert_eq!(message.decode::<Vec<u8>>()?, bytes);
    assert_eq!(message.payload()?, &Payload::Bytes(bytes));
    Ok(())
});

conformance!(raw_text_is_text_plain_utf8, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    t.publisher(&conn)
        .serializer("raw")
        .build()
        .await?
        .send("héllo")
        .await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_eq!(message.content_type(), Some("text/plain"));
    assert_eq!(message.content_encoding(), Some("utf-8"));
    assert_eq!(message.body(), "héllo".as_bytes());
    assert_eq!(message.decode::<String>()?, "héllo");
    assert_eq!(message.payload()?, &Payload::Text("héllo".into()));
    Ok(())
});

conformance!(raw_refuses_structured_data, |t| async move {
    let conn = t.connect().await?;
    let publisher = t.publisher(&conn).serializer("raw").build().await?;
    assert_err!(publisher.send(&json!({"a": 1})).await, Error::Encode { .. });
    assert_err!(publisher.send(&42).await, Error::Encode { .. });
    Ok(())
});

conformance!(
    custom_serializer_registered_on_the_connection,
    |t| async move {
        let conn = t.connect().await?;
        conn.register_serializer("reversed", "application/x-reversed", "utf-8", Reversed);
        // Built after the registration: both know the serializer.
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).serializer("reversed").build().await?;
        publisher.send(&json!([1, 2])).await?;
        let message = consumer.fetch().await?.expect("a message");
        assert_eq!(message.content_type(), Some("application/x-reversed"));
        assert_eq!(message.content_encoding(), Some("utf-8"));
        assert_eq!(message.body(), b"]2,1[");
        assert_eq!(message.decode::<Vec<i32>>()?, vec![1, 2]);
        assert_eq!(message.payload()?, &Payload::Data(json!([1, 2])));
        Ok(())
    }
);

conformance!(
    unknown_serializer_is_refused_at_build_and_at_send,
    |t| async move {
        let conn = t.connect().await?;
        assert_err!(
            t.publisher(&conn).serializer("yaml-ish").build().await,
            Error::UnknownSerializer(name) if name == "yaml-ish"
        );
        let publisher = t.publisher(&conn).build().await?;
        assert_err!(
            publisher
                .send_with(&1, SendOptions::new().serializer("nope"))
                .await,
            Error::UnknownSerializer(name) if name == "nope"
        );
        assert_err!(
            publisher.create_message(&1, &SendOptions::new().serializer("nope")),
            Error::UnknownSerializer(_)
        );
        // A publisher keeps the serializers known when it was built.
        conn.register_serializer("reversed", "application/x-reversed", "utf-8", Reversed);
        assert_err!(
            publisher
                .send_with(&1, SendOptions::new().serializer("reversed"))
                .await,
            Error::UnknownSerializer(_)
        );
        t.publisher(&conn)
            .build()
            .await?
            .send_with(&1, SendOptions::new().serializer("reversed"))
            .await?;
        Ok(())
    }
);

conformance!(undecodable_body_is_a_decode_error, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher
        .publish(
            with_type(b"{nope", "application/json", "utf-8"),
            &SendOptions::new(),
        )
        .await?;
    let message = consumer.fetch().await?.expect("a message");
    let err = message.decode::<Value>().unwrap_err();
    assert!(
        matches!(&err, Error::Decode { content_type, .. } if content_type == "application/json"),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept"
    );
    // payload() fails the same way every time; nothing wrong is cached.
    assert_err!(message.payload(), Error::Decode { .. });
    assert_err!(message.payload(), Error::Decode { .. });
    assert_eq!(message.body(), b"{nope");
    Ok(())
});

conformance!(
    content_type_parameters_are_ignored_for_decoding,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        t.publisher(&conn)
            .build()
            .await?
            .publish(
                with_type(br#"{"a":1}"#, "application/json; charset=utf-8", "utf-8"),
                &SendOptions::new(),
            )
            .await?;
        let message = consumer.fetch().await?.expect("a message");
        assert_eq!(message.decode::<Value>()?, json!({"a": 1}));
        Ok(())
    }
);

conformance!(pickle_is_never_decoded, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).callback(|_, _| Ok(())).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    let pickled = with_type(
        b"\x80\x04K\x01.",
        "application/x-python-serialize",
        "binary",
    );
    publisher.publish(pickled, &SendOptions::new()).await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_err!(
        message.decode::<Value>(),
        Error::ContentTypeNotAccepted { .. }
    );
    assert_err!(
        message.decode::<Vec<u8>>(),
        Error::ContentTypeNotAccepted { .. }
    );
    assert_err!(message.payload(), Error::ContentTypeNotAccepted { .. });
    assert_err!(
        consumer.receive(&message),
        Error::ContentTypeNotAccepted { .. }
    );
    // The raw body is still there for whoever wants to look at it.
    assert_eq!(message.body(), b"\x80\x04K\x01.");
    Ok(())
});

conformance!(accept_list_limits_what_a_consumer_decodes, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).accept(["json"]).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher.send(&1).await?;
    publisher
        .send_with("text", SendOptions::new().serializer("raw"))
        .await?;
    let json_message = consumer.fetch().await?.expect("a message");
    assert_eq!(json_message.decode::<i64>()?, 1);
    let text_message = consumer.fetch().await?.expect("a message");
    let err = text_message.decode::<String>().unwrap_err();
    assert!(
        matches!(&err, Error::ContentTypeNotAccepted { content_type, .. } if content_type == "text/plain"),
        "{err:?}"
    );
    assert_err!(text_message.payload(), Error::ContentTypeNotAccepted { .. });

    // Content types work as well as serializer names.
    let mut by_type = t.reader(&conn).accept(["text/plain"]).build().await?;
    text_message.requeue()?;
    json_message.requeue()?;
    let again = fetch_all(&mut by_type).await?;
    assert_eq!(again.len(), 2);
    for message in &again {
        match message.content_type() {
            Some("text/plain") => assert_eq!(message.decode::<String>()?, "text"),
            _ => assert_err!(
                message.decode::<i64>(),
                Error::ContentTypeNotAccepted { .. }
            ),
        }
    }
    Ok(())
});

// "others are ContentTypeNotAccepted": a content type outside the list is refused even when
// no serializer is registered for it (as kombu's accept lists do).
conformance!(accept_list_refuses_unknown_content_types, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).accept(["json"]).build().await?;
    t.publisher(&conn)
        .build()
        .await?
        .publish(
            with_type(b"opaque", "application/x-unknown", "binary"),
            &SendOptions::new(),
        )
        .await?;
    let message = consumer.fetch().await?.expect("a message");
    assert_err!(
        message.decode::<Vec<u8>>(),
        Error::ContentTypeNotAccepted { .. }
    );
    assert_err!(message.payload(), Error::ContentTypeNotAccepted { .. });
    Ok(())
});

// Without an accept list, unknown content types decode as raw text or bytes (as the seed did).
conformance!(unknown_content_types_decode_as_raw, |t| async move {
    let conn = t.connect().await?;
    let mut consumer = t.consumer(&conn).build().await?;
    let publisher = t.publisher(&conn).build().await?;
    publisher
        .publish(with_type(b"a,b", "text/csv", "utf-8"), &SendOptions::new())
        .await?;
    publisher
        .publish(
            with_type(&[0xff, 0x00], "application/x-blob", "binary"),
            &SendOptions::new(),
        )
        .await?;
    let csv = consumer.fetch().await?.expect("a message");
    assert_eq!(csv.payload()?, &Payload::Text("a,b".into()));
    let blob = consumer.fetch().await?.expect("a message");
    assert_eq!(blob.payload()?, &Payload::Bytes(vec![0xff, 0x00]));
    Ok(())
});

// The seed decoded falsy payloads (0, "", [], ...) again on every access.
conformance!(
    payload_of_falsy_values_decodes_once_and_is_stable,
    |t| async move {
        let conn = t.connect().await?;
        let mut consumer = t.consumer(&conn).build().await?;
        let publisher = t.publisher(&conn).build().await?;
        let falsy = [
            json!(0),
            json!(""),
            json!([]),
            json!({}),
            json!(false),
            json!(null),
            json!(0.0),
        ];
        for value in &falsy {
            publisher.send(value).await?;
        }
        for value in falsy {
            let message = consumer.fetch().await?.expect("a message");
            let first = message.payload()?;
            let second = message.payload()?;
            assert_eq!(first, &Payload::Data(value.clone()));
            assert!(
                std::ptr::eq(first, second),
                "{value}: payload() decoded twice"
            );
            assert_eq!(message.decode::<Value>()?, value);
        }
        Ok(())
    }
);
