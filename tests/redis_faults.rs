//! Redis going away under a stream, on servers of the test's own (127.0.0.1, free ports):
//!
//! - a Redis restart (append-only file, `appendfsync always`) in the middle of 5,000 messages:
//!   the publisher and the consumer recover under the retry policy and the stream completes
//!   with nothing lost;
//! - a Sentinel failover (a master, a replica, three sentinels): the master is SIGKILLed in the
//!   middle of the stream, the sentinels promote the replica, carrot finds it through the
//!   sentinels and the stream completes. Replication is asynchronous, so what the master had
//!   not yet sent to the replica when it died is lost to Redis itself (messages, and
//!   acknowledgements, which then come again): the counts are printed and recorded in
//!   RELIABILITY.md, and bounded here by what one replication round can miss.
//!
//! Needs `redis-server` and `redis-sentinel` (Debian's packages; `.ci/run` installs them):
//! without them the tests say skipped, and fail under `CI=true`.

#![cfg(unix)]

mod amqp_support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carrot::{BrokerConnection, ConnectionEvent, Consumer, Publisher, Qos, QueueSpec};

const MESSAGES: u64 = 5_000;

/// A port nothing listens on now, on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn have(binary: &str) -> bool {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        amqp_support::skip_or_fail(&format!(
            "{binary} is missing: apt-get install redis-server redis-sentinel"
        ));
    }
    found
}

/// A Redis server (or sentinel) of the test, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
    sentinel: bool,
}

impl Server {
    fn start(dir: &Path, port: u16, extra: &str, sentinel: bool) -> Server {
        let dir = dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("the server's folder");
        let config = dir.join("redis.conf");
        std::fs::write(
            &config,
            format!(
                "bind 127.0.0.1\nport {port}\ndir {}\nsave \"\"\nlogfile {}\n{extra}\n",
                dir.display(),
                dir.join("log").display()
            ),
        )
        .expect("the server's configuration");
        let child = Self::spawn(&config, sentinel);
        let server = Server {
            child,
            port,
            dir,
            config,
            sentinel,
        };
        server.wait_ready();
        server
    }

    fn spawn(config: &Path, sentinel: bool) -> Child {
        let mut command = Command::new(if sentinel {
            "redis-sentinel"
        } else {
            "redis-server"
        });
        command
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis starts")
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.cli(&["ping"]) != "PONG" {
            assert!(
                Instant::now() < until,
                "redis on {} did not start: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops (SHUTDOWN writes the append-only file) and starts again on the same folder.
    fn restart(&mut self) {
        self.cli(&["shutdown"]);
        let _ = self.child.wait();
        self.child = Self::spawn(&self.config, self.sentinel);
        self.wait_ready();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a stream gave.
struct Counts {
    lost: usize,
    twice: u64,
    recovered: usize,
}

/// Publishes MESSAGES (numbers) and consumes them on `url`, calling `fault` once half of
/// them are consumed; returns the counts once every message came or nothing came for 15 s.
async fn stream(url: &str, fault: impl FnOnce() + Send + 'static) -> Counts {
    let recovered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = recovered.clone();
    let conn = BrokerConnection::builder()
        .url(url)
        .on_event(move |e| {
            eprintln!("event: {e:?}");
            if matches!(e, ConnectionEvent::Recovered { .. }) {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .connect()
        .await
        .expect("Redis");
    let queue = amqp_support::unique("redis-faults", "stream");
    conn.declare_queue(&QueueSpec::new(&queue))
        .await
        .expect("the queue");
    let publisher = Publisher::builder(&conn)
        .routing_key(&queue)
        .build()
        .await
        .expect("a publisher");
    let mut consumer = Consumer::builder(&conn)
        .queue(&queue)
        .build()
        .await
        .expect("a consumer");
    consumer
        .qos(Qos::new().prefetch_count(50))
        .await
        .expect("qos");
    consumer.consume().await.expect("consuming");
    let sender = tokio::spawn(async move {
        for n in 0..MESSAGES {
            publisher
                .send(&n)
                .await
                .expect("a send, recovered if need be");
            if n % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    let mut fault = Some(fault);
    loop {
        match tokio::time::timeout(Duration::from_secs(15), consumer.next_message()).await {
            Ok(Ok(Some(message))) => {
                let n: u64 = message.decode().expect("a number");
                *counts.entry(n).or_insert(0) += 1;
                message.ack().expect("ack");
                if counts.len() as u64 == MESSAGES / 2 {
                    if let Some(fault) = fault.take() {
                        tokio::task::spawn_blocking(fault);
                    }
                }
                if counts.len() as u64 == MESSAGES {
                    break;
                }
            }
            Ok(Ok(None)) => panic!("the consumer ended"),
            Ok(Err(e)) => panic!("the consumer failed: {e}"),
            Err(_) => break,
        }
    }
    tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the publisher finished")
        .expect("the publisher did not fail");
    let lost = (0..MESSAGES).filter(|n| !counts.contains_key(n)).count();
    let twice = counts.values().map(|&c| u64::from(c - 1)).sum();
    let _ = conn.close().await;
    Counts {
        lost,
        twice,
        recovered: recovered.load(std::sync::atomic::Ordering::Relaxed),
    }
}

fn folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("carrot-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_is_recovered_and_loses_nothing() {
    if !have("redis-server") {
        return;
    }
    let dir = folder("redis-restart");
    let port = free_port();
    let server = std::sync::Arc::new(std::sync::Mutex::new(Server::start(
        &dir,
        port,
        "appendonly yes\nappendfsync always",
        false,
    )));
    let handle = server.clone();
    let counts = stream(&format!("redis://127.0.0.1:{port}/0"), move || {
        handle.lock().expect("the server").restart();
    })
    .await;
    eprintln!(
        "Redis restart: {} lost, {} delivered twice, {} recoveries",
        counts.lost, counts.twice, counts.recovered
    );
    assert_eq!(
        counts.lost, 0,
        "messages lost through a restart with appendfsync always"
    );
    assert!(
        counts.recovered >= 1,
        "the connection did not report a recovery"
    );
    // Deliveries the consumer held when Redis went down come again (prefetch 50), and acks
    // sent while it was down are applied after the recovery.
    assert!(counts.twice <= 50, "{} delivered twice", counts.twice);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_stream_is_followed() {
    if !have("redis-server") || !have("redis-sentinel") {
        return;
    }
    let dir = folder("redis-sentinel");
    let (master_port, replica_port) = (free_port(), free_port());
    let master = Server::start(&dir, master_port, "", false);
    let replica = Server::start(
        &dir,
        replica_port,
        &format!("replicaof 127.0.0.1 {master_port}"),
        false,
    );
    let sentinel_ports = [free_port(), free_port(), free_port()];
    let sentinels: Vec<Server> = sentinel_ports
        .iter()
        .map(|&port| {
            Server::start(
                &dir,
                port,
                &format!(
                    "sentinel monitor carrot 127.0.0.1 {master_port} 2\nsentinel down-after-milliseconds carrot 1000\nsentinel failover-timeout carrot 5000\nsentinel parallel-syncs carrot 1"
                ),
                true,
            )
        })
        .collect();
    // The replica in sync, and the sentinels knowing each other, before the stream.
    let until = Instant::now() + Duration::from_secs(30);
    while !(replica
        .cli(&["info", "replication"])
        .contains("master_link_status:up")
        && sentinels[0]
            .cli(&["sentinel", "master", "carrot"])
            .lines()
            .skip_while(|l| *l != "num-other-sentinels")
            .nth(1)
            == Some("2"))
    {
        assert!(Instant::now() < until, "the sentinels did not settle");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = sentinel_ports
        .iter()
        .map(|p| format!("sentinel://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";")
        + "?master_name=carrot";
    let master = std::sync::Arc::new(std::sync::Mutex::new(master));
    let handle = master.clone();
    let started = Instant::now();
    let counts = stream(&url, move || {
        handle.lock().expect("the master").kill();
    })
    .await;
    let promoted = replica.cli(&["role"]).starts_with("master");
    eprintln!(
        "Sentinel failover: {} lost, {} delivered twice, {} recoveries, replica promoted: {promoted}, {:?} in all",
        counts.lost,
        counts.twice,
        counts.recovered,
        started.elapsed()
    );
    assert!(promoted, "the sentinels did not promote the replica");
    assert!(
        counts.recovered >= 1,
        "the connection did not report a recovery"
    );
    // Asynchronous replication: at most what the master held and had not replicated.
    assert!(
        counts.lost <= 100,
        "{} lost in the failover (more than one replication round could miss)",
        counts.lost
    );
    drop(sentinels);
    drop(replica);
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message Redis refuses to store (here its memory is full: `maxmemory 1`, no eviction),
/// sent without confirms: `send` returned before Redis answered, so the refusal is the error
/// of the channel's next publish, or of its close; a confirmed send gets its own refusal. The
/// queue then holds exactly what Redis took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_unconfirmed_send_is_reported_by_the_next_publish_or_the_close() {
    if !have("redis-server") {
        return;
    }
    let dir = folder("redis-refuses");
    let port = free_port();
    let server = Server::start(&dir, port, "maxmemory-policy noeviction", false);
    let conn = BrokerConnection::connect(&format!("redis://127.0.0.1:{port}/0"))
        .await
        .expect("Redis");
    let queue = amqp_support::unique("redis-faults", "refused");
    conn.declare_queue(&QueueSpec::new(&queue))
        .await
        .expect("the queue");
    let publisher = || {
        Publisher::builder(&conn)
            .routing_key(&queue)
            .confirm_publish(false)
            .build()
    };
    let unconfirmed = publisher().await.expect("a publisher");
    let confirmed = Publisher::builder(&conn)
        .routing_key(&queue)
        .confirm_publish(true)
        .build()
        .await
        .expect("a confirming publisher");
    unconfirmed.send(&0).await.expect("a send Redis takes");

    assert_eq!(server.cli(&["config", "set", "maxmemory", "1"]), "OK");
    unconfirmed
        .send(&1)
        .await
        .expect("handed to the connection, refused later");
    // A read of the queue on the connection comes after the send: Redis has answered it.
    let info = conn.queue_info(&queue).await.expect("the queue's counts");
    assert_eq!(info.message_count, 1, "only message 0 is stored");
    let reported = unconfirmed.send(&2).await;
    assert!(
        matches!(reported, Err(carrot::Error::Storage { .. })),
        "the refusal of message 1: {reported:?}"
    );
    let own = confirmed.send(&3).await;
    assert!(
        matches!(own, Err(carrot::Error::Storage { .. })),
        "a confirmed send's own refusal: {own:?}"
    );
    unconfirmed
        .send(&7)
        .await
        .expect("handed to the connection");
    let flushed = unconfirmed.flush().await;
    assert!(
        matches!(flushed, Err(carrot::Error::Storage { .. })),
        "the refusal of message 7, reported by flush: {flushed:?}"
    );
    unconfirmed.flush().await.expect("reported once");
    unconfirmed
        .send(&4)
        .await
        .expect("handed to the connection");
    let closed = unconfirmed.close().await;
    assert!(
        matches!(closed, Err(carrot::Error::Storage { .. })),
        "the refusal of message 4, reported by the close: {closed:?}"
    );

    assert_eq!(server.cli(&["config", "set", "maxmemory", "0"]), "OK");
    let again = publisher().await.expect("a publisher");
    again.send(&5).await.expect("a send Redis takes");
    again.flush().await.expect("stored");
    assert_eq!(
        server.cli(&["llen", &queue]),
        "2",
        "messages 0 and 5 in Redis once flush returns"
    );
    again.close().await.expect("nothing refused to report");
    confirmed.send(&6).await.expect("confirmed");
    let mut reader = Consumer::builder(&conn)
        .queue(&queue)
        .auto_declare(false)
        .build()
        .await
        .expect("a reader");
    let mut got = Vec::new();
    while let Some(message) = reader.fetch().await.expect("a fetch") {
        got.push(message.decode::<u64>().expect("a number"));
        message.ack().expect("ack");
    }
    assert_eq!(got, vec![0, 5, 6], "what Redis stored, in order");
    let _ = conn.close().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
