//! A stream of confirmed persistent messages through one queue, with a fault injected while
//! it runs: what the fault tests measure.
//!
//! A publisher sends `total` messages whose bodies are their ids, keeping `window` confirms
//! in flight; a message whose send fails in a way that leaves it unstored (blocked, timed
//! out, nacked) is sent again, as an application would. A consumer on its own connection
//! acknowledges each message and counts the ids it saw. The fault runs beside them, told how
//! far they are. Afterwards: sent, confirmed, consumed, lost (confirmed and never consumed:
//! must be 0), duplicated, redelivered, and the recoveries the connections reported.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carrot::{
    BrokerConnection, ConnectionEvent, Consumer, DeliveryMode, Error, PendingConfirm, Publisher,
    QueueSpec, SendOptions,
};

/// How far the stream is, for the fault to pick its moment.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages confirmed so far.
    pub confirmed: AtomicU64,
    /// Distinct messages consumed so far.
    pub consumed: AtomicU64,
}

impl Progress {
    /// Waits until at least `n` distinct messages were consumed.
    pub async fn consumed_at_least(&self, n: u64) {
        while self.consumed.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The shape of a stream.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Messages to send.
    pub total: u64,
    /// Publisher confirms in flight.
    pub window: usize,
    /// The consumer's prefetch.
    pub prefetch: u16,
    /// The queue (declared by the stream, durable).
    pub queue: QueueSpec,
    /// The longest the whole stream may take.
    pub limit: Duration,
}

/// What a stream measured.
#[derive(Debug, Default)]
pub struct Counts {
    /// Messages handed to the broker (resends included).
    pub sent: u64,
    /// Distinct messages the broker confirmed.
    pub confirmed: u64,
    /// Distinct messages consumed.
    pub consumed: u64,
    /// Confirmed and never consumed.
    pub lost: u64,
    /// Deliveries beyond the first of each message.
    pub duplicated: u64,
    /// Deliveries marked redelivered.
    pub redelivered: u64,
    /// Sends that failed and were sent again (blocked, timed out, nacked), by error.
    pub resent: Vec<String>,
    /// When the first of those failed.
    pub first_resend: Option<Instant>,
    /// Downtime of each recovery the two connections reported.
    pub recoveries: Vec<Duration>,
    /// From the first send to the last message consumed.
    pub elapsed: Duration,
}

impl Counts {
    /// One line for the test's output (and RELIABILITY.md).
    pub fn line(&self, fault: &str) -> String {
        let recoveries: Vec<String> = self
            .recoveries
            .iter()
            .map(|d| format!("{:.2}s", d.as_secs_f64()))
            .collect();
        format!(
            "{fault}: sent {} confirmed {} consumed {} lost {} duplicated {} redelivered {} resent {} recoveries [{}] elapsed {:.1}s",
            self.sent,
            self.confirmed,
            self.consumed,
            self.lost,
            self.duplicated,
            self.redelivered,
            self.resent.len(),
            recoveries.join(", "),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Errors after which a message is sent again: the broker did not store it, or may not have.
fn resend_after(error: &Error) -> bool {
    matches!(
        error,
        Error::Blocked { .. } | Error::Timeout { .. } | Error::Nacked { .. }
    )
}

/// Runs the stream with `fault` beside it; panics (with the counts so far) when a side fails
/// or the stream does not finish within the plan's limit.
pub async fn run<F, Fut>(
    publishing: BrokerConnection,
    consuming: BrokerConnection,
    plan: Plan,
    fault: F,
) -> Counts
where
    F: FnOnce(Arc<Progress>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    consuming
        .declare_queue(&plan.queue)
        .await
        .expect("declare the stream's queue");
    let recoveries = Arc::new(Mutex::new(Vec::new()));
    for conn in [&publishing, &consuming] {
        let mut events = conn.events();
        let recoveries = recoveries.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let ConnectionEvent::Recovered { downtime, .. } = event {
                    recoveries
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(downtime);
                }
            }
        });
    }
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let publisher = tokio::spawn(publish(publishing, plan.clone(), progress.clone()));
    let consumer = tokio::spawn(consume(consuming, plan.clone(), progress.clone()));
    let fault = tokio::spawn(fault(progress.clone()));

    let deadline = tokio::time::sleep(plan.limit);
    tokio::pin!(deadline);
    let (published, consumed) = tokio::select! {
        both = async { (publisher.await, consumer.await) } => both,
        _ = &mut deadline => panic!(
            "the stream did not finish within {:?}: {} confirmed, {} consumed of {}",
            plan.limit,
            progress.confirmed.load(Ordering::Relaxed),
            progress.consumed.load(Ordering::Relaxed),
            plan.total
        ),
    };
    let elapsed = started.elapsed();
    // A side that failed is reported before the fault is awaited: a fault still waiting for
    // progress that will never come would otherwise hold the test until its outer limit.
    let failed = |side: &str, e: Error| -> ! {
        fault.abort();
        panic!("the {side} failed: {e}")
    };
    let (sent, confirmed, resent) = match published.expect("the publisher task") {
        Ok(published) => published,
        Err(e) => failed("publisher", e),
    };
    let (seen, redelivered) = match consumed.expect("the consumer task") {
        Ok(consumed) => consumed,
        Err(e) => failed("consumer", e),
    };
    fault.await.expect("the fault task");
    let lost = confirmed.iter().filter(|id| !seen.contains_key(id)).count() as u64;
    let duplicated = seen.values().map(|&n| u64::from(n) - 1).sum();
    let recoveries = recoveries.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Counts {
        sent,
        confirmed: confirmed.len() as u64,
        consumed: seen.len() as u64,
        lost,
        duplicated,
        redelivered,
        first_resend: resent.iter().map(|(_, at)| *at).min(),
        resent: resent.into_iter().map(|(e, _)| e).collect(),
        recoveries,
        elapsed,
    }
}

type Published = (u64, BTreeSet<u64>, Vec<(String, Instant)>);

/// Sends ids 0..total with a window of confirms; ids whose send failed go again.
async fn publish(
    conn: BrokerConnection,
    plan: Plan,
    progress: Arc<Progress>,
) -> Result<Published, Error> {
    let publisher = Publisher::builder(&conn)
        .routing_key(&plan.queue.name)
        .serializer("raw")
        .confirm_publish(true)
        .build()
        .await?;
    let options = SendOptions::new().delivery_mode(DeliveryMode::Persistent);
    let mut in_flight: VecDeque<(u64, PendingConfirm)> = VecDeque::new();
    let mut again: VecDeque<u64> = VecDeque::new();
    let (mut next, mut sent) = (0u64, 0u64);
    let mut confirmed = BTreeSet::new();
    let mut resent = Vec::new();
    loop {
        let id = if in_flight.len() >= plan.window {
            None
        } else if let Some(id) = again.pop_front() {
            Some(id)
        } else if next < plan.total {
            next += 1;
            Some(next - 1)
        } else {
            None
        };
        let Some(id) = id else {
            let Some((id, pending)) = in_flight.pop_front() else {
                break;
            };
            match pending.await {
                Ok(()) => {
                    confirmed.insert(id);
                    progress
                        .confirmed
                        .store(confirmed.len() as u64, Ordering::Relaxed);
                }
                Err(e) if resend_after(&e) => {
                    resent.push((e.to_string(), Instant::now()));
                    again.push_back(id);
                }
                Err(e) => return Err(e),
            }
            continue;
        };
        match publisher
            .begin_send_with(&id.to_string(), options.clone())
            .await
        {
            Ok(pending) => {
                sent += 1;
                in_flight.push_back((id, pending));
            }
            Err(e) if resend_after(&e) => {
                resent.push((e.to_string(), Instant::now()));
                again.push_back(id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    publisher.close().await?;
    Ok((sent, confirmed, resent))
}

/// Acknowledges messages until every id was seen; the count of deliveries per id and of
/// deliveries marked redelivered.
async fn consume(
    conn: BrokerConnection,
    plan: Plan,
    progress: Arc<Progress>,
) -> Result<(HashMap<u64, u32>, u64), Error> {
    let mut consumer = Consumer::builder(&conn)
        .queue(&plan.queue.name)
        .auto_declare(false)
        .build()
        .await?;
    consumer
        .qos(carrot::Qos::new().prefetch_count(plan.prefetch))
        .await?;
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut redelivered = 0;
    while (seen.len() as u64) < plan.total {
        let Some(message) = consumer.next_message().await? else {
            return Err(Error::ChannelClosed {
                reply_code: None,
                reply_text: "the consumer ended".into(),
                source: None,
            });
        };
        let id: u64 = std::str::from_utf8(message.body())
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| Error::InvalidArgument(format!("not an id: {:?}", message.body())))?;
        *seen.entry(id).or_default() += 1;
        if message.redelivered() {
            redelivered += 1;
        }
        progress
            .consumed
            .store(seen.len() as u64, Ordering::Relaxed);
        match message.ack() {
            // Delivered before a loss: the broker requeued it, it comes again.
            Ok(()) | Err(Error::ChannelClosed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    consumer.close().await?;
    Ok((seen, redelivered))
}
