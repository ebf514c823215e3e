//! Broker URLs, parsed into typed settings.
//!
//! | URL | backend |
//! | --- | --- |
//! | `memory://` or `memory://NAME` | the embedded in-process broker (named brokers are separate) |
//! | `amqp://user:pass@host:port/vhost?heartbeat=30` | RabbitMQ (default port 5672, vhost `/`) |
//! | `amqps://...` | RabbitMQ over TLS (default port 5671) |
//! | `sqlite://PATH` | the durable embedded broker in one SQLite file |
//!
//! Passwords never appear in `Debug` or `Display` output, nor in errors.
//!
//! Several RabbitMQ URLs separated by `;` (`amqp://a;amqp://b`, as kombu writes them) are
//! failover alternatives: see [`parse_failover`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{
    percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC,
};

/// What `Display` escapes in a user name or host: all but the unreserved characters.
const COMPONENT_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What `Display` escapes in a sqlite path, so that it reads back the same.
const PATH_ESCAPED: &AsciiSet = &CONTROLS.add(b'%').add(b' ');

use crate::error::{Error, Result};

/// A password that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself, to hand to a broker.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Settings of an `amqp://` or `amqps://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AmqpSettings {
    /// `true` for `amqps://`.
    pub tls: bool,
    /// Host name or address (default `localhost`).
    pub host: String,
    /// Port (default 5672, or 5671 with TLS).
    pub port: u16,
    /// User name (default `guest`).
    pub userid: String,
    /// Password (default `guest`).
    pub password: Password,
    /// Virtual host (default `/`, written `//` or `/%2F` in a URL).
    pub virtual_host: String,
    /// `heartbeat` in seconds.
    pub heartbeat: Option<u16>,
    /// `connection_timeout` (or `connect_timeout`) in seconds.
    pub connection_timeout: Option<Duration>,
    /// `frame_max` in bytes.
    pub frame_max: Option<u32>,
    /// `cacertfile`: a PEM file of CA certificates to trust besides the system roots.
    pub cacertfile: Option<PathBuf>,
    /// `certfile`: a client certificate (PEM).
    pub certfile: Option<PathBuf>,
    /// `keyfile`: the client certificate's key (PEM).
    pub keyfile: Option<PathBuf>,
    /// `verify`: whether to verify the server certificate (default true).
    pub verify: bool,
    /// `confirm_publish`: publishers wait for the broker's confirm of each message (default false).
    pub confirm_publish: bool,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            tls: false,
            host: "localhost".into(),
            port: 5672,
            userid: "guest".into(),
            password: Password::new("guest"),
            virtual_host: "/".into(),
            heartbeat: None,
            connection_timeout: None,
            frame_max: None,
            cacertfile: None,
            certfile: None,
            keyfile: None,
            verify: true,
            confirm_publish: false,
        }
    }
}

/// A parsed broker URL: which backend, and its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerUrl {
    /// `memory://NAME`: the embedded broker called NAME (empty for the default one).
    Memory {
        /// The broker's name; connections with the same name share exchanges and queues.
        name: String,
    },
    /// `amqp://` or `amqps://`.
    Amqp(AmqpSettings),
    /// `sqlite://PATH`.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

impl BrokerUrl {
    /// Parses a broker URL; see the [module documentation](self) for the forms accepted.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::invalid_url(
                url,
                "expected SCHEME://..., for example memory://, amqp://guest:guest@localhost:5672// or sqlite:///var/lib/app/broker.db",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => {
                let name = rest.trim_end_matches('/');
                if name.contains(['/', '?', '#', '@']) {
                    return Err(Error::invalid_url(
                        url,
                        "a memory broker name may not contain '/', '?', '#' or '@'",
                    ));
                }
                Ok(BrokerUrl::Memory { name: name.into() })
            }
            "sqlite" => {
                if rest.is_empty() {
                    return Err(Error::invalid_url(
                        url,
                        "missing database path: write sqlite://relative/path.db or sqlite:///absolute/path.db",
                    ));
                }
                let path = decode(url, rest, "path")?;
                Ok(BrokerUrl::Sqlite { path: path.into() })
            }
            "amqp" | "amqps" | "pyamqp" | "librabbitmq" => {
                parse_amqp(url, rest, scheme.eq_ignore_ascii_case("amqps")).map(BrokerUrl::Amqp)
            }
            other => Err(Error::invalid_url(
                url,
                format!(
                    "unknown scheme {other:?}: use memory://, sqlite://PATH, amqp:// or amqps://"
                ),
            )),
        }
    }

    /// The URL scheme: `memory`, `amqp`, `amqps` or `sqlite`.
    pub fn scheme(&self) -> &'static str {
        match self {
            BrokerUrl::Memory { .. } => "memory",
            BrokerUrl::Amqp(s) if s.tls => "amqps",
            BrokerUrl::Amqp(_) => "amqp",
            BrokerUrl::Sqlite { .. } => "sqlite",
        }
    }
}

/// Parses one URL or several failover URLs separated by `;` (kombu's notation:
/// `amqp://guest:guest@node1;amqp://guest:guest@node2`). Empty parts are ignored. Failover
/// only makes sense between RabbitMQ nodes, so several URLs must all be `amqp://` or
/// `amqps://`.
///
/// ```
/// let urls = carrot::url::parse_failover("amqp://a:5672//; amqp://b:5673//")?;
/// assert_eq!(urls.len(), 2);
/// assert!(carrot::url::parse_failover("memory://;memory://x").is_err());
/// # Ok::<(), carrot::Error>(())
/// ```
pub fn parse_failover(urls: &str) -> Result<Vec<BrokerUrl>> {
    let parsed = split_list(urls)
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(BrokerUrl::parse)
        .collect::<Result<Vec<_>>>()?;
    match parsed.len() {
        0 => Err(Error::invalid_url(
            urls,
            "no URL given: expected SCHEME://..., or several amqp:// URLs separated by ';'",
        )),
        1 => Ok(parsed),
        _ if parsed.iter().all(|u| matches!(u, BrokerUrl::Amqp(_))) => Ok(parsed),
        _ => Err(Error::invalid_url(
            urls,
            "several URLs (separated by ';') are failover alternatives between RabbitMQ nodes: each must be amqp:// or amqps://",
        )),
    }
}

/// Splits a list of URLs at each `;` that starts another URL (`SCHEME://`): a `;` inside a
/// password or a path stays where it is.
fn split_list(urls: &str) -> Vec<&str> {
    let starts_url = |rest: &str| {
        let rest = rest.trim_start();
        rest.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
    };
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in urls.match_indices(';') {
        let rest = &urls[i + 1..];
        if starts_url(rest) || rest.trim().is_empty() {
            parts.push(&urls[start..i]);
            start = i + 1;
        }
    }
    parts.push(&urls[start..]);
    parts
}

impl FromStr for BrokerUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BrokerUrl::parse(s)
    }
}

impl fmt::Display for BrokerUrl {
    /// Writes the URL back, with the password shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerUrl::Memory { name } => write!(f, "memory://{name}"),
            BrokerUrl::Sqlite { path } => {
                let path = path.to_string_lossy();
                write!(f, "sqlite://{}", utf8_percent_encode(&path, PATH_ESCAPED))
            }
            BrokerUrl::Amqp(s) => {
                let vhost = utf8_percent_encode(&s.virtual_host, NON_ALPHANUMERIC);
                let user = utf8_percent_encode(&s.userid, COMPONENT_ESCAPED);
                let host = if s.host.parse::<std::net::Ipv6Addr>().is_ok() {
                    format!("[{}]", s.host)
                } else {
                    utf8_percent_encode(&s.host, COMPONENT_ESCAPED).to_string()
                };
                write!(
                    f,
                    "{}://{user}:***@{host}:{}/{vhost}",
                    self.scheme(),
                    s.port,
                )
            }
        }
    }
}

fn decode(url: &str, part: &str, what: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Error::invalid_url(
                url,
                format!("the {what} is not valid UTF-8 once percent-decoded"),
            )
        })
}

fn parse_amqp(url: &str, rest: &str, tls: bool) -> Result<AmqpSettings> {
    let mut settings = AmqpSettings {
        tls,
        port: if tls { 5671 } else { 5672 },
        ..AmqpSettings::default()
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, pass) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            settings.userid = decode(url, user, "user name")?;
        }
        if let Some(pass) = pass {
            settings.password = Password(decode(url, pass, "password")?);
        }
    }
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        // [IPv6]:port
        let Some(end) = stripped.find(']') else {
            return Err(Error::invalid_url(url, "unclosed '[' in an IPv6 host"));
        };
        let after = &stripped[end + 1..];
        if !after.is_empty() && !after.starts_with(':') {
            return Err(Error::invalid_url(
                url,
                "after ']' of an IPv6 host only :PORT may follow",
            ));
        }
        (&stripped[..end], after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if !host.is_empty() {
        settings.host = decode(url, host, "host")?;
    }
    if let Some(port) = port {
        settings.port = port.parse().map_err(|_| {
            Error::invalid_url(
                url,
                "the port is not a number from 1 to 65535 (a user name or password with '/', '?', '#' or '@' must be percent-encoded)",
            )
        })?;
        if settings.port == 0 {
            return Err(Error::invalid_url(url, "port 0 is not a valid broker port"));
        }
    }
    if let Some(path) = path {
        // amqp://host// and amqp://host/%2F both mean the vhost "/"; amqp://host/ means the default.
        if !path.is_empty() {
            settings.virtual_host = decode(url, path, "virtual host")?;
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(url, value, key)?;
        let number = |what: &str| -> Result<u64> {
            value.parse::<u64>().map_err(|_| {
                Error::invalid_url(url, format!("{what}={value:?} is not a whole number"))
            })
        };
        match key {
            "heartbeat" => {
                settings.heartbeat = Some(u16::try_from(number(key)?).map_err(|_| {
                    Error::invalid_url(url, "heartbeat must be at most 65535 seconds")
                })?)
            }
            "connection_timeout" | "connect_timeout" => {
                let secs: f64 = value.parse().map_err(|_| {
                    Error::invalid_url(url, format!("{key}={value:?} is not a number of seconds"))
                })?;
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(Error::invalid_url(url, format!("{key} must be zero or more seconds")));
                }
                settings.connection_timeout =
                    Some(Duration::try_from_secs_f64(secs).map_err(|_| {
                        Error::invalid_url(url, format!("{key} is too large"))
                    })?);
            }
            "frame_max" => {
                settings.frame_max = Some(u32::try_from(number(key)?).map_err(|_| {
                    Error::invalid_url(url, "frame_max must fit in 32 bits")
                })?)
            }
            "cacertfile" => settings.cacertfile = Some(value.into()),
            "certfile" => settings.certfile = Some(value.into()),
            "keyfile" => settings.keyfile = Some(value.into()),
            "verify" => settings.verify = boolean(url, key, &value)?,
            "confirm_publish" => settings.confirm_publish = boolean(url, key, &value)?,
            other => {
                return Err(Error::invalid_url(
                    url,
                    format!("unknown option {other:?}: known options are heartbeat, connection_timeout, frame_max, cacertfile, certfile, keyfile, verify, confirm_publish"),
                ))
            }
        }
    }
    Ok(settings)
}

fn boolean(url: &str, key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "verify_peer" | "required" => Ok(true),
        "false" | "0" | "no" | "off" | "verify_none" | "none" => Ok(false),
        _ => Err(Error::invalid_url(
            url,
            format!("{key}={value:?}: use true or false"),
        )),
    }
}

/// Replaces the password of a URL-like string (or of each of several separated by `;`) with
/// `***`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let parts = split_list(url);
    if parts.len() > 1 {
        return parts.into_iter().map(redact).collect::<Vec<_>>().join(";");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // From the first ':' to the last '@': an unencoded '/', '?' or '@' in the password does
    // not let any of it show (at worst more than the password is hidden).
    match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***@{}", &rest[..colon], &rest[at + 1..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amqp(url: &str) -> AmqpSettings {
        match BrokerUrl::parse(url).unwrap() {
            BrokerUrl::Amqp(s) => s,
            other => panic!("expected amqp, got {other:?}"),
        }
    }

    #[test]
    fn memory_urls() {
        assert_eq!(
            BrokerUrl::parse("memory://").unwrap(),
            BrokerUrl::Memory { name: "".into() }
        );
        assert_eq!(
            BrokerUrl::parse("memory://tests").unwrap(),
            BrokerUrl::Memory {
                name: "tests".into()
            }
        );
        assert!(BrokerUrl::parse("memory://a/b").is_err());
    }

    #[test]
    fn amqp_defaults_and_vhosts() {
        let s = amqp("amqp://");
        assert_eq!(
            (s.host.as_str(), s.port, s.virtual_host.as_str()),
            ("localhost", 5672, "/")
        );
        assert_eq!(s.userid, "guest");
        assert_eq!(amqp("amqps://h").port, 5671);
        assert_eq!(amqp("amqp://h//").virtual_host, "/");
        assert_eq!(amqp("amqp://h/%2F").virtual_host, "/");
        assert_eq!(amqp("amqp://h/").virtual_host, "/");
        assert_eq!(amqp("amqp://h/prod").virtual_host, "prod");
    }

    #[test]
    fn amqp_credentials_are_percent_decoded_and_redacted() {
        let s = amqp("amqp://us%40er:p%3Ass@rabbit:5673/v?heartbeat=30&connection_timeout=2.5&frame_max=131072&verify=false");
        assert_eq!(s.userid, "us@er");
        assert_eq!(s.password.expose(), "p:ss");
        assert_eq!((s.host.as_str(), s.port), ("rabbit", 5673));
        assert_eq!(s.heartbeat, Some(30));
        assert_eq!(s.connection_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.frame_max, Some(131072));
        assert!(!s.verify);
        let shown = format!("{s:?} {}", BrokerUrl::Amqp(s.clone()));
        assert!(
            !shown.contains("p:ss") && !shown.contains("p%3Ass"),
            "{shown}"
        );
    }

    #[test]
    fn failover_lists_hide_every_password() {
        let err = parse_failover("amqp://u:first@a;memory://;amqp://u:second@b").unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("first") && !text.contains("second"),
            "{text}"
        );
        let urls = parse_failover(" amqp://a ; ;amqps://b:1// ").unwrap();
        assert_eq!(urls.len(), 2);
        assert!(parse_failover(" ; ").is_err());
        // A ';' that does not start another URL belongs to the one before.
        let urls = parse_failover("amqp://u:pa;ss@h/;amqp://v@k/").unwrap();
        assert_eq!(urls.len(), 2);
        let BrokerUrl::Amqp(first) = &urls[0] else {
            panic!("amqp")
        };
        assert_eq!(first.password.expose(), "pa;ss");
        assert_eq!(
            redact("amqp://u:pa;ss@h/;amqp://v:w;x@k/"),
            "amqp://u:***@h/;amqp://v:***@k/"
        );
    }

    #[test]
    fn ipv6_hosts() {
        let s = amqp("amqp://[::1]:5000/");
        assert_eq!((s.host.as_str(), s.port), ("::1", 5000));
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            BrokerUrl::parse("sqlite:///var/x.db").unwrap(),
            BrokerUrl::Sqlite {
                path: "/var/x.db".into()
            }
        );
        assert_eq!(
            BrokerUrl::parse("sqlite://rel.db").unwrap(),
            BrokerUrl::Sqlite {
                path: "rel.db".into()
            }
        );
        assert!(BrokerUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, needle) in [
            ("localhost", "SCHEME://"),
            ("http://x", "unknown scheme"),
            ("amqp://u:secret@h:notaport/", "port"),
            ("amqp://u:secret@h:0/", "port 0"),
            ("amqp://u:secret@h/?heartbeat=x", "heartbeat"),
            ("amqp://u:secret@h/?bogus=1", "unknown option"),
            ("amqp://u:secret@[::1/", "IPv6"),
        ] {
            let err = BrokerUrl::parse(url).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
            assert!(text.contains(needle), "{url}: {text}");
            assert!(!text.contains("secret"), "{url}: {text}");
        }
    }
}
