//! What `carrot definitions` and `carrot vhost` do on a broker without a server in front:
//! the registry and the entities of a sqlite:// file (or of a memory:// broker of this
//! process). A running `carrot serve` reads its file's registry at start: change a running
//! server through its management API instead.

use std::sync::Arc;

use super::access::{Access, Vhost};
use super::definitions::Definitions;
use super::vhosts::Vhosts;
use crate::error::{Error, Result};
use crate::url::BrokerUrl;

/// A broker's vhosts, users, permissions and entities, for administration.
#[derive(Debug)]
pub struct Admin {
    vhosts: Arc<Vhosts>,
    _broker: crate::BrokerConnection,
}

impl Admin {
    /// The broker of `url`: `sqlite://PATH` (its registry is made if the file has none) or
    /// `memory://NAME`; any other URL is an [`Error::InvalidArgument`] that says what to use.
    pub async fn open(url: &str) -> Result<Admin> {
        let parsed = BrokerUrl::parse(url)?;
        let access = match &parsed {
            #[cfg(feature = "sqlite")]
            BrokerUrl::Sqlite { path } => {
                let broker = crate::BrokerConnection::connect(url).await?;
                let access = Access::stored(path, &[])?;
                return Ok(Admin {
                    vhosts: Arc::new(Vhosts::new(parsed.clone(), Arc::new(access))),
                    _broker: broker,
                });
            }
            BrokerUrl::Memory { .. } => Access::new(&[]),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} has no carrot registry: administer RabbitMQ with rabbitmqctl or rabbitmqadmin, and a running carrot serve through its management API",
                    parsed.scheme()
                )))
            }
        };
        let broker = crate::BrokerConnection::connect(url).await?;
        Ok(Admin {
            vhosts: Arc::new(Vhosts::new(parsed, Arc::new(access))),
            _broker: broker,
        })
    }

    /// The vhosts, users and permissions.
    pub fn access(&self) -> &Access {
        &self.vhosts.access
    }

    /// Everything, as RabbitMQ's definitions.
    pub async fn export(&self) -> Result<Definitions> {
        Definitions::export(&self.vhosts).await
    }

    /// Imports RabbitMQ's definitions (adds and updates, never deletes).
    pub async fn import(&self, definitions: &Definitions) -> Result<()> {
        definitions.import(&self.vhosts).await
    }

    /// Creates a vhost (or changes its description); whether it is new.
    pub fn add_vhost(&self, name: &str, description: &str) -> Result<bool> {
        self.vhosts.access.put_vhost(Vhost {
            name: name.into(),
            description: description.into(),
            tags: Vec::new(),
        })
    }

    /// Deletes a vhost with everything in it; whether it existed.
    pub async fn delete_vhost(&self, name: &str) -> Result<bool> {
        if !self.vhosts.access.delete_vhost(name)? {
            return Ok(false);
        }
        self.vhosts.clear(name).await?;
        Ok(true)
    }
}
