//! Basic auth with the server's users, and the management plugin's rules: a user needs one
//! of the tags `administrator`, `monitoring`, `policymaker` or `management` to use the API
//! at all; users, permissions, vhosts and definitions need `administrator`; a vhost's
//! objects need a permission there (to change them) or `administrator`/`monitoring` (to see
//! them). Refusals are 401 with RabbitMQ's reasons.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;

use super::reply::ApiError;
use super::Shared;
use crate::server::access::{Grant, Permit, Resource, User};

/// The logged-in user of a request.
#[derive(Debug)]
pub(super) struct Caller {
    pub(super) user: User,
}

const MANAGEMENT_TAGS: [&str; 4] = ["administrator", "monitoring", "policymaker", "management"];

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Shared) -> Result<Caller, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let (name, password) = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| {
                t.split_once(':')
                    .map(|(n, p)| (n.to_string(), p.to_string()))
            })
            .ok_or_else(ApiError::login_failed)?;
        let user = api
            .vhosts
            .access
            .login(&name, &password, peer)
            .ok_or_else(ApiError::login_failed)?;
        if !MANAGEMENT_TAGS.iter().any(|t| user.has_tag(t)) {
            return Err(ApiError::unauthorised("Not management user"));
        }
        Ok(Caller { user })
    }
}

impl Caller {
    /// `administrator`, or 401.
    pub(super) fn admin(&self) -> Result<(), ApiError> {
        if self.user.has_tag("administrator") {
            Ok(())
        } else {
            Err(ApiError::unauthorised("Not administrator user"))
        }
    }

    /// Whether it sees every vhost's objects.
    pub(super) fn sees_all(&self) -> bool {
        self.user.has_tag("administrator") || self.user.has_tag("monitoring")
    }

    /// Whether it sees `vhost`'s objects.
    pub(super) fn sees(&self, api: &Shared, vhost: &str) -> bool {
        self.sees_all() || api.vhosts.access.grant(&self.user.name, vhost).is_some()
    }

    /// Its permission in `vhost` (which must exist: 404), or 401.
    pub(super) fn grant(&self, api: &Shared, vhost: &str) -> Result<Grant, ApiError> {
        if api.vhosts.access.vhost(vhost).is_none() {
            return Err(ApiError::not_found());
        }
        api.vhosts
            .access
            .grant(&self.user.name, vhost)
            .ok_or_else(|| ApiError::unauthorised("User not authorised to access virtual host"))
    }

    /// Checks `permit` on `resource` in `vhost`, as the AMQP methods do.
    pub(super) fn may(
        &self,
        api: &Shared,
        vhost: &str,
        permit: Permit,
        resource: Resource<'_>,
    ) -> Result<(), ApiError> {
        self.grant(api, vhost)?
            .check(permit, resource)
            .map_err(ApiError::unauthorised)
    }

    /// 404 unless `vhost` exists, 401 unless it may see it.
    pub(super) fn see(&self, api: &Shared, vhost: &str) -> Result<(), ApiError> {
        if api.vhosts.access.vhost(vhost).is_none() {
            return Err(ApiError::not_found());
        }
        if !self.sees(api, vhost) {
            return Err(ApiError::unauthorised(
                "User not authorised to access virtual host",
            ));
        }
        Ok(())
    }
}
