//! RabbitMQ (`amqp://`, `amqps://`) through lapin.
//!
//! RabbitMQ routes for itself; this backend maps carrot's channel interface onto AMQP 0-9-1
//! methods, reply codes onto carrot's errors, and restores what RabbitMQ does not do for a
//! client: channels reopened after channel errors, `flow(false)` (refused by RabbitMQ from
//! clients) done on the client side, mandatory returns turned into errors.

mod channel;
mod convert;

use std::sync::Arc;

use async_trait::async_trait;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::backend::{Channel, Transport};
use crate::error::{Error, Result};
use crate::url::AmqpSettings;

use channel::AmqpChannel;

/// A connection to RabbitMQ.
pub(crate) struct AmqpConnection {
    connection: Arc<Connection>,
    runtime: tokio::runtime::Handle,
    shown: String,
}

impl std::fmt::Debug for AmqpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConnection")
            .field("url", &self.shown)
            .finish()
    }
}

/// The URI lapin understands, with credentials and vhost percent-encoded.
fn uri(s: &AmqpSettings) -> String {
    let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
    let mut uri = format!(
        "{}://{}:{}@{}:{}/{}",
        if s.tls { "amqps" } else { "amqp" },
        enc(&s.userid),
        enc(s.password.expose()),
        if s.host.contains(':') {
            format!("[{}]", s.host)
        } else {
            s.host.clone()
        },
        s.port,
        enc(&s.virtual_host),
    );
    let mut query = Vec::new();
    if let Some(h) = s.heartbeat {
        query.push(format!("heartbeat={h}"));
    }
    if let Some(f) = s.frame_max {
        query.push(format!("frame_max={f}"));
    }
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query.join("&"));
    }
    uri
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidArgument(format!("cannot read the {what} {}: {e}", path.display()))
    })
}

fn tls_config(s: &AmqpSettings) -> Result<OwnedTLSConfig> {
    let mut config = OwnedTLSConfig::default();
    if !s.tls {
        return Ok(config);
    }
    if !s.verify {
        return Err(Error::Unsupported(
            "verify=false: carrot always verifies the broker's certificate; give its CA with cacertfile=PATH".into(),
        ));
    }
    if let Some(ca) = &s.cacertfile {
        let pem = read(ca, "CA certificate file (cacertfile)")?;
        config.cert_chain = Some(String::from_utf8(pem).map_err(|_| {
            Error::InvalidArgument(format!("the cacertfile {} is not PEM text", ca.display()))
        })?);
    }
    match (&s.certfile, &s.keyfile) {
        (Some(cert), Some(key)) => {
            config.identity = Some(OwnedIdentity::PKCS8 {
                pem: read(cert, "client certificate file (certfile)")?,
                key: read(key, "client key file (keyfile)")?,
            });
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "a client certificate needs both certfile and keyfile".into(),
            ))
        }
    }
    Ok(config)
}

impl AmqpConnection {
    pub(crate) async fn open(settings: &AmqpSettings, shown: String) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Unsupported(
                "the amqp backend runs on tokio: connect from inside a tokio runtime, or use carrot::blocking".into(),
            )
        })?;
        // lapin panics on a virtual host that does not fit an AMQP short string.
        convert::short(&settings.virtual_host, "the virtual host")?;
        let tls = tls_config(settings)?;
        let lapin_runtime = lapin::runtime::default_runtime().map_err(convert::error)?;
        let properties = ConnectionProperties::default().with_connection_name("carrot".into());
        let uri = uri(settings);
        let connect = Connection::connect_with_config(&uri, properties, tls, lapin_runtime);
        let timeout = settings
            .connection_timeout
            .unwrap_or(std::time::Duration::from_secs(30));
        let connection = match tokio::time::timeout(timeout, connect).await {
            Err(_) => {
                return Err(Error::ConnectFailed {
                    url: shown,
                    reason: format!(
                        "no answer within {timeout:?}; is RabbitMQ running and reachable?"
                    ),
                })
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                let hint = if reason.to_ascii_lowercase().contains("certificate") {
                    "; check that cacertfile names the CA that signed the broker's certificate and that the host matches it"
                } else if reason.contains("refused") {
                    "; is RabbitMQ running and listening there?"
                } else if reason.contains("ACCESS_REFUSED") || reason.contains("403") {
                    "; check the user name and password"
                } else {
                    ""
                };
                return Err(Error::ConnectFailed {
                    url: shown,
                    reason: format!("{reason}{hint}"),
                });
            }
            Ok(Ok(connection)) => Arc::new(connection),
        };
        Ok(AmqpConnection {
            connection,
            runtime,
            shown,
        })
    }
}

#[async_trait]
impl Transport for AmqpConnection {
    async fn channel(&self) -> Result<Arc<dyn Channel>> {
        let channel = AmqpChannel::open(self.connection.clone(), self.runtime.clone()).await?;
        Ok(Arc::new(channel))
    }

    async fn close(&self) -> Result<()> {
        if !self.connection.status().connected() {
            return Ok(());
        }
        match self.connection.close(200, "OK".into()).await {
            Ok(()) => Ok(()),
            // A channel dropped just before (its close still in flight) makes lapin report
            // that channel's state; the connection is closing all the same.
            Err(e) if !self.connection.status().connected() => {
                tracing::debug!(error = %e, "ignored while closing the connection");
                Ok(())
            }
            Err(e) => Err(convert::error(e)),
        }
    }
}

impl Drop for AmqpConnection {
    fn drop(&mut self) {
        if self.connection.status().connected() {
            let connection = self.connection.clone();
            self.runtime.spawn(async move {
                let _ = connection.close(200, "OK".into()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::BrokerUrl;

    #[test]
    fn uri_encodes_credentials_and_vhost() {
        let BrokerUrl::Amqp(s) =
            BrokerUrl::parse("amqp://us%40er:p%2Fss@h:5673//?heartbeat=5").unwrap()
        else {
            panic!("amqp")
        };
        assert_eq!(uri(&s), "amqp://us%40er:p%2Fss@h:5673/%2F?heartbeat=5");
    }

    /// Regression: a virtual host over 255 bytes made lapin panic while connecting. Nothing
    /// listens on port 1, and the refusal comes before any connection attempt anyway.
    #[tokio::test]
    async fn a_virtual_host_over_255_bytes_is_an_invalid_argument() {
        let url = format!("amqp://guest:guest@127.0.0.1:1/{}", "v".repeat(256));
        let BrokerUrl::Amqp(s) = BrokerUrl::parse(&url).unwrap() else {
            panic!("amqp")
        };
        let err = AmqpConnection::open(&s, url).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("virtual host")),
            "{err:?}"
        );
    }
}
