//! Topic patterns: words split on `.`, `*` matches exactly one word, `#` zero or more.
//!
//! Matching simulates the pattern as a small automaton over the key's words, so it takes
//! `O(pattern words × key words)` whatever the number of `#`s (a backtracking matcher is
//! exponential on patterns such as `#.#.#.a`). An empty key has zero words, as in RabbitMQ:
//! `#` matches it, `*` does not; `a..b` has an empty middle word.

/// One word of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Word {
    Literal(Box<str>),
    Star,
    Hash,
}

/// A compiled topic binding key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicPattern {
    words: Vec<Word>,
}

/// The words of a routing key or binding key: none for the empty string.
pub(crate) fn words(key: &str) -> impl Iterator<Item = &str> {
    let mut it = key.split('.');
    if key.is_empty() {
        it.next();
    }
    it
}

impl TopicPattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let mut compiled: Vec<Word> = Vec::new();
        for w in words(pattern) {
            let word = match w {
                "*" => Word::Star,
                "#" => Word::Hash,
                lit => Word::Literal(lit.into()),
            };
            // `#.#` matches exactly what `#` matches.
            if word == Word::Hash && compiled.last() == Some(&Word::Hash) {
                continue;
            }
            compiled.push(word);
        }
        TopicPattern { words: compiled }
    }

    /// Whether a routing key matches this pattern.
    pub(crate) fn matches(&self, key: &str) -> bool {
        let n = self.words.len();
        // states[i]: the first i pattern words have matched the key words read so far.
        let mut states = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        states[0] = true;
        self.close(&mut states);
        for word in words(key) {
            next.iter_mut().for_each(|s| *s = false);
            let mut any = false;
            for i in 0..n {
                if !states[i] {
                    continue;
                }
                match &self.words[i] {
                    Word::Hash => {
                        next[i] = true; // `#` eats this word and may eat more
                        any = true;
                    }
                    Word::Star => {
                        next[i + 1] = true;
                        any = true;
                    }
                    Word::Literal(lit) if **lit == *word => {
                        next[i + 1] = true;
                        any = true;
                    }
                    Word::Literal(_) => {}
                }
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut states, &mut next);
            self.close(&mut states);
        }
        states[n]
    }

    /// A `#` may match zero words: whoever reaches it may also skip it.
    fn close(&self, states: &mut [bool]) {
        for i in 0..self.words.len() {
            if states[i] && self.words[i] == Word::Hash {
                states[i + 1] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, written as plainly as possible: the reference for the property test.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
            Some((&"*", rest)) => !key.is_empty() && reference(rest, &key[1..]),
            Some((lit, rest)) => key.first() == Some(lit) && reference(rest, &key[1..]),
        }
    }

    fn m(pattern: &str, key: &str) -> bool {
        TopicPattern::new(pattern).matches(key)
    }

    #[test]
    fn the_seed_examples() {
        assert!(m("*.stock.#", "usd.stock"));
        assert!(m("*.stock.#", "eur.stock.db"));
        assert!(!m("*.stock.#", "stock.nasdaq"));
    }

    #[test]
    fn edge_cases() {
        assert!(m("#", ""));
        assert!(m("#", "a.b.c"));
        assert!(m("#.#", ""));
        assert!(m("#.#", "a"));
        assert!(m("a.#", "a"));
        assert!(m("#.a", "a"));
        assert!(m("a.#.b", "a.b"));
        assert!(m("a.#.b", "a.x.y.b"));
        assert!(!m("a.*", "a.b.c"));
        assert!(!m("a.*", "a"));
        assert!(!m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("a..b", "a..b"));
        assert!(m("a.*.b", "a..b"));
        assert!(m("*.*", "."));
        assert!(!m("*", "."));
        assert!(m("#.#.#.a", "x.y.z.a"));
        assert!(!m(
            "#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.#.a",
            &"x.".repeat(40)
        ));
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just(String::new())
        ]
    }

    fn pattern_word() -> impl Strategy<Value = String> {
        prop_oneof![word(), Just("*".to_string()), Just("#".to_string())]
    }

    /// Words for keys of any text: dots, wildcards inside words, non-ASCII and empty words.
    fn unicode_text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a.*#é🦀]{0,10}",
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any text as pattern and key: the same answer as the reference, and no panic.
        #[test]
        fn any_text_matches_as_the_reference_says(pattern in unicode_text(), key in unicode_text()) {
            let pattern_words: Vec<&str> = words(&pattern).collect();
            let key_words: Vec<&str> = words(&key).collect();
            prop_assert_eq!(
                m(&pattern, &key),
                reference(&pattern_words, &key_words),
                "pattern {:?} key {:?}", pattern, key
            );
        }

        /// Every key matches itself as a pattern (its `*` and `#` words match themselves),
        /// and `#` matches every key.
        #[test]
        fn a_key_matches_itself_and_hash_matches_all(key in unicode_text()) {
            prop_assert!(m(&key, &key), "{:?}", key);
            prop_assert!(m("#", &key), "{:?}", key);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn matches_the_reference(
            pattern in proptest::collection::vec(pattern_word(), 0..6),
            key in proptest::collection::vec(word(), 0..7),
        ) {
            let pattern_text = pattern.join(".");
            let key_text = key.join(".");
            let pattern_words: Vec<&str> = words(&pattern_text).collect();
            let key_words: Vec<&str> = words(&key_text).collect();
            prop_assert_eq!(
                m(&pattern_text, &key_text),
                reference(&pattern_words, &key_words),
                "pattern {:?} key {:?}", pattern_text, key_text
            );
        }
    }
}
