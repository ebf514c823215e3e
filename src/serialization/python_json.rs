//! JSON as Python's `json.dumps` writes it by default (`", "` and `": "` separators,
//! non-ASCII characters escaped as `\uXXXX`), which is what kombu's json serializer sends:
//! carrot writes the same bytes, so that a message is the same whichever side wrote it.

use std::io;

use serde::Serialize;

/// Python's `json.dumps` defaults: `", "` and `": "` separators, `ensure_ascii`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as Python's `json.dumps(value)` writes it (kombu's json serializer, and its
/// Redis envelope): what kombu writes, byte for byte.
pub(crate) fn python_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        PythonFormatter,
    ))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_python_writes() {
        let value = serde_json::json!({"a": 1, "b": [1, 2.5, "é😀"], "c": {}});
        assert_eq!(
            String::from_utf8(python_json(&value).unwrap()).unwrap(),
            r#"{"a": 1, "b": [1, 2.5, "\u00e9\ud83d\ude00"], "c": {}}"#
        );
    }
}
