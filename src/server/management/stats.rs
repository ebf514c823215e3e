//! Message rates, as the management plugin shows them: every second the server's totals are
//! sampled and each rate is the difference over the last second (RabbitMQ samples every 5 s
//! by default; a dashboard refreshing every few seconds wants fresher ones).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::Shared;

/// The last rates, per second.
#[derive(Debug, Default)]
pub(in crate::server) struct Rates {
    last: parking_lot::Mutex<Sample>,
    /// Deliveries and acks per second, by (vhost, queue).
    queues: parking_lot::Mutex<HashMap<(String, String), (f64, f64)>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    publish: f64,
    deliver_get: f64,
    ack: f64,
    confirm: f64,
}

/// Samples the totals every second until aborted.
pub(super) async fn sample(api: Shared) {
    let period = Duration::from_secs(1);
    let mut tick = tokio::time::interval(period);
    let totals = |api: &Shared| {
        let m = &api.metrics;
        [
            m.published_total(),
            m.delivered_total(),
            m.acknowledged_total(),
            m.confirmed_total(),
        ]
    };
    let mut before = totals(&api);
    let mut queues_before: HashMap<(String, String), (u64, u64)> =
        api.metrics.queue_snapshot().into_iter().collect();
    let mut at = tokio::time::Instant::now();
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = totals(&api);
        let elapsed = at.elapsed().as_secs_f64().max(1e-3);
        at = tokio::time::Instant::now();
        let rate = |i: usize| now[i].saturating_sub(before[i]) as f64 / elapsed;
        *api.rates.last.lock() = Sample {
            publish: rate(0),
            deliver_get: rate(1),
            ack: rate(2),
            confirm: rate(3),
        };
        before = now;
        let queues_now: HashMap<(String, String), (u64, u64)> =
            api.metrics.queue_snapshot().into_iter().collect();
        let rates: HashMap<(String, String), (f64, f64)> = queues_now
            .iter()
            .map(|(k, (d, a))| {
                let (d0, a0) = queues_before.get(k).copied().unwrap_or((0, 0));
                (
                    k.clone(),
                    (
                        d.saturating_sub(d0) as f64 / elapsed,
                        a.saturating_sub(a0) as f64 / elapsed,
                    ),
                )
            })
            .collect();
        *api.rates.queues.lock() = rates;
        queues_before = queues_now;
    }
}

/// `message_stats` of the whole server: totals and `_details.rate`.
pub(super) fn message_stats(api: &Shared) -> Value {
    let m = &api.metrics;
    let rates = *api.rates.last.lock();
    json!({
        "publish": m.published_total(),
        "publish_details": {"rate": rates.publish},
        "deliver_get": m.delivered_total(),
        "deliver_get_details": {"rate": rates.deliver_get},
        "deliver": m.delivered_total(),
        "deliver_details": {"rate": rates.deliver_get},
        "ack": m.acknowledged_total(),
        "ack_details": {"rate": rates.ack},
        "confirm": m.confirmed_total(),
        "confirm_details": {"rate": rates.confirm},
    })
}

/// `message_stats` of one queue: its deliveries (deliver and get) and acks, with rates.
pub(super) fn queue_stats(api: &Shared, vhost: &str, queue: &str) -> Value {
    let (deliver_get, ack) = api.metrics.queue_totals(vhost, queue);
    let (deliver_rate, ack_rate) = api
        .rates
        .queues
        .lock()
        .get(&(vhost.to_string(), queue.to_string()))
        .copied()
        .unwrap_or((0.0, 0.0));
    json!({
        "deliver_get": deliver_get,
        "deliver_get_details": {"rate": deliver_rate},
        "ack": ack,
        "ack_details": {"rate": ack_rate},
    })
}

/// A count with its (zero) rate detail, as `messages_details` and the like.
pub(super) fn details(rate: f64) -> Value {
    json!({ "rate": rate })
}

/// The message counts of a queue, a vhost or the server (`messages`, `messages_ready`,
/// `messages_unacknowledged`, each with its `_details`), added to `object`.
pub(super) fn with_counts(mut object: Value, ready: u64, unacked: u64) -> Value {
    if let Value::Object(map) = &mut object {
        for (name, count) in [
            ("messages", ready + unacked),
            ("messages_ready", ready),
            ("messages_unacknowledged", unacked),
        ] {
            map.insert(name.into(), json!(count));
            map.insert(format!("{name}_details"), details(0.0));
        }
    }
    object
}
