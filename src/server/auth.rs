//! Credentials: PLAIN and AMQPLAIN responses as RabbitMQ reads them, and the users given on
//! the command line (checked by [`Access`](super::access::Access)).

use amq_protocol::types::{AMQPValue, FieldTable};

/// Users given to a server by flags or a users file: each an administrator with every
/// permission on `/` (see [`Access`](super::access::Access)), added to a stored registry or
/// given a new password there.
#[derive(Clone, Debug)]
pub struct Users {
    users: Vec<(String, String)>,
}

impl Default for Users {
    /// None: a new registry then gets RabbitMQ's default user, `guest` / `guest`, from
    /// loopback only (and a registry kept in a sqlite:// file keeps its own).
    fn default() -> Self {
        Users { users: Vec::new() }
    }
}

impl Users {
    /// These users (`NAME:PASSWORD`), instead of the default guest.
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

    /// The users given, as `(name, password)`.
    pub fn list(&self) -> &[(String, String)] {
        &self.users
    }
}

/// The user name and password of a PLAIN (`\0user\0password`) or AMQPLAIN (a field table
/// without its length, LOGIN and PASSWORD) response.
pub(super) fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
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
    fn plain_and_amqplain_responses_give_the_credentials() {
        assert_eq!(
            credentials("PLAIN", b"\0guest\0guest"),
            Some(("guest".into(), "guest".into()))
        );
        assert_eq!(
            credentials(
                "AMQPLAIN",
                b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x02pw"
            ),
            Some(("guest".into(), "pw".into()))
        );
        assert_eq!(credentials("EXTERNAL", b""), None);
        assert_eq!(credentials("PLAIN", b"nonul"), None);
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
