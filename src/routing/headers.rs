//! Headers exchange matching, as RabbitMQ does it.
//!
//! Binding arguments name the headers to look for; `x-match` is `all` (the default: every one
//! must match) or `any` (one is enough). Arguments starting with `x-` are not matched. An
//! argument whose value is void matches any value of a present header. A binding with nothing
//! to match matches every message under `all` and none under `any`.

use crate::table::{FieldTable, FieldValue};

/// Whether a message with `headers` matches a headers binding with `arguments`.
pub(crate) fn matches(arguments: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let any = matches!(arguments.get("x-match"), Some(FieldValue::String(s)) if s == "any");
    let mut wanted = arguments.iter().filter(|(k, _)| !k.starts_with("x-"));
    let hit = |(key, want): (&String, &FieldValue)| match headers.and_then(|h| h.get(key)) {
        None => false,
        Some(_) if *want == FieldValue::Void => true,
        Some(have) => have == want,
    };
    if any {
        wanted.any(hit)
    } else {
        wanted.all(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table;

    #[test]
    fn all_and_any() {
        let h = table([("format", "pdf".into()), ("type", "report".into())]);
        let all = table([("format", "pdf".into()), ("type", "report".into())]);
        let all_miss = table([("format", "pdf".into()), ("type", "log".into())]);
        let any = table([
            ("x-match", "any".into()),
            ("format", "zip".into()),
            ("type", "report".into()),
        ]);
        let any_miss = table([("x-match", "any".into()), ("format", "zip".into())]);
        assert!(matches(&all, Some(&h)));
        assert!(!matches(&all_miss, Some(&h)));
        assert!(matches(&any, Some(&h)));
        assert!(!matches(&any_miss, Some(&h)));
        assert!(!matches(&all, None));
    }

    #[test]
    fn x_keys_void_values_and_empty_bindings() {
        let h = table([("format", "pdf".into()), ("x-extra", 1.into())]);
        assert!(matches(&table([("x-extra", 2.into())]), Some(&h)));
        assert!(matches(&table([("format", FieldValue::Void)]), Some(&h)));
        assert!(matches(&FieldTable::new(), None));
        assert!(!matches(&table([("x-match", "any".into())]), Some(&h)));
        assert!(
            !matches(&table([("format", 1.into())]), Some(&h)),
            "types must match too"
        );
    }
}
