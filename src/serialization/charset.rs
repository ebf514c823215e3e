//! Text bodies in the character set their `content_encoding` names, as kombu encodes and
//! decodes them (`str.encode(content_encoding)` / `bytes.decode(content_encoding)`).
//!
//! Known: `utf-8` (and `utf8`), `ascii` (`us-ascii`), and `latin-1` (`latin1`, `iso-8859-1`,
//! `iso8859-1`, `l1`), case-insensitively. `binary` is never text. Text is sent only in a
//! character set carrot knows (another name is an error that says which it knows); a body
//! labelled with another one is read as UTF-8 when it is valid UTF-8 (as carrot did before it
//! knew any character set), and as bytes otherwise.

use std::borrow::Cow;

/// A character set carrot can encode and decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charset {
    Utf8,
    Ascii,
    Latin1,
}

impl Charset {
    /// The character set a `content_encoding` names; `None` for `binary` (not text) and for
    /// no encoding (UTF-8 is assumed then, as kombu does).
    pub(crate) fn of(encoding: Option<&str>) -> Result<Option<Charset>, String> {
        let Some(name) = encoding else {
            return Ok(Some(Charset::Utf8));
        };
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        Ok(Some(match name.as_str() {
            "binary" | "ascii-8bit" => return Ok(None),
            "utf-8" | "utf8" | "" => Charset::Utf8,
            "ascii" | "us-ascii" => Charset::Ascii,
            "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" => Charset::Latin1,
            _ => {
                return Err(format!(
                    "the content encoding {name:?} is not a character set carrot knows: use utf-8, ascii or latin-1 (iso-8859-1), or binary"
                ))
            }
        }))
    }

    /// Text from a body in this character set.
    pub(crate) fn decode(self, body: &[u8]) -> Result<Cow<'_, str>, String> {
        match self {
            Charset::Utf8 => std::str::from_utf8(body)
                .map(Cow::Borrowed)
                .map_err(|e| format!("the body is not UTF-8 text: {e}")),
            Charset::Ascii => match body.iter().position(|b| !b.is_ascii()) {
                None => Ok(Cow::Borrowed(
                    std::str::from_utf8(body).map_err(|e| e.to_string())?,
                )),
                Some(at) => Err(format!(
                    "the body is not ASCII text: byte {at} is {:#04x}",
                    body[at]
                )),
            },
            // Every byte is the code point of the same number.
            Charset::Latin1 => Ok(Cow::Owned(body.iter().map(|&b| char::from(b)).collect())),
        }
    }

    /// A body in this character set from text.
    pub(crate) fn encode(self, text: &str) -> Result<Vec<u8>, String> {
        let refuse = |c: char| {
            format!(
                "the text holds {c:?}, which {} cannot encode; send it as utf-8",
                self.name()
            )
        };
        match self {
            Charset::Utf8 => Ok(text.as_bytes().to_vec()),
            Charset::Ascii => match text.chars().find(|c| !c.is_ascii()) {
                None => Ok(text.as_bytes().to_vec()),
                Some(c) => Err(refuse(c)),
            },
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(|_| refuse(c)))
                .collect(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::Ascii => "ascii",
            Charset::Latin1 => "latin-1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_round_trips_and_refuses_what_it_cannot_hold() {
        let latin1 = Charset::of(Some("ISO-8859-1")).unwrap().unwrap();
        let body = latin1.encode("grüße").unwrap();
        assert_eq!(body, b"gr\xfc\xdfe");
        assert_eq!(latin1.decode(&body).unwrap(), "grüße");
        assert!(latin1.encode("日本").unwrap_err().contains("latin-1"));
    }

    #[test]
    fn binary_is_not_text_and_unknown_charsets_are_named() {
        assert_eq!(Charset::of(Some("binary")).unwrap(), None);
        assert_eq!(Charset::of(None).unwrap(), Some(Charset::Utf8));
        assert!(Charset::of(Some("ebcdic")).unwrap_err().contains("ebcdic"));
        assert!(Charset::of(Some("ascii"))
            .unwrap()
            .unwrap()
            .decode(b"\xff")
            .is_err());
    }
}
