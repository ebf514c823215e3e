//! The `sqlite://PATH` broker shared by real processes (issue 5): competing consumers in
//! separate processes, a consumer or a publisher killed with SIGKILL, broker restarts, and
//! wake-ups across processes.
//!
//! Children are this test binary run again, each with a role of [`run_child`]; how they start,
//! report and stop, and how every wait on them is bounded, is in `sqlite_support`. The tests
//! run one at a time (see `serial`): they measure latency and CPU time, which other tests'
//! processes would disturb.

#![cfg(all(target_os = "linux", feature = "sqlite"))]

mod sqlite_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use carrot::{
    BrokerConnection, Consumer, DeliveryMode, Error, Message, Publisher, QueueSpec, SendOptions,
};
use sqlite_support::*;

/// User plus system CPU time of a process so far, from /proc/PID/stat (clock ticks of 1/100 s,
/// USER_HZ, on every Linux architecture carrot runs on).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name (field 2) may hold spaces: count after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // Fields 14 (utime) and 15 (stime) overall; field 3 is the first after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Everything waiting in a queue, by basic.get, acknowledged: (number, redelivered) in order.
async fn drain_numbers(conn: &BrokerConnection, queue: &str) -> Vec<(u64, bool)> {
    let mut consumer = Consumer::builder(conn)
        .queue(queue)
        .build()
        .await
        .expect("consumer");
    let mut got = Vec::new();
    while let Some(message) = consumer.fetch().await.expect("fetch") {
        got.push((
            message.decode::<u64>().expect("a number"),
            message.redelivered(),
        ));
        message.ack().expect("ack");
    }
    got
}

// The children -------------------------------------------------------------------------------

/// The children's entry point: does nothing unless `CARROT_CHILD` names a role.
#[test]
fn child_entry() {
    child_main(|role, url| async move { run_child(&role, &url).await });
}

async fn run_child(role: &str, url: &str) -> carrot::Result<()> {
    match role {
        "consume" => child_consume(url).await,
        "hold" => child_hold(url).await,
        "publish" => child_publish(url).await,
        "hold-open" => {
            let conn = BrokerConnection::connect(url).await?;
            conn.declare_queue(&QueueSpec::new("keepalive")).await?;
            say("READY");
            let _ = stdin_closed().await;
            conn.close().await
        }
        "declare" => child_declare(url).await,
        "inspect" => child_inspect(url).await,
        "latency" => child_latency(url).await,
        other => panic!("unknown child role {other:?}"),
    }
}

/// Consumes QUEUE with prefetch PREFETCH until stdin closes, then reports anything still
/// arriving within 200 ms. For each message: says `RECV id redelivered`, acks it, says `GOT id
/// redelivered` (so that a parent killing it knows which messages were surely acknowledged).
async fn child_consume(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let mut consumer = Consumer::builder(&conn)
        .queue(param("QUEUE"))
        .build()
        .await?;
    consumer
        .qos(carrot::Qos::new().prefetch_count(number("PREFETCH") as u16))
        .await?;
    consumer.consume().await?;
    say("READY");
    let mut stop = stdin_closed();
    let report = |message: &Message| -> carrot::Result<()> {
        let id: u64 = message.decode()?;
        let redelivered = u8::from(message.redelivered());
        say(format!("RECV {id} {redelivered}"));
        message.ack()?;
        say(format!("GOT {id} {redelivered}"));
        Ok(())
    };
    let mut count = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            message = consumer.next_message() => {
                let message = message?.expect("the subscription ended");
                report(&message)?;
                count += 1;
            }
        }
    }
    // Everything was received: whatever still comes is a duplicate for the parent to see.
    while let Ok(message) =
        tokio::time::timeout(Duration::from_millis(200), consumer.next_message()).await
    {
        if let Some(message) = message? {
            report(&message)?;
            count += 1;
        }
    }
    consumer.close().await?;
    say(format!("DONE {count}"));
    conn.close().await
}

/// Optionally publishes 0..PUBLISH to QUEUE first; declares the exclusive queue EXCLUSIVE;
/// consumes QUEUE with prefetch PREFETCH and never acks; says `HOLDING ids` once it holds
/// PREFETCH messages; then waits (for the SIGKILL) until stdin closes.
async fn child_hold(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let queue = param("QUEUE");
    conn.declare_queue(&QueueSpec::new(&queue)).await?;
    if let Ok(n) = std::env::var("CARROT_CHILD_PUBLISH") {
        let publisher = Publisher::builder(&conn)
            .routing_key(&queue)
            .build()
            .await?;
        for i in 0..n.parse::<u64>().expect("PUBLISH is a number") {
            publisher.send(&i).await?;
        }
    }
    conn.declare_queue(&QueueSpec::new(param("EXCLUSIVE")).exclusive(true))
        .await?;
    let prefetch = number("PREFETCH");
    let mut consumer = Consumer::builder(&conn).queue(&queue).build().await?;
    consumer
        .qos(carrot::Qos::new().prefetch_count(prefetch as u16))
        .await?;
    let mut held = Vec::new();
    while (held.len() as u64) < prefetch {
        let message = consumer
            .next_message()
            .await?
            .expect("the subscription ended");
        assert!(
            !message.redelivered(),
            "a first delivery is not redelivered"
        );
        held.push(message);
    }
    let ids: Vec<u64> = held
        .iter()
        .map(|m| m.decode::<u64>())
        .collect::<carrot::Result<_>>()?;
    say(format!("HOLDING {}", join(ids)));
    let _ = stdin_closed().await;
    Ok(())
}

/// Declares QUEUE, then publishes persistent messages one by one, saying `SENT i` after each
/// send returned, until killed (or LIMIT). With TASKS publishers at once (each its own
/// channel), publisher k sends k, k + TASKS, k + 2 * TASKS, ...
async fn child_publish(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let queue = param("QUEUE");
    conn.declare_queue(&QueueSpec::new(&queue)).await?;
    let (tasks, limit) = (number("TASKS"), number("LIMIT"));
    let mut running = Vec::new();
    for first in 0..tasks {
        let publisher = Publisher::builder(&conn)
            .routing_key(&queue)
            .delivery_mode(DeliveryMode::Persistent)
            .build()
            .await?;
        running.push(tokio::spawn(async move {
            for i in (first..limit).step_by(tasks as usize) {
                publisher.send(&i).await?;
                say(format!("SENT {i}"));
            }
            Ok::<(), Error>(())
        }));
    }
    for task in running {
        task.await.expect("publisher task")?;
    }
    conn.close().await
}

/// Declares a durable exchange `dx` with a durable queue `dq` bound to it, a transient
/// exchange `tx` with a transient queue `tq`; publishes persistent `p0`..`p4` and transient
/// `t0`..`t4` to `dq` (interleaved), and `x0`..`x2` to `tq`; exits.
async fn child_declare(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    Consumer::builder(&conn)
        .queue("dq")
        .exchange("dx")
        .routing_key("k")
        .build()
        .await?;
    Consumer::builder(&conn)
        .queue("tq")
        .durable(false)
        .exchange("tx")
        .exchange_durable(false)
        .routing_key("k")
        .build()
        .await?;
    let durable = Publisher::builder(&conn)
        .exchange("dx")
        .routing_key("k")
        .build()
        .await?;
    for i in 0..5 {
        durable
            .send_with(
                &format!("p{i}"),
                SendOptions::new().delivery_mode(DeliveryMode::Persistent),
            )
            .await?;
        durable
            .send_with(
                &format!("t{i}"),
                SendOptions::new().delivery_mode(DeliveryMode::Transient),
            )
            .await?;
    }
    let transient = Publisher::builder(&conn)
        .exchange("tx")
        .durable(false)
        .routing_key("k")
        .build()
        .await?;
    for i in 0..3 {
        transient.send(&format!("x{i}")).await?;
    }
    say("DONE");
    conn.close().await
}

/// Says `STATE dx=.. tx=.. dq=.. tq=..`: whether each exchange exists, each queue's messages
/// in order (read without acknowledging, so they stay) or `absent`; and `ROUTED yes` when a
/// message sent to `dx` with key `k` still reaches `dq` (the binding survived; that probe
/// message is then acknowledged).
async fn child_inspect(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let mut state = Vec::new();
    for exchange in ["dx", "tx"] {
        let exists = match conn.exchange_exists(exchange).await {
            Ok(()) => "yes".to_string(),
            Err(Error::NotFound(_)) => "no".to_string(),
            Err(e) => format!("error({e})"),
        };
        state.push(format!("{exchange}={exists}"));
    }
    let mut readers = Vec::new();
    for queue in ["dq", "tq"] {
        match conn.queue_info(queue).await {
            Ok(_) => {
                let mut consumer = Consumer::builder(&conn)
                    .queue(queue)
                    .auto_declare(false)
                    .build()
                    .await?;
                let mut bodies = Vec::new();
                let mut unacked = Vec::new();
                while let Some(message) = consumer.fetch().await? {
                    bodies.push(message.decode::<String>()?);
                    unacked.push(message);
                }
                state.push(format!("{queue}=[{}]", bodies.join(",")));
                readers.push((consumer, unacked));
            }
            Err(Error::NotFound(_)) => state.push(format!("{queue}=absent")),
            Err(e) => state.push(format!("{queue}=error({e})")),
        }
    }
    say(format!("STATE {}", state.join(" ")));
    if state.iter().any(|s| s.starts_with("dq=[")) {
        let probe = Publisher::builder(&conn)
            .exchange("dx")
            .routing_key("k")
            .auto_declare(false)
            .build()
            .await?;
        let routed = probe
            .send_with(&"probe", SendOptions::new().mandatory(true))
            .await;
        let (consumer, _) = &mut readers[0];
        let arrived = match consumer.fetch().await? {
            Some(message) => {
                message.ack()?;
                message.decode::<String>()? == "probe"
            }
            None => false,
        };
        say(format!(
            "ROUTED {}",
            if routed.is_ok() && arrived {
                "yes"
            } else {
                "no"
            }
        ));
    }
    // Closing puts the messages read back in their queues.
    for (mut consumer, _) in readers {
        consumer.close().await?;
    }
    conn.close().await
}

/// Consumes QUEUE; for each of COUNT messages (a send time in nanoseconds since the epoch),
/// says `LAT nanoseconds` between that time and its arrival.
async fn child_latency(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let mut consumer = Consumer::builder(&conn)
        .queue(param("QUEUE"))
        .build()
        .await?;
    consumer.consume().await?;
    say("READY");
    for _ in 0..number("COUNT") {
        let message = consumer
            .next_message()
            .await?
            .expect("the subscription ended");
        let arrived = now_nanos();
        let sent: u64 = message.decode()?;
        message.ack()?;
        say(format!("LAT {}", arrived.saturating_sub(sent)));
    }
    conn.close().await
}

// 1. Competing consumers ---------------------------------------------------------------------

/// 10,000 messages, three consumer processes at once: each message is consumed exactly once.
#[test]
fn competing_consumer_processes_each_message_consumed_exactly_once() {
    let _serial = serial();
    const MESSAGES: u64 = 10_000;
    const CONSUMERS: usize = 3;
    let file = BrokerFile::new("competing");
    let rt = runtime();
    let conn = rt.block_on(async {
        let conn = connect(&file.url()).await;
        conn.declare_queue(&QueueSpec::new("work"))
            .await
            .expect("declare");
        conn
    });
    let (tx, rx) = mpsc::channel();
    let lines = Lines(rx);
    let mut kids: Vec<Kid> = (0..CONSUMERS)
        .map(|i| {
            Kid::spawn(
                i,
                "consume",
                &file.url(),
                &[("QUEUE", "work"), ("PREFETCH", "100")],
                tx.clone(),
            )
        })
        .collect();
    drop(tx);
    let refs = |kids: &[Kid]| -> String { describe(&kids.iter().collect::<Vec<_>>()) };
    let mut ready = 0;
    while ready < CONSUMERS {
        match lines.next(&kids.iter().collect::<Vec<_>>()) {
            (_, Some(line)) if line == "READY" => ready += 1,
            (i, other) => panic!("consumer {i} said {other:?} before READY:\n{}", refs(&kids)),
        }
    }

    // Published while the consumers consume, by four publishers at once (sharing commits).
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for first in 0..4u64 {
            let publisher = Publisher::builder(&conn)
                .routing_key("work")
                .build()
                .await
                .expect("publisher");
            tasks.push(tokio::spawn(async move {
                let mut id = first;
                while id < MESSAGES {
                    publisher.send(&id).await.expect("send");
                    id += 4;
                }
            }));
        }
        for task in tasks {
            task.await.expect("publisher task");
        }
    });
    let published = started.elapsed();

    // Who got what; a message seen twice is recorded twice.
    let mut seen: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut per_consumer = [0u64; CONSUMERS];
    let mut redelivered = 0;
    let mut record = |i: usize, line: &str, seen: &mut BTreeMap<u64, Vec<usize>>| {
        let mut parts = line.strip_prefix("GOT ").expect("a GOT line").split(' ');
        let id: u64 = parts.next().unwrap().parse().unwrap();
        if parts.next() == Some("1") {
            redelivered += 1;
        }
        seen.entry(id).or_default().push(i);
        per_consumer[i] += 1;
    };
    while seen.len() < MESSAGES as usize {
        match lines.next(&kids.iter().collect::<Vec<_>>()) {
            (i, Some(line)) if line.starts_with("GOT ") => record(i, &line, &mut seen),
            (_, Some(line)) if line.starts_with("RECV ") => {}
            (i, other) => panic!(
                "consumer {i} said {other:?} with {} of {MESSAGES} messages consumed:\n{}",
                seen.len(),
                refs(&kids)
            ),
        }
    }
    let consumed = started.elapsed();

    // Everything arrived: stop the consumers; whatever they still report is a duplicate.
    for kid in &mut kids {
        kid.finish();
    }
    let mut done = [None; CONSUMERS];
    let mut ended = 0;
    while ended < CONSUMERS {
        match lines.next(&kids.iter().collect::<Vec<_>>()) {
            (i, Some(line)) if line.starts_with("GOT ") => record(i, &line, &mut seen),
            (_, Some(line)) if line.starts_with("RECV ") => {}
            (i, Some(line)) if line.starts_with("DONE ") => {
                done[i] = Some(line[5..].parse::<u64>().unwrap())
            }
            (_, None) => ended += 1,
            (i, other) => panic!("consumer {i} said {other:?}:\n{}", refs(&kids)),
        }
    }
    for kid in &mut kids {
        kid.wait_success();
    }
    eprintln!(
        "competing consumers: published {MESSAGES} in {published:?}, all consumed after {consumed:?}; per consumer {per_consumer:?}"
    );

    let doubled: Vec<(&u64, &Vec<usize>)> = seen.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "{} messages consumed more than once (id: consumers), e.g. {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(10)]
    );
    let ids: BTreeSet<u64> = seen.keys().copied().collect();
    assert_eq!(
        ids,
        (0..MESSAGES).collect(),
        "exactly the published ids were consumed"
    );
    assert_eq!(
        redelivered, 0,
        "no consumer died, so no message is redelivered"
    );
    for (i, n) in per_consumer.iter().enumerate() {
        assert_eq!(done[i], Some(*n), "consumer {i} counted what it reported");
        assert!(
            *n > 0,
            "consumer {i} got no message: the consumers did not compete ({per_consumer:?})"
        );
    }
    rt.block_on(async {
        let info = conn.queue_info("work").await.expect("queue info");
        assert_eq!(
            (info.message_count, info.consumer_count),
            (0, 0),
            "nothing is left in the queue and no consumer remains"
        );
        conn.close().await.expect("close");
    });
}

/// Three consumer processes share a queue and one of them is killed mid-stream: every message
/// is still acknowledged exactly once; the killed consumer's unacknowledged messages go to the
/// others, marked redelivered.
#[test]
fn competing_consumer_processes_one_killed_mid_stream_nothing_lost_nothing_doubled() {
    let _serial = serial();
    const MESSAGES: u64 = 4_000;
    const CONSUMERS: usize = 3;
    const PREFETCH: u64 = 50;
    let file = BrokerFile::new("competing-kill");
    let rt = runtime();
    let conn = rt.block_on(async {
        let conn = connect(&file.url()).await;
        conn.declare_queue(&QueueSpec::new("work"))
            .await
            .expect("declare");
        let mut tasks = Vec::new();
        for first in 0..4u64 {
            let publisher = Publisher::builder(&conn)
                .routing_key("work")
                .build()
                .await
                .expect("publisher");
            tasks.push(tokio::spawn(async move {
                let mut id = first;
                while id < MESSAGES {
                    publisher.send(&id).await.expect("send");
                    id += 4;
                }
            }));
        }
        for task in tasks {
            task.await.expect("publisher task");
        }
        conn
    });
    let (tx, rx) = mpsc::channel();
    let lines = Lines(rx);
    let prefetch = PREFETCH.to_string();
    let mut kids: Vec<Kid> = (0..CONSUMERS)
        .map(|i| {
            Kid::spawn(
                i,
                "consume",
                &file.url(),
                &[("QUEUE", "work"), ("PREFETCH", prefetch.as_str())],
                tx.clone(),
            )
        })
        .collect();
    drop(tx);

    // Per consumer: what it received (before acking), and what it acked (id, redelivered).
    let mut t = Tally {
        received: vec![Vec::new(); CONSUMERS],
        acked: vec![Vec::new(); CONSUMERS],
        ended: vec![false; CONSUMERS],
        ids: BTreeSet::new(),
        first_redelivery: None,
    };
    let next =
        |t: &mut Tally, kids: &[Kid]| t.handle(lines.next(&kids.iter().collect::<Vec<_>>()), kids);

    // Consumer 0 is killed once it has acknowledged a few hundred messages.
    while t.acked[0].len() < 300 {
        next(&mut t, &kids);
    }
    kids[0].kill();
    let killed = Instant::now();
    // Until its stdout ends, lines it wrote before dying may still come.
    while !t.ended[0] {
        next(&mut t, &kids);
    }
    let killed_acked: BTreeSet<u64> = t.acked[0].iter().map(|(id, _)| *id).collect();
    // What it received but did not report acked: at most the one it was handling (whose ack
    // may or may not have been stored when it died).
    let in_hand: Vec<u64> = t.received[0]
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !killed_acked.contains(id))
        .collect();
    assert!(
        in_hand.len() <= 1,
        "the killed consumer handles one message at a time: {in_hand:?}"
    );

    // The others finish the queue (the dead consumer's messages come back after its death is
    // noticed, within about a second).
    let done = |t: &Tally| -> bool {
        let unsure = in_hand.iter().filter(|id| !t.ids.contains(id)).count();
        t.ids.len() + unsure >= MESSAGES as usize
    };
    while !done(&t) {
        next(&mut t, &kids);
    }
    // Its consumer is gone from the broker: the message in its hand, if not acknowledged, was
    // released then; give the survivors a moment (their quiet period) to report it.
    let deadline = Instant::now() + WAIT;
    loop {
        let info = rt.block_on(conn.queue_info("work")).expect("queue info");
        if info.consumer_count == CONSUMERS as u32 - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed consumer is still registered {WAIT:?} after its death ({info:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = killed.elapsed();
    let back = t.first_redelivery.map(|at| at.duration_since(killed));
    for kid in &mut kids[1..] {
        kid.finish();
    }
    while !t.ended.iter().all(|e| *e) {
        next(&mut t, &kids);
    }
    for kid in &mut kids[1..] {
        kid.wait_success();
    }
    eprintln!(
        "competing consumers, one killed: acked per consumer {:?}; in the killed one's hand {in_hand:?}; first redelivery acked {back:?} and dead consumer gone {gone:?} after SIGKILL",
        t.acked.iter().map(Vec::len).collect::<Vec<_>>()
    );

    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for (id, _) in t.acked.iter().flatten() {
        *count.entry(*id).or_default() += 1;
    }
    let doubled: Vec<(&u64, &usize)> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "messages acknowledged more than once (id, times): {doubled:?}"
    );
    let missing: Vec<u64> = (0..MESSAGES)
        .filter(|id| !count.contains_key(id) && !in_hand.contains(id))
        .collect();
    assert!(missing.is_empty(), "messages lost: {missing:?}");
    assert!(
        t.received[0].iter().all(|(_, redelivered)| !redelivered),
        "the killed consumer's messages were first deliveries"
    );
    let redelivered: Vec<u64> = t.acked[1..]
        .iter()
        .flatten()
        .filter(|(_, r)| *r)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        redelivered.len() as u64 <= PREFETCH,
        "only the killed consumer's window (at most {PREFETCH}) comes back redelivered: {redelivered:?}"
    );
    for id in &in_hand {
        if count.contains_key(id) {
            assert!(
                redelivered.contains(id),
                "message {id}, in the killed consumer's hand, came back without the redelivered mark"
            );
        }
    }
    rt.block_on(async {
        let info = conn.queue_info("work").await.expect("queue info");
        assert_eq!(
            (info.message_count, info.consumer_count),
            (0, 0),
            "nothing is left in the queue and no consumer remains"
        );
        conn.close().await.expect("close");
    });
}

/// What competing consumers reported.
struct Tally {
    received: Vec<Vec<(u64, bool)>>,
    acked: Vec<Vec<(u64, bool)>>,
    ended: Vec<bool>,
    /// Every id acked.
    ids: BTreeSet<u64>,
    /// When a redelivered message was first acked.
    first_redelivery: Option<Instant>,
}

impl Tally {
    fn handle(&mut self, event: Event, kids: &[Kid]) {
        let parse = |line: &str| -> (u64, bool) {
            let mut parts = line.split(' ').skip(1);
            let id = parts.next().unwrap().parse().unwrap();
            (id, parts.next() == Some("1"))
        };
        match event {
            (i, Some(line)) if line.starts_with("RECV ") => self.received[i].push(parse(&line)),
            (i, Some(line)) if line.starts_with("GOT ") => {
                let (id, redelivered) = parse(&line);
                if redelivered && self.first_redelivery.is_none() {
                    self.first_redelivery = Some(Instant::now());
                }
                self.ids.insert(id);
                self.acked[i].push((id, redelivered));
            }
            (_, Some(line)) if line == "READY" || line.starts_with("DONE ") => {}
            (i, None) => self.ended[i] = true,
            (i, other) => panic!(
                "consumer {i} said {other:?}:\n{}",
                describe(&kids.iter().collect::<Vec<_>>())
            ),
        }
    }
}

// 2. A consumer killed while holding messages -------------------------------------------------

/// A consumer process holding 50 unacknowledged messages (and an exclusive queue) is killed:
/// a live process gets the 50 back, marked redelivered, within seconds, and the exclusive
/// queue is gone.
#[test]
fn killed_consumer_messages_come_back_to_a_live_process() {
    let _serial = serial();
    let file = BrokerFile::new("killed-consumer-live");
    let rt = runtime();
    let conn = rt.block_on(async {
        let conn = connect(&file.url()).await;
        conn.declare_queue(&QueueSpec::new("work"))
            .await
            .expect("declare");
        let publisher = Publisher::builder(&conn)
            .routing_key("work")
            .build()
            .await
            .expect("publisher");
        for i in 0..200u64 {
            publisher.send(&i).await.expect("send");
        }
        conn
    });
    let (mut kid, lines) = Kid::solo(
        "hold",
        &file.url(),
        &[
            ("QUEUE", "work"),
            ("EXCLUSIVE", "private"),
            ("PREFETCH", "50"),
        ],
    );
    let held: BTreeSet<u64> = parse_list(&lines.expect(&kid, "HOLDING "))
        .into_iter()
        .collect();
    assert_eq!(held.len(), 50, "the child holds 50 distinct messages");

    rt.block_on(async {
        let info = conn.queue_info("work").await.expect("queue info");
        assert_eq!(
            info.message_count, 150,
            "the held messages are not ready while their consumer lives"
        );
        let locked = conn
            .declare_queue(&QueueSpec::new("private").exclusive(true))
            .await;
        assert!(
            matches!(locked, Err(Error::ResourceLocked(_))),
            "the child's exclusive queue is locked while it lives: {locked:?}"
        );
    });

    kid.kill();
    let killed = Instant::now();
    let (got, last_redelivery) = rt.block_on(async {
        let mut consumer = Consumer::builder(&conn)
            .queue("work")
            .build()
            .await
            .expect("consumer");
        let mut got: BTreeMap<u64, Vec<bool>> = BTreeMap::new();
        let mut last_redelivery = Duration::ZERO;
        for n in 0..200 {
            let message = tokio::time::timeout(WAIT, consumer.next_message())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "only {n} of 200 messages arrived within {WAIT:?} of the next one after the kill; missing: {:?}",
                        (0..200u64).filter(|i| !got.contains_key(i)).collect::<Vec<_>>()
                    )
                })
                .expect("consume")
                .expect("subscription");
            let id: u64 = message.decode().expect("a number");
            if message.redelivered() {
                last_redelivery = killed.elapsed();
            }
            got.entry(id).or_default().push(message.redelivered());
            message.ack().expect("ack");
        }
        // Nothing more may come: that would be a message delivered twice.
        let extra = tokio::time::timeout(Duration::from_millis(300), consumer.next_message()).await;
        if let Ok(Ok(Some(message))) = extra {
            panic!(
                "a message arrived twice: {:?} (redelivered {})",
                message.decode::<u64>(),
                message.redelivered()
            );
        }
        (got, last_redelivery)
    });
    eprintln!("killed consumer: its messages were all back {last_redelivery:?} after SIGKILL");
    assert_eq!(
        got.keys().copied().collect::<BTreeSet<_>>(),
        (0..200).collect(),
        "every message arrives"
    );
    assert!(
        got.values().all(|flags| flags.len() == 1),
        "no message arrives twice"
    );
    let redelivered: BTreeSet<u64> = got
        .iter()
        .filter(|(_, flags)| flags[0])
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        redelivered, held,
        "exactly the messages the killed consumer held come back marked redelivered"
    );
    assert!(
        last_redelivery < Duration::from_secs(5),
        "the killed consumer's messages took {last_redelivery:?} to come back"
    );

    rt.block_on(async {
        let gone = conn.queue_info("private").await;
        assert!(
            matches!(gone, Err(Error::NotFound(_))),
            "the killed process's exclusive queue is deleted: {gone:?}"
        );
        conn.declare_queue(&QueueSpec::new("private").exclusive(true))
            .await
            .expect("another connection declares the exclusive queue again");
        let other = connect(&file.url()).await;
        let locked = other.queue_info("private").await;
        assert!(
            matches!(locked, Err(Error::ResourceLocked(_))),
            "the new exclusive queue is this connection's: {locked:?}"
        );
        let info = conn.queue_info("work").await.expect("queue info");
        assert_eq!(info.message_count, 0, "nothing is left in the queue");
        other.close().await.expect("close");
        conn.close().await.expect("close");
    });
}

/// The same, with no other process using the file when the consumer dies: the next process
/// to open it gets the messages back, marked redelivered, and the exclusive queue is gone.
#[test]
fn killed_consumer_messages_come_back_to_the_next_process_to_open_the_file() {
    let _serial = serial();
    let file = BrokerFile::new("killed-consumer-next");
    let (mut kid, lines) = Kid::solo(
        "hold",
        &file.url(),
        &[
            ("QUEUE", "work"),
            ("PUBLISH", "100"),
            ("EXCLUSIVE", "private"),
            ("PREFETCH", "50"),
        ],
    );
    let held: BTreeSet<u64> = parse_list(&lines.expect(&kid, "HOLDING "))
        .into_iter()
        .collect();
    assert_eq!(held.len(), 50, "the child holds 50 distinct messages");
    kid.kill();

    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&file.url()).await;
        let got = drain_numbers(&conn, "work").await;
        let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids.iter().copied().collect::<BTreeSet<_>>(),
            (0..100).collect(),
            "every message is there, at once, for the process that opens the file: {ids:?}"
        );
        assert_eq!(ids.len(), 100, "no message twice: {ids:?}");
        let redelivered: BTreeSet<u64> = got.iter().filter(|(_, r)| *r).map(|(i, _)| *i).collect();
        assert_eq!(
            redelivered, held,
            "exactly the messages the killed consumer held are marked redelivered"
        );
        let gone = conn.queue_info("private").await;
        assert!(
            matches!(gone, Err(Error::NotFound(_))),
            "the killed process's exclusive queue is deleted: {gone:?}"
        );
        conn.declare_queue(&QueueSpec::new("private").exclusive(true))
            .await
            .expect("the exclusive queue can be declared again");
        conn.close().await.expect("close");
    });
}

// 3. A publisher killed mid-stream ------------------------------------------------------------

/// A publisher process (`tasks` publishers at once) is killed after reporting some sends:
/// every reported message is in the queue, once, in each publisher's order; the only others
/// possible are the sends in flight (one per publisher).
fn killed_publisher(name: &str, observer: bool, tasks: u64) {
    let _serial = serial();
    let file = BrokerFile::new(name);
    let rt = runtime();
    // With an observer, this process has the file open throughout.
    let conn = observer.then(|| {
        rt.block_on(async {
            let conn = connect(&file.url()).await;
            conn.declare_queue(&QueueSpec::new("stream"))
                .await
                .expect("declare");
            conn
        })
    });
    let concurrency = tasks.to_string();
    let (mut kid, lines) = Kid::solo(
        "publish",
        &file.url(),
        &[
            ("QUEUE", "stream"),
            ("LIMIT", "1000000"),
            ("TASKS", concurrency.as_str()),
        ],
    );
    let mut printed = Vec::new();
    while printed.len() < 300 {
        printed.push(lines.expect(&kid, "SENT ").parse::<u64>().unwrap());
    }
    kid.kill();
    // What it printed before dying is still in the pipe.
    while let (_, Some(line)) = lines.next(&[&kid]) {
        let sent = line
            .strip_prefix("SENT ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        printed.push(sent.parse().unwrap());
    }
    let got = rt.block_on(async {
        let got = match &conn {
            Some(conn) => drain_numbers(conn, "stream").await,
            None => drain_numbers(&connect(&file.url()).await, "stream").await,
        };
        if let Some(conn) = &conn {
            conn.close().await.expect("close");
        }
        got
    });
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    eprintln!(
        "killed publisher ({tasks} at once): {} sends reported, {} messages stored",
        printed.len(),
        ids.len()
    );
    let stored: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(
        stored.len(),
        ids.len(),
        "no message is stored twice: {ids:?}"
    );
    let missing: Vec<u64> = printed
        .iter()
        .copied()
        .filter(|i| !stored.contains(i))
        .collect();
    assert!(
        missing.is_empty(),
        "messages whose send returned were lost when the publisher was killed: {missing:?}"
    );
    for k in 0..tasks {
        // Each publisher's messages: a gapless prefix of its sequence, in order; at most its
        // last one (in flight) unreported.
        let mine: Vec<u64> = ids.iter().copied().filter(|i| i % tasks == k).collect();
        let expected: Vec<u64> = (k..).step_by(tasks as usize).take(mine.len()).collect();
        assert_eq!(
            mine, expected,
            "publisher {k}'s messages are stored in order, without gaps"
        );
        let reported = printed.iter().filter(|i| *i % tasks == k).count();
        assert!(
            mine.len() <= reported + 1,
            "publisher {k}: {} stored but only {reported} reported, and only one send can be in flight",
            mine.len()
        );
    }
    assert!(
        got.iter().all(|(_, redelivered)| !redelivered),
        "never-delivered messages are not redelivered"
    );
}

#[test]
fn killed_publisher_loses_nothing_it_reported_sent() {
    killed_publisher("killed-publisher", false, 1);
}

#[test]
fn killed_publisher_loses_nothing_it_reported_sent_while_another_process_has_the_file_open() {
    killed_publisher("killed-publisher-observed", true, 1);
}

#[test]
fn killed_concurrent_publishers_lose_nothing_they_reported_sent() {
    killed_publisher("killed-publishers", false, 4);
}

// 4. Restarts -----------------------------------------------------------------------------------

/// After a restart: durable exchanges, queues, bindings and persistent messages.
const AFTER_RESTART: &str = "STATE dx=yes tx=no dq=[p0,p1,p2,p3,p4] tq=absent";

fn inspect(url: &str) -> Vec<String> {
    run_to_end("inspect", url, &[])
}

/// A process declares and publishes, then exits; the next process sees only what is durable.
#[test]
fn restart_keeps_durable_entities_and_persistent_messages_only() {
    let _serial = serial();
    let file = BrokerFile::new("restart");
    assert_eq!(run_to_end("declare", &file.url(), &[]), vec!["DONE"]);
    assert_eq!(
        inspect(&file.url()),
        vec![AFTER_RESTART.to_string(), "ROUTED yes".to_string()]
    );
    // Reading without acknowledging changes nothing that lasts.
    assert_eq!(
        inspect(&file.url()),
        vec![AFTER_RESTART.to_string(), "ROUTED yes".to_string()]
    );
}

/// Transient entities and messages live as long as some process has the file open: another
/// process's exit does not end them; the last process's end (exit, or SIGKILL) does.
fn transient_until_the_last_process(name: &str, kill_last: bool) {
    let _serial = serial();
    let file = BrokerFile::new(name);
    let (mut holder, lines) = Kid::solo("hold-open", &file.url(), &[]);
    lines.expect(&holder, "READY");
    assert_eq!(run_to_end("declare", &file.url(), &[]), vec!["DONE"]);
    assert_eq!(
        inspect(&file.url()),
        vec![
            "STATE dx=yes tx=yes dq=[p0,t0,p1,t1,p2,t2,p3,t3,p4,t4] tq=[x0,x1,x2]".to_string(),
            "ROUTED yes".to_string()
        ],
        "while a process has the file open, transient entities and messages stay"
    );
    if kill_last {
        holder.kill();
    } else {
        holder.finish();
        holder.wait_success();
    }
    assert_eq!(
        inspect(&file.url()),
        vec![AFTER_RESTART.to_string(), "ROUTED yes".to_string()],
        "after the last process closed the file, transient entities and messages are gone"
    );
}

#[test]
fn transient_entities_last_until_the_last_process_exits() {
    transient_until_the_last_process("transient-exit", false);
}

#[test]
fn transient_entities_last_until_the_last_process_is_killed() {
    transient_until_the_last_process("transient-kill", true);
}

// 5. Wake-ups across processes ------------------------------------------------------------------

/// A consumer process blocked in consume() receives a message published by another process
/// within milliseconds, and burns no CPU while idle.
#[test]
fn a_blocked_consumer_process_wakes_at_once_and_idles_cheaply() {
    let _serial = serial();
    const ROUNDS: usize = 20;
    let file = BrokerFile::new("latency");
    let rt = runtime();
    let (conn, publisher) = rt.block_on(async {
        let conn = connect(&file.url()).await;
        conn.declare_queue(&QueueSpec::new("lat"))
            .await
            .expect("declare");
        let publisher = Publisher::builder(&conn)
            .routing_key("lat")
            .build()
            .await
            .expect("publisher");
        (conn, publisher)
    });
    let count = (ROUNDS + 1).to_string();
    let (mut kid, lines) = Kid::solo(
        "latency",
        &file.url(),
        &[("QUEUE", "lat"), ("COUNT", count.as_str())],
    );
    lines.expect(&kid, "READY");
    let send_now = || {
        rt.block_on(publisher.send(&now_nanos()))
            .expect("send the time");
    };
    // A first message warms everything up.
    send_now();
    lines.expect(&kid, "LAT ");

    // Idle: the consumer waits, nothing arrives. Its CPU time over this window is its cost.
    let window = Duration::from_millis(1500);
    let before = cpu_time(kid.pid());
    let started = Instant::now();
    std::thread::sleep(window);
    let used = cpu_time(kid.pid()) - before;
    let elapsed = started.elapsed();
    let share = used.as_secs_f64() / elapsed.as_secs_f64();

    let mut latencies = Vec::new();
    for _ in 0..ROUNDS {
        // Pace the messages so that each finds the consumer blocked again.
        std::thread::sleep(Duration::from_millis(20));
        send_now();
        let nanos: u64 = lines.expect(&kid, "LAT ").parse().unwrap();
        latencies.push(Duration::from_nanos(nanos));
    }
    kid.wait_success();
    rt.block_on(conn.close()).expect("close");
    latencies.sort();
    let median = latencies[ROUNDS / 2];
    let worst = latencies[ROUNDS - 1];
    eprintln!(
        "wake-up: median {median:?}, worst {worst:?}; idle consumer used {used:?} CPU in {elapsed:?} ({:.1}%)",
        share * 100.0
    );
    assert!(
        share < 0.10,
        "the idle consumer process used {used:?} of CPU in {elapsed:?} ({:.1}% of a core)",
        share * 100.0
    );
    assert!(
        median < Duration::from_millis(20),
        "median publish-to-receive latency across processes {median:?} (all: {latencies:?})"
    );
    assert!(
        worst < Duration::from_millis(200),
        "worst publish-to-receive latency across processes {worst:?} (all: {latencies:?})"
    );
}
