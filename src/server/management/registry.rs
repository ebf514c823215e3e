//! Vhosts, users, permissions and definitions: `/api/vhosts`, `/api/users`,
//! `/api/permissions`, `/api/definitions`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::reply::{body, created, json, no_content, ApiError, ApiResult};
use super::{stats, Shared};
use crate::server::access::{Permission, User, Vhost};
use crate::server::definitions::{self, Definitions, Tags};

fn vhost_json(vhost: &Vhost, counts: Option<[u64; 2]>) -> Value {
    let [ready, unacked] = counts.unwrap_or([0, 0]);
    let object = json!({
        "name": vhost.name,
        "description": vhost.description,
        "tags": vhost.tags,
        "metadata": {"description": vhost.description, "tags": vhost.tags},
        "default_queue_type": "classic",
        "tracing": false,
        "cluster_state": {super::overview::node(): "running"},
    });
    stats::with_counts(object, ready, unacked)
}

async fn counts(api: &Shared, vhost: &str) -> Result<[u64; 2], ApiError> {
    let queues = api.vhosts.handle(vhost).await?.queue_stats().await?;
    Ok(queues
        .iter()
        .fold([0, 0], |[r, u], q| [r + q.ready, u + q.unacked]))
}

pub(super) async fn vhosts(State(api): State<Shared>, caller: Caller) -> ApiResult {
    let mut all = Vec::new();
    for vhost in api.vhosts.access.vhosts() {
        if caller.sees(&api, &vhost.name) {
            all.push(vhost_json(&vhost, Some(counts(&api, &vhost.name).await?)));
        }
    }
    json(all)
}

pub(super) async fn vhost(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.see(&api, &name)?;
    let vhost = api
        .vhosts
        .access
        .vhost(&name)
        .ok_or_else(ApiError::not_found)?;
    json(vhost_json(&vhost, Some(counts(&api, &name).await?)))
}

#[derive(Deserialize)]
struct VhostBody {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Option<Tags>,
}

pub(super) async fn put_vhost(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let request: VhostBody = body(&bytes)?;
    // A PUT replaces: what it leaves out is reset (RabbitMQ's behaviour).
    let vhost = Vhost {
        name: name.clone(),
        description: request.description.unwrap_or_default(),
        tags: request.tags.map(Tags::list).unwrap_or_default(),
    };
    let new = api.vhosts.access.put_vhost(vhost)?;
    if new {
        // RabbitMQ gives the creating user every permission there when it has none.
        let _ = api
            .vhosts
            .access
            .set_permission(Permission::all(&caller.user.name, &name));
    }
    created(new)
}

pub(super) async fn delete_vhost(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.admin()?;
    if !api.vhosts.access.delete_vhost(&name)? {
        return Err(ApiError::not_found());
    }
    api.clients
        .close_vhost(&name, &format!("vhost '{name}' is deleted"));
    api.vhosts.clear(&name).await?;
    no_content()
}

fn user_json(user: &User) -> Value {
    json!({
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": user.hashing_algorithm,
        "tags": user.tags,
        "limits": {},
    })
}

pub(super) async fn users(State(api): State<Shared>, caller: Caller) -> ApiResult {
    caller.admin()?;
    json(
        api.vhosts
            .access
            .users()
            .iter()
            .map(user_json)
            .collect::<Vec<_>>(),
    )
}

pub(super) async fn user(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.admin()?;
    let user = api
        .vhosts
        .access
        .user(&name)
        .ok_or_else(ApiError::not_found)?;
    json(user_json(&user))
}

#[derive(Deserialize)]
struct UserBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    hashing_algorithm: Option<String>,
    #[serde(default)]
    tags: Option<Tags>,
}

pub(super) async fn put_user(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let request: UserBody = body(&bytes)?;
    let tags = request
        .tags
        .ok_or_else(|| ApiError::bad_request("tags_not_present"))?
        .list();
    let existing = api.vhosts.access.user(&name);
    let user = match (request.password, request.password_hash) {
        (Some(password), _) => {
            let mut user = User::with_password(&name, &password, &[]);
            user.tags = tags;
            user
        }
        (None, Some(hash)) => User {
            name: name.clone(),
            password_hash: hash,
            hashing_algorithm: request
                .hashing_algorithm
                .unwrap_or_else(|| crate::server::access::password::SHA256.into()),
            tags,
        },
        (None, None) => match existing {
            Some(mut user) => {
                user.tags = tags;
                user
            }
            None => User {
                name: name.clone(),
                password_hash: String::new(),
                hashing_algorithm: crate::server::access::password::SHA256.into(),
                tags,
            },
        },
    };
    created(api.vhosts.access.put_user(user)?)
}

pub(super) async fn delete_user(
    State(api): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.admin()?;
    if api.vhosts.access.delete_user(&name)? {
        no_content()
    } else {
        Err(ApiError::not_found())
    }
}

pub(super) async fn permissions(State(api): State<Shared>, caller: Caller) -> ApiResult {
    caller.admin()?;
    json(api.vhosts.access.permissions())
}

pub(super) async fn vhost_permissions(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.admin()?;
    api.vhosts
        .access
        .vhost(&vhost)
        .ok_or_else(ApiError::not_found)?;
    let all = api.vhosts.access.permissions();
    json(
        all.into_iter()
            .filter(|p| p.vhost == vhost)
            .collect::<Vec<_>>(),
    )
}

pub(super) async fn user_permissions(
    State(api): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult {
    caller.admin()?;
    api.vhosts
        .access
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    let all = api.vhosts.access.permissions();
    json(
        all.into_iter()
            .filter(|p| p.user == user)
            .collect::<Vec<_>>(),
    )
}

pub(super) async fn permission(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult {
    caller.admin()?;
    let found = api
        .vhosts
        .access
        .permissions()
        .into_iter()
        .find(|p| p.vhost == vhost && p.user == user)
        .ok_or_else(ApiError::not_found)?;
    json(found)
}

#[derive(Deserialize)]
struct PermissionBody {
    configure: String,
    write: String,
    read: String,
}

pub(super) async fn put_permission(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let request: PermissionBody = body(&bytes)?;
    if api.vhosts.access.vhost(&vhost).is_none() || api.vhosts.access.user(&user).is_none() {
        return Err(ApiError::bad_request(format!(
            "no user {user:?} or no vhost {vhost:?}"
        )));
    }
    let new = api.vhosts.access.set_permission(Permission {
        user,
        vhost,
        configure: request.configure,
        write: request.write,
        read: request.read,
    })?;
    created(new)
}

pub(super) async fn delete_permission(
    State(api): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult {
    caller.admin()?;
    if api.vhosts.access.clear_permission(&user, &vhost)? {
        no_content()
    } else {
        Err(ApiError::not_found())
    }
}

pub(super) async fn export_all(State(api): State<Shared>, caller: Caller) -> ApiResult {
    caller.admin()?;
    json(Definitions::export(&api.vhosts).await?)
}

pub(super) async fn export_vhost(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.admin()?;
    api.vhosts
        .access
        .vhost(&vhost)
        .ok_or_else(ApiError::not_found)?;
    let mut all = Definitions::export(&api.vhosts).await?;
    definitions::only_vhost(&mut all, &vhost);
    json(all)
}

/// Parses definitions, with `not_json` for what is not JSON and the field at fault
/// otherwise.
fn parse(bytes: &[u8]) -> Result<Definitions, ApiError> {
    serde_json::from_slice::<Value>(bytes).map_err(|_| ApiError::bad_request("not_json"))?;
    Definitions::parse(std::str::from_utf8(bytes).unwrap_or_default()).map_err(ApiError::from)
}

pub(super) async fn import_all(
    State(api): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    parse(&bytes)?.import(&api.vhosts).await?;
    no_content()
}

pub(super) async fn import_vhost(
    State(api): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    api.vhosts
        .access
        .vhost(&vhost)
        .ok_or_else(ApiError::not_found)?;
    let mut definitions = parse(&bytes)?;
    for q in &mut definitions.queues {
        q.vhost = vhost.clone();
    }
    for e in &mut definitions.exchanges {
        e.vhost = vhost.clone();
    }
    for b in &mut definitions.bindings {
        b.vhost = vhost.clone();
    }
    definitions.import(&api.vhosts).await?;
    no_content()
}
