//! `carrot serve`'s options as a client sees them: TLS (`--tls-cert`, `--tls-key`, clients on
//! amqps:// checking the certificate against their CA), users from a file (`--users-file`),
//! and `--metrics` (connections, channels, rates, and every queue with its ready and
//! unacknowledged messages), the latter also through the library's `Server::metrics`.

mod amqp_support;
#[path = "serve_support/process.rs"]
mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use amqp_support::{connect, skip_or_fail, unique};
use carrot::server::{Server, ServerConfig};
use carrot::{BrokerConnection, Consumer, Error, Publisher, QueueSpec};
use process::{remove, round_trip, runtime, sqlite_file, Served, CARROT};

/// A throwaway CA and a certificate of `localhost` / 127.0.0.1 it signed, made with openssl;
/// `None` (a failure under CI) without openssl.
fn certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).expect("a folder");
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .expect("server.ext");
    let made = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-sha256",
        "-subj",
        "/CN=carrot test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]) && openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]) && openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    if !made {
        skip_or_fail("openssl cannot make a test certificate: apt-get install openssl");
        return None;
    }
    Some((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    ))
}

#[test]
fn tls_clients_connect_with_amqps_and_plain_ones_are_refused() {
    let dir = std::env::temp_dir().join(unique("serve", "tls"));
    let Some((ca, cert, key)) = certificates(&dir) else {
        return;
    };
    let served = Served::start_with(
        "memory://serve-tls",
        &[
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    );
    let port = served.address.port();
    let url = format!(
        "amqps://guest:guest@localhost:{port}/%2F?cacertfile={}",
        ca.display()
    );
    let queue = unique("serve", "tls");
    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&url).await;
        assert_eq!(conn.url().scheme(), "amqps");
        round_trip(&conn, &queue, "over tls").await;
        conn.close().await.expect("closed");

        // Plain AMQP to the TLS port does not get a session (and does not hang).
        let plain = BrokerConnection::builder()
            .url(format!("amqp://guest:guest@127.0.0.1:{port}/%2F"))
            .retry_policy(carrot::RetryPolicy::default().max_retries(Some(0)))
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await;
        assert!(plain.is_err(), "plain AMQP on the TLS port: {plain:?}");
    });

    // A certificate file that does not hold one: a clear usage error, exit status 2.
    let out = Command::new(CARROT)
        .args([
            "--url",
            "memory://",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &key.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ])
        .output()
        .expect("carrot runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn users_come_from_a_file_and_others_are_refused() {
    let dir = std::env::temp_dir().join(unique("serve", "users"));
    std::fs::create_dir_all(&dir).expect("a folder");
    let users = dir.join("users");
    std::fs::write(&users, "# who may connect\napp:s3cret\n\nops:with:colons\n").expect("users");
    let served = Served::start_with(
        "memory://serve-users",
        &["--users-file", &users.display().to_string()],
    );
    let address = served.address;
    let rt = runtime();
    rt.block_on(async {
        for (user, password) in [("app", "s3cret"), ("ops", "with:colons")] {
            let conn = connect(&format!(
                "amqp://{user}:{}@{address}/%2F",
                password.replace(':', "%3A")
            ))
            .await;
            conn.close().await.expect("closed");
        }
        for (user, password) in [("app", "wrong"), ("guest", "guest")] {
            let refused = BrokerConnection::builder()
                .url(format!("amqp://{user}:{password}@{address}/%2F"))
                .retry_policy(carrot::RetryPolicy::default().max_retries(Some(0)))
                .connect()
                .await;
            assert!(
                matches!(refused, Err(Error::AccessRefused(_))),
                "{user}:{password}: {refused:?}"
            );
        }
    });
    std::fs::write(&users, "app:s3cret\nnobody\n").expect("users");
    let out = Command::new(CARROT)
        .args(["--url", "memory://", "serve", "--listen", "127.0.0.1:0"])
        .args(["--users-file", &users.display().to_string()])
        .output()
        .expect("carrot runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes 3 messages to `queue` and takes one without acknowledging it, through `url`.
async fn three_published_one_held(url: &str, queue: &str) -> (BrokerConnection, Consumer) {
    let conn = connect(url).await;
    conn.declare_queue(&QueueSpec::new(queue))
        .await
        .expect("declared");
    let publisher = Publisher::builder(&conn)
        .routing_key(queue)
        .confirm_publish(true)
        .build()
        .await
        .expect("a publisher");
    for n in 0..3 {
        publisher.send(&n).await.expect("sent");
    }
    let mut consumer = Consumer::builder(&conn)
        .queue(queue)
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer");
    let held = consumer.fetch().await.expect("fetch").expect("a message");
    std::mem::forget(held);
    (conn, consumer)
}

#[test]
fn metrics_count_connections_rates_and_each_queue_ready_and_unacked() {
    let file = sqlite_file("metrics");
    for broker in [
        "memory://serve-metrics".to_string(),
        format!("sqlite://{}", file.display()),
    ] {
        let rt = runtime();
        rt.block_on(async {
            let server = Server::bind(ServerConfig::new(
                &broker,
                "127.0.0.1:0".parse().expect("an address"),
            ))
            .await
            .expect("bound");
            let url = format!(
                "amqp://guest:guest@{}/%2F",
                server.local_addr().expect("its address")
            );
            let metrics = server.metrics();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(server.run(async {
                let _ = stopped.await;
            }));
            let queue = unique("serve", "metrics");
            let (conn, consumer) = three_published_one_held(&url, &queue).await;
            assert_eq!(metrics.connections(), 1, "{broker}");
            assert!(metrics.channels() >= 1);
            assert_eq!(metrics.published_total(), 3);
            assert_eq!(metrics.delivered_total(), 1);
            let queues = metrics.queues().await.expect("the queues");
            let stats = queues
                .iter()
                .find(|q| q.name == queue)
                .expect("the queue is listed");
            assert_eq!(
                (stats.ready, stats.unacked, stats.consumers),
                (2, 1, 0),
                "{broker}"
            );
            drop(consumer);
            conn.close().await.expect("closed");
            // The held message went back when its connection closed.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let queues = metrics.queues().await.expect("the queues");
                let stats = queues.iter().find(|q| q.name == queue).expect("listed");
                if (stats.ready, stats.unacked) == (3, 0) && metrics.connections() == 0 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{stats:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = stop.send(());
            running.await.expect("the server stops");
        });
    }
    remove(&file);

    // `carrot serve --metrics 1` prints the same on stderr.
    let mut served = Served::start_with_stderr("memory://serve-metrics-cli", &["--metrics", "1"]);
    let queue = unique("serve", "metrics-cli");
    let rt = runtime();
    let (conn, _consumer) = rt.block_on(three_published_one_held(&served.url(), &queue));
    std::thread::sleep(Duration::from_millis(2500));
    let _ = rt.block_on(conn.close());
    served.signal("TERM");
    served.wait(Duration::from_secs(10)).expect("it stops");
    let printed = served.stderr();
    assert!(printed.contains("connections 1"), "{printed}");
    assert!(
        printed.contains("publish ") && printed.contains("deliver "),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("queue {queue:?} ready 2 unacked 1 consumers 0")),
        "{printed}"
    );
}
