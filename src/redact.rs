//! Broker URLs as text, before any parsing: splitting a failover list, and hiding passwords in
//! messages and logs. Errors and URL parsing both use it, so it depends on neither.

/// Splits a list of URLs at each `;` that starts another URL (`SCHEME://`): a `;` inside a
/// password or a path stays where it is.
pub(crate) fn split_list(urls: &str) -> Vec<&str> {
    let starts_url = |rest: &str| {
        let rest = rest.trim_start();
        rest.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
    };
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in urls.match_indices(';') {
        let rest = &urls[i + 1..];
        if starts_url(rest) || rest.trim().is_empty() {
            parts.push(&urls[start..i]);
            start = i + 1;
        }
    }
    parts.push(&urls[start..]);
    parts
}

/// Replaces the password of a URL-like string (or of each of several separated by `;`) with
/// `***`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let parts = split_list(url);
    if parts.len() > 1 {
        return parts.into_iter().map(redact).collect::<Vec<_>>().join(";");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // From the first ':' to the last '@': an unencoded '/', '?' or '@' in the password does
    // not let any of it show (at worst more than the password is hidden).
    match rest.rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{scheme}://{}:***@{}", &rest[..colon], &rest[at + 1..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_password_of_a_list_is_hidden() {
        assert_eq!(
            redact("amqp://u:pa;ss@h/;amqp://v:w;x@k/"),
            "amqp://u:***@h/;amqp://v:***@k/"
        );
        assert_eq!(redact("amqp://u:p/@?s@h/"), "amqp://u:***@h/");
        assert_eq!(redact("memory://x"), "memory://x");
    }

    #[test]
    fn a_semicolon_that_does_not_start_a_url_stays_in_its_part() {
        assert_eq!(
            split_list("amqp://u:pa;ss@h/;amqp://v@k/"),
            vec!["amqp://u:pa;ss@h/", "amqp://v@k/"]
        );
        assert_eq!(split_list("a; ;b://"), vec!["a; ", "b://"]);
    }
}
