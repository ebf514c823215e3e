//! Throughput of the embedded `memory://` broker: 100-byte raw bodies, one publisher and one
//! consumer, through the public API only.
//!
//! Every benchmark moves `N` messages per iteration and reports messages per second
//! (`Throughput::Elements(N)`). Each queue is drained (or purged) at the end of an iteration,
//! so the broker's state does not grow from one iteration to the next.
//!
//! | function | what is timed |
//! | --- | --- |
//! | `publish` | `Publisher::send` of N raw bodies (the queue is purged afterwards, untimed) |
//! | `consume_ack` | `Consumer::fetch` + `Message::ack` of N waiting messages (published untimed) |
//! | `consume_no_ack` | `Consumer::fetch` of N waiting messages with `no_ack` |
//! | `consume_next_ack` | `Consumer::next_message` + `Message::ack` of N messages published (untimed) to the open subscription |
//! | `publish_consume_one_task` | publish N, then fetch + ack N, in one task |
//! | `publish_consume_two_tasks` | a publisher task and a consumer task (`next_message` + ack) spawned together on a 2-worker runtime |
//! | `publish_consume_two_threads` | the same, with publisher and consumer each on an OS thread of its own (really in parallel) |
//! | `bare_channel_two_tasks` | no broker at all: a tokio unbounded mpsc channel moving N fresh copies of the 100-byte body from a sender task to a receiver task on a 2-worker runtime (the physical limit: the cost of an in-process hand-off) |
//!
//! `bench/run.sh` runs this with kombu's memory transport as the peer and writes BENCHMARKS.md.

use std::time::{Duration, Instant};

use carrot::{BrokerConnection, Consumer, ExchangeType, Publisher};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Serialize, Serializer};
use tokio::runtime::Runtime;

/// Messages per iteration.
const N: usize = 10_000;
/// Body size in bytes.
const BODY_LEN: usize = 100;
const EXCHANGE: &str = "bench";
const QUEUE: &str = "bench";
const ROUTING_KEY: &str = "bench";

/// A byte string serialized with `serialize_bytes`, as `serde_bytes` would: the raw serializer
/// copies it in one go and sends it as `application/data`, `binary`.
struct Body<'a>(&'a [u8]);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A connection to a broker of its own, a raw publisher and a consumer on one direct exchange.
async fn setup(broker: &str, no_ack: bool) -> (BrokerConnection, Publisher, Consumer) {
    let conn = BrokerConnection::connect(&format!("memory://{broker}"))
        .await
        .expect("connect");
    let publisher = Publisher::builder(&conn)
        .exchange(EXCHANGE)
        .exchange_type(ExchangeType::Direct)
        .routing_key(ROUTING_KEY)
        .serializer("raw")
        .build()
        .await
        .expect("publisher");
    let consumer = Consumer::builder(&conn)
        .queue(QUEUE)
        .exchange(EXCHANGE)
        .exchange_type(ExchangeType::Direct)
        .routing_key(ROUTING_KEY)
        .no_ack(no_ack)
        .build()
        .await
        .expect("consumer");
    (conn, publisher, consumer)
}

async fn publish_n(publisher: &Publisher, body: &[u8]) {
    for _ in 0..N {
        publisher.send(&Body(body)).await.expect("send");
    }
}

async fn fetch_n(consumer: &mut Consumer, ack: bool) {
    for _ in 0..N {
        let message = consumer
            .fetch()
            .await
            .expect("fetch")
            .expect("a waiting message");
        debug_assert_eq!(message.body().len(), BODY_LEN);
        if ack {
            message.ack().expect("ack");
        }
    }
}

fn single_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench_memory(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("memory_100B");
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);

    group.bench_function("publish", |b| {
        let rt = single_thread();
        let (_conn, publisher, mut consumer) = rt.block_on(setup("bench-publish", true));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    publish_n(&publisher, &body).await;
                    total += start.elapsed();
                    assert_eq!(consumer.discard_all().await.expect("purge"), N);
                }
                total
            })
        });
    });

    for (name, ack) in [("consume_ack", true), ("consume_no_ack", false)] {
        group.bench_function(name, |b| {
            let rt = single_thread();
            let (_conn, publisher, mut consumer) =
                rt.block_on(setup(&format!("bench-{name}"), !ack));
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        publish_n(&publisher, &body).await;
                        let start = Instant::now();
                        fetch_n(&mut consumer, ack).await;
                        total += start.elapsed();
                    }
                    total
                })
            });
        });
    }

    group.bench_function("consume_next_ack", |b| {
        let rt = single_thread();
        let (_conn, publisher, mut consumer) = rt.block_on(setup("bench-consume-next", false));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // The subscription is open, so publishing already hands the messages to
                    // the consumer's delivery stream; what is timed is receiving and acking.
                    publish_n(&publisher, &body).await;
                    let start = Instant::now();
                    for _ in 0..N {
                        let message = consumer
                            .next_message()
                            .await
                            .expect("next")
                            .expect("a message");
                        message.ack().expect("ack");
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });

    group.bench_function("publish_consume_one_task", |b| {
        let rt = single_thread();
        let (_conn, publisher, mut consumer) = rt.block_on(setup("bench-one-task", false));
        b.iter(|| {
            rt.block_on(async {
                publish_n(&publisher, &body).await;
                fetch_n(&mut consumer, true).await;
            })
        });
    });

    group.bench_function("publish_consume_two_tasks", |b| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (_conn, publisher, consumer) = rt.block_on(setup("bench-two-tasks", false));
        let publisher = std::sync::Arc::new(publisher);
        let body = std::sync::Arc::new(body.clone());
        let mut consumer = Some(consumer);
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut c = consumer.take().expect("consumer");
                    let consuming = tokio::spawn(async move {
                        for _ in 0..N {
                            let message = c.next_message().await.expect("next").expect("a message");
                            message.ack().expect("ack");
                        }
                        c
                    });
                    let (p, bd) = (publisher.clone(), body.clone());
                    let publishing = tokio::spawn(async move { publish_n(&p, &bd).await });
                    publishing.await.expect("publisher task");
                    consumer = Some(consuming.await.expect("consumer task"));
                }
                start.elapsed()
            })
        });
    });

    group.bench_function("publish_consume_two_threads", |b| {
        // Publisher and consumer each on an OS thread of its own with a current-thread runtime:
        // they really run in parallel, on the two cores, and meet on the broker's lock.
        let publisher_rt = single_thread();
        let consumer_rt = single_thread();
        let (_conn, publisher, mut consumer) =
            consumer_rt.block_on(setup("bench-two-threads", false));
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::thread::scope(|scope| {
                    scope.spawn(|| publisher_rt.block_on(publish_n(&publisher, &body)));
                    consumer_rt.block_on(async {
                        for _ in 0..N {
                            let message = consumer
                                .next_message()
                                .await
                                .expect("next")
                                .expect("a message");
                            message.ack().expect("ack");
                        }
                    });
                });
            }
            start.elapsed()
        });
    });

    group.bench_function("bare_channel_two_tasks", |b| {
        // The physical limit of an in-process hand-off, with no broker: each message is a fresh
        // copy of the body (as a publisher copies it into a message) sent through a tokio
        // channel to a receiving task, on the same 2-worker runtime as the two-task workload.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let body = std::sync::Arc::new(body.clone());
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
                    let receiving = tokio::spawn(async move {
                        let mut bytes = 0;
                        for _ in 0..N {
                            bytes += rx.recv().await.expect("a buffer").len();
                        }
                        bytes
                    });
                    let bd = body.clone();
                    let sending = tokio::spawn(async move {
                        for _ in 0..N {
                            tx.send(bd.to_vec()).expect("send");
                        }
                    });
                    sending.await.expect("sender task");
                    assert_eq!(receiving.await.expect("receiver task"), N * BODY_LEN);
                }
                start.elapsed()
            })
        });
    });

    group.finish();
}

criterion_group!(benches, bench_memory);
criterion_main!(benches);
