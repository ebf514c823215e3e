//! RabbitMQ's definitions: the JSON of `rabbitmqctl export_definitions` and the management
//! API's `/api/definitions` (users, vhosts, permissions, exchanges, queues, bindings), read
//! at start (`carrot serve --definitions FILE`), through the API, and written by both, so
//! that a setup moves between RabbitMQ and carrot serve in both directions.
//!
//! Import adds and updates, never deletes (as RabbitMQ's). Sections carrot has no use for
//! (policies, parameters, topic permissions) are accepted when empty and refused otherwise,
//! so that nothing is silently dropped. A user may carry `password` (clear text, hashed
//! now) instead of `password_hash`.

use serde::{Deserialize, Deserializer, Serialize};

use super::access::{password, Access, Permission, User, Vhost};
use super::vhosts::Vhosts;
use crate::entity::{ExchangeSpec, ExchangeType, QueueSpec};
use crate::error::{Error, Result};
use crate::table::FieldTable;

/// A whole definitions document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    /// The version of the server that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    /// The same, under its newer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    /// The product that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserDefinition>,
    /// Virtual hosts.
    #[serde(default)]
    pub vhosts: Vec<VhostDefinition>,
    /// Permissions.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Topic permissions (must be empty: carrot has none).
    #[serde(default)]
    pub topic_permissions: Vec<serde_json::Value>,
    /// Runtime parameters (must be empty).
    #[serde(default)]
    pub parameters: Vec<serde_json::Value>,
    /// Global parameters (kept out: RabbitMQ's cluster name and the like).
    #[serde(default)]
    pub global_parameters: Vec<serde_json::Value>,
    /// Policies (must be empty).
    #[serde(default)]
    pub policies: Vec<serde_json::Value>,
    /// Queues.
    #[serde(default)]
    pub queues: Vec<QueueDefinition>,
    /// Exchanges.
    #[serde(default)]
    pub exchanges: Vec<ExchangeDefinition>,
    /// Bindings.
    #[serde(default)]
    pub bindings: Vec<BindingDefinition>,
}

/// A user, as RabbitMQ exports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserDefinition {
    /// Its name.
    pub name: String,
    /// `base64(salt ++ hash)`.
    #[serde(default)]
    pub password_hash: String,
    /// The password in clear (import only), hashed on import.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The hashing scheme.
    #[serde(default = "sha256")]
    pub hashing_algorithm: String,
    /// Its tags: a list, or (older RabbitMQ) one comma-separated string.
    #[serde(deserialize_with = "tags", default)]
    pub tags: Vec<String>,
    /// Limits (kept as given, not enforced).
    #[serde(default)]
    pub limits: serde_json::Value,
}

/// A vhost, as RabbitMQ exports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VhostDefinition {
    /// Its name.
    pub name: String,
    /// Its description and tags.
    #[serde(default)]
    pub metadata: VhostMetadata,
    /// Its description (the management API's field).
    #[serde(default, skip_serializing)]
    pub description: Option<String>,
    /// Its tags (the management API's field).
    #[serde(default, skip_serializing, deserialize_with = "optional_tags")]
    pub tags: Option<Vec<String>>,
    /// Limits (kept as given, not enforced).
    #[serde(default)]
    pub limits: serde_json::Value,
    /// The default queue type (accepted, classic only).
    #[serde(default, skip_serializing)]
    pub default_queue_type: Option<String>,
}

/// A vhost's metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VhostMetadata {
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Its tags.
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
}

/// A queue, as RabbitMQ exports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueDefinition {
    /// Its name.
    pub name: String,
    /// Its vhost (absent in a one-vhost document: the vhost imported into).
    #[serde(default)]
    pub vhost: String,
    /// Whether it survives a restart.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Whether it goes with its last consumer.
    #[serde(default)]
    pub auto_delete: bool,
    /// Its arguments (`x-message-ttl`, `x-queue-type`, ...).
    #[serde(default)]
    pub arguments: FieldTable,
}

/// An exchange, as RabbitMQ exports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExchangeDefinition {
    /// Its name.
    pub name: String,
    /// Its vhost (absent in a one-vhost document: the vhost imported into).
    #[serde(default)]
    pub vhost: String,
    /// `direct`, `fanout`, `topic` or `headers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it survives a restart.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Whether it goes with its last binding.
    #[serde(default)]
    pub auto_delete: bool,
    /// Whether only exchanges may publish to it.
    #[serde(default)]
    pub internal: bool,
    /// Its arguments (`alternate-exchange`, ...).
    #[serde(default)]
    pub arguments: FieldTable,
}

/// A binding, as RabbitMQ exports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BindingDefinition {
    /// The exchange it routes from.
    pub source: String,
    /// Its vhost (absent in a one-vhost document: the vhost imported into).
    #[serde(default)]
    pub vhost: String,
    /// The queue or exchange it routes to.
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    /// Its key.
    #[serde(default)]
    pub routing_key: String,
    /// Its arguments (headers exchanges).
    #[serde(default)]
    pub arguments: FieldTable,
}

fn sha256() -> String {
    password::SHA256.into()
}

fn yes() -> bool {
    true
}

/// Tags as a list or (older RabbitMQ, and its API) one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Tags {
    List(Vec<String>),
    Text(String),
}

impl Tags {
    /// The tags, trimmed, empty ones left out.
    pub(super) fn list(self) -> Vec<String> {
        match self {
            Tags::List(list) => list,
            Tags::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

fn tags<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Tags::deserialize(d)?.list())
}

fn optional_tags<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<Tags>::deserialize(d)?.map(Tags::list))
}

impl UserDefinition {
    /// The user it defines (hashing a clear-text `password`).
    pub fn user(&self) -> User {
        match &self.password {
            Some(clear) => User {
                name: self.name.clone(),
                password_hash: password::hash(clear),
                hashing_algorithm: password::SHA256.into(),
                tags: self.tags.clone(),
            },
            None => User {
                name: self.name.clone(),
                password_hash: self.password_hash.clone(),
                hashing_algorithm: self.hashing_algorithm.clone(),
                tags: self.tags.clone(),
            },
        }
    }
}

impl VhostDefinition {
    /// The vhost it defines.
    pub fn vhost(&self) -> Vhost {
        Vhost {
            name: self.name.clone(),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| self.metadata.description.clone()),
            tags: self
                .tags
                .clone()
                .unwrap_or_else(|| self.metadata.tags.clone()),
        }
    }
}

/// An exchange type from its name (404-free: an unknown one is an invalid argument).
pub(super) fn exchange_type(kind: &str) -> Result<ExchangeType> {
    match kind {
        "direct" => Ok(ExchangeType::Direct),
        "fanout" => Ok(ExchangeType::Fanout),
        "topic" => Ok(ExchangeType::Topic),
        "headers" => Ok(ExchangeType::Headers),
        other => Err(Error::InvalidArgument(format!(
            "invalid exchange type '{other}': use direct, fanout, topic or headers"
        ))),
    }
}

/// The name of an exchange type.
pub(super) fn type_name(kind: ExchangeType) -> &'static str {
    match kind {
        ExchangeType::Direct => "direct",
        ExchangeType::Fanout => "fanout",
        ExchangeType::Topic => "topic",
        ExchangeType::Headers => "headers",
    }
}

impl Definitions {
    /// Parses a definitions document, with the line and column of what is wrong.
    pub fn parse(text: &str) -> Result<Definitions> {
        serde_json::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("not RabbitMQ definitions JSON: {e}")))
    }

    /// Checks everything before anything changes: names, hashes, regular expressions,
    /// exchange types, and that each entity's vhost is defined here or exists.
    fn check(&self, access: &Access) -> Result<()> {
        for (section, values) in [
            ("policies", &self.policies),
            ("parameters", &self.parameters),
            ("topic_permissions", &self.topic_permissions),
        ] {
            if !values.is_empty() {
                return Err(Error::Unsupported(format!(
                    "carrot serve has no {section}: remove them from the definitions (they would be lost)"
                )));
            }
        }
        let known = |vhost: &str| {
            self.vhosts.iter().any(|v| v.name == vhost) || access.vhost(vhost).is_some()
        };
        for vhost in self
            .queues
            .iter()
            .map(|q| &q.vhost)
            .chain(self.exchanges.iter().map(|e| &e.vhost))
            .chain(self.bindings.iter().map(|b| &b.vhost))
            .chain(self.permissions.iter().map(|p| &p.vhost))
        {
            if !known(vhost) {
                return Err(Error::NotFound(format!(
                    "vhost {vhost} is used in the definitions but neither defined there nor existing"
                )));
            }
        }
        for user in &self.users {
            let user = user.user();
            if !password::is_known(&user.hashing_algorithm)
                || !password::is_well_formed(&user.hashing_algorithm, &user.password_hash)
            {
                return Err(Error::InvalidArgument(format!(
                    "user {:?}: password_hash is not a {} hash",
                    user.name, user.hashing_algorithm
                )));
            }
        }
        for exchange in &self.exchanges {
            exchange_type(&exchange.kind)?;
        }
        for binding in &self.bindings {
            if !matches!(binding.destination_type.as_str(), "queue" | "exchange") {
                return Err(Error::InvalidArgument(format!(
                    "binding destination_type {:?} must be queue or exchange",
                    binding.destination_type
                )));
            }
        }
        Ok(())
    }

    /// Imports into a server's registry and vhosts: vhosts, users and permissions first,
    /// then exchanges, queues and bindings. Nothing changes if a check fails first.
    pub(super) async fn import(&self, vhosts: &Vhosts) -> Result<()> {
        let access = &vhosts.access;
        self.check(access)?;
        for vhost in &self.vhosts {
            access.put_vhost(vhost.vhost())?;
        }
        for user in &self.users {
            access.put_user(user.user())?;
        }
        for permission in &self.permissions {
            access.set_permission(permission.clone())?;
        }
        for e in &self.exchanges {
            let conn = vhosts.handle(&e.vhost).await?;
            let mut spec = ExchangeSpec::new(&e.name, exchange_type(&e.kind)?);
            spec.durable = e.durable;
            spec.auto_delete = e.auto_delete;
            spec.internal = e.internal;
            spec.arguments = e.arguments.clone();
            conn.declare_exchange(&spec).await?;
        }
        for q in &self.queues {
            let conn = vhosts.handle(&q.vhost).await?;
            let mut spec = QueueSpec::new(&q.name).durable(q.durable);
            spec.auto_delete = q.auto_delete;
            spec.arguments = q.arguments.clone();
            conn.declare_queue(&spec).await?;
        }
        for b in &self.bindings {
            let conn = vhosts.handle(&b.vhost).await?;
            if b.destination_type == "queue" {
                conn.bind(&b.destination, &b.source, &b.routing_key, &b.arguments)
                    .await?;
            } else {
                conn.bind_exchange(&b.destination, &b.source, &b.routing_key, &b.arguments)
                    .await?;
            }
        }
        Ok(())
    }

    /// Everything a server has, as RabbitMQ exports it (without exclusive queues, the
    /// default exchange, the `amq.*` exchanges and the default exchange's bindings).
    pub(super) async fn export(vhosts: &Vhosts) -> Result<Definitions> {
        let access = &vhosts.access;
        let mut definitions = Definitions {
            rabbit_version: Some(crate::server::RABBITMQ_VERSION.into()),
            rabbitmq_version: Some(crate::server::RABBITMQ_VERSION.into()),
            product_name: Some("carrot".into()),
            product_version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Definitions::default()
        };
        definitions.users = access
            .users()
            .into_iter()
            .map(|u| UserDefinition {
                name: u.name,
                password_hash: u.password_hash,
                password: None,
                hashing_algorithm: u.hashing_algorithm,
                tags: u.tags,
                limits: serde_json::json!({}),
            })
            .collect();
        definitions.permissions = access.permissions();
        for vhost in access.vhosts() {
            let topology = vhosts.handle(&vhost.name).await?.topology().await?;
            for e in topology.exchanges {
                if e.name.is_empty() || e.name.starts_with("amq.") {
                    continue;
                }
                definitions.exchanges.push(ExchangeDefinition {
                    name: e.name,
                    vhost: vhost.name.clone(),
                    kind: type_name(e.kind).into(),
                    durable: e.durable,
                    auto_delete: e.auto_delete,
                    internal: e.internal,
                    arguments: e.arguments,
                });
            }
            for q in topology.queues {
                if q.spec.exclusive {
                    continue;
                }
                definitions.queues.push(QueueDefinition {
                    name: q.spec.name,
                    vhost: vhost.name.clone(),
                    durable: q.spec.durable,
                    auto_delete: q.spec.auto_delete,
                    arguments: q.spec.arguments,
                });
            }
            for b in topology.bindings {
                definitions.bindings.push(BindingDefinition {
                    source: b.source,
                    vhost: vhost.name.clone(),
                    destination: b.destination,
                    destination_type: if b.destination_is_queue {
                        "queue"
                    } else {
                        "exchange"
                    }
                    .into(),
                    routing_key: b.routing_key,
                    arguments: b.arguments,
                });
            }
            definitions.vhosts.push(VhostDefinition {
                name: vhost.name,
                metadata: VhostMetadata {
                    description: vhost.description,
                    tags: vhost.tags,
                },
                description: None,
                tags: None,
                limits: serde_json::json!([]),
                default_queue_type: None,
            });
        }
        Ok(definitions)
    }
}

/// Keeps only the queues of `definitions` by vhost (a helper for the API's per-vhost
/// export).
pub(super) fn only_vhost(definitions: &mut Definitions, vhost: &str) {
    definitions.queues.retain(|q| q.vhost == vhost);
    definitions.exchanges.retain(|e| e.vhost == vhost);
    definitions.bindings.retain(|b| b.vhost == vhost);
    definitions.vhosts.retain(|v| v.name == vhost);
    definitions.permissions.retain(|p| p.vhost == vhost);
    definitions.users.clear();
}
