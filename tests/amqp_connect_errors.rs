//! A failed connect says which URL (password hidden), what went wrong and what to check, for
//! each way it can fail: nothing listening, a server that is not AMQP (closes at once, sends
//! something else, never answers), a refused login, a missing virtual host. The servers here
//! are listeners the test runs on 127.0.0.1; the login cases need `CARROT_TEST_AMQP_URL`.

mod amqp_support;

use std::time::{Duration, Instant};

use amqp_support::*;
use carrot::{BrokerConnection, Error, Timeouts};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const SECRET: &str = "pa55-w0rd";

/// A listener on 127.0.0.1 that does `serve` with each connection; its URL.
async fn server<F, Fut>(serve: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    format!("amqp://guest:{SECRET}@127.0.0.1:{port}/%2F")
}

async fn connect_error(url: &str, timeouts: Timeouts) -> Error {
    let started = Instant::now();
    let result = bounded(
        "connect",
        Duration::from_secs(20),
        BrokerConnection::builder()
            .url(url)
            .timeouts(timeouts)
            .connect(),
    )
    .await;
    let error = match result {
        Ok(_) => panic!("connecting to {url} succeeded"),
        Err(e) => e,
    };
    let text = error.to_string();
    eprintln!("{text} (after {:?})", started.elapsed());
    assert!(!text.contains(SECRET), "the password shows: {text}");
    assert!(
        !text.contains("Nom(") && !text.contains("ParserErrors"),
        "a parser's internals: {text}"
    );
    error
}

fn connect_failed(error: &Error) -> &str {
    match error {
        Error::ConnectFailed { url, reason, .. } => {
            assert!(url.contains("127.0.0.1:") && url.contains("***"), "{url}");
            reason
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("amqp://guest:{SECRET}@127.0.0.1:{port}/%2F");
    let error = connect_error(&url, Timeouts::default()).await;
    let reason = connect_failed(&error);
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(reason.contains("is the broker running"), "{reason}");
}

#[tokio::test]
async fn a_server_that_closes_at_once_is_not_taken_for_a_parse_error() {
    let url = server(|socket| async move { drop(socket) }).await;
    let error = connect_error(&url, Timeouts::default()).await;
    let reason = connect_failed(&error);
    assert!(reason.contains("closed the connection"), "{reason}");
    assert!(reason.contains("port"), "a hint about the port: {reason}");
}

#[tokio::test]
async fn a_server_that_speaks_something_else_is_named_so() {
    let url = server(|mut socket| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        let _ = socket.shutdown().await;
    })
    .await;
    let error = connect_error(&url, Timeouts::default()).await;
    let reason = connect_failed(&error);
    assert!(
        reason.contains("does not speak AMQP") || reason.contains("closed the connection"),
        "{reason}"
    );
    assert!(reason.contains("port"), "a hint about the port: {reason}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_connect_timeout() {
    let url = server(|socket| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    })
    .await;
    let started = Instant::now();
    let limit = Duration::from_secs(1);
    let error = connect_error(&url, Timeouts::default().connect(limit)).await;
    assert!(
        started.elapsed() < limit + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let reason = connect_failed(&error);
    assert!(reason.contains("no AMQP answer within 1s"), "{reason}");
}

#[tokio::test]
async fn a_refused_login_asks_to_check_the_user_name_and_password() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let wrong = url.replacen("guest:guest@", &format!("guest:{SECRET}@"), 1);
    assert_ne!(wrong, url, "CARROT_TEST_AMQP_URL has guest:guest@");
    let error = connect_error(&wrong, Timeouts::default()).await;
    let text = error.to_string();
    assert!(matches!(error, Error::AccessRefused(_)), "{error:?}");
    assert!(text.contains("check the user name and password"), "{text}");
    assert!(
        !text.contains("running"),
        "not a question of the broker running: {text}"
    );
    assert_eq!(error.reply_code(), Some(403));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_carrot"))
        .args(["--url", &wrong, "discard", "--queue", "q"])
        .output()
        .expect("run carrot");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("check the user name and password"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test]
async fn a_missing_virtual_host_says_so() {
    let Some(url) = setting("CARROT_TEST_AMQP_URL", "an amqp:// URL of RabbitMQ") else {
        return;
    };
    let base = url.split('?').next().unwrap_or(&url);
    let (root, _) = base.rsplit_once('/').expect("a vhost in the URL");
    let missing = format!("{root}/no-such-vhost");
    let error = connect_error(&missing, Timeouts::default()).await;
    let text = error.to_string();
    assert!(matches!(error, Error::AccessRefused(_)), "{error:?}");
    assert!(text.contains("virtual host"), "{text}");
}
