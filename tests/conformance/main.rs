//! The conformance suite: the behaviour every carrot backend must share, written once and run
//! against every backend.
//!
//! # Layout
//! - `backends.rs`: the backend list ([`backends::backends`]), shared with the blocking twin
//!   (`tests/blocking_conformance`).
//! - `scenario.rs`: a scenario's scope, names and small helpers (shared with the twin).
//! - `support.rs`: the `conformance!` macro that runs a scenario on each backend with its own
//!   broker scope, bounded waits and small helpers (the twin has the same, blocking).
//! - `routing.rs`: direct, fanout, topic and headers exchanges, the default exchange.
//! - `entities.rs`: durable, auto-delete and exclusive exchanges and queues, redeclaration,
//!   reserved names, missing entities.
//! - `equivalence.rs`: redeclaring exclusive queues (`durable` ignored, `exclusive` compared
//!   strictly, as RabbitMQ does).
//! - `delivery.rs`: delivery modes, acknowledgement, redelivery, qos, flow, mandatory,
//!   immediate, priorities, competing consumers.
//! - `seed_api.rs`: every method of the seed's `Publisher`, `Consumer`, `ConsumerSet` and
//!   `Messaging` through the public API.
//! - `serialization.rs`: content types, custom serializers, decode errors, accept lists.
//! - `formats.rs`: msgpack, yaml and pickle, every compression, every property, the default
//!   accept list, decompression bombs.
//! - `queue_arguments.rs`: max length, TTL, dead-lettering, expiry and queue types.
//! - `urls.rs`: broker URLs, `from_env` and the keyword builder.
//! - `bad_input.rs`: long names and header keys, oversized messages, undecodable bodies.
//! - `confirms.rs`: confirms awaited later (`begin_send`, `send_batch`).
//! - `consumer_end.rs`: what ends a consumer, and that only cancelling ends it normally.
//! - `transactions.rs`: transactional publishers and consumers (`tx.select`, commit, rollback).
//! - `services.rs`: what services build on the seed's types (kombu's layer): simple queues
//!   and buffers, several bindings, broadcast queues, connection and publisher pools, RPC.
//! - `worker.rs`: the worker loop: concurrency, acks, the failure policy, graceful shutdown.
//! - `builder_specs.rs`: builders given `QueueSpec` / `ExchangeSpec` declare exactly them,
//!   keywords set one entity each, settings read back, an exclusive queue is auto-delete.
//! - `access.rs`: virtual hosts, users and permissions (RabbitMQ and `carrot serve`, with the
//!   users of `tests/fixtures/access-definitions.json`): vhost isolation, refused logins and
//!   vhosts, what needs the configure, write and read permissions.
//!
//! # Adding a backend
//! One line in [`backends::backends`]. Scenarios only use the public API, name every exchange
//! and queue after their scope (on RabbitMQ all scenarios share one broker) and wait with
//! bounded timeouts only.

#[macro_use]
mod assertions;
mod backends;
mod scenario;
#[macro_use]
mod support;
#[path = "../serve_support/mod.rs"]
mod serve_support;

mod access;
mod bad_input;
mod builder_specs;
mod confirms;
mod consumer_end;
mod delivery;
mod entities;
mod equivalence;
mod formats;
mod queue_arguments;
mod routing;
mod seed_api;
mod serialization;
mod services;
mod transactions;
mod urls;
mod worker;
