//! Which bytes of a Rust source are code, as opposed to comments and string or character
//! literals, so that rewrites touch code only.

/// What a byte of the source belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Code,
    Comment,
    Literal,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The kind of every byte of `src`.
pub fn kinds(src: &[u8]) -> Vec<Kind> {
    let mut kinds = vec![Kind::Code; src.len()];
    let mut i = 0;
    let mark = |kinds: &mut Vec<Kind>, from: usize, to: usize, kind: Kind| {
        for k in &mut kinds[from..to.min(src.len())] {
            *k = kind;
        }
    };
    while i < src.len() {
        let rest = &src[i..];
        let after_ident = i > 0 && is_ident(src[i - 1]);
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(src.len(), |p| i + p);
            mark(&mut kinds, i, end, Kind::Comment);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < src.len() {
                if src[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if src[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            mark(&mut kinds, i, j, Kind::Comment);
            i = j;
        } else if !after_ident && raw_string_start(rest).is_some() {
            let (prefix, hashes) = raw_string_start(rest).unwrap_or((0, 0));
            let mut closing = vec![b'"'];
            closing.extend(std::iter::repeat_n(b'#', hashes));
            let body = i + prefix;
            let end = src[body..]
                .windows(closing.len())
                .position(|w| w == closing.as_slice())
                .map_or(src.len(), |p| body + p + closing.len());
            mark(&mut kinds, i, end, Kind::Literal);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < src.len() && src[j] != b'"' {
                j += if src[j] == b'\\' { 2 } else { 1 };
            }
            mark(&mut kinds, i, j + 1, Kind::Literal);
            i = j + 1;
        } else if rest[0] == b'\'' {
            match char_literal_len(rest) {
                Some(len) => {
                    mark(&mut kinds, i, i + len, Kind::Literal);
                    i += len;
                }
                None => i += 1, // a lifetime
            }
        } else {
            i += 1;
        }
    }
    kinds
}

/// `r"`, `r#"`, `br##"`...: the length of the prefix up to the opening quote and the number
/// of `#`.
fn raw_string_start(rest: &[u8]) -> Option<(usize, usize)> {
    let after_b = if rest.first() == Some(&b'b') { 1 } else { 0 };
    if rest.get(after_b) != Some(&b'r') {
        return None;
    }
    let hashes = rest[after_b + 1..]
        .iter()
        .take_while(|&&b| b == b'#')
        .count();
    let quote = after_b + 1 + hashes;
    (rest.get(quote) == Some(&b'"')).then_some((quote + 1, hashes))
}

/// The length of a character literal starting here (`'a'`, `'\n'`, `'\u{1F600}'`, `'é'`),
/// `None` for a lifetime.
fn char_literal_len(rest: &[u8]) -> Option<usize> {
    if rest.get(1) == Some(&b'\\') {
        // The escaped character itself may be a quote (`'\''`).
        let close = rest.get(3..)?.iter().position(|&b| b == b'\'')?;
        return Some(close + 4);
    }
    let text = std::str::from_utf8(&rest[1..rest.len().min(6)])
        .or_else(|e| std::str::from_utf8(&rest[1..1 + e.valid_up_to()]))
        .ok()?;
    let c = text.chars().next()?;
    (rest.get(1 + c.len_utf8()) == Some(&b'\'')).then_some(c.len_utf8() + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(src: &str) -> String {
        kinds(src.as_bytes())
            .iter()
            .zip(src.chars())
            .map(|(k, c)| if *k == Kind::Code { c } else { '_' })
            .collect()
    }

    #[test]
    fn comments_and_literals_are_not_code() {
        assert_eq!(code("a // b.await\nc"), "a __________\nc");
        assert_eq!(code("x /* a /* b */ c */ y"), "x _________________ y");
        assert_eq!(
            code(r#"f("a\"b", 'c', '\'', 'd)"#),
            r#"f(______, ___, ____, 'd)"#
        );
        assert_eq!(code(r###"g(r#"x"y"#, b"z")"###), "g(________, b___)");
        assert_eq!(code("fn f<'a>(x: &'a str)"), "fn f<'a>(x: &'a str)");
    }
}
