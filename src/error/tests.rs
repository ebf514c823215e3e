use std::error::Error as _;
use std::time::Duration;

use super::*;

fn lost() -> Error {
    Error::connection_closed("the connection to RabbitMQ was lost")
}

fn exhausted(last: Error) -> Error {
    Error::RetriesExhausted {
        what: "connecting".into(),
        attempts: 3,
        elapsed: Duration::from_secs(1),
        last: Arc::new(last),
    }
}

/// (error, is_connection_error, is_timeout, is_retryable, reply_code)
fn table() -> Vec<(Error, bool, bool, bool, Option<u16>)> {
    let io = |kind| Error::Io(std::io::Error::from(kind));
    vec![
        (lost(), true, false, true, None),
        (
            Error::ConnectionClosed {
                reply_code: Some(320),
                reply_text: "CONNECTION_FORCED - broker forced connection closure".into(),
                source: None,
            },
            true,
            false,
            true,
            Some(320),
        ),
        (
            Error::ConnectionClosed {
                reply_code: Some(505),
                reply_text: "UNEXPECTED_FRAME".into(),
                source: None,
            },
            true,
            false,
            false,
            Some(505),
        ),
        (
            Error::ConnectFailed {
                url: "amqp://guest:***@127.0.0.1:1/".into(),
                reason: "connection refused".into(),
                source: None,
            },
            true,
            false,
            true,
            None,
        ),
        (
            Error::Timeout {
                operation: "queue.declare".into(),
                after: Duration::from_secs(1),
            },
            false,
            true,
            true,
            None,
        ),
        (io(std::io::ErrorKind::TimedOut), true, true, true, None),
        (
            io(std::io::ErrorKind::ConnectionReset),
            true,
            false,
            true,
            None,
        ),
        (
            io(std::io::ErrorKind::InvalidData),
            true,
            false,
            false,
            None,
        ),
        (
            Error::Blocked {
                reason: "low on memory".into(),
                waited: Duration::from_secs(1),
                sent: false,
            },
            false,
            false,
            true,
            None,
        ),
        (
            Error::Nacked {
                exchange: "ex".into(),
                routing_key: "k".into(),
            },
            false,
            false,
            true,
            None,
        ),
        (
            Error::NotFound("no queue 'q'".into()),
            false,
            false,
            false,
            Some(404),
        ),
        (
            Error::PreconditionFailed("inequivalent arg".into()),
            false,
            false,
            false,
            Some(406),
        ),
        (
            Error::ResourceLocked("locked".into()),
            false,
            false,
            false,
            Some(405),
        ),
        (
            Error::AccessRefused("amq.".into()),
            false,
            false,
            false,
            Some(403),
        ),
        (
            Error::Unroutable {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: "ex".into(),
                routing_key: "k".into(),
            },
            false,
            false,
            false,
            Some(312),
        ),
        (
            Error::InvalidArgument("priority 300".into()),
            false,
            false,
            false,
            None,
        ),
        (
            Error::channel_closed("the publisher was closed"),
            false,
            false,
            false,
            None,
        ),
        (
            Error::ChannelClosed {
                reply_code: Some(311),
                reply_text: "CONTENT_TOO_LARGE".into(),
                source: None,
            },
            false,
            false,
            false,
            Some(311),
        ),
        (Error::storage("unreadable row"), false, false, false, None),
        (exhausted(lost()), true, false, true, None),
        (
            exhausted(Error::NotFound("q".into())),
            false,
            false,
            false,
            Some(404),
        ),
        (
            exhausted(Error::Timeout {
                operation: "connect".into(),
                after: Duration::from_secs(1),
            }),
            false,
            true,
            true,
            None,
        ),
    ]
}

#[test]
fn the_predicates_say_what_kind_of_failure_an_error_is() {
    for (error, connection, timeout, retryable, code) in table() {
        assert_eq!(
            error.is_connection_error(),
            connection,
            "is_connection_error: {error:?}"
        );
        assert_eq!(error.is_timeout(), timeout, "is_timeout: {error:?}");
        assert_eq!(error.is_retryable(), retryable, "is_retryable: {error:?}");
        assert_eq!(error.reply_code(), code, "reply_code: {error:?}");
    }
}

#[test]
fn a_closed_channel_shows_the_brokers_reply_code() {
    let closed = Error::ChannelClosed {
        reply_code: Some(311),
        reply_text: "CONTENT_TOO_LARGE - message too large".into(),
        source: None,
    };
    assert_eq!(
        closed.to_string(),
        "channel closed (311): CONTENT_TOO_LARGE - message too large"
    );
    assert_eq!(
        Error::channel_closed("the consumer was closed").to_string(),
        "channel closed: the consumer was closed"
    );
}

#[test]
fn the_source_is_the_underlying_error_itself() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    let error = Error::ConnectionClosed {
        reply_code: None,
        reply_text: "lost".into(),
        source: Some(Cause::new(io)),
    };
    let source = error.source().expect("a source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the io::Error itself");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    // A copy for another caller keeps it.
    let copy = error.duplicate().expect("copied");
    assert!(copy
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some());
}

#[tokio::test]
async fn a_task_that_panicked_is_its_own_error_and_not_retried() {
    let joined = tokio::task::spawn_blocking(|| {
        if std::hint::black_box(true) {
            panic!("boom");
        }
    })
    .await;
    let error = Error::task_failed("opening a broker", joined.expect_err("it panicked"));
    assert!(
        matches!(error, Error::TaskFailed { panicked: true, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable() && !error.is_connection_error());
    assert!(error.to_string().contains("panicked"), "{error}");
    let source = error.source().expect("the JoinError");
    let join = source
        .downcast_ref::<tokio::task::JoinError>()
        .expect("the JoinError itself");
    assert!(join.is_panic());
}

/// The errors of `source()` from `error` down, as their texts.
#[cfg(any(feature = "amqp", feature = "sqlite"))]
fn chain(error: &Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = error.source();
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    chain
}

#[cfg(feature = "amqp")]
#[tokio::test]
async fn a_refused_amqp_connection_keeps_its_cause_down_to_the_io_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2F");
    let error = crate::BrokerConnection::connect(&url)
        .await
        .expect_err("nothing listens there");
    assert!(matches!(error, Error::ConnectFailed { .. }), "{error:?}");
    assert!(error.is_connection_error() && error.is_retryable());
    let chain = chain(&error);
    assert!(
        chain
            .first()
            .and_then(|e| e.downcast_ref::<lapin::Error>())
            .is_some(),
        "the lapin error first: {chain:?}"
    );
    let io = chain
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("an io::Error in {chain:?}"));
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_file_that_cannot_be_opened_keeps_the_sqlite_error() {
    let path = std::env::temp_dir()
        .join(format!("carrot-no-such-folder-{}", std::process::id()))
        .join("broker.db");
    let url = format!("sqlite://{}", path.display());
    let error = crate::BrokerConnection::connect(&url)
        .await
        .expect_err("its folder does not exist");
    assert!(matches!(error, Error::Storage { .. }), "{error:?}");
    let chain = chain(&error);
    let sqlite = chain
        .first()
        .and_then(|e| e.downcast_ref::<rusqlite::Error>())
        .unwrap_or_else(|| panic!("the rusqlite error first: {chain:?}"));
    assert_eq!(
        sqlite.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen)
    );
    assert!(!error.is_retryable(), "{error:?}");
}
