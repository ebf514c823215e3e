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
    use proptest::prelude::*;

    /// RabbitMQ's rule, written as a count: of the binding's arguments that are not `x-`,
    /// how many the headers match (present, and equal or wanted as void); `any` needs one,
    /// anything else (`all`, the default) needs every one.
    fn reference(arguments: &FieldTable, headers: Option<&FieldTable>) -> bool {
        let any = arguments.get("x-match") == Some(&FieldValue::String("any".into()));
        let mut wanted = 0;
        let mut matched = 0;
        for (key, want) in arguments {
            if key.starts_with("x-") {
                continue;
            }
            wanted += 1;
            let have = headers.and_then(|h| h.get(key));
            if have.is_some_and(|have| *want == FieldValue::Void || have == want) {
                matched += 1;
            }
        }
        if any {
            matched > 0
        } else {
            matched == wanted
        }
    }

    /// Few keys and values, so that bindings and headers meet often.
    fn small_table() -> impl Strategy<Value = FieldTable> {
        let key = prop::sample::select(vec!["a", "b", "c", "x-a", "x-match"]);
        let value = prop_oneof![
            Just(FieldValue::Void),
            Just(FieldValue::String("any".into())),
            Just(FieldValue::String("all".into())),
            Just(FieldValue::Bytes(b"any".to_vec())),
            (0i64..2).prop_map(FieldValue::Int),
            any::<bool>().prop_map(FieldValue::Bool),
            Just(FieldValue::Float(1.0)),
        ];
        prop::collection::btree_map(key.prop_map(str::to_string), value, 0..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_the_reference(
            arguments in small_table(),
            headers in prop::option::of(small_table()),
        ) {
            prop_assert_eq!(
                matches(&arguments, headers.as_ref()),
                reference(&arguments, headers.as_ref()),
                "arguments {:?} headers {:?}", arguments, headers
            );
        }

        /// More headers never lose an `any` match, and headers the binding does not name never
        /// change its answer.
        #[test]
        fn more_headers_never_lose_a_match(
            arguments in small_table(),
            headers in small_table(),
            extra in small_table(),
        ) {
            let mut more = headers.clone();
            more.extend(extra.clone());
            if arguments.get("x-match").and_then(FieldValue::as_str) == Some("any")
                && matches(&arguments, Some(&headers))
                && extra.keys().all(|k| !headers.contains_key(k))
            {
                prop_assert!(matches(&arguments, Some(&more)));
            }
            let unnamed: FieldTable = extra
                .into_iter()
                .filter(|(k, _)| !arguments.contains_key(k))
                .collect();
            let mut with_unnamed = headers.clone();
            with_unnamed.extend(unnamed);
            prop_assert_eq!(
                matches(&arguments, Some(&with_unnamed)),
                matches(&arguments, Some(&headers))
            );
        }
    }

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
