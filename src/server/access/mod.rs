//! Who may do what on a server, as RabbitMQ's internal authentication backend decides it:
//! virtual hosts, users (salted password hashes, tags) and per-vhost permissions (configure,
//! write and read regular expressions).
//!
//! - A user logs in with its password; `guest` only from loopback (RabbitMQ's
//!   `loopback_users`).
//! - `connection.open` needs the vhost to exist (530 `vhost NAME not found`) and the user to
//!   have a permission there (530 `access to vhost 'NAME' refused for user 'USER'`).
//! - Each method checks one permission on one resource, with RabbitMQ's 403 text
//!   (`access to exchange 'x' in vhost '/' refused for user 'u'`): see [`Permit`].
//!   A regular expression matches anywhere in the name (`re:run`, unanchored); the empty one
//!   matches nothing.
//!
//! Over sqlite:// the registry lives in the broker file (see `store.rs`) and survives
//! restarts; over memory:// it comes from flags, a users file or definitions at start.

pub mod password;
#[cfg(feature = "sqlite")]
mod store;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default virtual host, which a new server has.
pub const DEFAULT_VHOST: &str = "/";

/// A virtual host: a separate set of exchanges, queues and bindings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vhost {
    /// Its name (`/` is the default one).
    pub name: String,
    /// What it is for (RabbitMQ's `metadata.description`).
    #[serde(default)]
    pub description: String,
    /// Its tags (RabbitMQ's `metadata.tags`).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A user: a name, a salted password hash and tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its name.
    pub name: String,
    /// `base64(salt ++ hash)` (see [`password`]); empty: it cannot log in with a password.
    pub password_hash: String,
    /// RabbitMQ's name of the scheme, `rabbit_password_hashing_sha256` by default.
    pub hashing_algorithm: String,
    /// RabbitMQ's tags: `administrator`, `monitoring`, `policymaker`, `management`, or any.
    pub tags: Vec<String>,
}

impl User {
    /// A user with `password` hashed under RabbitMQ's SHA-256 scheme.
    pub fn with_password(name: &str, password: &str, tags: &[&str]) -> User {
        User {
            name: name.into(),
            password_hash: password::hash(password),
            hashing_algorithm: password::SHA256.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// Whether it has `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// A user's permission in a vhost: three regular expressions over resource names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// The user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// Declaring and deleting (exchanges, queues).
    pub configure: String,
    /// Publishing to an exchange, binding a queue or exchange (the destination).
    pub write: String,
    /// Consuming, getting and purging (queues), binding from an exchange (the source).
    pub read: String,
}

impl Permission {
    /// Everything (`.*` three times), what RabbitMQ gives the default user.
    pub fn all(user: &str, vhost: &str) -> Permission {
        Permission {
            user: user.into(),
            vhost: vhost.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

/// The three kinds of access a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// `configure`: declare, delete.
    Configure,
    /// `write`: publish to an exchange; be the destination of a binding.
    Write,
    /// `read`: consume, get, purge; be the source of a binding.
    Read,
}

/// What a permission is checked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// An exchange (`""`, the default exchange, is checked as `amq.default`).
    Exchange(&'a str),
    /// A queue.
    Queue(&'a str),
}

/// A user's compiled permission in one vhost, kept by a connection and refreshed when the
/// registry changes (see [`Access::generation`]).
#[derive(Clone, Debug)]
pub struct Grant {
    user: String,
    vhost: String,
    configure: Pattern,
    write: Pattern,
    read: Pattern,
}

/// One permission expression, compiled.
#[derive(Clone, Debug)]
enum Pattern {
    /// `.*` (or `^.*$`...): every name, without running a regular expression.
    All,
    /// The empty expression: no name (RabbitMQ's special case).
    Nothing,
    Regex(regex::Regex),
}

impl Pattern {
    fn new(expression: &str) -> Pattern {
        match expression {
            "" => Pattern::Nothing,
            ".*" | "^.*" | ".*$" | "^.*$" => Pattern::All,
            // One that does not compile was refused when it was set.
            other => regex::Regex::new(other).map_or(Pattern::Nothing, Pattern::Regex),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Nothing => false,
            Pattern::Regex(r) => r.is_match(name),
        }
    }
}

impl Grant {
    fn of(permission: &Permission) -> Grant {
        Grant {
            user: permission.user.clone(),
            vhost: permission.vhost.clone(),
            configure: Pattern::new(&permission.configure),
            write: Pattern::new(&permission.write),
            read: Pattern::new(&permission.read),
        }
    }

    /// `Ok` if the permission allows `permit` on `resource`; otherwise RabbitMQ's 403 text.
    pub fn check(&self, permit: Permit, resource: Resource<'_>) -> std::result::Result<(), String> {
        let (kind, name) = match resource {
            Resource::Exchange("") => ("exchange", "amq.default"),
            Resource::Exchange(name) => ("exchange", name),
            Resource::Queue(name) => ("queue", name),
        };
        let pattern = match permit {
            Permit::Configure => &self.configure,
            Permit::Write => &self.write,
            Permit::Read => &self.read,
        };
        if pattern.matches(name) {
            return Ok(());
        }
        // RabbitMQ 3.10's text (later versions put the permission's name in front).
        Err(format!(
            "access to {kind} '{name}' in vhost '{}' refused for user '{}'",
            self.vhost, self.user
        ))
    }
}

/// Why a connection may not open a vhost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VhostRefusal {
    /// It does not exist.
    NotFound(String),
    /// The user has no permission there.
    Refused(String),
}

impl std::fmt::Display for VhostRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VhostRefusal::NotFound(text) | VhostRefusal::Refused(text) => f.write_str(text),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Registry {
    vhosts: BTreeMap<String, Vhost>,
    users: BTreeMap<String, User>,
    /// By (user, vhost).
    permissions: BTreeMap<(String, String), Permission>,
}

/// The vhosts, users and permissions of a server, shared by its connections and its
/// management API. Every change is written through to the store (sqlite://) before it
/// is visible.
#[derive(Debug)]
pub struct Access {
    registry: RwLock<Registry>,
    generation: AtomicU64,
    #[cfg(feature = "sqlite")]
    store: Option<store::Store>,
}

impl Access {
    /// A registry with the default vhost and `users`, each an administrator with every
    /// permission on it (what `carrot serve --user` gives); RabbitMQ's `guest` / `guest`
    /// when `users` is empty.
    pub fn new(users: &[(String, String)]) -> Access {
        let access = Access::empty();
        {
            let mut r = access.registry.write();
            seed(&mut r, users);
        }
        access
    }

    fn empty() -> Access {
        Access {
            registry: RwLock::new(Registry::default()),
            generation: AtomicU64::new(0),
            #[cfg(feature = "sqlite")]
            store: None,
        }
    }

    /// The registry kept in the broker file at `path` (sqlite://): loaded if the file has
    /// one; otherwise seeded as [`Access::new`] does and saved. `users` given here (the
    /// server's flags) are added to a loaded registry, or get their password changed, as
    /// administrators with every permission on `/` if they had none.
    #[cfg(feature = "sqlite")]
    pub fn stored(path: &std::path::Path, users: &[(String, String)]) -> Result<Access> {
        let store = store::Store::open(path)?;
        let mut registry = Registry::default();
        let loaded = store.load(&mut registry)?;
        if loaded {
            for (name, password) in users {
                add_flag_user(&mut registry, name, password);
            }
        } else {
            seed(&mut registry, users);
        }
        store.save(&registry)?;
        let mut access = Access::empty();
        *access.registry.get_mut() = registry;
        access.store = Some(store);
        Ok(access)
    }

    /// A number that changes with every change of the registry: a connection that cached a
    /// [`Grant`] under another one asks again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The user of good credentials, if it may connect from `peer` (`guest` from loopback
    /// only, as RabbitMQ's `loopback_users`).
    pub fn login(&self, name: &str, secret: &str, peer: IpAddr) -> Option<User> {
        let registry = self.registry.read();
        let user = registry.users.get(name)?;
        if !password::verify(&user.hashing_algorithm, &user.password_hash, secret) {
            return None;
        }
        if name == "guest" && !peer.is_loopback() {
            return None;
        }
        Some(user.clone())
    }

    /// The user's permission in `vhost`, or why it may not open it (RabbitMQ's 530 texts).
    pub fn open_vhost(&self, user: &str, vhost: &str) -> std::result::Result<Grant, VhostRefusal> {
        let registry = self.registry.read();
        if !registry.vhosts.contains_key(vhost) {
            return Err(VhostRefusal::NotFound(format!("vhost {vhost} not found")));
        }
        match registry
            .permissions
            .get(&(user.to_string(), vhost.to_string()))
        {
            Some(permission) => Ok(Grant::of(permission)),
            None => Err(VhostRefusal::Refused(format!(
                "access to vhost '{vhost}' refused for user '{user}'"
            ))),
        }
    }

    /// The user's permission in `vhost`, if it has one.
    pub fn grant(&self, user: &str, vhost: &str) -> Option<Grant> {
        self.registry
            .read()
            .permissions
            .get(&(user.to_string(), vhost.to_string()))
            .map(Grant::of)
    }

    /// Every vhost, by name.
    pub fn vhosts(&self) -> Vec<Vhost> {
        self.registry.read().vhosts.values().cloned().collect()
    }

    /// One vhost.
    pub fn vhost(&self, name: &str) -> Option<Vhost> {
        self.registry.read().vhosts.get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        self.registry.read().users.values().cloned().collect()
    }

    /// One user.
    pub fn user(&self, name: &str) -> Option<User> {
        self.registry.read().users.get(name).cloned()
    }

    /// Every permission, by user then vhost.
    pub fn permissions(&self) -> Vec<Permission> {
        self.registry.read().permissions.values().cloned().collect()
    }

    /// Creates or updates a vhost; returns whether it is new.
    pub fn put_vhost(&self, vhost: Vhost) -> Result<bool> {
        check_name("vhost", &vhost.name)?;
        self.change(|r| Ok(r.vhosts.insert(vhost.name.clone(), vhost).is_none()))
    }

    /// Deletes a vhost and the permissions in it; returns whether it existed. (Its
    /// exchanges and queues are the server's to drop.)
    pub fn delete_vhost(&self, name: &str) -> Result<bool> {
        self.change(|r| {
            let existed = r.vhosts.remove(name).is_some();
            r.permissions.retain(|(_, v), _| v != name);
            Ok(existed)
        })
    }

    /// Creates or updates a user; returns whether it is new. Its hash must be well formed
    /// for its scheme.
    pub fn put_user(&self, user: User) -> Result<bool> {
        check_name("user", &user.name)?;
        if !password::is_known(&user.hashing_algorithm) {
            return Err(Error::InvalidArgument(format!(
                "unknown hashing algorithm {:?} for user {:?}: use {} or {}",
                user.hashing_algorithm,
                user.name,
                password::SHA256,
                password::SHA512
            )));
        }
        if !password::is_well_formed(&user.hashing_algorithm, &user.password_hash) {
            return Err(Error::InvalidArgument(format!(
                "the password_hash of user {:?} is not base64 of a 4-byte salt and a {} hash",
                user.name, user.hashing_algorithm
            )));
        }
        self.change(|r| Ok(r.users.insert(user.name.clone(), user).is_none()))
    }

    /// Deletes a user and its permissions; returns whether it existed.
    pub fn delete_user(&self, name: &str) -> Result<bool> {
        self.change(|r| {
            let existed = r.users.remove(name).is_some();
            r.permissions.retain(|(u, _), _| u != name);
            Ok(existed)
        })
    }

    /// Sets a user's permission in a vhost (both must exist; each expression must compile);
    /// returns whether it is new.
    pub fn set_permission(&self, permission: Permission) -> Result<bool> {
        for (what, pattern) in [
            ("configure", &permission.configure),
            ("write", &permission.write),
            ("read", &permission.read),
        ] {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(Error::InvalidArgument(format!(
                    "the {what} permission {pattern:?} is not a regular expression: {e}"
                )));
            }
        }
        self.change(|r| {
            if !r.users.contains_key(&permission.user) {
                return Err(Error::NotFound(format!("no user {:?}", permission.user)));
            }
            if !r.vhosts.contains_key(&permission.vhost) {
                return Err(Error::NotFound(format!("no vhost {:?}", permission.vhost)));
            }
            let key = (permission.user.clone(), permission.vhost.clone());
            Ok(r.permissions.insert(key, permission).is_none())
        })
    }

    /// Removes a user's permission in a vhost; returns whether it existed.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> Result<bool> {
        self.change(|r| {
            Ok(r.permissions
                .remove(&(user.to_string(), vhost.to_string()))
                .is_some())
        })
    }

    /// Applies a change to a copy, saves it (sqlite://), then makes it visible.
    fn change<T>(&self, edit: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        let mut registry = self.registry.write();
        let mut next = registry.clone();
        let out = edit(&mut next)?;
        #[cfg(feature = "sqlite")]
        if let Some(store) = &self.store {
            store.save(&next)?;
        }
        *registry = next;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(out)
    }
}

/// The default vhost, and `users` (or guest) as administrators with every permission there.
fn seed(registry: &mut Registry, users: &[(String, String)]) {
    registry.vhosts.insert(
        DEFAULT_VHOST.into(),
        Vhost {
            name: DEFAULT_VHOST.into(),
            description: "Default virtual host".into(),
            tags: Vec::new(),
        },
    );
    if users.is_empty() {
        add_flag_user(registry, "guest", "guest");
    }
    for (name, password) in users {
        add_flag_user(registry, name, password);
    }
}

fn add_flag_user(registry: &mut Registry, name: &str, password: &str) {
    let tags = registry
        .users
        .get(name)
        .map(|u| u.tags.clone())
        .unwrap_or_else(|| vec!["administrator".into()]);
    let mut user = User::with_password(name, password, &[]);
    user.tags = tags;
    registry.users.insert(name.into(), user);
    let has_any = registry.permissions.keys().any(|(u, _)| u == name);
    if !has_any && registry.vhosts.contains_key(DEFAULT_VHOST) {
        registry.permissions.insert(
            (name.into(), DEFAULT_VHOST.into()),
            Permission::all(name, DEFAULT_VHOST),
        );
    }
}

/// Names are non-empty UTF-8 of at most 255 bytes (AMQP short strings), without control
/// characters.
fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} name {name:?} must be 1 to 255 bytes without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn guest_logs_in_from_loopback_only_and_wrong_passwords_are_refused() {
        let access = Access::new(&[]);
        assert!(access.login("guest", "guest", loopback()).is_some());
        assert!(access
            .login("guest", "guest", "192.0.2.1".parse().unwrap())
            .is_none());
        assert!(access.login("guest", "nope", loopback()).is_none());
        assert!(access.login("nobody", "guest", loopback()).is_none());
    }

    #[test]
    fn vhost_refusals_are_rabbitmqs() {
        let access = Access::new(&[("app".into(), "pw".into())]);
        access
            .put_vhost(Vhost {
                name: "prod".into(),
                description: String::new(),
                tags: vec![],
            })
            .unwrap();
        assert_eq!(
            access.open_vhost("app", "nowhere").unwrap_err(),
            VhostRefusal::NotFound("vhost nowhere not found".into())
        );
        assert_eq!(
            access.open_vhost("app", "prod").unwrap_err(),
            VhostRefusal::Refused("access to vhost 'prod' refused for user 'app'".into())
        );
        assert!(access.open_vhost("app", "/").is_ok());
        assert!(access.user("app").unwrap().has_tag("administrator"));
    }

    #[test]
    fn permissions_match_anywhere_and_the_empty_one_matches_nothing() {
        let access = Access::new(&[("app".into(), "pw".into())]);
        access
            .set_permission(Permission {
                user: "app".into(),
                vhost: "/".into(),
                configure: "^app\\.".into(),
                write: "".into(),
                read: "log".into(),
            })
            .unwrap();
        let grant = access.grant("app", "/").unwrap();
        assert!(grant
            .check(Permit::Configure, Resource::Queue("app.q"))
            .is_ok());
        assert_eq!(
            grant
                .check(Permit::Configure, Resource::Queue("other"))
                .unwrap_err(),
            "access to queue 'other' in vhost '/' refused for user 'app'"
        );
        assert_eq!(
            grant
                .check(Permit::Write, Resource::Exchange(""))
                .unwrap_err(),
            "access to exchange 'amq.default' in vhost '/' refused for user 'app'"
        );
        assert!(grant
            .check(Permit::Read, Resource::Queue("a-log-b"))
            .is_ok());
        assert!(access
            .set_permission(Permission {
                user: "app".into(),
                vhost: "/".into(),
                configure: "(".into(),
                write: "".into(),
                read: "".into(),
            })
            .is_err());
        assert!(access
            .set_permission(Permission::all("app", "nowhere"))
            .is_err());
    }

    #[test]
    fn deleting_a_user_or_vhost_takes_its_permissions_and_bumps_the_generation() {
        let access = Access::new(&[]);
        let before = access.generation();
        access.delete_user("guest").unwrap();
        assert!(access.generation() > before);
        assert!(access.permissions().is_empty());
        assert!(access.login("guest", "guest", loopback()).is_none());
        assert!(access
            .put_user(User {
                name: "x".into(),
                password_hash: "AAAA".into(),
                hashing_algorithm: password::SHA256.into(),
                tags: vec![],
            })
            .is_err());
    }
}
