//! The brokers behind a server's virtual hosts: vhost `/` is the broker of `--url` itself,
//! each other one a broker of its own next to it (see [`crate::url::vhost`]). The server
//! keeps one connection to each vhost it has served, for the management API and the
//! metrics; clients get connections of their own.

use std::collections::HashMap;
use std::sync::Arc;

use super::access::Access;
use crate::error::Result;
use crate::url::{vhost, BrokerUrl};
use crate::BrokerConnection;

/// The vhosts' brokers of a server.
#[derive(Debug)]
pub(super) struct Vhosts {
    base: BrokerUrl,
    pub(super) access: Arc<Access>,
    handles: tokio::sync::Mutex<HashMap<String, BrokerConnection>>,
}

impl Vhosts {
    pub(super) fn new(base: BrokerUrl, access: Arc<Access>) -> Vhosts {
        Vhosts {
            base,
            access,
            handles: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The URL of `name`'s broker.
    pub(super) fn url(&self, name: &str) -> String {
        match &self.base {
            BrokerUrl::Memory { name: broker } => BrokerUrl::Memory {
                name: vhost::memory_name(broker, name),
            }
            .to_string(),
            BrokerUrl::Sqlite { path } => BrokerUrl::Sqlite {
                path: vhost::sqlite_path(path, name),
            }
            .to_string(),
            other => other.to_string(),
        }
    }

    /// A new connection to `name`'s broker, for a client.
    pub(super) async fn connect(&self, name: &str) -> Result<BrokerConnection> {
        BrokerConnection::connect(&self.url(name)).await
    }

    /// The server's own connection to `name`'s broker.
    pub(super) async fn handle(&self, name: &str) -> Result<BrokerConnection> {
        let mut handles = self.handles.lock().await;
        if let Some(conn) = handles.get(name) {
            return Ok(conn.clone());
        }
        let conn = self.connect(name).await?;
        handles.insert(name.to_string(), conn.clone());
        Ok(conn)
    }

    /// Drops every exchange and queue of `name`'s broker (its vhost was deleted).
    pub(super) async fn clear(&self, name: &str) -> Result<()> {
        let conn = self.handle(name).await?;
        let topology = conn.topology().await?;
        for queue in topology.queues {
            let _ = conn
                .delete_queue(&queue.spec.name, Default::default())
                .await;
        }
        for exchange in topology.exchanges {
            if !exchange.name.is_empty() && !exchange.name.starts_with("amq.") {
                let _ = conn
                    .delete_exchange(&exchange.name, Default::default())
                    .await;
            }
        }
        let _ = conn.close().await;
        self.handles.lock().await.remove(name);
        Ok(())
    }
}
