//! The dashboard: one page (HTML, CSS and script in `dashboard.html`, compiled into the
//! binary, nothing fetched from elsewhere) that logs in with a management user and reads
//! the API: the overview (rates, connections, channels, queues), the queues table (ready,
//! unacknowledged, consumers) refreshed every 2 s with purge and delete, and the
//! connections with close.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        PAGE,
    )
}
