//! `/api/overview`, `/api/whoami`, `/api/nodes`, the alarm health checks and the aliveness
//! test.

use axum::extract::{Path, State};
use serde_json::{json, Value};

use super::auth::Caller;
use super::reply::{json, ApiError, ApiResult};
use super::{stats, Shared};
use crate::server::RABBITMQ_VERSION;

/// The node name carrot serve reports (one node).
pub(super) fn node() -> String {
    "carrot@localhost".into()
}

/// Totals over every queue of the vhosts `caller` sees: (ready, unacked, consumers, queues).
pub(super) async fn totals(api: &Shared, caller: &Caller) -> Result<[u64; 4], ApiError> {
    let mut totals = [0u64; 4];
    for (vhost, queues) in api.metrics.queues_by_vhost().await? {
        if !caller.sees(api, &vhost) {
            continue;
        }
        for q in queues {
            totals[0] += q.ready;
            totals[1] += q.unacked;
            totals[2] += q.consumers;
            totals[3] += 1;
        }
    }
    Ok(totals)
}

pub(super) async fn overview(State(api): State<Shared>, caller: Caller) -> ApiResult {
    let [ready, unacked, consumers, queues] = totals(&api, &caller).await?;
    let mut exchanges = 0;
    for vhost in api.vhosts.access.vhosts() {
        if caller.sees(&api, &vhost.name) {
            exchanges += api
                .vhosts
                .handle(&vhost.name)
                .await?
                .topology()
                .await?
                .exchanges
                .len();
        }
    }
    let clients = api.clients.list();
    let channels: usize = clients.iter().map(|c| c.channels.len()).sum();
    json(json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "product_name": "carrot",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": node(),
        "node": node(),
        "erlang_version": "none",
        "erlang_full_version": "none (carrot serve is written in Rust)",
        "disable_stats": false,
        "enable_queue_totals": true,
        "uptime": api.started.elapsed().as_millis() as u64,
        "message_stats": stats::message_stats(&api),
        "queue_totals": stats::with_counts(json!({}), ready, unacked),
        "object_totals": {
            "connections": clients.len(),
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        },
        "statistics_db_event_queue": 0,
        "churn_rates": churn(&api),
        "listeners": [
            {"node": node(), "protocol": "amqp", "ip_address": api.amqp.ip().to_string(), "port": api.amqp.port()},
            {"node": node(), "protocol": "http", "ip_address": api.http.ip().to_string(), "port": api.http.port()},
        ],
        "contexts": [
            {"node": node(), "description": "RabbitMQ Management", "path": "/", "port": api.http.port().to_string()},
        ],
        "exchange_types": [
            {"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
            {"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
            {"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
            {"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
        ],
    }))
}

/// Connections and channels opened and closed since the start (RabbitMQ's churn rates
/// without the rates).
fn churn(api: &Shared) -> Value {
    let m = &api.metrics;
    let opened_connections = m.connections_opened_total();
    let opened_channels = m.channels_opened_total();
    json!({
        "connection_created": opened_connections,
        "connection_created_details": stats::details(0.0),
        "connection_closed": opened_connections.saturating_sub(m.connections()),
        "connection_closed_details": stats::details(0.0),
        "channel_created": opened_channels,
        "channel_created_details": stats::details(0.0),
        "channel_closed": opened_channels.saturating_sub(m.channels()),
        "channel_closed_details": stats::details(0.0),
    })
}

pub(super) async fn whoami(caller: Caller) -> ApiResult {
    json(json!({"name": caller.user.name, "tags": caller.user.tags}))
}

pub(super) async fn nodes(State(api): State<Shared>, _caller: Caller) -> ApiResult {
    json(vec![json!({
        "name": node(),
        "type": "disc",
        "running": true,
        "uptime": api.started.elapsed().as_millis() as u64,
        "mem_alarm": false,
        "being_drained": false,
        "disk_free_alarm": false,
        "partitions": Value::Array(Vec::new()),
    })])
}

/// carrot serve raises no memory or disk alarm: the checks pass.
pub(super) async fn no_alarms(_caller: Caller) -> ApiResult {
    json(json!({"status": "ok"}))
}

/// Declares `aliveness-test` in the vhost, publishes a message to it and gets it back, as
/// RabbitMQ's aliveness test does.
pub(super) async fn aliveness(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.grant(&api, &vhost)?;
    let conn = api.vhosts.handle(&vhost).await?;
    let queue = "aliveness-test";
    conn.declare_queue(&crate::QueueSpec::new(queue).durable(false))
        .await?;
    let publisher = crate::Publisher::builder(&conn)
        .routing_key(queue)
        .serializer("raw")
        .build()
        .await?;
    publisher.send("test_message").await?;
    let mut consumer = crate::Consumer::builder(&conn)
        .queue(queue)
        .auto_declare(false)
        .build()
        .await?;
    let got = consumer.fetch().await?;
    if let Some(message) = &got {
        message.ack()?;
    }
    match got {
        Some(m) if m.body() == b"test_message" => json(json!({"status": "ok"})),
        _ => json(json!({"status": "failed", "reason": "the test message did not come back"})),
    }
}
