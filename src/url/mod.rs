//! Broker URLs, parsed into typed settings.
//!
//! | URL | backend |
//! | --- | --- |
//! | `memory://` or `memory://NAME` | the embedded in-process broker (named brokers are separate) |
//! | `memory://NAME/VHOST` | virtual host VHOST (percent-encoded) of that broker: see [`vhost`] |
//! | `amqp://user:pass@host:port/vhost?heartbeat=30` | RabbitMQ (default port 5672, vhost `/`) |
//! | `amqps://...` | RabbitMQ over TLS (default port 5671) |
//! | `sqlite://PATH` | the durable embedded broker in one SQLite file |
//! | `sqlite://PATH?vhost=VHOST` | virtual host VHOST of that broker (a file next to PATH) |
//! | `redis://[:password@]host:port/db`, `rediss://...`, `redis+socket:///path` | Redis, in kombu's format |
//! | `sentinel://host:26379;sentinel://host:26380?master_name=NAME` | the Redis master Sentinel names |
//!
//! Passwords never appear in `Debug` or `Display` output, nor in errors.
//!
//! Several RabbitMQ URLs separated by `;` (`amqp://a;amqp://b`, as kombu writes them) are
//! failover alternatives: see [`parse_failover`].

mod amqp;
mod redis;
pub mod vhost;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{
    percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC,
};

use crate::error::{Error, Result};
use crate::redact::split_list;

pub use amqp::{AmqpSettings, Password};
pub use redis::{RedisAddress, RedisSettings};

/// What `Display` escapes in a user name or host: all but the unreserved characters.
const COMPONENT_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What `Display` escapes in a sqlite path, so that it reads back the same.
const PATH_ESCAPED: &AsciiSet = &CONTROLS.add(b'%').add(b' ').add(b'?');

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
    /// `redis://`, `rediss://`, `redis+socket://` or `sentinel://`.
    Redis(RedisSettings),
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
                // Trailing slashes name no vhost (`memory://x/` is `memory://x`); the vhost
                // `/` itself is written `%2F`, as in amqp:// URLs.
                let (name, vhost) = match rest.split_once('/') {
                    Some((name, vhost)) if !vhost.trim_end_matches('/').is_empty() => {
                        (name, decode(url, vhost.trim_end_matches('/'), "vhost")?)
                    }
                    Some((name, _)) => (name, "/".to_string()),
                    None => (rest, "/".to_string()),
                };
                if name.contains(['/', '?', '#', '@']) || vhost.contains(['?', '#']) {
                    return Err(Error::invalid_url(
                        url,
                        "write memory://NAME or memory://NAME/VHOST: a name may not contain '/', '?', '#' or '@' (percent-encode them in VHOST)",
                    ));
                }
                Ok(BrokerUrl::Memory {
                    name: vhost::memory_name(name, &vhost),
                })
            }
            "sqlite" => {
                if rest.is_empty() {
                    return Err(Error::invalid_url(
                        url,
                        "missing database path: write sqlite://relative/path.db or sqlite:///absolute/path.db",
                    ));
                }
                let (rest, vhost) = match rest.split_once('?') {
                    None => (rest, "/".to_string()),
                    Some((rest, query)) => match query.split_once('=') {
                        Some(("vhost", v)) => (rest, decode(url, v, "vhost")?),
                        _ => {
                            return Err(Error::invalid_url(
                                url,
                                "the only option of sqlite:// is ?vhost=VHOST (percent-encoded)",
                            ))
                        }
                    },
                };
                let path = decode(url, rest, "path")?;
                Ok(BrokerUrl::Sqlite {
                    path: vhost::sqlite_path(std::path::Path::new(&path), &vhost),
                })
            }
            "amqp" | "amqps" | "pyamqp" | "librabbitmq" => {
                amqp::parse_amqp(url, rest, scheme.eq_ignore_ascii_case("amqps"))
                    .map(BrokerUrl::Amqp)
            }
            scheme @ ("redis" | "rediss" | "redis+socket" | "sentinel") => {
                redis::parse_redis(url, scheme, rest).map(BrokerUrl::Redis)
            }
            other => Err(Error::invalid_url(
                url,
                format!(
                    "unknown scheme {other:?}: use memory://, sqlite://PATH, amqp://, amqps://, redis://, rediss://, redis+socket:// or sentinel://"
                ),
            )),
        }
    }

    /// The URL scheme: `memory`, `amqp`, `amqps`, `sqlite`, `redis`, `rediss`, `redis+socket`
    /// or `sentinel`.
    pub fn scheme(&self) -> &'static str {
        match self {
            BrokerUrl::Redis(s) => match s.address {
                RedisAddress::Unix(_) => "redis+socket",
                RedisAddress::Sentinel { .. } => "sentinel",
                RedisAddress::Tcp { .. } if s.tls => "rediss",
                RedisAddress::Tcp { .. } => "redis",
            },
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
    let parts = split_list(urls);
    let sentinels: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| !p.trim().is_empty())
        .collect();
    if sentinels.len() > 1
        && sentinels.iter().all(|p| {
            p.trim_start()
                .to_ascii_lowercase()
                .starts_with("sentinel://")
        })
    {
        let sentinels: Vec<&str> = sentinels.into_iter().map(str::trim).collect();
        return redis::merge_sentinels(urls, &sentinels).map(|s| vec![BrokerUrl::Redis(s)]);
    }
    let parsed = parts
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
            "several URLs (separated by ';') are failover alternatives between RabbitMQ nodes (each amqp:// or amqps://) or Redis sentinels (each sentinel://)",
        )),
    }
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
            BrokerUrl::Redis(s) => s.write(f),
            BrokerUrl::Amqp(s) => {
                let vhost = utf8_percent_encode(&s.virtual_host, NON_ALPHANUMERIC);
                let user = utf8_percent_encode(&s.userid, COMPONENT_ESCAPED);
                let host = shown_host(&s.host);
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

/// The parts of a URL's authority (`user:password@host:port`), percent-decoded; what is
/// absent is `None` (an empty host too).
#[derive(Debug, Default)]
pub(super) struct Authority {
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
}

/// Splits and decodes an authority; `[IPv6]:port` hosts are accepted.
pub(super) fn authority(url: &str, authority: &str) -> Result<Authority> {
    let mut parts = Authority::default();
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
            parts.user = Some(decode(url, user, "user name")?);
        }
        if let Some(pass) = pass {
            parts.password = Some(decode(url, pass, "password")?);
        }
    }
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
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
        parts.host = Some(decode(url, host, "host")?);
    }
    if let Some(port) = port {
        let port: u16 = port.parse().map_err(|_| {
            Error::invalid_url(
                url,
                "the port is not a number from 1 to 65535 (a user name or password with '/', '?', '#' or '@' must be percent-encoded)",
            )
        })?;
        if port == 0 {
            return Err(Error::invalid_url(url, "port 0 is not a valid broker port"));
        }
        parts.port = Some(port);
    }
    Ok(parts)
}

/// A host as written in a URL: IPv6 addresses in brackets, the rest percent-encoded.
fn shown_host(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        utf8_percent_encode(host, COMPONENT_ESCAPED).to_string()
    }
}

pub(super) fn decode(url: &str, part: &str, what: &str) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::redact;

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
        assert_eq!(
            BrokerUrl::parse("memory://tests/prod").unwrap(),
            BrokerUrl::Memory {
                name: vhost::memory_name("tests", "prod")
            }
        );
        assert_eq!(
            BrokerUrl::parse("memory://tests/%2F").unwrap(),
            BrokerUrl::Memory {
                name: "tests".into()
            }
        );
        assert!(BrokerUrl::parse("memory://a/b?c").is_err());
        assert!(BrokerUrl::parse("memory://a@b").is_err());
        assert_eq!(
            BrokerUrl::parse("sqlite:///d/b.db?vhost=%2Fprod").unwrap(),
            BrokerUrl::Sqlite {
                path: vhost::sqlite_path(std::path::Path::new("/d/b.db"), "/prod")
            }
        );
        assert!(BrokerUrl::parse("sqlite:///d/b.db?other=1").is_err());
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
