//! `carrot serve` as a client sees it: the command started as a process, on memory:// and
//! sqlite://; pika and kombu unmodified (tests/interop/serve_clients.py); the handshake and
//! abusive input answered as RabbitMQ answers them (a wrong protocol header, a wrong
//! password, a frame on a channel that is not open, an oversized frame, a malformed frame, a
//! client that disconnects in the middle of a frame); SIGTERM closing clients
//! with 320 CONNECTION_FORCED; and a server SIGKILLed mid-stream over sqlite:// that loses no
//! confirmed message once restarted.
//!
//! The whole conformance suite also runs through `carrot serve` (tests/conformance, backends
//! serve-memory and serve-sqlite).

mod amqp_support;
#[path = "serve_support/process.rs"]
mod process;
#[path = "serve_support/raw.rs"]
mod raw;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use amqp_support::{connect, connect_with, skip_or_fail, unique};
use carrot::{BrokerConnection, Consumer, DeliveryMode, Error, Publisher, QueueSpec, SendOptions};
use process::{remove, round_trip, runtime, sqlite_file, Served, CARROT};
use raw::Raw;

const CLIENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/serve_clients.py"
);

/// The Python that can import pika and kombu, if any (a failure under CI).
fn python() -> Option<String> {
    let python = std::env::var("CARROT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python)
        .args(["-c", "import pika, kombu"])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        _ => {
            skip_or_fail(&format!(
                "{python} cannot import pika and kombu: pip install pika kombu"
            ));
            None
        }
    }
}

#[test]
fn pika_and_kombu_use_it_unmodified_on_memory_and_sqlite() {
    let Some(python) = python() else { return };
    let file = sqlite_file("clients");
    for url in [
        "memory://serve-clients".to_string(),
        format!("sqlite://{}", file.display()),
    ] {
        let served = Served::start(&url);
        for client in ["pika", "kombu"] {
            let out = Command::new(&python)
                .args([
                    CLIENTS,
                    client,
                    "--url",
                    &served.url(),
                    "--queue",
                    &unique("serve", client),
                ])
                .output()
                .expect("serve_clients.py runs");
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
                "{client} on {url}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    remove(&file);
}

#[test]
fn bad_input_is_answered_as_rabbitmq_answers_it_and_the_server_stays_up() {
    let served = Served::start("memory://serve-abuse");
    let address = served.address;

    // A protocol header of another protocol: the server answers with its own and closes.
    let mut raw = Raw::connect(address);
    raw.stream.write_all(b"HTTP/1.1 GET /\r\n").expect("write");
    let mut answer = [0u8; 8];
    raw.stream
        .read_exact(&mut answer)
        .expect("the server's header");
    assert_eq!(&answer, b"AMQP\x00\x00\x09\x01");

    // A wrong password: connection.close 403.
    let (mut raw, replied) = Raw::handshake(address, "wrong");
    match replied {
        Some(AMQPClass::Connection(connection::AMQPMethod::Close(close))) => {
            assert_eq!(close.reply_code, 403);
            assert!(
                close.reply_text.to_string().starts_with("ACCESS_REFUSED"),
                "{close:?}"
            );
        }
        other => panic!("expected a 403 close, got {other:?}"),
    }
    assert!(
        raw.next().is_none() || raw.next().is_none(),
        "the connection ends"
    );

    // A method on a channel that was never opened: 504 CHANNEL_ERROR.
    let mut raw = Raw::open(address);
    raw.method(
        5,
        AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: true })),
    );
    assert_eq!(raw.closed_with(), 504);

    // basic.recover with requeue=false: 540 NOT_IMPLEMENTED, as RabbitMQ answers it.
    let mut raw = Raw::open(address);
    raw.open_channel(1);
    raw.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover {
            requeue: false,
        })),
    );
    assert_eq!(raw.closed_with(), 540);

    // A frame larger than the negotiated frame_max: 501 FRAME_ERROR.
    let mut raw = Raw::open(address);
    let mut huge = vec![3u8, 0, 1];
    huge.extend_from_slice(&(10_000_000u32).to_be_bytes());
    raw.stream.write_all(&huge).expect("write");
    assert_eq!(raw.closed_with(), 501);

    // A frame whose end octet is wrong: 501 FRAME_ERROR.
    let mut raw = Raw::open(address);
    raw.stream
        .write_all(&[8, 0, 0, 0, 0, 0, 0, 0x00])
        .expect("write");
    assert_eq!(raw.closed_with(), 501);

    // A client that goes away in the middle of a frame.
    let mut raw = Raw::open(address);
    raw.stream
        .write_all(&[1, 0, 1, 0, 0, 0, 100, 0, 20])
        .expect("write");
    drop(raw);

    // The server is still up.
    let _ = Raw::open(address);
}

#[test]
fn sigterm_closes_clients_with_connection_forced() {
    let mut served = Served::start("memory://serve-sigterm");
    let mut raw = Raw::open(served.address);
    served.signal("TERM");
    assert_eq!(raw.closed_with(), 320);
    let status = served
        .wait(Duration::from_secs(10))
        .expect("carrot serve stops");
    assert!(status.success(), "{status}");
}

#[test]
fn a_server_killed_mid_stream_over_sqlite_loses_no_confirmed_message() {
    let file = sqlite_file("sigkill");
    let url = format!("sqlite://{}", file.display());
    let queue = unique("serve", "sigkill");
    let mut served = Served::start(&url);
    let confirmed = runtime().block_on(async {
        // No retries: the kill must end the stream at once, not start a recovery.
        let conn = connect_with(
            BrokerConnection::builder()
                .url(served.url())
                .retry_policy(carrot::RetryPolicy::default().max_retries(Some(0))),
        )
        .await;
        conn.declare_queue(&QueueSpec::new(&queue).durable(true))
            .await
            .expect("declare");
        let publisher = Publisher::builder(&conn)
            .routing_key(&queue)
            .serializer("raw")
            .confirm_publish(true)
            .build()
            .await
            .expect("a publisher");
        let options = SendOptions::new().delivery_mode(DeliveryMode::Persistent);
        let mut confirmed = Vec::new();
        for n in 0..2000u32 {
            if n == 1000 {
                // Killed without a chance to clean up, mid-stream.
                served.signal("KILL");
            }
            match publisher.send_with(&n.to_string(), options.clone()).await {
                Ok(()) => confirmed.push(n),
                Err(_) => break,
            }
        }
        confirmed
    });
    assert!(
        confirmed.len() >= 1000,
        "{} confirmed before the kill",
        confirmed.len()
    );
    let _ = served.wait(Duration::from_secs(5));
    drop(served);
    let restarted = Served::start(&url);
    let got = runtime().block_on(async {
        let conn = connect(&restarted.url()).await;
        let mut consumer = Consumer::builder(&conn)
            .queue(&queue)
            .durable(true)
            .build()
            .await
            .expect("a consumer");
        let mut got = std::collections::BTreeSet::new();
        while let Some(message) = consumer.fetch().await.expect("fetch") {
            got.insert(
                message
                    .decode::<String>()
                    .expect("text")
                    .parse::<u32>()
                    .expect("a number"),
            );
            message.ack().expect("ack");
        }
        got
    });
    let lost: Vec<u32> = confirmed
        .iter()
        .copied()
        .filter(|n| !got.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    drop(restarted);
    remove(&file);
}

#[test]
fn an_unknown_virtual_host_and_an_amqp_url_are_refused() {
    let served = Served::start("memory://serve-vhost");
    let err = runtime().block_on(async {
        BrokerConnection::builder()
            .url(format!("amqp://guest:guest@{}/other", served.address))
            .retry_policy(carrot::RetryPolicy::default().max_retries(Some(0)))
            .connect()
            .await
            .unwrap_err()
    });
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    let out = Command::new(CARROT)
        .args([
            "--url",
            "amqp://127.0.0.1:1/",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("carrot runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("embedded broker"));
}

/// The anonymous resident memory of a process (its heap, SQLite's page cache included), in
/// KiB: the database file mapped in memory is the kernel's page cache, not counted.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon")
}

#[test]
fn a_client_that_stops_reading_holds_a_bounded_number_of_messages_then_is_cut_off_and_loses_none() {
    const MESSAGES: u32 = 60_000;
    const SIZE: usize = 4096;
    let file = sqlite_file("stuck");
    let served = Served::start_with(
        &format!("sqlite://{}", file.display()),
        &["--write-timeout", "2"],
    );
    let url = served.url();
    let queue = unique("serve", "stuck");
    let rt = runtime();
    let conn = rt.block_on(connect(&url));
    rt.block_on(conn.declare_queue(&QueueSpec::new(&queue).durable(true)))
        .expect("declared");

    // A consumer (acks, no prefetch limit) that never reads its socket again.
    let mut stuck = Raw::open(served.address);
    stuck.open_channel(1);
    stuck.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.as_str().into(),
            consumer_tag: "stuck".into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: Default::default(),
        })),
    );
    assert!(matches!(
        stuck.next_method(),
        Some(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))
    ));
    let before = rss_kib(served.child.id());

    // 240 MiB published for it: the server keeps what the client cannot take in the queue
    // (on disk), not in its memory, and goes on serving other clients.
    rt.block_on(async {
        let publisher = Publisher::builder(&conn)
            .exchange("")
            .routing_key(&queue)
            .serializer("raw")
            .build()
            .await
            .expect("a publisher");
        let body = vec![7u8; SIZE];
        for _ in 0..MESSAGES {
            publisher.send(&body).await.expect("sent");
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let info = rt
        .block_on(conn.queue_info(&queue))
        .expect("the server answers another client");
    let held = MESSAGES - info.message_count;
    let grown = rss_kib(served.child.id()).saturating_sub(before);
    assert!(
        held < 12_000,
        "{held} of {MESSAGES} messages left the queue for a client that reads nothing"
    );
    assert!(
        grown < 96 * 1024,
        "the server grew by {grown} KiB for a client that reads nothing"
    );

    // The client has read nothing for the send timeout (2 s here): the server cuts it off,
    // and every message it was handed comes back; none is lost.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = rt.block_on(conn.queue_info(&queue)).expect("queue info");
        if info.message_count == MESSAGES {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {MESSAGES} messages back in the queue",
            info.message_count
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stuck
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let mut sink = [0u8; 64 * 1024];
    loop {
        match stuck.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server did not close the stalled connection: {e}"),
        }
    }
    let _ = rt.block_on(conn.close());
    remove(&file);
}

#[test]
fn two_thousand_connections_are_served_at_once() {
    const CONNECTIONS: usize = 2_000;
    let rt = runtime();
    let server = rt
        .block_on(carrot::server::Server::bind(
            carrot::server::ServerConfig::new(
                "memory://serve-many",
                "127.0.0.1:0".parse().expect("an address"),
            ),
        ))
        .expect("bound");
    let address = server.local_addr().expect("its address");
    let metrics = server.metrics();
    let running = rt.spawn(server.run(std::future::pending()));

    // Four threads open them (handshake done), and keep them.
    let opened: Vec<Raw> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    (0..CONNECTIONS / 4)
                        .map(|_| Raw::open(address))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a thread"))
            .collect()
    });
    assert_eq!(opened.len(), CONNECTIONS);
    assert_eq!(metrics.connections() as usize, CONNECTIONS);

    // One more client is served as usual.
    let url = format!("amqp://guest:guest@{address}/%2F");
    let queue = unique("serve", "many");
    rt.block_on(async {
        let conn = connect(&url).await;
        round_trip(&conn, &queue, "one more").await;
        conn.close().await.expect("closed");
    });

    // All of them go: the server lets every one go.
    drop(opened);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metrics.connections() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} connections left",
            metrics.connections()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.abort();
}

#[test]
fn sigterm_over_sqlite_leaves_the_file_clean_with_every_confirmed_message() {
    const MESSAGES: usize = 1_000;
    let file = sqlite_file("sigterm");
    let url = format!("sqlite://{}", file.display());
    let mut served = Served::start(&url);
    let queue = unique("serve", "sigterm");
    let rt = runtime();
    let conn = rt.block_on(connect(&served.url()));
    rt.block_on(async {
        conn.declare_queue(&QueueSpec::new(&queue).durable(true))
            .await
            .expect("declared");
        let publisher = Publisher::builder(&conn)
            .routing_key(&queue)
            .delivery_mode(DeliveryMode::Persistent)
            .confirm_publish(true)
            .build()
            .await
            .expect("a publisher");
        for n in 0..MESSAGES {
            publisher.send(&n).await.expect("confirmed");
        }
    });
    served.signal("TERM");
    let status = served
        .wait(Duration::from_secs(10))
        .expect("carrot serve stops");
    assert!(status.success(), "{status}");
    drop(conn);
    // The last process closed the file cleanly: SQLite folded its log into it.
    for suffix in ["-wal", "-shm"] {
        let left = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
        assert!(
            std::fs::metadata(&left).map_or(true, |m| m.len() == 0),
            "{} left behind",
            left.display()
        );
    }
    let count = rt.block_on(async {
        let conn = BrokerConnection::connect(&url)
            .await
            .expect("the file opens");
        conn.queue_info(&queue)
            .await
            .expect("the queue")
            .message_count
    });
    assert_eq!(count as usize, MESSAGES);
    remove(&file);
}

#[test]
fn a_client_that_misses_two_heartbeats_is_disconnected() {
    let served = Served::start("memory://serve-heartbeat");
    let (mut raw, opened) = Raw::handshake_with(served.address, "guest", 1);
    assert!(
        matches!(
            opened,
            Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
        ),
        "{opened:?}"
    );
    // The client says nothing more: the server sends heartbeats, then, two intervals on,
    // closes the socket (as RabbitMQ does).
    let start = std::time::Instant::now();
    let mut beats = 0;
    while let Some(frame) = raw.next() {
        assert!(matches!(frame, AMQPFrame::Heartbeat), "{frame:?}");
        beats += 1;
    }
    let silent = start.elapsed();
    assert!(beats >= 1, "the server sent no heartbeat");
    assert!(
        silent >= Duration::from_millis(1_900) && silent < Duration::from_secs(5),
        "disconnected after {silent:?}"
    );

    // A client that sends heartbeats stays.
    let (mut raw, _) = Raw::handshake_with(served.address, "guest", 1);
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        raw.send(&AMQPFrame::Heartbeat);
    }
    raw.open_channel(1);
}

#[test]
fn direct_reply_to_works_and_is_refused_as_on_rabbitmq() {
    let Some(python) = python() else { return };
    let Some(rabbitmq) = amqp_support::setting("CARROT_TEST_AMQP_URL", "RabbitMQ, the reference")
    else {
        return;
    };
    let run = |url: &str| {
        let out = Command::new(&python)
            .args([
                CLIENTS,
                "rpc",
                "--url",
                url,
                "--queue",
                &unique("serve", "rpc"),
            ])
            .output()
            .expect("serve_clients.py runs");
        assert!(
            out.status.success(),
            "rpc on {url}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let reference = run(&rabbitmq);
    assert!(reference.contains("reply: [b'pong:ping']"), "{reference}");
    let file = sqlite_file("rpc");
    for url in [
        "memory://serve-rpc".to_string(),
        format!("sqlite://{}", file.display()),
    ] {
        let served = Served::start(&url);
        assert_eq!(run(&served.url()), reference, "{url} differs from RabbitMQ");
    }
    remove(&file);
}
