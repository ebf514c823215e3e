//! The blocking twin of the conformance suite: every scenario file of `tests/conformance`,
//! compiled a second time against `carrot::blocking` and run on every backend (memory, sqlite,
//! RabbitMQ, and `carrot serve` of memory and sqlite), each backend's run on a plain thread
//! with no runtime, as a blocking program has.
//!
//! Nothing is copied: `blocking_twin!` (the proc macro in `tests/twin_macro`) rewrites each
//! file line for line (`.await` and `async` removed, `carrot::` read from [`api`], where the
//! blocking types stand in for the async ones), and `support.rs` has the blocking twins of the
//! async suite's waits. A new scenario gets its twin for free; one that cannot have one (it
//! needs an async-only construct) is listed under `async_only` with its reason, and a name
//! listed there that no longer exists fails the build. `blocking_only.rs` has what only the
//! blocking API has (real iterators, `next_message_timeout`) and the seed's examples.

/// What `carrot::` means in the twin: the crate, with the blocking types in place of the async
/// ones.
#[allow(unused_imports)] // the whole list, for the scenarios of tomorrow
mod api {
    pub use carrot::blocking::{
        BrokerConnection, ConnectionEvents, ConnectionPool, Consumer, ConsumerBuilder, ConsumerSet,
        Messaging, MessagingBuilder, PendingConfirm, PooledConnection, PooledPublisher, Publisher,
        PublisherBuilder, PublisherPool, RpcClient, RpcServer, SimpleBuffer, SimpleQueue,
        SimpleQueueBuilder, Worker,
    };
    pub use carrot::*;
}

#[macro_use]
#[path = "../conformance/assertions.rs"]
mod assertions;
#[path = "../conformance/backends.rs"]
mod backends;
#[path = "../serve_support/mod.rs"]
mod serve_support;
#[macro_use]
mod support;

mod blocking_only;

use carrot_blocking_twin::blocking_twin;

blocking_twin! { mod scenario = "tests/conformance/scenario.rs"; }
blocking_twin! { mod access = "tests/conformance/access.rs"; }
blocking_twin! { mod bad_input = "tests/conformance/bad_input.rs"; }
blocking_twin! { mod builder_specs = "tests/conformance/builder_specs.rs"; }
blocking_twin! { mod confirms = "tests/conformance/confirms.rs"; }
blocking_twin! { mod consumer_end = "tests/conformance/consumer_end.rs"; }
blocking_twin! { mod delivery = "tests/conformance/delivery.rs"; }
blocking_twin! { mod entities = "tests/conformance/entities.rs"; }
blocking_twin! { mod equivalence = "tests/conformance/equivalence.rs"; }
blocking_twin! { mod formats = "tests/conformance/formats.rs"; }
blocking_twin! { mod queue_arguments = "tests/conformance/queue_arguments.rs"; }
blocking_twin! { mod routing = "tests/conformance/routing.rs"; }
blocking_twin! {
    mod seed_api = "tests/conformance/seed_api.rs";
    async_only {
        consumer_set_qos_bounds_each_consumer: "it checks that a ConsumerSet's iterconsume gets \
            nothing for a while; the blocking iterator has no timeout (the consumer's \
            qos_prefetch_count_bounds_unacked_deliveries_per_consumer runs)",
        consumer_set_flow_pauses_every_consumer: "it checks that a ConsumerSet's iterconsume gets \
            nothing for a while; the blocking iterator has no timeout (the consumer's \
            flow_pauses_deliveries_without_losing_or_reordering runs)",
    }
}
blocking_twin! { mod serialization = "tests/conformance/serialization.rs"; }
blocking_twin! { mod transactions = "tests/conformance/transactions.rs"; }
blocking_twin! {
    mod services = "tests/conformance/services.rs";
    async_only {
        rpc_calls_get_their_own_replies: "its server's handler is an async closure and its \
            calls are tasks (blocking_only's rpc_calls_from_threads_get_their_own_replies is \
            its twin)",
    }
}
blocking_twin! {
    mod worker = "tests/conformance/worker.rs";
    async_only {
        handlers_past_the_grace_period_are_stopped_and_their_messages_come_back: "its \
            handler is an async task that never ends (a blocking handler on a thread cannot \
            be stopped: its message comes back with the channel all the same)",
        an_undecodable_message_goes_to_the_hook_and_is_rejected: "its decoded handler is an \
            async closure (blocking_only's worker test decodes with the blocking one)",
    }
}
blocking_twin! { mod urls = "tests/conformance/urls.rs"; }
