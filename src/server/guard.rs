//! A connection's user in its vhost: the permission checks of its methods, with RabbitMQ's
//! 403 ACCESS_REFUSED texts, on a compiled [`Grant`] that is fetched again only when the
//! registry changed (so a publish costs one pattern match, none for `.*`).

use std::sync::Arc;

use super::access::{Access, Grant, Permit, Resource};
use super::reply::Refusal;

/// What a connection checks its methods against.
#[derive(Debug)]
pub(super) struct Guard {
    access: Arc<Access>,
    user: String,
    vhost: String,
    /// The grant and the registry generation it was read under.
    grant: parking_lot::Mutex<(u64, Option<Grant>)>,
}

impl Guard {
    pub(super) fn new(access: Arc<Access>, user: &str, vhost: &str, grant: Grant) -> Guard {
        let generation = access.generation();
        Guard {
            access,
            user: user.into(),
            vhost: vhost.into(),
            grant: parking_lot::Mutex::new((generation, Some(grant))),
        }
    }

    /// The vhost the connection opened.
    pub(super) fn vhost(&self) -> &str {
        &self.vhost
    }

    /// `Ok` if the user may `permit` on `resource`; a channel-closing 403 otherwise.
    pub(super) fn check(&self, permit: Permit, resource: Resource<'_>) -> Result<(), Refusal> {
        let generation = self.access.generation();
        let mut cached = self.grant.lock();
        if cached.0 != generation {
            *cached = (generation, self.access.grant(&self.user, &self.vhost));
        }
        match &cached.1 {
            Some(grant) => grant
                .check(permit, resource)
                .map_err(|text| Refusal::channel(403, text)),
            // The permission was cleared, or the user deleted, while connected.
            None => Err(Refusal::channel(
                403,
                format!(
                    "access to vhost '{}' refused for user '{}'",
                    self.vhost, self.user
                ),
            )),
        }
    }
}
