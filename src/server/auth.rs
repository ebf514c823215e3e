//! Who may connect: users with passwords, PLAIN and AMQPLAIN as RabbitMQ reads them, and
//! RabbitMQ's rule for the default user: `guest` / `guest` only from the loopback interface.

use std::net::IpAddr;

use amq_protocol::types::{AMQPValue, FieldTable};

/// The users a server accepts.
#[derive(Clone, Debug)]
pub struct Users {
    users: Vec<(String, String)>,
}

impl Default for Users {
    /// `guest` / `guest`, from loopback only (RabbitMQ's default).
    fn default() -> Self {
        Users {
            users: vec![("guest".into(), "guest".into())],
        }
    }
}

impl Users {
    /// Exactly these users (`NAME:PASSWORD`), instead of the default guest.
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        Users {
            users: users.into_iter().collect(),
        }
    }

    /// Parses `NAME:PASSWORD`.
    pub fn parse_one(text: &str) -> Result<(String, String), String> {
        match text.split_once(':') {
            Some((name, password)) if !name.is_empty() => Ok((name.into(), password.into())),
            _ => Err(format!("{text:?} is not NAME:PASSWORD")),
        }
    }

    /// Reads users from a file: one `NAME:PASSWORD` per line; blank lines and lines starting
    /// with `#` are skipped. A line without a name or a colon is an
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) that gives its number.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> crate::Result<Vec<(String, String)>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::Error::InvalidArgument(format!(
                "cannot read the users file {}: {e}",
                path.display()
            ))
        })?;
        let mut users = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let user = Users::parse_one(line).map_err(|_| {
                crate::Error::InvalidArgument(format!(
                    "line {} of the users file {} is not NAME:PASSWORD",
                    number + 1,
                    path.display()
                ))
            })?;
            users.push(user);
        }
        Ok(users)
    }

    /// The user the client authenticated as, if the credentials are good and the user may
    /// connect from `peer`.
    pub(super) fn check(&self, mechanism: &str, response: &[u8], peer: IpAddr) -> Option<String> {
        let (name, password) = credentials(mechanism, response)?;
        let known = self.users.iter().any(|(n, p)| *n == name && *p == password);
        // RabbitMQ's loopback_users: guest may only connect from the machine itself.
        let allowed = name != "guest" || peer.is_loopback();
        (known && allowed).then_some(name)
    }
}

/// The user name and password of a PLAIN (`\0user\0password`) or AMQPLAIN (a field table
/// without its length, LOGIN and PASSWORD) response.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|&b| b == 0);
            let _authzid = parts.next()?;
            let name = std::str::from_utf8(parts.next()?).ok()?;
            let password = std::str::from_utf8(parts.next()?).ok()?;
            Some((name.into(), password.into()))
        }
        "AMQPLAIN" => {
            // The response is a field table's content without the 4-byte length prefix.
            let mut table = (response.len() as u32).to_be_bytes().to_vec();
            table.extend_from_slice(response);
            let (_, table): (_, FieldTable) =
                amq_protocol::types::parsing::parse_field_table(&table[..]).ok()?;
            let text = |key: &str| match table.inner().get(key) {
                Some(AMQPValue::LongString(s)) => Some(s.to_string()),
                Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
                _ => None,
            };
            Some((text("LOGIN")?, text("PASSWORD")?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_only_from_loopback_and_wrong_passwords_refused() {
        let users = Users::default();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            users.check("PLAIN", b"\0guest\0guest", loopback).as_deref(),
            Some("guest")
        );
        assert_eq!(users.check("PLAIN", b"\0guest\0guest", remote), None);
        assert_eq!(users.check("PLAIN", b"\0guest\0nope", loopback), None);
        assert_eq!(users.check("EXTERNAL", b"", loopback), None);
        let other = Users::new([("app".to_string(), "s3cret".to_string())]);
        assert_eq!(
            users
                .check(
                    "AMQPLAIN",
                    b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest",
                    loopback
                )
                .as_deref(),
            Some("guest")
        );
        assert_eq!(
            other.check("PLAIN", b"\0app\0s3cret", remote).as_deref(),
            Some("app")
        );
    }

    #[test]
    fn a_users_file_skips_comments_and_names_a_bad_line() {
        let dir = std::env::temp_dir().join(format!("carrot-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "# who may connect\n\napp:s3cret\nops:a:b\n").unwrap();
        assert_eq!(
            Users::from_file(&good).unwrap(),
            vec![
                ("app".to_string(), "s3cret".to_string()),
                ("ops".to_string(), "a:b".to_string())
            ]
        );
        let bad = dir.join("bad");
        std::fs::write(&bad, "app:s3cret\nnobody\n").unwrap();
        let error = Users::from_file(&bad).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        let missing = Users::from_file(dir.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read the users file"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
