//! Every handle of `carrot::blocking`, used and dropped on any thread, inside or outside a
//! tokio runtime, on every backend of the conformance suite (memory, sqlite, RabbitMQ, and
//! `carrot serve` of memory and sqlite), and after its connection was lost:
//! - nothing panics, on any thread (carrot's own workers included: a panic hook records those);
//! - no drop hangs (each is timed, well under [`DROP_LIMIT`]);
//! - what a drop must do is done: unacknowledged messages go back to their queues, the
//!   connection's exclusive queue goes, a message that outlived its consumer says so when
//!   acknowledged.
//!
//! The connection is lost by restarting the embedded broker (memory, sqlite) or by cutting a
//! proxy on 127.0.0.1 in front of RabbitMQ or `carrot serve`.

mod amqp_support;
#[path = "conformance/backends.rs"]
mod backends;
#[path = "serve_support/mod.rs"]
mod serve_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use amqp_support::proxy::Proxy;
use carrot::blocking::{
    BrokerConnection, ConnectionEvents, Consumer, ConsumerBuilder, ConsumerSet, Messaging,
    PendingConfirm, Publisher, PublisherBuilder,
};
use carrot::{DeleteExchangeOptions, DeleteQueueOptions, Error, Message, Qos, QueueSpec};

/// How long a message or a state that must come may take.
const ARRIVES: Duration = Duration::from_secs(10);
/// A drop that takes longer hangs (a clean close takes a round trip; a drop after a loss,
/// nothing).
const DROP_LIMIT: Duration = Duration::from_secs(10);

/// Panics on threads this file did not name `test:...`: carrot's workers, lapin's, tokio's.
static FOREIGN_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            if !name.starts_with("test:") {
                FOREIGN_PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("thread {name}: {info}"));
            }
            previous(info)
        }));
    });
}

/// Runs a test's body on a thread named `test:NAME`, then checks that no other thread
/// panicked meanwhile.
fn run_test(name: &str, body: impl FnOnce() + Send + 'static) {
    watch_panics();
    let outcome = std::thread::Builder::new()
        .name(format!("test:{name}"))
        .spawn(body)
        .expect("a test thread")
        .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    // Copied out: the assertion's own panic goes through the hook, which takes the lock.
    let foreign = FOREIGN_PANICS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(
        foreign.is_empty(),
        "panics on carrot's threads: {foreign:#?}"
    );
}

/// One backend's broker for one test, and how to lose every connection to it.
struct Target {
    backend: &'static str,
    scope: String,
    url: String,
    /// Restarts an embedded broker.
    restart: Option<Box<dyn Fn() + Send + Sync>>,
    /// The proxy (and the runtime it runs on) in front of a network broker.
    proxy: Option<(Proxy, tokio::runtime::Runtime)>,
}

impl Target {
    fn name(&self, local: &str) -> String {
        format!("{}.{local}", self.scope)
    }

    /// Loses every connection to the broker: a restart, or a cut of the proxy.
    fn lose(&self) {
        if let Some(restart) = &self.restart {
            restart();
        }
        if let Some((proxy, _)) = &self.proxy {
            proxy.cut();
        }
    }
}

/// The `host:port` an amqp:// or redis:// URL names.
fn upstream(url: &str) -> SocketAddr {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no scheme in {url}"));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let authority = rest
        .split(['/', '?'])
        .next()
        .unwrap_or_else(|| panic!("no host in {url}"));
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority} is not an address: {e}"))
}

/// Every configured backend, each with a scope of this test.
fn targets(test: &str) -> Vec<Arc<Target>> {
    let mut all = Vec::new();
    for backend in backends::backends() {
        let scope = format!("bh-{test}-{}-{}", backend.name, backends::run_id());
        let Some(url) = (backend.url)(&scope) else {
            eprintln!("skipped on {}: not configured", backend.name);
            continue;
        };
        let mut target = Target {
            backend: backend.name,
            scope: scope.clone(),
            url,
            restart: None,
            proxy: None,
        };
        match backend.name {
            "memory" => {
                target.restart = Some(Box::new(move || {
                    carrot::MemoryBroker::named(&scope).restart()
                }))
            }
            "sqlite" => {
                let path = backends::sqlite_path(&scope);
                target.restart = Some(Box::new(move || {
                    carrot::SqliteBroker::open(&path)
                        .expect("the sqlite broker opens")
                        .restart()
                }))
            }
            _ => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("test:proxy")
                    .enable_all()
                    .build()
                    .expect("a runtime for the proxy");
                let to = upstream(&target.url);
                let proxy = runtime.block_on(Proxy::start(to));
                target.url = proxy.url(&target.url, to);
                target.proxy = Some((proxy, runtime));
            }
        }
        all.push(Arc::new(target));
    }
    all
}

/// Every kind of blocking handle, in use.
struct Handles {
    conn: BrokerConnection,
    consumer: Consumer,
    publisher: Publisher,
    pending: PendingConfirm,
    set: ConsumerSet,
    messaging: Messaging,
    exclusive: Consumer,
    events: ConnectionEvents,
    unbuilt_publisher: PublisherBuilder,
    unbuilt_consumer: ConsumerBuilder,
}

impl Handles {
    /// Drops each handle, the connection first, each within [`DROP_LIMIT`].
    fn drop_each(self, backend: &str) {
        fn timed<T>(backend: &str, what: &str, handle: T) {
            let start = Instant::now();
            drop(handle);
            let took = start.elapsed();
            assert!(
                took < DROP_LIMIT,
                "{backend}: dropping the {what} took {took:?}"
            );
        }
        let Handles {
            conn,
            consumer,
            publisher,
            pending,
            set,
            messaging,
            exclusive,
            events,
            unbuilt_publisher,
            unbuilt_consumer,
        } = self;
        timed(backend, "connection", conn);
        timed(backend, "pending confirm", pending);
        timed(backend, "publisher", publisher);
        timed(backend, "consumer", consumer);
        timed(backend, "consumer set", set);
        timed(backend, "messaging", messaging);
        timed(backend, "unbuilt publisher", unbuilt_publisher);
        timed(backend, "unbuilt consumer", unbuilt_consumer);
        timed(backend, "events", events);
        timed(backend, "exclusive consumer", exclusive);
    }
}

/// Where the handles are dropped.
#[derive(Clone, Copy, Debug)]
enum DropOn {
    /// On the thread that used them.
    Here,
    /// On a new thread.
    AnotherThread,
}

/// Builds every kind of handle on `t`'s broker and uses it (one delivery held unacknowledged
/// by the consumer and one by `Messaging`'s basic.get); loses the connection first if asked;
/// drops them all; checks what the drops did. Every call may run on any thread.
fn use_and_drop(t: &Target, round: &str, lose_first: bool, drop_on: DropOn) {
    let backend = t.backend;
    let thread = std::thread::current();
    eprintln!(
        "{backend}: {round} on thread {}, connection lost first: {lose_first}, dropped {drop_on:?}",
        thread.name().unwrap_or("<unnamed>")
    );
    let (q, qm, qx, q2, x) = (
        t.name(&format!("{round}.q")),
        t.name(&format!("{round}.qm")),
        t.name(&format!("{round}.qx")),
        t.name(&format!("{round}.q2")),
        t.name(&format!("{round}.x")),
    );
    let conn = BrokerConnection::connect(&t.url).expect("connect");
    let mut consumer = Consumer::builder(&conn)
        .queue(&q)
        .exchange(&x)
        .routing_key("k")
        .build()
        .expect("the consumer");
    consumer.qos(Qos::new().prefetch_count(10)).expect("qos");
    let publisher = Publisher::builder(&conn)
        .exchange(&x)
        .routing_key("k")
        .build()
        .expect("the publisher");
    for n in 0..3 {
        publisher.send(&n).expect("send");
    }
    let held = consumer
        .next_message_timeout(ARRIVES)
        .expect("next_message")
        .expect("a delivery");
    let pending = publisher.begin_send(&3).expect("begin_send");
    let mut set = ConsumerSet::new(&conn);
    set.add_consumer(
        Consumer::builder(&conn)
            .queue(&q2)
            .exchange(&x)
            .routing_key("k2")
            .build()
            .expect("the set's consumer"),
    );
    set.consume().expect("the set consumes");
    let mut messaging = Messaging::builder(&conn)
        .exchange(&x)
        .queue(&qm)
        .routing_key("km")
        .build()
        .expect("messaging");
    messaging.send(&"m").expect("messaging sends");
    let fetched = fetch_within(&mut messaging);
    let exclusive = Consumer::builder(&conn)
        .queue(&qx)
        .exclusive(true)
        .build()
        .expect("the exclusive consumer");
    let handles = Handles {
        events: conn.events(),
        unbuilt_publisher: Publisher::builder(&conn).exchange(&x),
        unbuilt_consumer: Consumer::builder(&conn).queue(&q),
        conn,
        consumer,
        publisher,
        pending,
        set,
        messaging,
        exclusive,
    };
    if lose_first {
        t.lose();
    }
    match drop_on {
        DropOn::Here => handles.drop_each(backend),
        DropOn::AnotherThread => {
            let outcome = std::thread::Builder::new()
                .name("test:drop".into())
                .spawn(move || handles.drop_each(backend))
                .expect("a thread")
                .join();
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    }
    // Messages that outlived their consumer's channel cannot be acknowledged any more.
    for message in [held, fetched] {
        assert!(
            message.ack().is_err(),
            "{backend}: acknowledging a message of a dropped channel"
        );
    }
    let check = BrokerConnection::connect(&t.url).expect("connect again");
    if !lose_first {
        // The drops closed the channels and the connection: what was unacknowledged is back,
        // the exclusive queue is gone.
        until(backend, &format!("4 messages back in {q}"), || {
            check.queue_info(&q).ok().map(|i| i.message_count) == Some(4)
        });
        until(backend, &format!("1 message back in {qm}"), || {
            check.queue_info(&qm).ok().map(|i| i.message_count) == Some(1)
        });
        until(backend, &format!("{qx} deleted"), || {
            matches!(check.queue_info(&qx), Err(Error::NotFound(_)))
        });
    }
    for queue in [&q, &qm, &qx, &q2] {
        let _ = check.delete_queue(queue, DeleteQueueOptions::new());
    }
    let _ = check.delete_exchange(&x, DeleteExchangeOptions::new());
    check.close().expect("close");
}

/// basic.get until a message comes (a send through a network broker is routed by the time it
/// returns, with confirms; without, soon after).
fn fetch_within(messaging: &mut Messaging) -> Message {
    let deadline = Instant::now() + ARRIVES;
    loop {
        if let Some(message) = messaging.fetch().expect("fetch") {
            return message;
        }
        assert!(Instant::now() < deadline, "no message to fetch");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `done` holds, at most [`ARRIVES`].
fn until(backend: &str, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + ARRIVES;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{backend}: {what}: not within {ARRIVES:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages sent without confirms right before their connection is dropped, on a thread of no
/// runtime as a blocking program drops it before it exits, are all in their queue: the drop
/// lets them leave first (on redis://, where `send` returns before the message leaves, the
/// drop waits for the connection's outbox). The brokers that a connection reaches in order
/// (the embedded ones, Redis) count them as soon as the drop returns; RabbitMQ and `carrot
/// serve` route them on their own time, so there the count may take a moment.
#[test]
fn unconfirmed_messages_sent_right_before_a_drop_all_arrive() {
    const SENT: u32 = 2000;
    run_test("unconfirmed-drop", || {
        for t in targets("unconfirmed") {
            let queue = t.name("unconfirmed");
            {
                let conn = BrokerConnection::connect(&t.url).expect("a connection");
                conn.declare_queue(&QueueSpec::new(&queue))
                    .expect("the queue");
                let publisher = Publisher::builder(&conn)
                    .routing_key(&queue)
                    .build()
                    .expect("a publisher");
                // Large enough that many are still on their way when the drop comes.
                let padding = "x".repeat(16 << 10);
                for n in 0..SENT {
                    publisher.send(&(n, &padding)).expect("a send");
                }
                // Dropped here: the publisher, then the connection (its last handle).
            }
            let conn = BrokerConnection::connect(&t.url).expect("another connection");
            let count = || conn.queue_info(&queue).map(|i| i.message_count).ok();
            if matches!(t.backend, "memory" | "sqlite" | "redis") {
                assert_eq!(count(), Some(SENT), "{}: counted after the drop", t.backend);
            } else {
                until(t.backend, "every message counted", || count() == Some(SENT));
            }
            conn.delete_queue(&queue, DeleteQueueOptions::new())
                .expect("the queue deleted");
        }
    });
}

#[test]
fn every_handle_used_and_dropped_on_another_thread() {
    run_test("dropped-elsewhere", || {
        for t in targets("elsewhere") {
            use_and_drop(&t, "r", false, DropOn::AnotherThread);
        }
    });
}

#[test]
fn every_handle_dropped_after_its_connection_was_lost() {
    run_test("after-loss", || {
        for t in targets("lost") {
            use_and_drop(&t, "r", true, DropOn::Here);
        }
    });
}

/// The blocking API where an async program calls it: from `spawn_blocking`, on the thread of
/// `block_on` (`#[tokio::main]`'s), and straight from an async task (which it blocks, so not
/// recommended, but it works), handles dropped right there, inside the runtime.
fn inside(runtime: tokio::runtime::Runtime, test: &str, in_a_task: bool) {
    for t in targets(test) {
        runtime.block_on(async {
            use_and_drop(&t, "main", false, DropOn::Here);
            let from_blocking = t.clone();
            tokio::task::spawn_blocking(move || {
                use_and_drop(&from_blocking, "blocking", false, DropOn::Here)
            })
            .await
            .expect("spawn_blocking");
            if in_a_task {
                let from_task = t.clone();
                tokio::spawn(async move { use_and_drop(&from_task, "task", false, DropOn::Here) })
                    .await
                    .expect("the task");
            }
        });
    }
}

#[test]
fn every_handle_used_and_dropped_inside_a_multi_thread_runtime() {
    run_test("multi-thread", || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test:runtime")
            .enable_all()
            .build()
            .expect("a runtime");
        inside(runtime, "multi", true);
    });
}

#[test]
fn every_handle_used_and_dropped_inside_a_current_thread_runtime() {
    run_test("current-thread", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("test:runtime")
            .enable_all()
            .build()
            .expect("a runtime");
        inside(runtime, "current", true);
    });
}

/// Hundreds of blocking calls within one poll of a current-thread runtime's task (an async
/// function that never yields): each would spend tokio's cooperative budget of that task, and
/// once it was spent every wake went to a runtime turn that never came (redis:// hung).
#[test]
fn many_blocking_calls_within_one_poll_of_a_current_thread_runtime() {
    run_test("budget", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        for t in targets("budget") {
            runtime.block_on(async {
                let conn = BrokerConnection::connect(&t.url).expect("connect");
                let q = t.name("q");
                let publisher = Publisher::builder(&conn)
                    .routing_key(&q)
                    .build()
                    .expect("the publisher");
                let mut consumer = Consumer::builder(&conn)
                    .queue(&q)
                    .routing_key(&q)
                    .build()
                    .expect("the consumer");
                for n in 0..150 {
                    publisher.send(&n).expect("send");
                    let message = consumer
                        .next_message_timeout(ARRIVES)
                        .expect("next_message")
                        .unwrap_or_else(|| panic!("{}: message {n} did not come", t.backend));
                    message.ack().expect("ack");
                    conn.queue_info(&q).expect("queue_info");
                }
                let _ = conn.delete_queue(&q, DeleteQueueOptions::new());
                conn.close().expect("close");
            });
        }
    });
}

/// Every handle can move to another thread (the module documentation says so).
#[test]
fn every_handle_is_send() {
    fn send<T: Send>() {}
    send::<BrokerConnection>();
    send::<Publisher>();
    send::<PublisherBuilder>();
    send::<PendingConfirm>();
    send::<Consumer>();
    send::<ConsumerBuilder>();
    send::<ConsumerSet>();
    send::<Messaging>();
    send::<carrot::blocking::MessagingBuilder>();
    send::<ConnectionEvents>();
    send::<Message>();
}

/// The async API's handles too: dropped on a thread of no runtime while their runtime runs
/// (the closes go on there), and after their runtime has ended (nothing is left to close them
/// cleanly, but nothing panics).
#[test]
fn async_handles_dropped_on_a_thread_of_no_runtime() {
    run_test("async-handles", || {
        for t in targets("async") {
            for runtime_ended in [false, true] {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("test:runtime")
                    .enable_all()
                    .build()
                    .expect("a runtime");
                let round = if runtime_ended { "ended" } else { "running" };
                let q = t.name(&format!("{round}.q"));
                let handles = runtime.block_on(async {
                    let conn = carrot::BrokerConnection::connect(&t.url).await?;
                    let mut consumer = carrot::Consumer::builder(&conn)
                        .queue(&q)
                        .auto_delete(true)
                        .build()
                        .await?;
                    let publisher = carrot::Publisher::builder(&conn)
                        .routing_key(&q)
                        .build()
                        .await?;
                    publisher.send(&1).await?;
                    let held = tokio::time::timeout(ARRIVES, consumer.next_message())
                        .await
                        .map_err(|_| Error::InvalidArgument("no delivery".into()))?;
                    let pending = publisher.begin_send(&2).await?;
                    let events = conn.events();
                    Ok::<_, Error>((conn, consumer, publisher, pending, events, held))
                });
                let handles = handles.unwrap_or_else(|e| panic!("{}: {e}", t.backend));
                if runtime_ended {
                    drop(runtime);
                    drop(handles);
                } else {
                    let dropped = std::thread::Builder::new()
                        .name("test:drop".into())
                        .spawn(move || drop(handles))
                        .expect("a thread")
                        .join();
                    if let Err(panic) = dropped {
                        std::panic::resume_unwind(panic);
                    }
                    drop(runtime);
                }
            }
        }
    });
}
