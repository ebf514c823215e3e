//! A `carrot serve` process for the tests that start one (tests/serve.rs,
//! tests/serve_options.rs): on a free loopback port, killed when dropped.

#![allow(dead_code)] // each test file uses a part

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carrot::{BrokerConnection, Consumer, Publisher, QueueSpec};

use crate::amqp_support::unique;

pub const CARROT: &str = env!("CARGO_BIN_EXE_carrot");

/// A `carrot serve` process; killed when dropped.
pub struct Served {
    pub child: Child,
    pub address: SocketAddr,
    /// Where its stderr goes, when kept.
    log: Option<std::path::PathBuf>,
}

impl Served {
    /// Starts `carrot serve --url URL` on a free loopback port and waits until it accepts.
    pub fn start(url: &str) -> Served {
        Served::start_with(url, &[])
    }

    /// Starts `carrot --url URL serve --listen ADDRESS ARGS...`.
    pub fn start_with(url: &str, args: &[&str]) -> Served {
        Served::spawn(url, args, None)
    }

    /// The same, keeping what it prints on stderr (see [`Served::stderr`]).
    pub fn start_with_stderr(url: &str, args: &[&str]) -> Served {
        let log = std::env::temp_dir().join(format!("{}.log", unique("serve", "stderr")));
        Served::spawn(url, args, Some(log))
    }

    /// What it printed on stderr so far (kept by [`Served::start_with_stderr`]).
    pub fn stderr(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    fn spawn(url: &str, args: &[&str], log: Option<std::path::PathBuf>) -> Served {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let child = Command::new(CARROT)
            .args(["--url", url, "serve", "--listen", &address.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(match &log {
                Some(log) => Stdio::from(std::fs::File::create(log).expect("a log file")),
                None => Stdio::null(),
            })
            .spawn()
            .expect("carrot serve starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(address).is_err() {
            assert!(
                Instant::now() < deadline,
                "carrot serve does not accept on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Served {
            child,
            address,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2F", self.address)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

pub fn sqlite_file(test: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.db", unique("serve", test)))
}

pub fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

/// Declares `queue`, publishes `text` with a confirm, fetches it back, checks it and acks it.
pub async fn round_trip(conn: &BrokerConnection, queue: &str, text: &str) {
    conn.declare_queue(&QueueSpec::new(queue))
        .await
        .expect("declared");
    Publisher::builder(conn)
        .routing_key(queue)
        .confirm_publish(true)
        .build()
        .await
        .expect("a publisher")
        .send(&text)
        .await
        .expect("confirmed");
    let mut consumer = Consumer::builder(conn)
        .queue(queue)
        .auto_declare(false)
        .build()
        .await
        .expect("a consumer");
    let message = consumer.fetch().await.expect("fetch").expect("the message");
    assert_eq!(message.decode::<String>().expect("text"), text);
    message.ack().expect("acked");
}
