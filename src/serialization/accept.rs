//! The accept list (kombu's `accept`): which content types a consumer decodes.
//!
//! Entries are serializer names (`"json"`, `"msgpack"`, `"raw"`, `"text"`) or content types
//! (`"application/x-yaml"`), compared exactly, as kombu and the serializer lookup do. Without a list a consumer
//! decodes json, raw (`application/data`), text (`text/plain`), custom serializers and
//! unknown content types (as raw), and refuses msgpack, yaml, pickle and hessian: their
//! readers are large attack surfaces, and unpickling runs code in Python.

use super::{base_content_type, Registry, ACCEPTED_WHEN_NAMED};
use crate::error::{Error, Result};

/// Whether a message of `content_type` may be decoded under `accept`.
pub(crate) fn check(
    registry: &Registry,
    accept: Option<&[String]>,
    content_type: Option<&str>,
) -> Result<()> {
    let base = base_content_type(content_type.unwrap_or(""));
    let guarded = ACCEPTED_WHEN_NAMED
        .iter()
        .find(|(_, ct)| *ct == base)
        .map(|(name, _)| *name);
    let name = registry.name_for_content_type(base).or(guarded);
    let accepted = match accept {
        None => guarded.is_none(),
        Some(list) => list.iter().any(|a| {
            Some(a.as_str()) == name || a == base || (a == "text" && base == "text/plain")
        }),
    };
    if accepted {
        return Ok(());
    }
    Err(Error::ContentTypeNotAccepted {
        content_type: base.to_string(),
        accepted: match accept {
            None => "json, raw, text and custom serializers, the default".into(),
            Some(list) => list.join(", "),
        },
        allow: name.unwrap_or(base).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(accept: Option<&[&str]>, content_type: &str) -> bool {
        let list: Option<Vec<String>> = accept.map(|l| l.iter().map(|s| s.to_string()).collect());
        check(&Registry::default(), list.as_deref(), Some(content_type)).is_ok()
    }

    #[test]
    fn the_default_list_refuses_the_risky_formats_only() {
        for ct in [
            "application/json",
            "text/plain; charset=utf-8",
            "application/data",
            "application/x-unknown",
        ] {
            assert!(accepted(None, ct), "{ct}");
        }
        for ct in [
            "application/x-python-serialize",
            "application/x-msgpack",
            "application/x-yaml",
            "application/x-hessian",
        ] {
            assert!(!accepted(None, ct), "{ct}");
        }
    }

    #[test]
    fn names_and_content_types_both_widen_the_list() {
        assert!(accepted(Some(&["msgpack"]), "application/x-msgpack"));
        assert!(accepted(
            Some(&["application/x-yaml"]),
            "application/x-yaml; charset=utf-8"
        ));
        assert!(accepted(Some(&["text"]), "text/plain"));
        assert!(!accepted(Some(&["json"]), "text/plain"));
        let err = check(
            &Registry::default(),
            Some(&["json".to_string()]),
            Some("application/x-python-serialize"),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("application/x-python-serialize") && text.contains("\"pickle\""),
            "{text}"
        );
    }
}
