//! `amqp://` and `amqps://` URLs: their settings and how they are read.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::decode;
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

pub(super) fn parse_amqp(url: &str, rest: &str, tls: bool) -> Result<AmqpSettings> {
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
    let parts = super::authority(url, authority)?;
    if let Some(user) = parts.user.filter(|u| !u.is_empty()) {
        settings.userid = user;
    }
    if let Some(pass) = parts.password {
        settings.password = Password(pass);
    }
    if let Some(host) = parts.host {
        settings.host = host;
    }
    if let Some(port) = parts.port {
        settings.port = port;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::BrokerUrl;

    fn amqp(url: &str) -> AmqpSettings {
        match BrokerUrl::parse(url).unwrap() {
            BrokerUrl::Amqp(s) => s,
            other => panic!("expected amqp, got {other:?}"),
        }
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
    fn ipv6_hosts() {
        let s = amqp("amqp://[::1]:5000/");
        assert_eq!((s.host.as_str(), s.port), ("::1", 5000));
    }
}
