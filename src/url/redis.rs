//! `redis://`, `rediss://`, `redis+socket://` and `sentinel://` URLs, as kombu writes them,
//! with kombu's Redis transport options as query parameters.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{authority, decode, shown_host, Password};
use crate::error::{Error, Result};

/// Where a Redis server is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisAddress {
    /// A TCP address (`redis://host:port`, TLS with `rediss://`).
    Tcp {
        /// Host name or address (default `localhost`).
        host: String,
        /// Port (default 6379).
        port: u16,
    },
    /// A Unix socket (`redis+socket:///path/to/redis.sock`).
    Unix(PathBuf),
    /// The master that Redis Sentinel names `master_name`, asked of these sentinels in order
    /// (`sentinel://h1:26379;sentinel://h2:26379?master_name=mymaster`).
    Sentinel {
        /// The sentinels, as (host, port).
        sentinels: Vec<(String, u16)>,
        /// The monitored master's name (kombu's `master_name` transport option).
        master_name: String,
    },
}

/// Settings of a Redis URL: the server, credentials, database, and kombu's Redis transport
/// options that carrot honours (same names, same defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSettings {
    /// The server, its socket, or its sentinels.
    pub address: RedisAddress,
    /// `rediss://`: TLS.
    pub tls: bool,
    /// `ssl_cert_reqs=CERT_NONE` turns off certificate verification (default on).
    pub verify: bool,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password (`redis://:secret@host`), if any.
    pub password: Option<Password>,
    /// The database number (the URL's path, default 0).
    pub db: u32,
    /// `visibility_timeout` (seconds, default 3600): a delivery not acknowledged for this long
    /// by a consumer that is gone is given to another consumer.
    pub visibility_timeout: Duration,
    /// `fanout_prefix` (default true): fanout channel names start with `/{db}.`.
    pub fanout_prefix: bool,
    /// `fanout_patterns` (default true): fanout messages are published on
    /// `exchange/routing_key`, as kombu subscribes to them.
    pub fanout_patterns: bool,
    /// `priority_steps` (default `0,3,6,9`): the priorities that get a list of their own.
    pub priority_steps: Vec<u8>,
    /// `sep` (default `"\x06\x16"`): the separator in binding members and priority keys.
    pub sep: String,
    /// `global_keyprefix` (default empty): prepended to every key.
    pub global_keyprefix: String,
    /// `unacked_key` (default `unacked`): the hash of unacknowledged deliveries.
    pub unacked_key: String,
    /// `unacked_index_key` (default `unacked_index`): their delivery times.
    pub unacked_index_key: String,
    /// `unacked_mutex_key` (default `unacked_mutex`): held while expired deliveries are
    /// restored.
    pub unacked_mutex_key: String,
    /// `unacked_mutex_expire` (seconds, default 300).
    pub unacked_mutex_expire: Duration,
    /// `socket_connect_timeout` (seconds): the connect timeout, if set.
    pub socket_connect_timeout: Option<Duration>,
    /// `socket_timeout` (seconds): how long one command may take, if set.
    pub socket_timeout: Option<Duration>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            address: RedisAddress::Tcp {
                host: "localhost".into(),
                port: 6379,
            },
            tls: false,
            verify: true,
            username: None,
            password: None,
            db: 0,
            visibility_timeout: Duration::from_secs(3600),
            fanout_prefix: true,
            fanout_patterns: true,
            priority_steps: vec![0, 3, 6, 9],
            sep: "\x06\x16".into(),
            global_keyprefix: String::new(),
            unacked_key: "unacked".into(),
            unacked_index_key: "unacked_index".into(),
            unacked_mutex_key: "unacked_mutex".into(),
            unacked_mutex_expire: Duration::from_secs(300),
            socket_connect_timeout: None,
            socket_timeout: None,
        }
    }
}

/// The options a Redis URL may carry.
const OPTIONS: &str = "visibility_timeout, fanout_prefix, fanout_patterns, priority_steps, sep, global_keyprefix, unacked_key, unacked_index_key, unacked_mutex_key, unacked_mutex_expire, socket_timeout, socket_connect_timeout, ssl_cert_reqs, master_name, db";

/// Parses the part after `scheme://` of a Redis URL.
pub(super) fn parse_redis(url: &str, scheme: &str, rest: &str) -> Result<RedisSettings> {
    let mut settings = RedisSettings {
        tls: scheme == "rediss",
        ..RedisSettings::default()
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q),
        None => (rest, ""),
    };
    let mut master_name = None;
    if scheme == "redis+socket" {
        if rest.is_empty() {
            return Err(Error::invalid_url(
                url,
                "missing socket path: write redis+socket:///run/redis/redis.sock",
            ));
        }
        settings.address = RedisAddress::Unix(decode(url, rest, "socket path")?.into());
    } else {
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let parts = authority(url, auth)?;
        settings.username = parts.user;
        settings.password = parts.password.filter(|p| !p.is_empty()).map(Password::new);
        let host = parts.host.unwrap_or_else(|| "localhost".into());
        if scheme == "sentinel" {
            settings.address = RedisAddress::Sentinel {
                sentinels: vec![(host, parts.port.unwrap_or(26379))],
                master_name: String::new(),
            };
        } else {
            settings.address = RedisAddress::Tcp {
                host,
                port: parts.port.unwrap_or(6379),
            };
        }
        let path = path.trim_end_matches('/');
        if !path.is_empty() {
            settings.db = database(url, path)?;
        }
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(url, value, key)?;
        match key {
            "visibility_timeout" => settings.visibility_timeout = seconds(url, key, &value)?,
            "unacked_mutex_expire" => settings.unacked_mutex_expire = seconds(url, key, &value)?,
            "socket_timeout" => settings.socket_timeout = Some(seconds(url, key, &value)?),
            "socket_connect_timeout" => {
                settings.socket_connect_timeout = Some(seconds(url, key, &value)?)
            }
            "fanout_prefix" => settings.fanout_prefix = boolean(url, key, &value)?,
            "fanout_patterns" => settings.fanout_patterns = boolean(url, key, &value)?,
            "priority_steps" => settings.priority_steps = steps(url, &value)?,
            "sep" => settings.sep = value,
            "global_keyprefix" => settings.global_keyprefix = value,
            "unacked_key" => settings.unacked_key = value,
            "unacked_index_key" => settings.unacked_index_key = value,
            "unacked_mutex_key" => settings.unacked_mutex_key = value,
            "master_name" => master_name = Some(value),
            "db" | "virtual_host" => settings.db = database(url, &value)?,
            "ssl_cert_reqs" => {
                settings.verify = match value.to_ascii_lowercase().as_str() {
                    "cert_none" | "none" => false,
                    "cert_required" | "required" | "cert_optional" | "optional" => true,
                    _ => {
                        return Err(Error::invalid_url(
                            url,
                            "ssl_cert_reqs must be CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED",
                        ))
                    }
                }
            }
            other => {
                return Err(Error::invalid_url(
                    url,
                    format!("unknown option {other:?}: known options are {OPTIONS}"),
                ))
            }
        }
    }
    if settings.visibility_timeout.is_zero() {
        return Err(Error::invalid_url(
            url,
            "visibility_timeout must be more than 0 seconds",
        ));
    }
    match (&mut settings.address, master_name) {
        (RedisAddress::Sentinel { master_name, .. }, Some(name)) if !name.is_empty() => {
            *master_name = name
        }
        (RedisAddress::Sentinel { .. }, _) => {
            return Err(Error::invalid_url(
                url,
                "a sentinel:// URL needs the master's name: add ?master_name=mymaster",
            ))
        }
        (_, Some(_)) => {
            return Err(Error::invalid_url(
                url,
                "master_name is an option of sentinel:// URLs only",
            ))
        }
        (_, None) => {}
    }
    Ok(settings)
}

/// Merges several `sentinel://` URLs (kombu's `sentinel://a;sentinel://b`) into one: their
/// sentinels in order, the settings (`master_name` ...) of whichever part gives them.
pub(super) fn merge_sentinels(urls: &str, parts: &[&str]) -> Result<RedisSettings> {
    let named = parts
        .iter()
        .find(|p| p.contains("master_name="))
        .ok_or_else(|| {
            Error::invalid_url(
                urls,
                "sentinel:// URLs need the master's name: add ?master_name=mymaster",
            )
        })?;
    let mut merged = parse_part(named)?;
    let name = match &merged.address {
        RedisAddress::Sentinel { master_name, .. } => master_name.clone(),
        _ => String::new(),
    };
    let mut all = Vec::new();
    for part in parts {
        let parsed = if part.contains("master_name=") {
            parse_part(part)?
        } else {
            let sep = if part.contains('?') { '&' } else { '?' };
            parse_part(&format!("{part}{sep}master_name={name}"))?
        };
        if let RedisAddress::Sentinel { sentinels, .. } = parsed.address {
            all.extend(sentinels);
        }
    }
    if let RedisAddress::Sentinel { sentinels, .. } = &mut merged.address {
        *sentinels = all;
    }
    Ok(merged)
}

fn parse_part(part: &str) -> Result<RedisSettings> {
    let Some(("sentinel", rest)) = part.trim().split_once("://") else {
        return Err(Error::invalid_url(part, "expected sentinel://HOST:PORT"));
    };
    parse_redis(part, "sentinel", rest)
}

fn database(url: &str, value: &str) -> Result<u32> {
    value.parse().map_err(|_| {
        Error::invalid_url(
            url,
            format!("the database {value:?} is not a number: write redis://host:6379/0"),
        )
    })
}

fn seconds(url: &str, key: &str, value: &str) -> Result<Duration> {
    let secs: f64 = value.parse().map_err(|_| {
        Error::invalid_url(url, format!("{key}={value:?} is not a number of seconds"))
    })?;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(Error::invalid_url(
            url,
            format!("{key} must be zero or more seconds"),
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::invalid_url(url, format!("{key} is too large")))
}

fn boolean(url: &str, key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::invalid_url(
            url,
            format!("{key}={value:?}: use true or false"),
        )),
    }
}

fn steps(url: &str, value: &str) -> Result<Vec<u8>> {
    let mut steps = value
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().parse::<u8>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::invalid_url(
                url,
                "priority_steps must be numbers from 0 to 255 separated by commas, as 0,3,6,9",
            )
        })?;
    steps.sort_unstable();
    steps.dedup();
    if steps.first() != Some(&0) {
        steps.insert(0, 0);
    }
    Ok(steps)
}

impl RedisSettings {
    /// Writes the URL back, with the password shown as `***`.
    pub(super) fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".into(),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        match &self.address {
            RedisAddress::Tcp { host, port } => {
                let scheme = if self.tls { "rediss" } else { "redis" };
                write!(
                    f,
                    "{scheme}://{auth}{}:{port}/{}",
                    shown_host(host),
                    self.db
                )
            }
            RedisAddress::Unix(path) => write!(f, "redis+socket://{}", path.display()),
            RedisAddress::Sentinel {
                sentinels,
                master_name,
            } => {
                for (i, (host, port)) in sentinels.iter().enumerate() {
                    if i > 0 {
                        f.write_str(";")?;
                    }
                    write!(
                        f,
                        "sentinel://{auth}{}:{port}/{}",
                        shown_host(host),
                        self.db
                    )?;
                }
                write!(f, "?master_name={master_name}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::{parse_failover, BrokerUrl};

    fn redis(url: &str) -> RedisSettings {
        match BrokerUrl::parse(url).unwrap() {
            BrokerUrl::Redis(s) => s,
            other => panic!("expected redis, got {other:?}"),
        }
    }

    #[test]
    fn kombu_forms() {
        let s = redis("redis://");
        assert_eq!(
            s.address,
            RedisAddress::Tcp {
                host: "localhost".into(),
                port: 6379
            }
        );
        assert_eq!((s.db, s.visibility_timeout), (0, Duration::from_secs(3600)));
        let s =
            redis("redis://:s%40cret@127.0.0.1:6380/3?visibility_timeout=10&priority_steps=0,5");
        assert_eq!(s.password.as_ref().map(Password::expose), Some("s@cret"));
        assert_eq!(s.db, 3);
        assert_eq!(s.visibility_timeout, Duration::from_secs(10));
        assert_eq!(s.priority_steps, vec![0, 5]);
        let shown = BrokerUrl::Redis(s).to_string();
        assert_eq!(shown, "redis://:***@127.0.0.1:6380/3");
        assert!(redis("rediss://h:6390/0?ssl_cert_reqs=CERT_NONE").tls);
        assert!(!redis("rediss://h/0?ssl_cert_reqs=CERT_NONE").verify);
        assert_eq!(
            redis("redis+socket:///run/redis.sock").address,
            RedisAddress::Unix("/run/redis.sock".into())
        );
    }

    #[test]
    fn sentinels_merge_with_the_master_name() {
        let urls = parse_failover(
            "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380?master_name=mymaster",
        )
        .unwrap();
        assert_eq!(urls.len(), 1);
        let BrokerUrl::Redis(s) = &urls[0] else {
            panic!("expected redis")
        };
        assert_eq!(
            s.address,
            RedisAddress::Sentinel {
                sentinels: vec![("127.0.0.1".into(), 26379), ("127.0.0.1".into(), 26380)],
                master_name: "mymaster".into()
            }
        );
        assert!(parse_failover("sentinel://127.0.0.1:26379").is_err());
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        for bad in [
            "redis://h/x",
            "redis://h/0?visibility_timeout=soon",
            "redis://h/0?visibility_timeout=0",
            "redis://h/0?bogus=1",
            "redis://h/0?master_name=m",
            "redis://h:0/0",
            "redis+socket://",
            "redis://h/0?priority_steps=a,b",
        ] {
            assert!(
                matches!(BrokerUrl::parse(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
