//! `carrot serve` answers as RabbitMQ answers, frame for frame: each probe (what a client
//! sends on a fresh connection with channel 1 open) runs against RabbitMQ, `carrot serve` of
//! memory:// and `carrot serve` of sqlite://, and the replies (methods with every field, and
//! whether the connection went on) must be the same. What no client library sends goes here:
//! a publish with `immediate`, `connection.update-secret`, deletes of what does not exist.

mod amqp_support;
#[path = "serve_support/raw.rs"]
mod raw;
#[path = "serve_support/mod.rs"]
mod serve_support;

use std::net::SocketAddr;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, confirm, connection, exchange, queue, tx, AMQPClass};
use amq_protocol::types::FieldTable;
use amqp_support::{setting, unique};
use raw::Raw;

/// What a probe sends.
#[derive(Clone)]
enum Step {
    /// A method on a channel.
    Method(u16, AMQPClass),
    /// A message's header and body frames on a channel, after its basic.publish.
    Content(u16, Vec<u8>),
    /// Waits for the next reply (as a client waits for an answer before it goes on).
    Reply,
}

/// The brokers a probe runs on: RabbitMQ first (the reference), then both serves.
fn brokers() -> Option<Vec<(&'static str, SocketAddr)>> {
    let rabbitmq = setting("CARROT_TEST_AMQP_URL", "RabbitMQ, the reference")?;
    let address = |url: &str| -> SocketAddr {
        let authority = url
            .split_once('@')
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or_else(|| panic!("no host in {url}"));
        authority
            .parse()
            .unwrap_or_else(|e| panic!("{authority}: {e}"))
    };
    let sqlite = serve_support::sqlite_file("wire");
    Some(vec![
        ("rabbitmq", address(&rabbitmq)),
        (
            "serve-memory",
            address(&serve_support::served("memory://serve-wire")),
        ),
        (
            "serve-sqlite",
            address(&serve_support::served(&format!(
                "sqlite://{}",
                sqlite.display()
            ))),
        ),
    ])
}

/// The replies to `steps` on a fresh connection with channel 1 open: each method (those waited
/// for by [`Step::Reply`], then `expected` more), and `closed` if the server closed the
/// connection.
fn replies(address: SocketAddr, steps: &[Step], expected: usize) -> Vec<String> {
    let mut raw = Raw::open(address);
    raw.open_channel(1);
    let mut got = Vec::new();
    for step in steps {
        match step {
            Step::Method(channel, method) => raw.method(*channel, method.clone()),
            Step::Content(channel, body) => {
                raw.send(&AMQPFrame::Header(
                    *channel,
                    AMQPContentHeader {
                        class_id: 60,
                        body_size: body.len() as u64,
                        properties: Default::default(),
                    },
                ));
                raw.send(&AMQPFrame::Body(*channel, body.clone()));
            }
            Step::Reply => {
                if !read_reply(&mut raw, &mut got) {
                    return got;
                }
            }
        }
    }
    for _ in 0..expected {
        if !read_reply(&mut raw, &mut got) {
            break;
        }
    }
    got
}

/// Reads the next method into `got`; false once the connection is closed (or closing).
fn read_reply(raw: &mut Raw, got: &mut Vec<String>) -> bool {
    {
        match raw.next_method() {
            Some(method) => {
                let closing = matches!(
                    method,
                    AMQPClass::Connection(connection::AMQPMethod::Close(_))
                );
                got.push(format!("{method:?}"));
                if closing {
                    raw.method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    );
                }
                !closing
            }
            None => {
                got.push("closed".into());
                false
            }
        }
    }
}

/// Runs a probe on every broker; the serves' replies must be RabbitMQ's.
fn same_as_rabbitmq(probe: &str, steps: &[Step], expected: usize) {
    let Some(brokers) = brokers() else { return };
    let mut reference = None;
    for (name, address) in brokers {
        let got = replies(address, steps, expected);
        eprintln!("{probe} on {name}: {got:?}");
        match &reference {
            None => reference = Some(got),
            Some(rabbitmq) => assert_eq!(&got, rabbitmq, "{probe}: {name} differs from RabbitMQ"),
        }
    }
}

#[test]
fn deleting_what_does_not_exist_is_delete_ok() {
    let missing = unique("wire", "missing");
    same_as_rabbitmq(
        "deletes",
        &[
            Step::Method(
                1,
                AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
                    exchange: missing.as_str().into(),
                    if_unused: true,
                    nowait: false,
                })),
            ),
            Step::Method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                    queue: missing.as_str().into(),
                    if_unused: true,
                    if_empty: true,
                    nowait: false,
                })),
            ),
            Step::Method(
                1,
                AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
                    exchange: "amq.direct".into(),
                    if_unused: false,
                    nowait: false,
                })),
            ),
        ],
        3,
    );
}

#[test]
fn a_publish_with_immediate_closes_the_connection_with_540() {
    same_as_rabbitmq(
        "immediate",
        &[
            Step::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: "".into(),
                    routing_key: unique("wire", "immediate").as_str().into(),
                    mandatory: false,
                    immediate: true,
                })),
            ),
            Step::Content(1, b"now or never".to_vec()),
            Step::Method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                    queue: "".into(),
                    passive: false,
                    durable: false,
                    exclusive: true,
                    auto_delete: true,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            ),
        ],
        2,
    );
}

#[test]
fn update_secret_is_answered() {
    same_as_rabbitmq(
        "update-secret",
        &[Step::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(
                connection::UpdateSecret {
                    new_secret: "guest".into(),
                    reason: "refreshed".into(),
                },
            )),
        )],
        1,
    );
}

#[test]
fn deleting_a_queue_under_its_consumer_answers_delete_ok_then_cancels_it() {
    let queue = unique("wire", "consumed");
    same_as_rabbitmq(
        "delete under a consumer",
        &[
            Step::Method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                    queue: queue.as_str().into(),
                    passive: false,
                    durable: true,
                    exclusive: false,
                    auto_delete: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            ),
            Step::Reply,
            Step::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: queue.as_str().into(),
                    consumer_tag: "probe".into(),
                    no_local: false,
                    no_ack: false,
                    exclusive: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            ),
            Step::Reply,
            Step::Method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                    queue: queue.as_str().into(),
                    if_unused: false,
                    if_empty: false,
                    nowait: false,
                })),
            ),
        ],
        2,
    );
}

#[test]
fn exchange_bindings_and_internal_exchanges_are_answered_as_rabbitmq_answers_them() {
    let (source, inner) = (unique("wire", "source"), unique("wire", "inner"));
    let declare = |name: &str, internal: bool| {
        Step::Method(
            1,
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: name.into(),
                kind: "fanout".into(),
                passive: false,
                durable: false,
                auto_delete: true,
                internal,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
    };
    let bind = |destination: &str, source: &str| {
        Step::Method(
            1,
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
                destination: destination.into(),
                source: source.into(),
                routing_key: "k".into(),
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
    };
    same_as_rabbitmq(
        "exchange bindings",
        &[
            declare(&source, false),
            Step::Reply,
            declare(&inner, true),
            Step::Reply,
            bind(&inner, &source),
            Step::Reply,
            Step::Method(
                1,
                AMQPClass::Exchange(exchange::AMQPMethod::Unbind(exchange::Unbind {
                    destination: inner.as_str().into(),
                    source: source.as_str().into(),
                    routing_key: "not bound".into(),
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            ),
            Step::Reply,
            Step::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: inner.as_str().into(),
                    routing_key: "k".into(),
                    mandatory: false,
                    immediate: false,
                })),
            ),
            Step::Content(1, b"to an internal exchange".to_vec()),
        ],
        1,
    );
}

#[test]
fn transactions_are_answered_as_rabbitmq_answers_them() {
    let queue = unique("wire", "tx");
    let publish = || {
        Step::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: queue.as_str().into(),
                mandatory: false,
                immediate: false,
            })),
        )
    };
    let tx = |m: tx::AMQPMethod| Step::Method(1, AMQPClass::Tx(m));
    let declare = Step::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: queue.as_str().into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: true,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    );
    let passive = Step::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: queue.as_str().into(),
            passive: true,
            durable: false,
            exclusive: false,
            auto_delete: true,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    );
    // Held until the commit (the passive declare counts the messages), dropped by a rollback;
    // then confirm.select on a transactional channel.
    same_as_rabbitmq(
        "transactions",
        &[
            declare,
            Step::Reply,
            tx(tx::AMQPMethod::Select(tx::Select {})),
            Step::Reply,
            publish(),
            Step::Content(1, b"one".to_vec()),
            publish(),
            Step::Content(1, b"two".to_vec()),
            passive.clone(),
            Step::Reply,
            tx(tx::AMQPMethod::Commit(tx::Commit {})),
            Step::Reply,
            passive.clone(),
            Step::Reply,
            publish(),
            Step::Content(1, b"three".to_vec()),
            tx(tx::AMQPMethod::Rollback(tx::Rollback {})),
            Step::Reply,
            tx(tx::AMQPMethod::Commit(tx::Commit {})),
            Step::Reply,
            passive,
            Step::Reply,
            Step::Method(
                1,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                    nowait: false,
                })),
            ),
        ],
        1,
    );
    // Commit without select; tx.select on a channel in confirm mode.
    same_as_rabbitmq(
        "tx without select",
        &[tx(tx::AMQPMethod::Commit(tx::Commit {}))],
        1,
    );
    same_as_rabbitmq(
        "tx after confirm",
        &[
            Step::Method(
                1,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                    nowait: false,
                })),
            ),
            Step::Reply,
            tx(tx::AMQPMethod::Select(tx::Select {})),
        ],
        1,
    );
}

#[test]
fn a_consumer_priority_that_is_not_an_integer_is_refused() {
    let queue = unique("wire", "priority");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-priority".into(),
        amq_protocol::types::AMQPValue::LongString("high".into()),
    );
    same_as_rabbitmq(
        "x-priority",
        &[
            Step::Method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                    queue: queue.as_str().into(),
                    passive: false,
                    durable: false,
                    exclusive: false,
                    auto_delete: true,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            ),
            Step::Reply,
            Step::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: queue.as_str().into(),
                    consumer_tag: "probe".into(),
                    no_local: false,
                    no_ack: false,
                    exclusive: false,
                    nowait: false,
                    arguments,
                })),
            ),
        ],
        1,
    );
}
