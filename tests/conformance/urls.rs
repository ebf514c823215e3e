//! Broker URLs, `from_env` and the seed's keyword builder.
//!
//! Most of these are about parsing, not about a broker, so they are plain tests; the ones that
//! connect run on every backend.

use std::time::Duration;

use carrot::url::BrokerUrl;
use carrot::{BrokerConnection, Error, QueueSpec, BROKER_URL_ENV};

use crate::support::pause;

#[tokio::test]
async fn bad_urls_are_invalid_and_never_show_the_password() {
    for url in [
        "localhost",
        "",
        "http://example.org",
        "memory://a@b",
        "memory://a/b?c",
        "sqlite:///tmp/x.db?other=1",
        "memory://a?b",
        "sqlite://",
        "amqp://user:s3cret@host:notaport/",
        "amqp://user:s3cret@host:0/",
        "amqp://user:s3cret@host/?heartbeat=soon",
        "amqp://user:s3cret@host/?bogus=1",
        "amqp://user:s3cret@[::1/",
    ] {
        let err = BrokerConnection::connect(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret"), "{url}: {shown}");
    }
}

#[tokio::test]
async fn an_amqp_broker_that_is_not_there_is_a_clear_connect_error() {
    // Port 1 on loopback: nothing listens there.
    for url in [
        "amqp://guest:secret@127.0.0.1:1//",
        "pyamqp://guest:secret@127.0.0.1:1/",
    ] {
        match BrokerConnection::connect(url).await {
            Err(Error::ConnectFailed {
                url: shown, reason, ..
            }) => {
                assert!(!shown.contains("secret"), "{shown}");
                assert!(!reason.is_empty());
            }
            other => panic!("{url}: expected ConnectFailed, got {other:?}"),
        }
    }
}

#[test]
fn amqp_urls_parse_into_settings_and_display_without_the_password() {
    let url = BrokerUrl::parse("amqp://us%40er:p%3Ass@rabbit:5673/prod?heartbeat=30").unwrap();
    let BrokerUrl::Amqp(settings) = &url else {
        panic!("expected amqp, got {url:?}");
    };
    assert_eq!(settings.userid, "us@er");
    assert_eq!(settings.password.expose(), "p:ss");
    assert_eq!((settings.host.as_str(), settings.port), ("rabbit", 5673));
    assert_eq!(settings.virtual_host, "prod");
    assert_eq!(settings.heartbeat, Some(30));
    let shown = format!("{url} {url:?}");
    assert!(
        !shown.contains("p:ss") && !shown.contains("p%3Ass"),
        "{shown}"
    );
    assert_eq!(url.scheme(), "amqp");
}

#[tokio::test]
async fn memory_urls_name_separate_brokers() {
    let a = BrokerConnection::connect("memory://conformance-urls-a")
        .await
        .unwrap();
    let a_again = BrokerConnection::connect("memory://conformance-urls-a/")
        .await
        .unwrap();
    let b = BrokerConnection::connect("memory://conformance-urls-b")
        .await
        .unwrap();
    assert_eq!(a.url().scheme(), "memory");
    assert_eq!(a.url().to_string(), "memory://conformance-urls-a");
    a.declare_queue(&QueueSpec::new("shared-by-name"))
        .await
        .unwrap();
    a_again.queue_info("shared-by-name").await.unwrap();
    assert!(matches!(
        b.queue_info("shared-by-name").await,
        Err(Error::NotFound(_))
    ));
}

// The only test that touches CARROT_BROKER_URL: environment variables are process-wide.
#[tokio::test]
async fn from_env_reads_carrot_broker_url() {
    assert_eq!(BROKER_URL_ENV, "CARROT_BROKER_URL");
    let saved = std::env::var_os(BROKER_URL_ENV);

    std::env::set_var(BROKER_URL_ENV, "memory://conformance-from-env");
    let conn = BrokerConnection::from_env().await.unwrap();
    assert_eq!(conn.url().to_string(), "memory://conformance-from-env");
    conn.declare_queue(&QueueSpec::new("from-env"))
        .await
        .unwrap();
    BrokerConnection::connect("memory://conformance-from-env")
        .await
        .unwrap()
        .queue_info("from-env")
        .await
        .unwrap();

    std::env::set_var(BROKER_URL_ENV, "amqp://u:s3cret@host:bad/");
    let err = BrokerConnection::from_env().await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");

    std::env::set_var(BROKER_URL_ENV, "");
    let conn = BrokerConnection::from_env().await.unwrap();
    assert_eq!(conn.url().to_string(), "memory://");

    std::env::remove_var(BROKER_URL_ENV);
    let conn = BrokerConnection::from_env().await.unwrap();
    assert_eq!(conn.url().to_string(), "memory://");

    if let Some(saved) = saved {
        std::env::set_var(BROKER_URL_ENV, saved);
    }
}

#[test]
fn builder_keywords_make_an_amqp_url() {
    let url = BrokerConnection::builder()
        .hostname("rabbit.example")
        .port(5673)
        .userid("worker")
        .password("s3cret")
        .virtual_host("jobs")
        .connect_timeout(Duration::from_secs(3))
        .insist(true)
        .build_url()
        .unwrap();
    let BrokerUrl::Amqp(settings) = &url else {
        panic!("a hostname means amqp: {url:?}");
    };
    assert_eq!(
        (
            settings.host.as_str(),
            settings.port,
            settings.userid.as_str()
        ),
        ("rabbit.example", 5673, "worker")
    );
    assert_eq!(settings.password.expose(), "s3cret");
    assert_eq!(settings.virtual_host, "jobs");
    assert_eq!(settings.connection_timeout, Some(Duration::from_secs(3)));
    assert!(!settings.tls);
    assert!(!format!("{url} {url:?}").contains("s3cret"));

    let tls = BrokerConnection::builder()
        .hostname("rabbit.example")
        .ssl(true)
        .build_url()
        .unwrap();
    match tls {
        BrokerUrl::Amqp(s) => assert_eq!((s.tls, s.port), (true, 5671)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn builder_keywords_for_memory_and_sqlite() {
    assert_eq!(
        BrokerConnection::builder().build_url().unwrap(),
        BrokerUrl::Memory {
            name: String::new()
        }
    );
    assert_eq!(
        BrokerConnection::builder()
            .backend("sqlite")
            .hostname("/tmp/broker.db")
            .build_url()
            .unwrap(),
        BrokerUrl::Sqlite {
            path: "/tmp/broker.db".into()
        }
    );
    assert!(matches!(
        BrokerConnection::builder().backend("sqlite").build_url(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BrokerConnection::builder()
            .backend("carrier-pigeon")
            .build_url(),
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn builder_connects_to_the_broker_its_keywords_name() {
    let by_builder = BrokerConnection::connect_with(
        BrokerConnection::builder()
            .backend("memory")
            .virtual_host("conformance-builder"),
    )
    .await
    .unwrap();
    assert_eq!(by_builder.url().to_string(), "memory://conformance-builder");
    by_builder
        .declare_queue(&QueueSpec::new("built"))
        .await
        .unwrap();
    let by_url = BrokerConnection::connect("memory://conformance-builder")
        .await
        .unwrap();
    by_url.queue_info("built").await.unwrap();
    // A hostname means RabbitMQ, as in the seed.
    let url = BrokerConnection::builder()
        .hostname("127.0.0.1")
        .port(1)
        .build_url()
        .unwrap();
    assert_eq!(url.scheme(), "amqp");
    assert!(matches!(
        BrokerConnection::open(url).await,
        Err(Error::ConnectFailed { .. })
    ));
}

conformance!(
    connections_to_the_backend_url_share_one_broker,
    |t| async move {
        let first = t.connect().await?;
        let second = BrokerConnection::connect(t.url()).await?;
        assert_eq!(first.url().to_string(), second.url().to_string());
        first.declare_queue(&QueueSpec::new(t.name("q"))).await?;
        second.queue_info(&t.name("q")).await?;
        // Clones share the connection.
        let clone = first.clone();
        clone.queue_info(&t.name("q")).await?;
        Ok(())
    }
);

conformance!(a_closed_connection_refuses_new_work, |t| async move {
    let conn = t.connect().await?;
    conn.close().await?;
    assert_err!(
        conn.declare_queue(&QueueSpec::new(t.name("q"))).await,
        Error::ConnectionClosed { .. }
    );
    assert_err!(
        t.consumer(&conn).build().await,
        Error::ConnectionClosed { .. }
    );
    Ok(())
});

// A connection closed and then dropped ends once: on sqlite, whose connection ids are row ids
// that SQLite reuses, dropping a closed connection closed the next one opened (seen through
// `carrot serve`, which opens and closes a connection per client).
conformance!(
    dropping_a_closed_connection_leaves_newer_ones_open,
    |t| async move {
        for _ in 0..3 {
            let old = t.connect().await?;
            old.close().await?;
            let newer = t.connect().await?;
            drop(old);
            pause(std::time::Duration::from_millis(50)).await;
            newer.declare_queue(&QueueSpec::new(t.name("q"))).await?;
            newer.close().await?;
        }
        Ok(())
    }
);
