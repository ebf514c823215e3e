//! One connection attempt to one RabbitMQ URL: the URI lapin understands, TLS, heartbeats, a
//! bounded handshake, and an error that names the URL, the cause and what to check.

use std::io::ErrorKind as IoKind;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use lapin::tcp::{AMQPUriTcpExt, OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, Event};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::convert;
use crate::error::{Cause, Error, Result};
use crate::options::{ConnectionOptions, DEFAULT_HEARTBEAT};
use crate::url::{AmqpSettings, BrokerUrl};

/// A URL to connect to, with how it is shown (password hidden).
#[derive(Clone, Debug)]
pub(super) struct Endpoint {
    pub(super) settings: AmqpSettings,
    pub(super) shown: String,
}

impl Endpoint {
    pub(super) fn all(urls: &[BrokerUrl]) -> Vec<Endpoint> {
        urls.iter()
            .filter_map(|url| match url {
                BrokerUrl::Amqp(settings) => Some(Endpoint {
                    settings: settings.clone(),
                    shown: url.to_string(),
                }),
                _ => None,
            })
            .collect()
    }
}

/// The connection events lapin reports (errors, `connection.blocked`, ...).
pub(super) type Events = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// The heartbeat interval asked of the broker, in seconds, for a wanted detection time.
///
/// lapin checks every half interval whether the broker has been silent for two intervals, so
/// a dead peer is found within two and a half intervals of what is negotiated. carrot asks
/// for four fifths of the interval the user wants (at least one second), so that it is found
/// within two of the user's intervals, as promised.
pub(super) fn negotiated_heartbeat(wanted: Duration) -> u16 {
    let secs = wanted.as_secs().clamp(1, u64::from(u16::MAX));
    (secs * 4 / 5).clamp(1, u64::from(u16::MAX)) as u16
}

/// The heartbeat interval a connection to this URL wants.
fn wanted_heartbeat(settings: &AmqpSettings, options: &ConnectionOptions) -> Duration {
    options
        .heartbeat
        .or(settings
            .heartbeat
            .map(|s| Duration::from_secs(u64::from(s))))
        .unwrap_or(DEFAULT_HEARTBEAT)
}

/// The URI lapin understands, with credentials and vhost percent-encoded.
pub(super) fn uri(s: &AmqpSettings, heartbeat: u16) -> String {
    let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
    let mut uri = format!(
        "{}://{}:{}@{}:{}/{}?heartbeat={heartbeat}",
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
    if let Some(f) = s.frame_max {
        uri.push_str(&format!("&frame_max={f}"));
    }
    uri
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidArgument(format!("cannot read the {what} {}: {e}", path.display()))
    })
}

pub(super) fn tls_config(s: &AmqpSettings) -> Result<OwnedTLSConfig> {
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

/// Opens one connection to one URL, within the connect timeout; returns it with its events.
pub(super) async fn open(
    endpoint: &Endpoint,
    options: &ConnectionOptions,
) -> Result<(Arc<Connection>, Events)> {
    let settings = &endpoint.settings;
    // lapin panics on a virtual host that does not fit an AMQP short string.
    convert::short(&settings.virtual_host, "the virtual host")?;
    let tls = tls_config(settings)?;
    let lapin_runtime = lapin::runtime::default_runtime().map_err(convert::error)?;
    let properties = ConnectionProperties::default().with_connection_name("carrot".into());
    let heartbeat = negotiated_heartbeat(wanted_heartbeat(settings, options));
    let uri: AMQPUri = uri(settings, heartbeat)
        .parse()
        .map_err(|e: String| Error::InvalidArgument(format!("{}: {e}", endpoint.shown)))?;
    // lapin opens the socket on its own thread, and a refusal that comes back before lapin has
    // sent the protocol header can be lost, leaving the connect waiting for its timeout (seen
    // on a loaded machine with nothing listening on the port). The socket's failure is
    // therefore also reported here directly, and wins over the wait.
    let (report, socket_failed) = tokio::sync::oneshot::channel::<lapin::Error>();
    let report = std::sync::Mutex::new(Some(report));
    let connect = Connection::connector(
        uri,
        lapin_runtime,
        async move |uri, runtime| {
            let opened = uri.connect_with_config_async(tls.as_ref(), &runtime).await;
            opened.map_err(|io| {
                let error = lapin::Error::from(io);
                let sender = report.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(sender) = sender {
                    // The receiver is gone only once the connect has ended: nothing to tell.
                    let _ = sender.send(error.clone());
                }
                error
            })
        },
        properties,
    );
    let timeout = settings
        .connection_timeout
        .unwrap_or(options.timeouts.get_connect());
    let attempt = async {
        tokio::select! {
            biased;
            outcome = connect => outcome,
            Ok(error) = socket_failed => Err(error),
        }
    };
    let connection = match tokio::time::timeout(timeout, attempt).await {
        Err(_) => {
            return Err(Error::ConnectFailed {
                url: endpoint.shown.clone(),
                reason: format!(
                    "no AMQP answer within {timeout:?}: something accepts connections there but does not answer (a firewall dropping packets, a suspended broker, or a server that is not AMQP), or the broker is overloaded"
                ),
                source: None,
            })
        }
        Ok(Err(e)) => {
            let unresolved = is_unresolved(&e, settings).await;
            return Err(refused(endpoint, settings, e, unresolved));
        }
        Ok(Ok(connection)) => Arc::new(connection),
    };
    let events: Events = Box::pin(connection.events_listener());
    Ok((connection, events))
}

/// A failed connection attempt as a carrot error: the URL, the cause, and a hint that fits
/// the cause.
fn refused(
    endpoint: &Endpoint,
    settings: &AmqpSettings,
    e: lapin::Error,
    unresolved: bool,
) -> Error {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    use lapin::ErrorKind;
    let url = endpoint.shown.clone();
    let at = format!("{}:{}", settings.host, settings.port);
    let failed = |reason: String| Error::ConnectFailed {
        url: url.clone(),
        reason,
        source: Some(Cause::new(e.clone())),
    };
    let refused_as = |kind: &AMQPErrorKind| match kind {
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => Some(403),
        AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => Some(530),
        _ => None,
    };
    match e.kind() {
        ErrorKind::ProtocolError(amqp) if refused_as(amqp.kind()) == Some(403) => Error::AccessRefused(format!(
            "{url} refused the login of user {:?} ({}): check the user name and password",
            settings.userid,
            amqp.get_message()
        )),
        ErrorKind::ProtocolError(amqp) if refused_as(amqp.kind()) == Some(530) => Error::AccessRefused(format!(
            "{url} refused access to virtual host {:?} ({}): check that the virtual host exists and that user {:?} may use it",
            settings.virtual_host,
            amqp.get_message(),
            settings.userid
        )),
        ErrorKind::ProtocolError(amqp) => failed(format!(
            "the broker closed the connection during the handshake ({} {}); check its log",
            amqp.get_id(),
            amqp.get_message()
        )),
        ErrorKind::IOError(io) => failed(io_reason(io, &at, settings.tls, unresolved)),
        ErrorKind::ParsingError(_) => failed(format!(
            "the server at {at} does not speak AMQP 0-9-1 (it answered with bytes that are not an AMQP frame); is this the broker's AMQP port ({})?",
            if settings.tls { "5671 for amqps" } else { "5672 for amqp" }
        )),
        ErrorKind::InvalidProtocolVersion(version) => failed(format!(
            "the server at {at} speaks AMQP {version}, not 0-9-1; carrot needs an AMQP 0-9-1 broker such as RabbitMQ"
        )),
        ErrorKind::InvalidConnectionState(_) => failed(format!(
            "the server at {at} closed the connection during the AMQP handshake; is this the broker's AMQP port ({}), and does the broker accept this client (see its log)?",
            if settings.tls { "5671 for amqps" } else { "5672 for amqp" }
        )),
        _ => failed(e.to_string()),
    }
}

/// Whether a connection failed because the host name does not resolve: an I/O error of no
/// kind that [`io_reason`] knows, for a host that is not an address and that does not resolve
/// now either.
async fn is_unresolved(e: &lapin::Error, settings: &AmqpSettings) -> bool {
    let lapin::ErrorKind::IOError(io) = e.kind() else {
        return false;
    };
    let known = matches!(
        io.kind(),
        IoKind::ConnectionRefused
            | IoKind::ConnectionReset
            | IoKind::ConnectionAborted
            | IoKind::UnexpectedEof
            | IoKind::BrokenPipe
            | IoKind::TimedOut
            | IoKind::AddrNotAvailable
            | IoKind::InvalidData
    );
    if known || settings.host.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    let (host, port) = (settings.host.clone(), settings.port);
    let lookup = tokio::task::spawn_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).is_err()
    });
    // A resolver that hangs says nothing either way.
    matches!(
        tokio::time::timeout(Duration::from_secs(2), lookup).await,
        Ok(Ok(true))
    )
}

/// What an I/O error while connecting means, from its kind. TLS failures have the kind
/// `InvalidData` (rustls-connector documents it); a host name that cannot be resolved gives an
/// error of no particular kind, which is told apart by resolving the name again.
fn io_reason(io: &std::io::Error, at: &str, tls: bool, unresolved: bool) -> String {
    let text = io.to_string();
    if tls && io.kind() == IoKind::InvalidData {
        return format!("the TLS handshake with {at} failed ({text}): check that cacertfile names the CA that signed the broker's certificate, that the host name matches the certificate, and that this is the broker's TLS port");
    }
    match io.kind() {
        IoKind::ConnectionRefused => format!(
            "connection refused: nothing listens on {at}; is the broker running, and is this its port?"
        ),
        IoKind::ConnectionReset | IoKind::ConnectionAborted | IoKind::UnexpectedEof | IoKind::BrokenPipe => format!(
            "the server at {at} closed the connection during the handshake ({text}); is this the broker's {} port, and is the broker starting up or overloaded?",
            if tls { "TLS (amqps, usually 5671)" } else { "plain AMQP (usually 5672)" }
        ),
        IoKind::TimedOut => format!("{text}: {at} does not answer; is the host up and the port open?"),
        IoKind::AddrNotAvailable => {
            format!("cannot resolve the host of {at} to an address ({text}); check the host name")
        }
        _ if unresolved => format!("cannot resolve the host of {at} ({text}); check the host name"),
        _ => format!("{text} ({at})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_credentials_and_vhost() {
        let BrokerUrl::Amqp(s) =
            BrokerUrl::parse("amqp://us%40er:p%2Fss@h:5673//?heartbeat=5").unwrap()
        else {
            panic!("amqp")
        };
        assert_eq!(uri(&s, 4), "amqp://us%40er:p%2Fss@h:5673/%2F?heartbeat=4");
    }

    /// A virtual host over 255 bytes made lapin panic while connecting; it is refused before
    /// any connection attempt (nothing listens on port 1 anyway).
    #[tokio::test]
    async fn a_virtual_host_over_255_bytes_is_an_invalid_argument() {
        let url = format!("amqp://guest:guest@127.0.0.1:1/{}", "v".repeat(256));
        let urls = vec![BrokerUrl::parse(&url).unwrap()];
        let endpoint = &Endpoint::all(&urls)[0];
        let Err(err) = open(endpoint, &ConnectionOptions::default()).await else {
            panic!("connected with a 256-byte virtual host")
        };
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("virtual host")),
            "{err:?}"
        );
    }

    #[test]
    fn heartbeats_are_negotiated_so_that_a_silent_peer_is_found_within_two_intervals() {
        for wanted in [1u64, 2, 3, 5, 10, 30, 60, 600] {
            let negotiated = negotiated_heartbeat(Duration::from_secs(wanted));
            // lapin: silence of two negotiated intervals, checked every half interval.
            let found_within = f64::from(negotiated) * 2.5;
            assert!(negotiated >= 1);
            if wanted >= 2 {
                assert!(
                    found_within <= 2.0 * wanted as f64,
                    "{wanted}: {negotiated}"
                );
            }
        }
        assert_eq!(negotiated_heartbeat(DEFAULT_HEARTBEAT), 48);
    }
}
