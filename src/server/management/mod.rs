//! `carrot serve --management ADDRESS`: RabbitMQ's management HTTP API (the part its tools
//! use: same paths, JSON fields and status codes), Prometheus `/metrics` with the names of
//! RabbitMQ's Prometheus plugin, and a dashboard page at `/`.
//!
//! - `auth.rs`: basic auth with the server's users, tags as the management plugin enforces
//!   them (401 `not_authorised` otherwise).
//! - `reply.rs`: RabbitMQ's error bodies (`{"error": ..., "reason": ...}`) and JSON bodies.
//! - `overview.rs`: `/api/overview`, `/api/whoami`, health checks, aliveness test, nodes.
//! - `registry.rs`: vhosts, users, permissions, definitions.
//! - `entities.rs`: queues (with purge and get), exchanges (with publish), bindings.
//! - `clients.rs`: connections (and closing one), channels, consumers.
//! - `prometheus.rs`: `/metrics` and `/metrics/per-object`.
//! - `dashboard.rs`: the page at `/`, compiled into the binary.
//!
//! Whatever it does not implement is a 404 (or 405 for a known path) with a JSON error, as
//! RabbitMQ answers, never a wrong answer.

mod auth;
mod clients;
mod dashboard;
mod entities;
mod overview;
mod prometheus;
mod registry;
mod reply;
pub(super) mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::clients::Clients;
use super::metrics::Metrics;
use super::vhosts::Vhosts;

/// What the API's handlers share.
#[derive(Debug)]
pub(super) struct Api {
    pub(super) vhosts: Arc<Vhosts>,
    pub(super) clients: Arc<Clients>,
    pub(super) metrics: Arc<Metrics>,
    /// The AMQP listener's address.
    pub(super) amqp: SocketAddr,
    /// The management listener's address.
    pub(super) http: SocketAddr,
    pub(super) started: Instant,
    pub(super) rates: stats::Rates,
}

type Shared = Arc<Api>;

/// The biggest request body accepted (definitions of a large setup fit); beyond, 413.
const BODY_LIMIT: usize = 16 << 20;

fn router(api: Shared) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/metrics", get(prometheus::aggregated))
        .route("/metrics/per-object", get(prometheus::per_object))
        .route("/api/overview", get(overview::overview))
        .route("/api/whoami", get(overview::whoami))
        .route("/api/nodes", get(overview::nodes))
        .route("/api/health/checks/alarms", get(overview::no_alarms))
        .route("/api/health/checks/local-alarms", get(overview::no_alarms))
        .route("/api/aliveness-test/{vhost}", get(overview::aliveness))
        .route("/api/vhosts", get(registry::vhosts))
        .route(
            "/api/vhosts/{vhost}",
            get(registry::vhost)
                .put(registry::put_vhost)
                .delete(registry::delete_vhost),
        )
        .route(
            "/api/vhosts/{vhost}/permissions",
            get(registry::vhost_permissions),
        )
        .route(
            "/api/vhosts/{vhost}/connections",
            get(clients::vhost_connections),
        )
        .route("/api/vhosts/{vhost}/channels", get(clients::vhost_channels))
        .route("/api/users", get(registry::users))
        .route(
            "/api/users/{user}",
            get(registry::user)
                .put(registry::put_user)
                .delete(registry::delete_user),
        )
        .route(
            "/api/users/{user}/permissions",
            get(registry::user_permissions),
        )
        .route("/api/permissions", get(registry::permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(registry::permission)
                .put(registry::put_permission)
                .delete(registry::delete_permission),
        )
        .route(
            "/api/definitions",
            get(registry::export_all).post(registry::import_all),
        )
        .route(
            "/api/definitions/{vhost}",
            get(registry::export_vhost).post(registry::import_vhost),
        )
        .route("/api/queues", get(entities::queues))
        .route("/api/queues/{vhost}", get(entities::vhost_queues))
        .route(
            "/api/queues/{vhost}/{name}",
            get(entities::queue)
                .put(entities::put_queue)
                .delete(entities::delete_queue),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            delete(entities::purge),
        )
        .route(
            "/api/queues/{vhost}/{name}/get",
            post(entities::get_messages),
        )
        .route(
            "/api/queues/{vhost}/{name}/bindings",
            get(entities::queue_bindings),
        )
        .route("/api/exchanges", get(entities::exchanges))
        .route("/api/exchanges/{vhost}", get(entities::vhost_exchanges))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(entities::exchange)
                .put(entities::put_exchange)
                .delete(entities::delete_exchange),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(entities::publish),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(entities::source_bindings),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(entities::destination_bindings),
        )
        .route("/api/bindings", get(entities::bindings))
        .route("/api/bindings/{vhost}", get(entities::vhost_bindings))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(entities::bindings_between).post(entities::bind),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(entities::binding).delete(entities::unbind),
        )
        .route("/api/connections", get(clients::connections))
        .route(
            "/api/connections/{name}",
            get(clients::connection).delete(clients::close_connection),
        )
        .route(
            "/api/connections/{name}/channels",
            get(clients::connection_channels),
        )
        .route("/api/channels", get(clients::channels))
        .route("/api/consumers", get(clients::consumers))
        .route("/api/consumers/{vhost}", get(clients::vhost_consumers))
        .fallback(reply::not_found)
        .method_not_allowed_fallback(reply::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// Binds the management listener (at server bind time, so that a busy port is an error
/// then).
pub(super) async fn bind(address: SocketAddr) -> crate::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| {
        crate::Error::InvalidArgument(format!(
            "cannot listen on {address} for the management API: {e}"
        ))
    })
}

/// Serves the API until `shutdown` turns true.
pub(super) async fn serve(listener: TcpListener, api: Shared, mut shutdown: watch::Receiver<bool>) {
    let sampler = tokio::spawn(stats::sample(api.clone()));
    let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
    let stopped = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(error = %e, "the management API stopped");
    }
    sampler.abort();
}
