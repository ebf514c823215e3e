//! carrot serve's management API against RabbitMQ's management plugin: one suite of HTTP
//! checks (`tests/interop/management_http.py`: the same requests, status codes and fields)
//! run on RabbitMQ (`CARROT_TEST_AMQP_MANAGEMENT_URL`, which `.ci/rabbitmq.sh` enables) and
//! on carrot serve over memory:// and sqlite://, with its Prometheus output parsed by the
//! official Python client. And over sqlite://, users, vhosts and permissions made through
//! the API survive a restart of the server.

#![cfg(all(feature = "serve", feature = "sqlite"))]

mod amqp_support;

use std::net::SocketAddr;
use std::time::Duration;

use amqp_support::*;
use carrot::server::{Server, ServerConfig};

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/management_http.py"
);

/// A served broker with its management API: (amqp URL, http URL, stop).
async fn serve(url: &str) -> (String, String, tokio::sync::oneshot::Sender<()>) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let mut config = ServerConfig::new(url, any);
    config.management = Some(any);
    let server = Server::bind(config).await.expect("carrot serve binds");
    let amqp = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2F",
        server.local_addr().expect("its address").port()
    );
    let http = format!(
        "http://{}",
        server.management_addr().expect("the management address")
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (amqp, http, stop)
}

fn sqlite_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "carrot-management-{name}-{}.db",
        std::process::id()
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_http_checks_pass_on_rabbitmq_and_carrot_serve() {
    let Some(python) = python_with(
        "import requests, pika, prometheus_client",
        "requests pika prometheus_client",
    ) else {
        return;
    };
    let mut targets = Vec::new();
    if let (Some(amqp), Some(http)) = (
        setting("CARROT_TEST_AMQP_URL", "RabbitMQ's AMQP URL"),
        setting(
            "CARROT_TEST_AMQP_MANAGEMENT_URL",
            "the URL of RabbitMQ's management plugin",
        ),
    ) {
        targets.push(
            serde_json::json!({"name": "rabbitmq", "amqp": amqp, "http": http, "kind": "rabbitmq"}),
        );
    }
    let name = format!("management-http-{}", std::process::id());
    let (amqp, http, _stop_memory) = serve(&format!("memory://{name}")).await;
    targets.push(
        serde_json::json!({"name": "serve-memory", "amqp": amqp, "http": http, "kind": "carrot"}),
    );
    let file = sqlite_file("suite");
    let (amqp, http, _stop_sqlite) = serve(&format!("sqlite://{}", file.display())).await;
    targets.push(
        serde_json::json!({"name": "serve-sqlite", "amqp": amqp, "http": http, "kind": "carrot"}),
    );
    let output = bounded(
        "management_http.py",
        Duration::from_secs(240),
        tokio::process::Command::new(&python)
            .arg(SUITE)
            .arg(serde_json::Value::Array(targets.clone()).to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("management_http.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the HTTP suite failed:\n{stdout}\n{stderr}"
    );
    for target in &targets {
        let name = target["name"].as_str().unwrap_or_default();
        assert!(
            stdout.contains(&format!("PASS {name}")),
            "{name} did not pass:\n{stdout}"
        );
    }
}

/// A minimal HTTP/1.1 request on a fresh connection, for checks without a client crate.
async fn http(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("the management listener accepts");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("answer read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_permissions_made_through_the_api_survive_a_restart_over_sqlite() {
    let file = sqlite_file("restart");
    let url = format!("sqlite://{}", file.display());
    let (_, api, stop) = serve(&url).await;
    assert_eq!(
        http(&api, "PUT", "/api/vhosts/kept", "").await.0,
        201,
        "vhost made"
    );
    assert_eq!(
        http(
            &api,
            "PUT",
            "/api/users/keeper",
            r#"{"password":"s3cret","tags":"management"}"#
        )
        .await
        .0,
        201
    );
    assert_eq!(
        http(
            &api,
            "PUT",
            "/api/permissions/kept/keeper",
            r#"{"configure":"^k\\.","write":".*","read":".*"}"#
        )
        .await
        .0,
        201
    );
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        // The password is stored hashed, never in clear.
        let db = rusqlite::Connection::open(&file).expect("the broker file");
        let hash: String = db
            .query_row(
                "SELECT password_hash FROM access_users WHERE name = 'keeper'",
                [],
                |r| r.get(0),
            )
            .expect("the user is in the file");
        assert!(!hash.contains("s3cret") && hash.len() > 40, "{hash}");
    }
    let (amqp, api, _stop) = serve(&url).await;
    let (status, body) = http(&api, "GET", "/api/permissions/kept/keeper", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""configure":"^k\\.""#), "{body}");
    let keeper = amqp
        .replace("guest:guest", "keeper:s3cret")
        .replace("%2F", "kept");
    let conn = carrot::BrokerConnection::connect(&keeper)
        .await
        .expect("the kept user opens the kept vhost after the restart");
    conn.declare_queue(&carrot::QueueSpec::new("k.q"))
        .await
        .expect("configure allowed on k.*");
    let refused = conn
        .declare_queue(&carrot::QueueSpec::new("other"))
        .await
        .expect_err("configure refused elsewhere");
    assert!(
        matches!(refused, carrot::Error::AccessRefused(_)),
        "{refused:?}"
    );
    let _ = conn.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
