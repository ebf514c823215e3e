//! The `sqlite://PATH` broker under faults: the stream of the `1p1c` shape of BENCHMARKS.md
//! (100,000 persistent 100-byte messages, one publisher, one consumer with a prefetch window
//! of 1,000, every message acknowledged), publisher and consumer in processes of their own,
//! with the consumer process killed with SIGKILL twice mid-stream and a new one started each
//! time, loses no message.
//!
//! How the parent knows what each consumer did: a consumer takes what has arrived (up to its
//! prefetch window), says `TOOK` with those ids, then acknowledges them one by one in that
//! order, saying `ACKED id` after each ack returned (an ack returns once it is committed). So
//! when a consumer is killed, of what it took and did not report acknowledged, only the first
//! may have been acknowledged (its ack was under way); all the others were not and must come
//! back, marked redelivered. Children and their bounded waits are in `sqlite_support`.

#![cfg(all(target_os = "linux", feature = "sqlite"))]

mod sqlite_support;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use carrot::{BrokerConnection, Consumer, DeliveryMode, Error, Message, Publisher, QueueSpec};
use serde::{Deserialize, Serialize};
use sqlite_support::*;

/// The length of the stream.
const MESSAGES: u64 = 100_000;
/// The size of each message's body (JSON with the message's id, padded).
const SIZE: usize = 100;
/// The consumer's prefetch window: at most this many deliveries unacknowledged at a kill.
const PREFETCH: u64 = 1_000;
/// Publishers at once in the publisher process (each its own channel): one sending one message
/// at a time, one keeping a window of confirms in flight.
const PUBLISHERS: u64 = 2;
/// The consumer is killed when this many messages have been reported consumed.
const KILL_AT: [u64; 2] = [MESSAGES / 4, MESSAGES * 3 / 5];
/// The whole stream must be consumed within this time, or the test fails.
const STREAM_LIMIT: Duration = Duration::from_secs(300);
/// A dead process's deliveries come back within a second (each process checks every second):
/// a message whose fate is unknown at the end is waited for this long after the last kill.
const SETTLE: Duration = Duration::from_secs(3);
/// The queue of the stream.
const QUEUE: &str = "stream";
/// The index of the publisher's report lines; consumer incarnation `k` reports as `1 + k`.
const PUBLISHER: usize = 0;

// The children ---------------------------------------------------------------------------------

/// A message of the stream: its id, and padding up to [`SIZE`] bytes of JSON.
#[derive(Serialize, Deserialize)]
struct Body {
    id: u64,
    pad: String,
}

impl Body {
    /// The message `id`.
    fn new(id: u64) -> Body {
        let bare = format!(r#"{{"id":{id},"pad":""}}"#).len();
        Body {
            id,
            pad: "x".repeat(SIZE.saturating_sub(bare)),
        }
    }
}

/// The children's entry point: does nothing unless `CARROT_CHILD` names a role.
#[test]
fn child_entry() {
    child_main(|role, url| async move {
        match role.as_str() {
            "publish" => child_publish(&url).await,
            "consume" => child_consume(&url).await,
            other => panic!("unknown child role {other:?}"),
        }
    });
}

/// Declares QUEUE and sends it the ids 0..COUNT as persistent [`Body`] messages, from TASKS
/// publishers at once (publisher k sends k, k + TASKS, ...). Says `SENT n` whenever the
/// number of sends that returned reaches a multiple of 1,000, and `PUBLISHED n` at the end.
async fn child_publish(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let queue = param("QUEUE");
    conn.declare_queue(&QueueSpec::new(&queue)).await?;
    let (tasks, count) = (number("TASKS"), number("COUNT"));
    let sent = Arc::new(AtomicU64::new(0));
    let mut running = Vec::new();
    for first in 0..tasks {
        // Odd publishers keep a window of confirms in flight (begin_send): each is reported
        // sent only once its commit confirmed it, as `send` is.
        let pipelined = first % 2 == 1;
        let publisher = Publisher::builder(&conn)
            .routing_key(&queue)
            .delivery_mode(DeliveryMode::Persistent)
            .confirm_publish(pipelined)
            .build()
            .await?;
        let sent = sent.clone();
        running.push(tokio::spawn(async move {
            let count_sent = || {
                let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(1_000) {
                    say(format!("SENT {n}"));
                }
            };
            let mut window = std::collections::VecDeque::new();
            for id in (first..count).step_by(tasks as usize) {
                if !pipelined {
                    publisher.send(&Body::new(id)).await?;
                    count_sent();
                    continue;
                }
                if window.len() == 32 {
                    let oldest: carrot::PendingConfirm = window.pop_front().expect("a full window");
                    oldest.await?;
                    count_sent();
                }
                window.push_back(publisher.begin_send(&Body::new(id)).await?);
            }
            for pending in window {
                pending.await?;
                count_sent();
            }
            Ok::<(), Error>(())
        }));
    }
    for task in running {
        task.await.expect("publisher task")?;
    }
    say(format!("PUBLISHED {}", sent.load(Ordering::Relaxed)));
    conn.close().await
}

/// Consumes QUEUE with prefetch PREFETCH until stdin closes, then whatever still arrives
/// within 200 ms. Takes what has arrived (up to PREFETCH messages), says `TOOK ids` for them
/// (an id followed by `r` is a redelivered message; at most 100 ids a line, so that each line
/// is one write and a kill never cuts one), then acknowledges them in that order, saying
/// `ACKED id` after each ack returned. Says `DONE n` (messages acknowledged) at the end.
async fn child_consume(url: &str) -> carrot::Result<()> {
    let conn = BrokerConnection::connect(url).await?;
    let queue = param("QUEUE");
    let prefetch = number("PREFETCH") as usize;
    conn.declare_queue(&QueueSpec::new(&queue)).await?;
    let mut consumer = Consumer::builder(&conn).queue(&queue).build().await?;
    consumer
        .qos(carrot::Qos::new().prefetch_count(prefetch as u16))
        .await?;
    consumer.consume().await?;
    say("READY");
    let mut stop = stdin_closed();
    let mut count = 0;
    loop {
        let first = tokio::select! {
            _ = &mut stop => break,
            message = consumer.next_message() => message?.expect("the subscription ended"),
        };
        count += take_and_ack(&mut consumer, first, prefetch).await?;
    }
    // Everything was consumed: whatever still comes is a duplicate for the parent to see.
    while let Ok(message) =
        tokio::time::timeout(Duration::from_millis(200), consumer.next_message()).await
    {
        let first = message?.expect("the subscription ended");
        count += take_and_ack(&mut consumer, first, prefetch).await?;
    }
    consumer.close().await?;
    say(format!("DONE {count}"));
    conn.close().await
}

/// Takes `first` and whatever else has already arrived (up to `prefetch` in all), reports
/// them, acknowledges them one by one (see [`child_consume`]); returns how many.
async fn take_and_ack(
    consumer: &mut Consumer,
    first: Message,
    prefetch: usize,
) -> carrot::Result<u64> {
    let mut batch = vec![first];
    while batch.len() < prefetch {
        match tokio::time::timeout(Duration::ZERO, consumer.next_message()).await {
            Ok(message) => batch.push(message?.expect("the subscription ended")),
            Err(_) => break,
        }
    }
    let mut taken = Vec::with_capacity(batch.len());
    for message in batch {
        let body: Body = message.decode()?;
        taken.push((body.id, message));
    }
    for chunk in taken.chunks(100) {
        let ids = chunk.iter().map(|(id, message)| {
            let mark = if message.redelivered() { "r" } else { "" };
            format!("{id}{mark}")
        });
        say(format!("TOOK {}", join(ids)));
    }
    for (id, message) in &taken {
        message.ack()?;
        say(format!("ACKED {id}"));
    }
    Ok(taken.len() as u64)
}

// The parent -----------------------------------------------------------------------------------

/// What the consumers reported about one message.
#[derive(Clone, Default)]
struct Fate {
    /// Each time a consumer took it: (incarnation, redelivered).
    taken: Vec<(usize, bool)>,
    /// The incarnations that reported it acknowledged.
    acked: Vec<usize>,
}

/// One consumer process.
struct Incarnation {
    kid: Kid,
    /// What it took and has not reported acknowledged, in the order it acknowledges.
    pending: VecDeque<u64>,
    /// Its stdout ended.
    ended: bool,
    /// It was sent SIGKILL, or told to finish.
    stopped: bool,
    /// When it reported its first ack.
    first_ack: Option<Instant>,
    /// When it took its first redelivered message.
    first_redelivered: Option<Instant>,
    /// Its `DONE` count.
    done: Option<u64>,
}

/// A SIGKILL of a consumer, and what it left unsettled.
struct Kill {
    /// The incarnation killed.
    incarnation: usize,
    /// When it was sent SIGKILL.
    at: Instant,
    /// Messages reported consumed by then.
    consumed: u64,
    /// Messages reported sent by then (the publisher reports every 1,000).
    sent: u64,
    /// What it took and did not report acknowledged: the first may have been acknowledged
    /// (its ack was under way), the others were not.
    unsettled: Vec<u64>,
}

/// The parent's view of the stream.
struct Stream {
    /// The broker file's URL.
    url: String,
    /// Where every child's report lines go (a new consumer gets a copy), and come out.
    feed: mpsc::Sender<Event>,
    lines: Lines,
    publisher: Kid,
    /// The last `SENT` count, then the `PUBLISHED` count.
    sent: u64,
    /// The `PUBLISHED` count, and when it came.
    published: Option<(u64, Instant)>,
    /// The publisher's stdout ended.
    publisher_ended: bool,
    /// Consumer incarnations, in the order they ran (one at a time).
    consumers: Vec<Incarnation>,
    kills: Vec<Kill>,
    /// By message id.
    fates: Vec<Fate>,
    /// Messages reported acknowledged at least once.
    consumed: u64,
    /// Takings of messages marked redelivered.
    redelivered: u64,
    /// When the publisher was started.
    started: Instant,
    /// When waiting for the next report line fails the test.
    deadline: Instant,
}

impl Stream {
    /// A consumer, then the publisher once the consumer is ready.
    fn start(url: String) -> Stream {
        let (feed, rx) = mpsc::channel();
        let lines = Lines(rx);
        let first = Stream::spawn_consumer(&url, 0, &feed);
        match lines.next(&[&first.kid]) {
            (1, Some(line)) if line == "READY" => {}
            other => panic!(
                "the first consumer said {other:?} instead of READY; its stderr:\n{}",
                first.kid.stderr()
            ),
        }
        let (tasks, count) = (PUBLISHERS.to_string(), MESSAGES.to_string());
        let publisher = Kid::spawn(
            PUBLISHER,
            "publish",
            &url,
            &[
                ("QUEUE", QUEUE),
                ("TASKS", tasks.as_str()),
                ("COUNT", count.as_str()),
            ],
            feed.clone(),
        );
        let started = Instant::now();
        Stream {
            url,
            feed,
            lines,
            publisher,
            sent: 0,
            published: None,
            publisher_ended: false,
            consumers: vec![first],
            kills: Vec::new(),
            fates: vec![Fate::default(); MESSAGES as usize],
            consumed: 0,
            redelivered: 0,
            started,
            deadline: started + STREAM_LIMIT,
        }
    }

    /// Starts consumer incarnation `k`.
    fn spawn_consumer(url: &str, k: usize, feed: &mpsc::Sender<Event>) -> Incarnation {
        let prefetch = PREFETCH.to_string();
        let kid = Kid::spawn(
            1 + k,
            "consume",
            url,
            &[("QUEUE", QUEUE), ("PREFETCH", prefetch.as_str())],
            feed.clone(),
        );
        Incarnation {
            kid,
            pending: VecDeque::new(),
            ended: false,
            stopped: false,
            first_ack: None,
            first_redelivered: None,
            done: None,
        }
    }

    /// Where the stream stands, with every child's stderr (for failure messages).
    fn status(&self) -> String {
        let mut kids = vec![&self.publisher];
        kids.extend(self.consumers.iter().map(|c| &c.kid));
        let missing = self.missing();
        format!(
            "{} of {MESSAGES} consumed, {} sent, {} kills, {:?} since the start; {} not consumed (e.g. {:?}); stderr:\n{}",
            self.consumed,
            self.sent,
            self.kills.len(),
            self.started.elapsed(),
            missing.len(),
            &missing[..missing.len().min(20)],
            describe(&kids)
        )
    }

    /// The messages not consumed (so far): neither reported acknowledged, nor in doubt.
    fn missing(&self) -> Vec<u64> {
        let in_doubt = self.in_doubt();
        (0..MESSAGES)
            .filter(|id| self.fates[*id as usize].acked.is_empty() && !in_doubt.contains(id))
            .collect()
    }

    /// The next report line, within [`WAIT`] and the stream's deadline.
    fn next_event(&self) -> Event {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.0.recv_timeout(WAIT.min(left)) {
            Ok(event) => event,
            Err(_) if left <= WAIT => panic!(
                "the stream was not consumed within {STREAM_LIMIT:?}: {}",
                self.status()
            ),
            Err(_) => panic!("no report within {WAIT:?}: {}", self.status()),
        }
    }

    /// Records one report line.
    fn handle(&mut self, (index, line): Event) {
        let Some(line) = line else {
            if index == PUBLISHER {
                assert!(
                    self.published.is_some(),
                    "the publisher ended before publishing everything: {}",
                    self.status()
                );
                self.publisher_ended = true;
            } else {
                let consumer = &mut self.consumers[index - 1];
                consumer.ended = true;
                assert!(
                    consumer.stopped,
                    "consumer {} ended by itself: {}",
                    index - 1,
                    self.status()
                );
            }
            return;
        };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match (index, word) {
            (PUBLISHER, "SENT") => self.sent = rest.parse().expect("a SENT count"),
            (PUBLISHER, "PUBLISHED") => {
                self.sent = rest.parse().expect("a PUBLISHED count");
                self.published = Some((self.sent, Instant::now()));
            }
            (PUBLISHER, _) => panic!("the publisher said {line:?}: {}", self.status()),
            (_, "READY") => {}
            (_, "TOOK") => {
                let k = index - 1;
                for item in rest.split(',') {
                    let (digits, redelivered) = match item.strip_suffix('r') {
                        Some(digits) => (digits, true),
                        None => (item, false),
                    };
                    let id: u64 = digits.parse().expect("a TOOK id");
                    assert!(id < MESSAGES, "consumer {k} took an unknown id {id}");
                    self.fates[id as usize].taken.push((k, redelivered));
                    self.consumers[k].pending.push_back(id);
                    if redelivered {
                        self.redelivered += 1;
                        self.consumers[k]
                            .first_redelivered
                            .get_or_insert_with(Instant::now);
                    }
                }
            }
            (_, "ACKED") => {
                let k = index - 1;
                let id: u64 = rest.parse().expect("an ACKED id");
                let expected = self.consumers[k].pending.pop_front();
                assert_eq!(
                    expected,
                    Some(id),
                    "consumer {k} acknowledges what it took, in order"
                );
                let fate = &mut self.fates[id as usize];
                fate.acked.push(k);
                if fate.acked.len() == 1 {
                    self.consumed += 1;
                }
                self.consumers[k].first_ack.get_or_insert_with(Instant::now);
            }
            (_, "DONE") => self.consumers[index - 1].done = Some(rest.parse().expect("a count")),
            _ => panic!("consumer {} said {line:?}: {}", index - 1, self.status()),
        }
    }

    /// SIGKILLs the running consumer, starts the next one at once, and records what the
    /// killed one left unsettled (once all it wrote before dying has been read).
    fn kill_consumer(&mut self) {
        let k = self.consumers.len() - 1;
        self.consumers[k].stopped = true;
        self.consumers[k].kid.kill();
        let at = Instant::now();
        let next = Stream::spawn_consumer(&self.url, k + 1, &self.feed);
        self.consumers.push(next);
        while !self.consumers[k].ended {
            let event = self.next_event();
            self.handle(event);
        }
        self.kills.push(Kill {
            incarnation: k,
            at,
            consumed: self.consumed,
            sent: self.sent,
            unsettled: self.consumers[k].pending.iter().copied().collect(),
        });
    }

    /// Messages whose ack was under way at a kill and that have not been taken since: they
    /// were acknowledged, or are still to come back.
    fn in_doubt(&self) -> Vec<u64> {
        self.kills
            .iter()
            .filter_map(|kill| kill.unsettled.first().copied())
            .filter(|id| {
                let fate = &self.fates[*id as usize];
                fate.acked.is_empty() && fate.taken.iter().all(|(k, _)| self.is_killed(*k))
            })
            .collect()
    }

    /// Whether consumer incarnation `k` was killed.
    fn is_killed(&self, k: usize) -> bool {
        self.kills.iter().any(|kill| kill.incarnation == k)
    }
}

/// 100,000 persistent messages, the consumer process killed with SIGKILL at 25% and at 60%
/// consumed and replaced at once (the printed line says how much had been sent by then):
/// nothing is lost, nothing acknowledged comes back, and what the killed consumers held comes
/// back marked redelivered.
#[test]
fn a_100k_stream_with_its_consumer_killed_twice_loses_nothing() {
    let file = BrokerFile::new("faults");
    let mut s = Stream::start(file.url());

    // The stream, with its two kills.
    while s.consumed + (s.in_doubt().len() as u64) < MESSAGES {
        let event = s.next_event();
        s.handle(event);
        if s.kills.len() < KILL_AT.len() && s.consumed >= KILL_AT[s.kills.len()] {
            s.kill_consumer();
        }
    }
    let total = s.started.elapsed();
    // A message whose ack was under way at a kill comes back within a second if the ack was
    // not stored: give it time (plus a margin) after the last kill.
    if !s.in_doubt().is_empty() {
        let until = s.kills.last().expect("a kill").at + SETTLE;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match s.lines.0.recv_timeout(left) {
                Ok(event) => s.handle(event),
                Err(_) => break,
            }
        }
    }

    // The end: the last consumer stops (reporting anything still arriving), the publisher is
    // done; then nothing is left in the broker file.
    let last = s.consumers.len() - 1;
    s.deadline = Instant::now() + WAIT;
    s.consumers[last].stopped = true;
    s.consumers[last].kid.finish();
    while !s.consumers[last].ended || !s.publisher_ended {
        let event = s.next_event();
        s.handle(event);
    }
    s.consumers[last].kid.wait_success();
    s.publisher.wait_success();
    let (ready, consumers, left) = runtime().block_on(async {
        // Every child has exited: this process alone has the file open, and opening it
        // releases whatever a dead process still held.
        let conn = connect(&s.url).await;
        let info = conn.queue_info(QUEUE).await.expect("queue info");
        let mut consumer = Consumer::builder(&conn)
            .queue(QUEUE)
            .build()
            .await
            .expect("consumer");
        let left = consumer
            .fetch()
            .await
            .expect("fetch")
            .map(|m| m.decode::<Body>().map(|body| body.id));
        conn.close().await.expect("close");
        (info.message_count, info.consumer_count, left)
    });

    // The counts, printed before they are checked.
    let fates = &s.fates;
    let in_doubt = s.in_doubt();
    let lost = s.missing();
    let duplicated: Vec<u64> = (0..MESSAGES)
        .filter(|id| fates[*id as usize].taken.len() > 1)
        .collect();
    let acked_twice: Vec<u64> = (0..MESSAGES)
        .filter(|id| fates[*id as usize].acked.len() > 1)
        .collect();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let kills: Vec<String> = s
        .kills
        .iter()
        .enumerate()
        .map(|(n, kill)| {
            let next = &s.consumers[kill.incarnation + 1];
            let recovery = next.first_ack.map_or("never".into(), |at| ms(at - kill.at));
            let redelivery = next
                .first_redelivered
                .map_or("none".into(), |at| ms(at - kill.at));
            format!(
                "kill {} at {} consumed / {}+ sent ({} unsettled): recovered (next ack) in {recovery}, first redelivery in {redelivery}",
                n + 1,
                kill.consumed,
                kill.sent,
                kill.unsettled.len()
            )
        })
        .collect();
    let (published, published_at) = s.published.expect("the publisher finished");
    eprintln!(
        "sqlite faults: sent {published}, consumed {} ({} reported acked + {} acked as its consumer was killed), lost {}, duplicated {} (taken again after a kill), acked twice {}, redelivered {}; {}; published in {}, all consumed in {}",
        s.consumed + in_doubt.len() as u64,
        s.consumed,
        in_doubt.len(),
        lost.len(),
        duplicated.len(),
        acked_twice.len(),
        s.redelivered,
        kills.join("; "),
        ms(published_at - s.started),
        ms(total),
    );

    assert_eq!(published, MESSAGES, "the publisher sent the whole stream");
    assert_eq!(s.kills.len(), 2, "the consumer was killed twice");
    assert!(
        lost.is_empty(),
        "{} messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        acked_twice.is_empty(),
        "messages whose ack returned came back and were acknowledged again: {acked_twice:?}"
    );
    assert_eq!(
        s.consumed + in_doubt.len() as u64,
        MESSAGES,
        "every message consumed"
    );
    assert!(
        in_doubt.len() <= s.kills.len(),
        "at most one ack is under way at a kill: {in_doubt:?}"
    );
    assert!(
        duplicated.len() as u64 <= 2 * PREFETCH,
        "{} messages taken twice: more than the windows of two killed consumers",
        duplicated.len()
    );
    // Each message was taken once by each consumer killed before acknowledging it, and once
    // more if it was acknowledged; each taking after such a kill is marked redelivered.
    let mut unsettled: HashMap<u64, Vec<&Kill>> = HashMap::new();
    for kill in &s.kills {
        for id in &kill.unsettled {
            unsettled.entry(*id).or_default().push(kill);
        }
    }
    for id in 0..MESSAGES {
        let fate = &fates[id as usize];
        let held = unsettled.remove(&id).unwrap_or_default();
        let acked = fate.acked.len();
        assert_eq!(
            fate.taken.len(),
            held.len() + acked,
            "message {id}: taken {:?}, acked by {:?}, left unsettled by {} killed consumers",
            fate.taken,
            fate.acked,
            held.len()
        );
        for kill in held {
            let after: Vec<&(usize, bool)> = fate
                .taken
                .iter()
                .filter(|(k, _)| *k > kill.incarnation)
                .collect();
            if let Some((k, redelivered)) = after.first() {
                assert!(
                    *redelivered,
                    "message {id}, unsettled when consumer {} was killed, came back to consumer {k} without the redelivered mark",
                    kill.incarnation
                );
            } else {
                assert!(
                    in_doubt.contains(&id),
                    "message {id}, unacknowledged when consumer {} was killed, never came back",
                    kill.incarnation
                );
            }
        }
    }
    assert!(
        fates
            .iter()
            .all(|f| f.taken.iter().all(|(k, r)| *k > 0 || !r)),
        "before the first kill, no message is redelivered"
    );
    assert!(
        s.redelivered <= 2 * PREFETCH,
        "{} redelivered takings: more than the windows of the two killed consumers",
        s.redelivered
    );
    for (k, consumer) in s.consumers.iter().enumerate() {
        let acked = fates.iter().filter(|f| f.acked.contains(&k)).count() as u64;
        assert!(acked > 0, "consumer {k} consumed nothing");
        if k == last {
            assert_eq!(
                consumer.done,
                Some(acked),
                "the last consumer counted its acks"
            );
        }
    }
    assert_eq!(
        (ready, consumers, left.transpose().expect("a number")),
        (0, 0, None),
        "the queue ends empty (ready messages, consumers, a message left)"
    );
}
