//! YAML as kombu reads it: PyYAML's `safe_load`, YAML 1.1 with PyYAML's resolver, into a
//! [`Value`].
//!
//! What a plain (unquoted) scalar means follows PyYAML, not YAML 1.2: `yes`, `no`, `on`,
//! `off` are booleans, `y` and `n` are text, `0o17` and `1e3` are text (PyYAML's octal is
//! `017`, its floats need a dot), `~` and the empty scalar are None, `.nan` and `.inf` are
//! floats, integers have any size that fits 128 bits. `!!binary` is bytes. Timestamps, which
//! PyYAML turns into `datetime` objects, stay text (carrot reads data only). Anchors, aliases
//! and merge keys (`<<`) work; what aliases expand to is bounded, so a small document cannot
//! grow into a large value ("billion laughs"). Writing is serde-saphyr's, which quotes every
//! string PyYAML would read as something else.

use std::collections::HashMap;

use base64::Engine as _;
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::Value;
use crate::error::BoxError;

/// The most nodes a document may expand to through its aliases.
const MAX_NODES: usize = 1_000_000;
/// The deepest nesting read (each level is a frame of the reader's stack).
const MAX_DEPTH: usize = 512;

/// The tag prefix of YAML's core types (`!!int` is `tag:yaml.org,2002:int`).
const CORE: &str = "tag:yaml.org,2002:";

/// Reads one YAML document into a [`Value`] as PyYAML's `safe_load` would.
pub(crate) fn load(text: &str) -> Result<Value, BoxError> {
    let mut loader = Loader {
        events: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        depth: 0,
    };
    let mut document = None;
    loop {
        let Some(event) = loader.next()? else { break };
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                if document.is_some() {
                    return Err("the body holds several YAML documents; kombu sends one".into());
                }
                let first = loader.next()?.ok_or("a YAML document ends early")?;
                document = Some(match first {
                    // An empty document is None, as for PyYAML.
                    Event::DocumentEnd => Value::None,
                    other => loader.node(other)?,
                });
            }
            _ => return Err("unexpected YAML structure outside a document".into()),
        }
    }
    Ok(document.unwrap_or(Value::None))
}

struct Loader<'a> {
    events: Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    depth: usize,
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<Option<Event<'a>>, BoxError> {
        loop {
            match self.events.next_event() {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("not valid YAML: {e}").into()),
                Some(Ok((Event::Anchor(..), _))) => continue,
                Some(Ok((event, _))) => return Ok(Some(event)),
            }
        }
    }

    fn count(&mut self, nodes: usize) -> Result<(), BoxError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(format!(
                "the YAML document expands to more than {MAX_NODES} values through its aliases: refused"
            )
            .into());
        }
        Ok(())
    }

    /// The node that starts with `event`.
    fn node(&mut self, event: Event<'a>) -> Result<Value, BoxError> {
        if self.depth >= MAX_DEPTH {
            return Err(
                format!("the YAML document nests deeper than {MAX_DEPTH} levels: refused").into(),
            );
        }
        self.depth += 1;
        let value = self.node_within(event);
        self.depth -= 1;
        value
    }

    fn node_within(&mut self, event: Event<'a>) -> Result<Value, BoxError> {
        let before = self.nodes;
        let (value, anchor) = match event {
            Event::Alias(id) => {
                let (value, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or("a YAML alias refers to no anchor")?;
                self.count(size)?;
                return Ok(value);
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1)?;
                let tag = tag.map(|t| format!("{}{}", t.handle(), t.suffix()));
                (scalar(&text, style, tag.as_deref())?, anchor)
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.count(1)?;
                check_collection_tag(tag.map(|t| format!("{}{}", t.handle(), t.suffix())))?;
                let mut items = Vec::new();
                loop {
                    match self.next()?.ok_or("a YAML sequence ends early")? {
                        Event::SequenceEnd => break,
                        other => items.push(self.node(other)?),
                    }
                }
                (Value::List(items), anchor)
            }
            Event::MappingStart(_, anchor, tag) => {
                self.count(1)?;
                check_collection_tag(tag.map(|t| format!("{}{}", t.handle(), t.suffix())))?;
                (self.mapping()?, anchor)
            }
            _ => return Err("unexpected YAML event where a value belongs".into()),
        };
        if anchor != 0 {
            self.anchors
                .insert(anchor, (value.clone(), self.nodes - before));
        }
        Ok(value)
    }

    /// A mapping's entries, merge keys (`<<`) applied as PyYAML does: the mapping's own keys
    /// win over merged ones.
    fn mapping(&mut self) -> Result<Value, BoxError> {
        let mut entries: Vec<(Value, Value)> = Vec::new();
        let mut merged: Vec<(Value, Value)> = Vec::new();
        loop {
            let key_event = self.next()?.ok_or("a YAML mapping ends early")?;
            if matches!(key_event, Event::MappingEnd) {
                break;
            }
            let is_merge =
                matches!(&key_event, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key = self.node(key_event)?;
            let value_event = self.next()?.ok_or("a YAML mapping ends early")?;
            let value = self.node(value_event)?;
            if is_merge {
                let sources = match value {
                    Value::List(items) => items,
                    one => vec![one],
                };
                for source in sources {
                    let Value::Map(source) = source else {
                        return Err(
                            "a YAML merge key (<<) must name a mapping or a list of mappings"
                                .into(),
                        );
                    };
                    merged.extend(source);
                }
                continue;
            }
            if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value; // PyYAML: the last of duplicate keys wins.
            } else {
                entries.push((key, value));
            }
        }
        for (key, value) in merged {
            if !entries.iter().any(|(k, _)| *k == key) {
                entries.push((key, value));
            }
        }
        Ok(Value::Map(entries))
    }
}

fn check_collection_tag(tag: Option<String>) -> Result<(), BoxError> {
    match tag.as_deref() {
        None => Ok(()),
        Some(t)
            if [format!("{CORE}seq"), format!("{CORE}map")]
                .iter()
                .any(|c| c == t) =>
        {
            Ok(())
        }
        Some(t) => Err(format!(
            "the YAML tag {t} builds an object: carrot reads data only (as PyYAML's safe_load)"
        )
        .into()),
    }
}

/// A scalar as PyYAML's safe_load constructs it.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, BoxError> {
    let Some(tag) = tag else {
        return Ok(match style {
            ScalarStyle::Plain => implicit(text)?,
            _ => Value::Str(text.to_string()),
        });
    };
    let core = tag.strip_prefix(CORE);
    Ok(match core {
        Some("str") | Some("timestamp") => Value::Str(text.to_string()),
        Some("null") => Value::None,
        Some("bool") => boolean(text)
            .map(Value::Bool)
            .ok_or_else(|| format!("{text:?} is not a YAML boolean"))?,
        Some("int") => integer(text)?.ok_or_else(|| format!("{text:?} is not a YAML integer"))?,
        Some("float") => float(text).ok_or_else(|| format!("{text:?} is not a YAML float"))?,
        Some("binary") => {
            let compact: String = text.split_whitespace().collect();
            Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| format!("a !!binary scalar is not base64: {e}"))?,
            )
        }
        // The non-specific tag `!` makes a plain scalar text.
        _ if tag == "!" => Value::Str(text.to_string()),
        _ => {
            return Err(format!(
            "the YAML tag {tag} builds an object: carrot reads data only (as PyYAML's safe_load)"
        )
            .into())
        }
    })
}

/// A plain scalar resolved as PyYAML's YAML 1.1 resolver does.
fn implicit(text: &str) -> Result<Value, BoxError> {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::None);
    }
    if let Some(b) = boolean(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = integer(text)? {
        return Ok(i);
    }
    if let Some(f) = float(text) {
        return Ok(f);
    }
    if text == "=" {
        return Err("the YAML value key `=` cannot be read (PyYAML refuses it too)".into());
    }
    Ok(Value::Str(text.to_string()))
}

fn boolean(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (i128, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    }
}

/// PyYAML's int: `0b1010`, `017` (octal), `0x1F`, `1_000`, `190:20:30` (base 60), decimal.
fn integer(text: &str) -> Result<Option<Value>, BoxError> {
    let (sign, body) = split_sign(text);
    let digits = |s: &str, radix: u32| -> bool {
        !s.is_empty()
            && s.chars().all(|c| c == '_' || c.is_digit(radix))
            && s.chars().any(|c| c != '_')
    };
    let parse = |s: &str, radix: u32| -> Result<Option<Value>, BoxError> {
        // The sign goes in with the digits: i128::MIN has no positive twin.
        let signed: String = (sign < 0)
            .then_some('-')
            .into_iter()
            .chain(s.chars().filter(|&c| c != '_'))
            .collect();
        let value = i128::from_str_radix(&signed, radix)
            .map_err(|_| format!("the YAML integer {text} does not fit in 128 bits"))?;
        Ok(Some(Value::Int(value)))
    };
    if let Some(bin) = body.strip_prefix("0b") {
        return if digits(bin, 2) {
            parse(bin, 2)
        } else {
            Ok(None)
        };
    }
    if let Some(hex) = body.strip_prefix("0x") {
        return if digits(hex, 16) {
            parse(hex, 16)
        } else {
            Ok(None)
        };
    }
    if body == "0" {
        return Ok(Some(Value::Int(0)));
    }
    if let Some(oct) = body.strip_prefix('0') {
        return if digits(oct, 8) {
            parse(oct, 8)
        } else {
            Ok(None)
        };
    }
    if body.starts_with(|c: char| c.is_ascii_digit() && c != '0') {
        if body.contains(':') {
            let parts: Vec<&str> = body.split(':').collect();
            let ok = digits(parts[0], 10)
                && parts[1..].iter().all(|p| {
                    !p.is_empty()
                        && p.len() <= 2
                        && p.chars().all(|c| c.is_ascii_digit())
                        && p.parse::<u8>().is_ok_and(|n| n < 60)
                });
            if !ok {
                return Ok(None);
            }
            let mut total: i128 = 0;
            for part in parts {
                let clean: String = part.chars().filter(|&c| c != '_').collect();
                let n: i128 = clean
                    .parse()
                    .map_err(|_| format!("the YAML integer {text} does not fit in 128 bits"))?;
                total = total
                    .checked_mul(60)
                    .and_then(|t| t.checked_add(n))
                    .ok_or_else(|| format!("the YAML integer {text} does not fit in 128 bits"))?;
            }
            return Ok(Some(Value::Int(sign * total)));
        }
        if digits(body, 10) {
            return parse(body, 10);
        }
    }
    Ok(None)
}

/// PyYAML's float: a dot is required (`1.5`, `.5`, `1.`, `1.0e+3`, whose exponent needs a
/// sign), `.inf`, `-.inf`, `.nan`, and base 60 (`190:20:30.15`).
fn float(text: &str) -> Option<Value> {
    let (sign, body) = split_sign(text);
    let sign = sign as f64;
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return Some(Value::Float(sign * f64::INFINITY));
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(Value::Float(f64::NAN));
    }
    let clean: String = body.chars().filter(|&c| c != '_').collect();
    if body.contains(':') {
        let (whole, fraction) = clean.rsplit_once('.')?;
        let parts: Vec<&str> = whole.split(':').collect();
        if !parts[0].starts_with(|c: char| c.is_ascii_digit())
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        let mut total = 0f64;
        for part in parts {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        let fraction: f64 = format!("0.{fraction}").parse().ok()?;
        return Some(Value::Float(sign * (total + fraction)));
    }
    let (mantissa, exponent) = match clean.find(['e', 'E']) {
        Some(at) => (&clean[..at], Some(&clean[at + 1..])),
        None => (clean.as_str(), None),
    };
    let (int_part, frac_part) = mantissa.split_once('.')?;
    let int_ok = int_part.chars().all(|c| c.is_ascii_digit())
        && (!int_part.is_empty() || (!frac_part.is_empty()));
    let frac_ok = frac_part.chars().all(|c| c.is_ascii_digit());
    let exp_ok = exponent.is_none_or(|e| {
        (e.starts_with('+') || e.starts_with('-'))
            && e.len() > 1
            && e[1..].chars().all(|c| c.is_ascii_digit())
    });
    if !(int_ok && frac_ok && exp_ok)
        || (int_part.is_empty() && body.starts_with('.') && frac_part.is_empty())
    {
        return None;
    }
    // PyYAML: `.5` needs a digit after the dot; `1.` is 1.0.
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let number = format!(
        "{}.{}{}",
        if int_part.is_empty() { "0" } else { int_part },
        if frac_part.is_empty() { "0" } else { frac_part },
        exponent.map(|e| format!("e{e}")).unwrap_or_default()
    );
    number.parse::<f64>().ok().map(|f| Value::Float(sign * f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        load(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn plain_scalars_resolve_as_pyyaml_does() {
        for (text, expected) in [
            ("yes", Value::Bool(true)),
            ("Off", Value::Bool(false)),
            ("y", Value::Str("y".into())),
            ("n", Value::Str("n".into())),
            ("~", Value::None),
            ("", Value::None),
            ("017", Value::Int(15)),
            ("0o17", Value::Str("0o17".into())),
            ("0x1F", Value::Int(31)),
            ("0b101", Value::Int(5)),
            ("1_000", Value::Int(1000)),
            ("-190:20:30", Value::Int(-685_230)),
            ("18446744073709551616", Value::Int(1 << 64)),
            (
                "-170141183460469231731687303715884105728",
                Value::Int(i128::MIN),
            ),
            ("1e3", Value::Str("1e3".into())),
            ("1.0e+3", Value::Float(1000.0)),
            (".5", Value::Float(0.5)),
            ("1.", Value::Float(1.0)),
            ("-.inf", Value::Float(f64::NEG_INFINITY)),
            ("2001-12-14", Value::Str("2001-12-14".into())),
            ("'yes'", Value::Str("yes".into())),
        ] {
            assert_eq!(one(text), expected, "{text}");
        }
        assert!(matches!(one(".nan"), Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn binary_anchors_and_merges() {
        let doc = "b: !!binary |\n  AP8=\nbase: &base {x: 1, y: 2}\nmerged:\n  <<: *base\n  y: 3\n";
        let Value::Map(entries) = one(doc) else {
            panic!("a map")
        };
        assert_eq!(entries[0].1, Value::Bytes(vec![0, 0xff]));
        assert_eq!(
            entries[2].1,
            Value::Map(vec![
                (Value::Str("y".into()), Value::Int(3)),
                (Value::Str("x".into()), Value::Int(1)),
            ])
        );
    }

    #[test]
    fn an_alias_bomb_and_object_tags_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = format!("*a{}", level - 1);
            bomb.push_str(&format!(
                "a{level}: &a{level} [{}]\n",
                vec![previous; 10].join(", ")
            ));
        }
        let err = load(&bomb).unwrap_err().to_string();
        assert!(err.contains("aliases"), "{err}");
        let err = load("!!python/object:os.system {}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data only"), "{err}");
        assert!(load("a: 1\n---\nb: 2\n").is_err());
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(load(&deep).is_err());
    }
}
