//! `/api/connections` (and DELETE to close one, with 320 CONNECTION_FORCED and the
//! `X-Reason` header's text), `/api/channels`, `/api/consumers`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{json, Value};

use super::auth::Caller;
use super::reply::{json, no_content, ApiError, ApiResult};
use super::Shared;
use crate::server::{ChannelInfo, ClientInfo};

fn connection_json(c: &ClientInfo) -> Value {
    json!({
        "name": c.name,
        "vhost": c.vhost,
        "user": c.user,
        "node": super::overview::node(),
        "state": "running",
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "auth_mechanism": "PLAIN",
        "ssl": c.tls,
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "channels": c.channels.len(),
        "connected_at": c.connected_at,
        "client_properties": {"connection_name": c.client_name},
        "user_provided_name": if c.client_name.is_empty() { Value::Null } else { json!(c.client_name) },
    })
}

fn channel_json(c: &ClientInfo, channel: &ChannelInfo) -> Value {
    let number = channel.number;
    json!({
        "name": format!("{} ({number})", c.name),
        "number": number,
        "vhost": c.vhost,
        "user": c.user,
        "node": super::overview::node(),
        "state": "running",
        "confirm": channel.confirm,
        "transactional": channel.transactional,
        "prefetch_count": channel.prefetch_count,
        "global_prefetch_count": 0,
        "messages_unacknowledged": channel.unacknowledged,
        "messages_unconfirmed": 0,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "consumer_count": c.consumers.iter().filter(|k| k.channel == number).count(),
        "connection_details": {"name": c.name, "peer_host": c.peer.ip().to_string(), "peer_port": c.peer.port()},
    })
}

/// The connections `caller` may see: all for administrators and monitoring users, its own
/// otherwise (as RabbitMQ's management plugin).
fn visible(api: &Shared, caller: &Caller) -> Vec<ClientInfo> {
    api.clients
        .list()
        .into_iter()
        .filter(|c| caller.sees_all() || c.user == caller.user.name)
        .collect()
}

pub(super) async fn connections(State(api): State<Shared>, caller: Caller) -> ApiResult {
    json(
        visible(&api, &caller)
            .iter()
            .map(connection_json)
            .collect::<Vec<_>>(),
    )
}

pub(super) async fn vhost_connections(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    json(
        visible(&api, &caller)
            .iter()
            .filter(|c| c.vhost == vhost)
            .map(connection_json)
            .collect::<Vec<_>>(),
    )
}

fn find(api: &Shared, caller: &Caller, name: &str) -> Result<ClientInfo, ApiError> {
    visible(api, caller)
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn connection(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    json(connection_json(&find(&api, &caller, &name)?))
}

/// Closes a connection: administrators any, others their own (a monitoring user only
/// looks).
pub(super) async fn close_connection(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let found = find(&api, &caller, &name)?;
    if found.user != caller.user.name {
        caller.admin()?;
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    if api.clients.close(&name, reason) {
        no_content()
    } else {
        Err(ApiError::not_found())
    }
}

pub(super) async fn connection_channels(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let c = find(&api, &caller, &name)?;
    json(
        c.channels
            .iter()
            .map(|channel| channel_json(&c, channel))
            .collect::<Vec<_>>(),
    )
}

fn all_channels(api: &Shared, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    visible(api, caller)
        .iter()
        .filter(|c| vhost.is_none_or(|v| c.vhost == v))
        .flat_map(|c| {
            c.channels
                .iter()
                .map(move |channel| channel_json(c, channel))
        })
        .collect()
}

pub(super) async fn channels(State(api): State<Shared>, caller: Caller) -> ApiResult {
    json(all_channels(&api, &caller, None))
}

pub(super) async fn vhost_channels(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    json(all_channels(&api, &caller, Some(&vhost)))
}

fn all_consumers(api: &Shared, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for c in api.clients.list() {
        if vhost.is_some_and(|v| c.vhost != v) || !caller.sees(api, &c.vhost) {
            continue;
        }
        for k in &c.consumers {
            let prefetch = c
                .channels
                .iter()
                .find(|ch| ch.number == k.channel)
                .map_or(0, |ch| ch.prefetch_count);
            out.push(json!({
                "consumer_tag": k.tag,
                "prefetch_count": prefetch,
                "consumer_timeout": 1_800_000,
                "queue": {"name": k.queue, "vhost": c.vhost},
                "ack_required": k.ack_required,
                "exclusive": k.exclusive,
                "active": true,
                "activity_status": "up",
                "arguments": {},
                "channel_details": {
                    "name": format!("{} ({})", c.name, k.channel),
                    "number": k.channel,
                    "connection_name": c.name,
                    "peer_host": c.peer.ip().to_string(),
                    "peer_port": c.peer.port(),
                    "user": c.user,
                    "node": super::overview::node(),
                },
            }));
        }
    }
    out
}

pub(super) async fn consumers(State(api): State<Shared>, caller: Caller) -> ApiResult {
    json(all_consumers(&api, &caller, None))
}

pub(super) async fn vhost_consumers(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    json(all_consumers(&api, &caller, Some(&vhost)))
}
