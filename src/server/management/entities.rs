//! Queues, exchanges and bindings of each vhost: `/api/queues` (with purge and get),
//! `/api/exchanges` (with publish), `/api/bindings`, checked with the caller's permissions
//! as the AMQP methods are (configure to declare and delete, write to publish, read to get
//! and purge, write on the destination and read on the source to bind).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::reply::{body, created, json, no_content, ApiError, ApiResult};
use super::{stats, Shared};
use crate::backend::{BindingEntry, QueueEntry, Topology};
use crate::entity::{DeliveryMode, ExchangeSpec, QueueSpec};
use crate::server::access::{Permit, Resource};
use crate::server::definitions::{exchange_type, type_name};
use crate::table::FieldTable;
use crate::{Consumer, Properties, Publisher};

async fn topology(api: &Shared, vhost: &str) -> Result<Topology, ApiError> {
    Ok(api.vhosts.handle(vhost).await?.topology().await?)
}

/// The vhosts whose objects `caller` sees, or just `only` (404 if it does not exist, 401
/// if hidden).
fn scope(api: &Shared, caller: &Caller, only: Option<&str>) -> Result<Vec<String>, ApiError> {
    match only {
        Some(vhost) => {
            caller.see(api, vhost)?;
            Ok(vec![vhost.to_string()])
        }
        None => Ok(api
            .vhosts
            .access
            .vhosts()
            .into_iter()
            .map(|v| v.name)
            .filter(|v| caller.sees(api, v))
            .collect()),
    }
}

fn queue_json(api: &Shared, vhost: &str, q: &QueueEntry) -> Value {
    let object = json!({
        "message_stats": stats::queue_stats(api, vhost, &q.spec.name),
        "name": q.spec.name,
        "vhost": vhost,
        "durable": q.spec.durable,
        "auto_delete": q.spec.auto_delete,
        "exclusive": q.spec.exclusive,
        "arguments": q.spec.arguments,
        "node": super::overview::node(),
        "type": q.spec.arguments.get("x-queue-type").and_then(|v| v.as_str()).unwrap_or("classic"),
        "state": "running",
        "policy": Value::Null,
        "exclusive_consumer_tag": Value::Null,
        "consumers": q.consumers,
    });
    stats::with_counts(object, q.ready, q.unacked)
}

async fn list_queues(api: &Shared, caller: &Caller, only: Option<&str>) -> ApiResult {
    let mut all = Vec::new();
    for vhost in scope(api, caller, only)? {
        for q in topology(api, &vhost).await?.queues {
            all.push(queue_json(api, &vhost, &q));
        }
    }
    json(all)
}

pub(super) async fn queues(State(api): State<Shared>, caller: Caller) -> ApiResult {
    list_queues(&api, &caller, None).await
}

pub(super) async fn vhost_queues(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    list_queues(&api, &caller, Some(&vhost)).await
}

async fn find_queue(api: &Shared, vhost: &str, name: &str) -> Result<QueueEntry, ApiError> {
    topology(api, vhost)
        .await?
        .queues
        .into_iter()
        .find(|q| q.spec.name == name)
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn queue(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    let q = find_queue(&api, &vhost, &name).await?;
    let mut value = queue_json(&api, &vhost, &q);
    value["consumer_details"] = json!([]);
    value["deliveries"] = json!([]);
    value["incoming"] = json!([]);
    json(value)
}

#[derive(Deserialize)]
struct QueueBody {
    #[serde(default = "yes")]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    arguments: FieldTable,
}

fn yes() -> bool {
    true
}

pub(super) async fn put_queue(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.may(&api, &vhost, Permit::Configure, Resource::Queue(&name))?;
    let request: QueueBody = body(&bytes)?;
    let existed = find_queue(&api, &vhost, &name).await.is_ok();
    let mut spec = QueueSpec::new(&name).durable(request.durable);
    spec.auto_delete = request.auto_delete;
    spec.arguments = request.arguments;
    api.vhosts
        .handle(&vhost)
        .await?
        .declare_queue(&spec)
        .await?;
    created(!existed)
}

#[derive(Deserialize)]
pub(super) struct DeleteQuery {
    #[serde(rename = "if-unused", default)]
    if_unused: Option<String>,
    #[serde(rename = "if-empty", default)]
    if_empty: Option<String>,
}

pub(super) async fn delete_queue(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult {
    caller.may(&api, &vhost, Permit::Configure, Resource::Queue(&name))?;
    find_queue(&api, &vhost, &name).await?;
    let options = crate::DeleteQueueOptions {
        if_unused: query.if_unused.as_deref() == Some("true"),
        if_empty: query.if_empty.as_deref() == Some("true"),
    };
    api.vhosts
        .handle(&vhost)
        .await?
        .delete_queue(&name, options)
        .await?;
    no_content()
}

pub(super) async fn purge(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    caller.may(&api, &vhost, Permit::Read, Resource::Queue(&name))?;
    find_queue(&api, &vhost, &name).await?;
    api.vhosts.handle(&vhost).await?.purge(&name).await?;
    no_content()
}

#[derive(Deserialize)]
struct GetBody {
    count: u32,
    ackmode: String,
    #[serde(default = "auto")]
    encoding: String,
    #[serde(default)]
    truncate: Option<usize>,
}

fn auto() -> String {
    "auto".into()
}

/// Gets up to `count` messages, settled as `ackmode` says once all are taken (so that a
/// requeue does not give the same message twice), as the management plugin does.
pub(super) async fn get_messages(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.may(&api, &vhost, Permit::Read, Resource::Queue(&name))?;
    let request: GetBody = body(&bytes)?;
    let requeue = match request.ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => true,
        "ack_requeue_false" | "reject_requeue_false" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "ackmode {other:?}: use ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false"
            )))
        }
    };
    if !matches!(request.encoding.as_str(), "auto" | "base64") {
        return Err(ApiError::bad_request(format!(
            "encoding {:?}: use auto or base64",
            request.encoding
        )));
    }
    find_queue(&api, &vhost, &name).await?;
    let conn = api.vhosts.handle(&vhost).await?;
    let mut consumer = Consumer::builder(&conn)
        .queue(&name)
        .auto_declare(false)
        .build()
        .await?;
    let before = conn.queue_info(&name).await?.message_count;
    let mut taken = Vec::new();
    for _ in 0..request.count {
        match consumer.fetch().await? {
            Some(message) => taken.push(message),
            None => break,
        }
    }
    let mut answer = Vec::new();
    for (i, message) in taken.iter().enumerate() {
        let body = message.body();
        let shown = &body[..request.truncate.unwrap_or(body.len()).min(body.len())];
        let (payload, encoding) = match (request.encoding.as_str(), std::str::from_utf8(shown)) {
            ("auto", Ok(text)) => (text.to_string(), "string"),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(shown),
                "base64",
            ),
        };
        answer.push(json!({
            "payload_bytes": body.len(),
            "redelivered": message.redelivered(),
            "exchange": message.exchange(),
            "routing_key": message.routing_key(),
            "message_count": before.saturating_sub(i as u32 + 1),
            "properties": properties_json(message.properties()),
            "payload": payload,
            "payload_encoding": encoding,
        }));
    }
    for message in &taken {
        if requeue {
            message.requeue()?;
        } else if request.ackmode.starts_with("ack") {
            message.ack()?;
        } else {
            message.reject()?;
        }
    }
    let _ = consumer.close().await;
    json(answer)
}

/// Message properties as the management API writes them (absent ones left out).
fn properties_json(p: &Properties) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.into(), value);
        }
    };
    put("content_type", p.content_type().map(|v| json!(v)));
    put("content_encoding", p.content_encoding().map(|v| json!(v)));
    put(
        "delivery_mode",
        p.delivery_mode()
            .map(|m| json!(if m == DeliveryMode::Persistent { 2 } else { 1 })),
    );
    put("priority", p.priority().map(|v| json!(v)));
    put("correlation_id", p.correlation_id().map(|v| json!(v)));
    put("reply_to", p.reply_to().map(|v| json!(v)));
    put("expiration", p.expiration().map(|v| json!(v)));
    put("message_id", p.message_id().map(|v| json!(v)));
    put("timestamp", p.timestamp().map(|v| json!(v)));
    put("type", p.kind().map(|v| json!(v)));
    put("user_id", p.user_id().map(|v| json!(v)));
    put("app_id", p.app_id().map(|v| json!(v)));
    put("headers", p.headers().map(|v| json!(v)));
    Value::Object(out)
}

/// Properties of a publish request.
#[derive(Deserialize, Default)]
struct PropertiesBody {
    content_type: Option<String>,
    content_encoding: Option<String>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    correlation_id: Option<String>,
    reply_to: Option<String>,
    expiration: Option<String>,
    message_id: Option<String>,
    timestamp: Option<u64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id: Option<String>,
    app_id: Option<String>,
    headers: Option<FieldTable>,
}

impl PropertiesBody {
    fn properties(self) -> Result<Properties, ApiError> {
        let mut p = Properties::default();
        if let Some(v) = self.content_type {
            p = p.with_content_type(v);
        }
        if let Some(v) = self.content_encoding {
            p = p.with_content_encoding(v);
        }
        p = p.with_delivery_mode(match self.delivery_mode {
            Some(2) => DeliveryMode::Persistent,
            None | Some(1) => DeliveryMode::Transient,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "delivery_mode {other}: use 1 (transient) or 2 (persistent)"
                )))
            }
        });
        if let Some(v) = self.priority {
            p = p.with_priority(v);
        }
        if let Some(v) = self.correlation_id {
            p = p.with_correlation_id(v);
        }
        if let Some(v) = self.reply_to {
            p = p.with_reply_to(v);
        }
        if let Some(v) = self.expiration {
            p = p.with_expiration(v);
        }
        if let Some(v) = self.message_id {
            p = p.with_message_id(v);
        }
        if let Some(v) = self.timestamp {
            p = p.with_timestamp(v);
        }
        if let Some(v) = self.kind {
            p = p.with_kind(v);
        }
        if let Some(v) = self.user_id {
            p = p.with_user_id(v);
        }
        if let Some(v) = self.app_id {
            p = p.with_app_id(v);
        }
        if let Some(v) = self.headers {
            p = p.with_headers(v);
        }
        Ok(p)
    }
}

#[derive(Deserialize)]
struct PublishBody {
    #[serde(default)]
    properties: PropertiesBody,
    routing_key: String,
    payload: String,
    payload_encoding: String,
}

pub(super) async fn publish(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let exchange = if name == "amq.default" {
        String::new()
    } else {
        name
    };
    caller.may(&api, &vhost, Permit::Write, Resource::Exchange(&exchange))?;
    let request: PublishBody = body(&bytes)?;
    let payload = match request.payload_encoding.as_str() {
        "string" => request.payload.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(request.payload.as_bytes())
            .map_err(|_| ApiError::bad_request("payload is not base64"))?,
        other => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding {other:?}: use string or base64"
            )))
        }
    };
    let conn = api.vhosts.handle(&vhost).await?;
    if !exchange.is_empty()
        && !topology(&api, &vhost)
            .await?
            .exchanges
            .iter()
            .any(|e| e.name == exchange)
    {
        return Err(ApiError::not_found());
    }
    let publisher = Publisher::builder(&conn)
        .exchange(&exchange)
        .auto_declare(false)
        .confirm_publish(true)
        .build()
        .await?;
    let options = crate::SendOptions {
        routing_key: Some(request.routing_key),
        mandatory: true,
        ..Default::default()
    };
    let message = crate::OutgoingMessage::new(payload, request.properties.properties()?);
    let routed = match publisher.publish(message, &options).await {
        Ok(()) => true,
        Err(crate::Error::Unroutable { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    json(json!({ "routed": routed }))
}

fn exchange_json(vhost: &str, e: &ExchangeSpec) -> Value {
    json!({
        "name": e.name,
        "vhost": vhost,
        "type": type_name(e.kind),
        "durable": e.durable,
        "auto_delete": e.auto_delete,
        "internal": e.internal,
        "arguments": e.arguments,
        "user_who_performed_action": "",
    })
}

async fn list_exchanges(api: &Shared, caller: &Caller, only: Option<&str>) -> ApiResult {
    let mut all = Vec::new();
    for vhost in scope(api, caller, only)? {
        for e in topology(api, &vhost).await?.exchanges {
            all.push(exchange_json(&vhost, &e));
        }
    }
    json(all)
}

pub(super) async fn exchanges(State(api): State<Shared>, caller: Caller) -> ApiResult {
    list_exchanges(&api, &caller, None).await
}

pub(super) async fn vhost_exchanges(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    list_exchanges(&api, &caller, Some(&vhost)).await
}

async fn find_exchange(api: &Shared, vhost: &str, name: &str) -> Result<ExchangeSpec, ApiError> {
    let name = if name == "amq.default" { "" } else { name };
    topology(api, vhost)
        .await?
        .exchanges
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn exchange(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    let e = find_exchange(&api, &vhost, &name).await?;
    let mut value = exchange_json(&vhost, &e);
    value["incoming"] = json!([]);
    value["outgoing"] = json!([]);
    json(value)
}

#[derive(Deserialize)]
struct ExchangeBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    arguments: FieldTable,
}

pub(super) async fn put_exchange(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.may(&api, &vhost, Permit::Configure, Resource::Exchange(&name))?;
    let request: ExchangeBody = body(&bytes)?;
    let kind = exchange_type(&request.kind)
        .map_err(|_| ApiError::bad_request(format!("unknown exchange type '{}'", request.kind)))?;
    let existed = find_exchange(&api, &vhost, &name).await.is_ok();
    let mut spec = ExchangeSpec::new(&name, kind);
    spec.durable = request.durable;
    spec.auto_delete = request.auto_delete;
    spec.internal = request.internal;
    spec.arguments = request.arguments;
    api.vhosts
        .handle(&vhost)
        .await?
        .declare_exchange(&spec)
        .await?;
    created(!existed)
}

pub(super) async fn delete_exchange(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult {
    caller.may(&api, &vhost, Permit::Configure, Resource::Exchange(&name))?;
    find_exchange(&api, &vhost, &name).await?;
    let options = crate::DeleteExchangeOptions {
        if_unused: query.if_unused.as_deref() == Some("true"),
    };
    api.vhosts
        .handle(&vhost)
        .await?
        .delete_exchange(&name, options)
        .await?;
    no_content()
}

/// RabbitMQ's `properties_key` of a binding: its key (`~` if empty) when it has no
/// arguments, and a digest of them after a `~` otherwise.
fn properties_key(routing_key: &str, arguments: &FieldTable) -> String {
    use sha2::Digest;
    let key = if routing_key.is_empty() {
        "~"
    } else {
        routing_key
    };
    if arguments.is_empty() {
        return key.to_string();
    }
    let digest = sha2::Sha256::digest(serde_json::to_vec(arguments).unwrap_or_default());
    format!(
        "{key}~{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
    )
}

fn binding_json(vhost: &str, b: &BindingEntry) -> Value {
    json!({
        "source": b.source,
        "vhost": vhost,
        "destination": b.destination,
        "destination_type": if b.destination_is_queue { "queue" } else { "exchange" },
        "routing_key": b.routing_key,
        "arguments": b.arguments,
        "properties_key": properties_key(&b.routing_key, &b.arguments),
    })
}

/// Every binding of a vhost, the default exchange's implicit ones first (as RabbitMQ lists
/// them).
async fn vhost_binding_list(api: &Shared, vhost: &str) -> Result<Vec<BindingEntry>, ApiError> {
    let topology = topology(api, vhost).await?;
    let mut all: Vec<BindingEntry> = topology
        .queues
        .iter()
        .map(|q| BindingEntry {
            source: String::new(),
            destination: q.spec.name.clone(),
            destination_is_queue: true,
            routing_key: q.spec.name.clone(),
            arguments: FieldTable::new(),
        })
        .collect();
    all.extend(topology.bindings);
    Ok(all)
}

async fn list_bindings(
    api: &Shared,
    caller: &Caller,
    only: Option<&str>,
    keep: impl Fn(&BindingEntry) -> bool,
) -> ApiResult {
    let mut all = Vec::new();
    for vhost in scope(api, caller, only)? {
        for b in vhost_binding_list(api, &vhost).await? {
            if keep(&b) {
                all.push(binding_json(&vhost, &b));
            }
        }
    }
    json(all)
}

pub(super) async fn bindings(State(api): State<Shared>, caller: Caller) -> ApiResult {
    list_bindings(&api, &caller, None, |_| true).await
}

pub(super) async fn vhost_bindings(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    list_bindings(&api, &caller, Some(&vhost), |_| true).await
}

pub(super) async fn queue_bindings(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    find_queue(&api, &vhost, &name).await?;
    list_bindings(&api, &caller, Some(&vhost), |b| {
        b.destination_is_queue && b.destination == name
    })
    .await
}

pub(super) async fn source_bindings(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    let e = find_exchange(&api, &vhost, &name).await?;
    list_bindings(&api, &caller, Some(&vhost), |b| b.source == e.name).await
}

pub(super) async fn destination_bindings(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    let e = find_exchange(&api, &vhost, &name).await?;
    list_bindings(&api, &caller, Some(&vhost), |b| {
        !b.destination_is_queue && b.destination == e.name
    })
    .await
}

/// `q` or `e` in a binding path.
fn destination_kind(kind: &str) -> Result<bool, ApiError> {
    match kind {
        "q" => Ok(true),
        "e" => Ok(false),
        _ => Err(ApiError::not_found()),
    }
}

pub(super) async fn bindings_between(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    let to_queue = destination_kind(&kind)?;
    list_bindings(&api, &caller, Some(&vhost), |b| {
        b.source == source && b.destination == destination && b.destination_is_queue == to_queue
    })
    .await
}

#[derive(Deserialize)]
struct BindBody {
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: FieldTable,
}

pub(super) async fn bind(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, source, kind, destination)): Path<(String, String, String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let to_queue = destination_kind(&kind)?;
    let target = if to_queue {
        Resource::Queue(&destination)
    } else {
        Resource::Exchange(&destination)
    };
    caller.may(&api, &vhost, Permit::Write, target)?;
    caller.may(&api, &vhost, Permit::Read, Resource::Exchange(&source))?;
    let request: BindBody = body(&bytes)?;
    let conn = api.vhosts.handle(&vhost).await?;
    if to_queue {
        conn.bind(
            &destination,
            &source,
            &request.routing_key,
            &request.arguments,
        )
        .await?;
    } else {
        conn.bind_exchange(
            &destination,
            &source,
            &request.routing_key,
            &request.arguments,
        )
        .await?;
    }
    let location = properties_key(&request.routing_key, &request.arguments);
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            percent_encoding::utf8_percent_encode(&location, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        )],
    )
        .into_response())
}

async fn find_binding(
    api: &Shared,
    vhost: &str,
    source: &str,
    to_queue: bool,
    destination: &str,
    props: &str,
) -> Result<BindingEntry, ApiError> {
    vhost_binding_list(api, vhost)
        .await?
        .into_iter()
        .find(|b| {
            b.source == source
                && b.destination == destination
                && b.destination_is_queue == to_queue
                && properties_key(&b.routing_key, &b.arguments) == props
        })
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn binding(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    caller.see(&api, &vhost)?;
    let to_queue = destination_kind(&kind)?;
    let b = find_binding(&api, &vhost, &source, to_queue, &destination, &props).await?;
    json(binding_json(&vhost, &b))
}

pub(super) async fn unbind(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    let to_queue = destination_kind(&kind)?;
    let target = if to_queue {
        Resource::Queue(&destination)
    } else {
        Resource::Exchange(&destination)
    };
    caller.may(&api, &vhost, Permit::Write, target)?;
    caller.may(&api, &vhost, Permit::Read, Resource::Exchange(&source))?;
    let b = find_binding(&api, &vhost, &source, to_queue, &destination, &props).await?;
    let conn = api.vhosts.handle(&vhost).await?;
    if to_queue {
        conn.unbind(&b.destination, &b.source, &b.routing_key, &b.arguments)
            .await?;
    } else {
        conn.unbind_exchange(&b.destination, &b.source, &b.routing_key, &b.arguments)
            .await?;
    }
    no_content()
}
