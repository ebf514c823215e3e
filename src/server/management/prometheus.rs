//! `/metrics` in Prometheus' text format, with the names and labels of RabbitMQ's
//! Prometheus plugin (`rabbitmq_connections`, `rabbitmq_queue_messages_ready{vhost,queue}`,
//! `rabbitmq_global_messages_received_total{protocol="amqp091"}`, ...), so that RabbitMQ's
//! Grafana dashboards show carrot serve. The per-queue series carry their `vhost` and
//! `queue` labels on `/metrics` itself and on `/metrics/per-object` (the plugin's path for
//! them); like the plugin's own endpoint, it needs no login.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::reply::ApiError;
use super::Shared;
use crate::server::RABBITMQ_VERSION;

pub(super) async fn aggregated(State(api): State<Shared>) -> Result<Response, ApiError> {
    render(&api).await
}

pub(super) async fn per_object(State(api): State<Shared>) -> Result<Response, ApiError> {
    render(&api).await
}

/// A label value, escaped as the text format wants.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "# HELP {name} {help}");
}

async fn render(api: &Shared) -> Result<Response, ApiError> {
    let m = &api.metrics;
    let clients = api.clients.list();
    let queues = m.queues_by_vhost().await?;
    let consumers: u64 = queues
        .iter()
        .flat_map(|(_, q)| q)
        .map(|q| q.consumers)
        .sum();
    let queue_count: usize = queues.iter().map(|(_, q)| q.len()).sum();
    let mut out = String::new();
    family(
        &mut out,
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    let _ = writeln!(
        out,
        "rabbitmq_build_info{{rabbitmq_version=\"{RABBITMQ_VERSION}\",prometheus_plugin_version=\"{RABBITMQ_VERSION}\",prometheus_client_version=\"none\",erlang_version=\"none\",product_name=\"carrot\",product_version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    let node = super::overview::node();
    let _ = writeln!(
        out,
        "rabbitmq_identity_info{{rabbitmq_node=\"{node}\",rabbitmq_cluster=\"{node}\",rabbitmq_cluster_permanent_id=\"carrot\"}} 1"
    );
    let gauges: [(&str, &str, u64); 4] = [
        (
            "rabbitmq_connections",
            "Connections currently open",
            clients.len() as u64,
        ),
        ("rabbitmq_channels", "Channels currently open", m.channels()),
        (
            "rabbitmq_consumers",
            "Consumers currently connected",
            consumers,
        ),
        ("rabbitmq_queues", "Queues available", queue_count as u64),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let counters: [(&str, &str, u64); 2] = [
        (
            "rabbitmq_connections_opened_total",
            "Total number of connections opened",
            m.connections_opened_total(),
        ),
        (
            "rabbitmq_channels_opened_total",
            "Total number of channels opened",
            m.channels_opened_total(),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let global: [(&str, &str, u64); 4] = [
        (
            "rabbitmq_global_messages_received_total",
            "Total number of messages received from publishers",
            m.published_total(),
        ),
        (
            "rabbitmq_global_messages_delivered_total",
            "Total number of messages delivered to consumers",
            m.delivered_total(),
        ),
        (
            "rabbitmq_global_messages_confirmed_total",
            "Total number of messages confirmed to publishers",
            m.confirmed_total(),
        ),
        (
            "rabbitmq_global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            m.acknowledged_total(),
        ),
    ];
    for (name, help, value) in global {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name}{{protocol=\"amqp091\"}} {value}");
    }
    type Field = fn(&crate::server::QueueStats) -> u64;
    let per_queue: [(&str, &str, Field); 4] = [
        (
            "rabbitmq_queue_messages_ready",
            "Messages ready to be delivered to consumers",
            |q| q.ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            |q| q.unacked,
        ),
        (
            "rabbitmq_queue_messages",
            "Sum of ready and unacknowledged messages - total queue depth",
            |q| q.ready + q.unacked,
        ),
        ("rabbitmq_queue_consumers", "Consumers on a queue", |q| {
            q.consumers
        }),
    ];
    for (name, help, field) in per_queue {
        family(&mut out, name, "gauge", help);
        for (vhost, list) in &queues {
            for q in list {
                let _ = writeln!(
                    out,
                    "{name}{{vhost=\"{}\",queue=\"{}\"}} {}",
                    label(vhost),
                    label(&q.name),
                    field(q)
                );
            }
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
