//! The blocking twin of an async test source, line for line (so that a compile error in the
//! twin points at the line of the source it comes from):
//! - `.await` goes; `async move { ... }` and `async { ... }` become blocks, `async fn` a
//!   function, `async move |..|` a closure;
//! - `carrot::` at the root of a path becomes `crate::api::` (the twin crate's module where the
//!   blocking types shadow the async ones);
//! - `#[tokio::test]` becomes `#[test]`, `//!` a plain comment (an included file has no inner
//!   attributes);
//! - the scenarios listed as async-only (`conformance!(name, ...)`) are blanked out;
//! - any other `tokio::` or `async` is an error: a scenario waits through the support helpers,
//!   which both suites have.

use std::collections::BTreeSet;

use crate::lex::{kinds, Kind};

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The macros whose first argument names a scenario.
const SCENARIO_MACROS: &[&str] = &["conformance!", "conformance_restart!"];

/// The twin of `src`, or the errors that prevent one (with their line numbers).
pub fn twin(src: &str, async_only: &BTreeSet<String>) -> Result<String, Vec<String>> {
    let mut errors = Vec::new();
    let blanked = blank_scenarios(src, async_only, &mut errors);
    let out = rewrite(&blanked, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn line_of(src: &[u8], at: usize) -> usize {
    src[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Whether `word` is at `i` as a whole identifier.
fn word_at(src: &[u8], kinds: &[Kind], i: usize, word: &str) -> bool {
    src[i..].starts_with(word.as_bytes())
        && kinds[i] == Kind::Code
        && (i == 0 || !is_ident(src[i - 1]))
        && src
            .get(i + word.len())
            .is_none_or(|&b| !is_ident(b) || word.ends_with(['!', ':']))
}

/// The source with each async-only scenario's invocation (up to its `;`) replaced by spaces,
/// newlines kept.
fn blank_scenarios(src: &str, async_only: &BTreeSet<String>, errors: &mut Vec<String>) -> String {
    let bytes = src.as_bytes();
    let kinds = kinds(bytes);
    let mut out = bytes.to_vec();
    let mut found = BTreeSet::new();
    for i in 0..bytes.len() {
        let Some(mac) = SCENARIO_MACROS
            .iter()
            .find(|m| word_at(bytes, &kinds, i, m))
        else {
            continue;
        };
        let mut j = i + mac.len();
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if bytes.get(j) != Some(&b'(') {
            continue;
        }
        let name_start = (j + 1..bytes.len())
            .find(|&k| !bytes[k].is_ascii_whitespace())
            .unwrap_or(bytes.len());
        let name_end = (name_start..bytes.len())
            .find(|&k| !is_ident(bytes[k]))
            .unwrap_or(bytes.len());
        let name = &src[name_start..name_end];
        if !async_only.contains(name) {
            continue;
        }
        let (mut depth, mut k) = (0i32, j);
        while k < bytes.len() {
            if kinds[k] == Kind::Code {
                match bytes[k] {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth -= 1,
                    _ => {}
                }
            }
            k += 1;
            if depth == 0 {
                break;
            }
        }
        if bytes.get(k) == Some(&b';') {
            k += 1;
        }
        for b in &mut out[i..k] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        found.insert(name.to_string());
    }
    for missing in async_only.difference(&found) {
        errors.push(format!(
            "async-only scenario `{missing}` is not in this file: remove it from the list"
        ));
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The next code token after `i` (whitespace skipped): its start.
fn next_token(src: &[u8], from: usize) -> usize {
    (from..src.len())
        .find(|&k| !src[k].is_ascii_whitespace())
        .unwrap_or(src.len())
}

fn rewrite(src: &str, errors: &mut Vec<String>) -> String {
    let bytes = src.as_bytes();
    let kinds = kinds(bytes);
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < bytes.len() {
        if kinds[i] == Kind::Comment && bytes[i..].starts_with(b"//!") {
            out.push_str("//");
            i += 3;
            continue;
        }
        if kinds[i] != Kind::Code {
            let end = (i..bytes.len())
                .find(|&k| kinds[k] == Kind::Code || bytes[k..].starts_with(b"//!"))
                .unwrap_or(bytes.len());
            out.push_str(&src[i..end.max(i + 1)]);
            i = end.max(i + 1);
            continue;
        }
        if bytes[i..].starts_with(b".await") && bytes.get(i + 6).is_none_or(|&b| !is_ident(b)) {
            i += 6;
        } else if word_at(bytes, &kinds, i, "async") {
            let next = next_token(bytes, i + 5);
            let after_move = if word_at(bytes, &kinds, next, "move") {
                next_token(bytes, next + 4)
            } else {
                next
            };
            match bytes.get(after_move) {
                // `async move {` and `async {`: the block alone.
                Some(b'{') => i = after_move,
                // `async fn`, `async move |x|`, `async |x|`: without `async`.
                Some(b'|') => i = next,
                _ if word_at(bytes, &kinds, next, "fn") => i = next,
                _ => {
                    errors.push(format!(
                        "line {}: no blocking twin for this `async`",
                        line_of(bytes, i)
                    ));
                    i += 5;
                }
            }
        } else if word_at(bytes, &kinds, i, "carrot::") && (i < 2 || &bytes[i - 2..i] != b"::") {
            out.push_str("crate::api::");
            i += "carrot::".len();
        } else if bytes[i..].starts_with(b"#[tokio::test]") {
            out.push_str("#[test]");
            i += "#[tokio::test]".len();
        } else if word_at(bytes, &kinds, i, "tokio::") {
            errors.push(format!(
                "line {}: `tokio::` has no blocking twin: wait through the support helpers (pause, within, spawn...)",
                line_of(bytes, i)
            ));
            out.push_str("tokio::");
            i += "tokio::".len();
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin_of(src: &str, skip: &[&str]) -> Result<String, Vec<String>> {
        twin(src, &skip.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn awaits_and_async_blocks_go() {
        let src = "//! Doc.\nuse carrot::{Error, Consumer};\nconformance!(a, |t| async move {\n    let c = t.connect().await?;\n    c.fetch()\n        .await?;\n    Ok(())\n});\nasync fn f(x: &carrot::Message) { g(async { 1 }).await }\n";
        let out = twin_of(src, &[]).expect("a twin");
        assert_eq!(
            out,
            "// Doc.\nuse crate::api::{Error, Consumer};\nconformance!(a, |t| {\n    let c = t.connect()?;\n    c.fetch()\n        ?;\n    Ok(())\n});\nfn f(x: &crate::api::Message) { g({ 1 }) }\n"
        );
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn literals_comments_and_other_paths_stay() {
        let src = "let s = \"x.await async {\"; // carrot::X .await\nlet p = ::carrot::Y; let q = my_carrot::Z; spawn(move || async move { 1 });\n#[tokio::test]\n";
        let out = twin_of(src, &[]).expect("a twin");
        assert_eq!(out, "let s = \"x.await async {\"; // carrot::X .await\nlet p = ::carrot::Y; let q = my_carrot::Z; spawn(move || { 1 });\n#[test]\n");
    }

    #[test]
    fn async_only_scenarios_are_blanked_and_must_exist() {
        let src = "conformance!(keep, |t| async move { Ok(()) });\nconformance!(\n    drop_me,\n    |t| async move { f(\")\"); Ok(()) }\n);\nconformance!(after, |t| async move { Ok(()) });\n";
        let out = twin_of(src, &["drop_me"]).expect("a twin");
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(out.contains("conformance!(keep") && out.contains("conformance!(after"));
        assert!(!out.contains("drop_me"));
        let errors = twin_of(src, &["missing"]).unwrap_err();
        assert!(errors[0].contains("`missing`"), "{errors:?}");
    }

    #[test]
    fn what_has_no_twin_is_an_error_with_its_line() {
        let errors = twin_of("a\ntokio::time::sleep(d).await;\nlet f = async;\n", &[]).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("line 2:") && errors[1].starts_with("line 3:"));
    }
}
