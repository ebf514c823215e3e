//! Anything a client can send gets an answer, never a crash, a hang or unbounded memory:
//! thousands of seeded sessions of random frames (methods of every class with absurd fields
//! and tables, content that disagrees with its header, frames on channels never opened,
//! truncated and oversized frames, garbage) against `carrot serve` of memory:// and of
//! sqlite://, and between rounds a well-behaved client that must still do a confirmed round
//! trip. `CARROT_FUZZ_SEED` replays a run; `CARROT_FUZZ_SESSIONS` sets its size.

mod amqp_support;
#[path = "serve_support/process.rs"]
mod process;
#[path = "serve_support/raw.rs"]
mod raw;

use std::io::Write;
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, tx, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use amqp_support::connect;
use process::{remove, round_trip, runtime, sqlite_file, Served};
use raw::Raw;

/// SplitMix64: a seeded, reproducible stream of numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn flag(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

const NAMES: &[&str] = &[
    "",
    "q",
    "x",
    "amq.direct",
    "amq.topic",
    "amq.rabbitmq.reply-to",
    "fuzz.q",
    "fuzz.x",
    "é\u{0}",
    "a.b.#",
];
const KINDS: &[&str] = &["direct", "fanout", "topic", "headers", "x-unknown", ""];
const KEYS: &[&str] = &[
    "x-max-priority",
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-queue-type",
    "x-dead-letter-exchange",
    "x-priority",
    "x-match",
    "alternate-exchange",
    "x-whatever",
];

fn value(rng: &mut Rng) -> AMQPValue {
    match rng.below(8) {
        0 => AMQPValue::LongInt(rng.next() as i32),
        1 => AMQPValue::LongLongInt(rng.next() as i64),
        2 => AMQPValue::ShortShortInt(rng.next() as i8),
        3 => AMQPValue::Boolean(rng.flag()),
        4 => AMQPValue::LongString(rng.pick(KINDS).into()),
        5 => AMQPValue::Double(f64::from_bits(rng.next())),
        6 => AMQPValue::FieldTable(table(rng, 1)),
        _ => AMQPValue::Void,
    }
}

fn table(rng: &mut Rng, depth: u32) -> FieldTable {
    let mut t = FieldTable::default();
    for _ in 0..rng.below(4) {
        let v = if depth > 0 {
            value(rng)
        } else {
            AMQPValue::Boolean(true)
        };
        t.insert(rng.pick(KEYS).into(), v);
    }
    t
}

/// A random method of any class, with random fields.
fn method(rng: &mut Rng) -> AMQPClass {
    let name = |rng: &mut Rng| rng.pick(NAMES).into();
    let tag = rng.below(8);
    match rng.below(22) {
        0 => AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        1 => AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "".into(),
            class_id: 0,
            method_id: 0,
        })),
        2 => AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow {
            active: rng.flag(),
        })),
        3 => AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name(rng),
            passive: rng.flag(),
            durable: rng.flag(),
            exclusive: rng.flag(),
            auto_delete: rng.flag(),
            nowait: rng.flag(),
            arguments: table(rng, 2),
        })),
        4 => AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
            queue: name(rng),
            exchange: name(rng),
            routing_key: name(rng),
            nowait: rng.flag(),
            arguments: table(rng, 2),
        })),
        5 => AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
            queue: name(rng),
            if_unused: rng.flag(),
            if_empty: rng.flag(),
            nowait: rng.flag(),
        })),
        6 => AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
            queue: name(rng),
            nowait: rng.flag(),
        })),
        7 => AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: name(rng),
            kind: rng.pick(KINDS).into(),
            passive: rng.flag(),
            durable: rng.flag(),
            auto_delete: rng.flag(),
            internal: rng.flag(),
            nowait: rng.flag(),
            arguments: table(rng, 2),
        })),
        8 => AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
            destination: name(rng),
            source: name(rng),
            routing_key: name(rng),
            nowait: rng.flag(),
            arguments: table(rng, 2),
        })),
        9 => AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
            exchange: name(rng),
            if_unused: rng.flag(),
            nowait: rng.flag(),
        })),
        10 => AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: name(rng),
            consumer_tag: name(rng),
            no_local: rng.flag(),
            no_ack: rng.flag(),
            exclusive: rng.flag(),
            nowait: rng.flag(),
            arguments: table(rng, 2),
        })),
        11 => AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: name(rng),
            nowait: rng.flag(),
        })),
        12 => AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: name(rng),
            no_ack: rng.flag(),
        })),
        13 => AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: tag,
            multiple: rng.flag(),
        })),
        14 => AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: tag,
            multiple: rng.flag(),
            requeue: rng.flag(),
        })),
        15 => AMQPClass::Basic(basic::AMQPMethod::Reject(basic::Reject {
            delivery_tag: tag,
            requeue: rng.flag(),
        })),
        16 => AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: rng.next() as u16,
            global: rng.flag(),
        })),
        17 => AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover {
            requeue: rng.flag(),
        })),
        18 => AMQPClass::Tx(match rng.below(3) {
            0 => tx::AMQPMethod::Select(tx::Select {}),
            1 => tx::AMQPMethod::Commit(tx::Commit {}),
            _ => tx::AMQPMethod::Rollback(tx::Rollback {}),
        }),
        19 => AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: rng.flag(),
        })),
        20 => AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(
            connection::UpdateSecret {
                new_secret: "guest".into(),
                reason: name(rng),
            },
        )),
        _ => AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: name(rng),
            routing_key: name(rng),
            mandatory: rng.flag(),
            immediate: rng.below(8) == 0,
        })),
    }
}

fn bytes(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new()))
        .map(|c| c.write)
        .unwrap_or_default()
}

/// One session: a handshake, then random frames; the answers are read and not judged (the
/// server must only stay up and bounded).
fn session(address: std::net::SocketAddr, rng: &mut Rng) {
    let mut raw = Raw::open(address);
    raw.read_timeout(Duration::from_millis(5));
    if rng.below(4) != 0 {
        raw.send(&AMQPFrame::Method(
            1,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        ));
    }
    for _ in 0..rng.below(24) {
        let id = if rng.below(6) == 0 {
            rng.below(4) as u16
        } else {
            1
        };
        let out = match rng.below(10) {
            // Garbage: a frame of any type, size and end octet, sometimes cut short.
            0 => {
                let len = rng.below(64) as usize;
                let mut f = vec![rng.next() as u8, 0, id as u8];
                let declared = if rng.flag() {
                    len as u32
                } else {
                    rng.next() as u32
                };
                f.extend_from_slice(&declared.to_be_bytes());
                f.extend((0..len).map(|_| rng.next() as u8));
                f.push(if rng.flag() { 0xCE } else { rng.next() as u8 });
                f
            }
            // Content: a header whose size may disagree with the bodies that follow.
            1 | 2 => {
                let size = rng.below(300);
                let mut f = bytes(&AMQPFrame::Header(
                    id,
                    AMQPContentHeader {
                        class_id: 60,
                        body_size: size,
                        properties: Default::default(),
                    },
                ));
                for _ in 0..rng.below(3) {
                    let n = rng.below(200) as usize;
                    f.extend(bytes(&AMQPFrame::Body(id, vec![b'x'; n])));
                }
                f
            }
            3 => bytes(&AMQPFrame::Heartbeat),
            _ => bytes(&AMQPFrame::Method(id, method(rng))),
        };
        if raw.stream.write_all(&out).is_err() {
            return; // the server closed the connection: a fine answer
        }
    }
    // What the server answered (it may close the connection, a fine answer too).
    while raw.next().is_some() {}
    if rng.below(5) == 0 {
        // Gone in the middle of a frame.
        let _ = raw.stream.write_all(&[1, 0, 1, 0, 0, 1, 0, 0, 10]);
    }
}

/// The server's anonymous resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn random_frames_never_bring_either_serve_down() {
    let seed = std::env::var("CARROT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let sessions: u64 = std::env::var("CARROT_FUZZ_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    eprintln!("CARROT_FUZZ_SEED={seed} CARROT_FUZZ_SESSIONS={sessions}");
    let rt = runtime();
    let file = sqlite_file("fuzz");
    for url in [
        "memory://serve-fuzz".to_string(),
        format!("sqlite://{}", file.display()),
    ] {
        let mut served = Served::start(&url);
        let mut rng = Rng(seed);
        let started = Instant::now();
        let baseline = rss_kib(served.child.id());
        for n in 0..sessions {
            session(served.address, &mut rng);
            if n % 250 == 249 {
                assert!(
                    served.child.try_wait().ok().flatten().is_none(),
                    "{url}: the server died after session {n} (seed {seed})"
                );
                let conn = rt.block_on(connect(&served.url()));
                rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(20),
                        round_trip(&conn, &format!("fuzz.check.{n}"), "still here"),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        panic!("{url}: no round trip after session {n} (seed {seed})")
                    });
                    let _ = conn.close().await;
                });
            }
        }
        let grown = rss_kib(served.child.id()).saturating_sub(baseline);
        eprintln!(
            "{url}: {sessions} sessions in {:?}, memory grown {grown} KiB",
            started.elapsed()
        );
        assert!(
            grown < 64 * 1024,
            "{url}: the server grew {grown} KiB over {sessions} sessions (seed {seed})"
        );
        assert!(
            served.wait(Duration::ZERO).is_none(),
            "{url}: the server is gone"
        );
    }
    remove(&file);
}
