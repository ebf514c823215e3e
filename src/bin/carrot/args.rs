//! Argument types shared by the subcommands.

use clap::ValueEnum;

use carrot::{ExchangeType, FieldTable, FieldValue};

/// `--exchange-type`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum Kind {
    /// Routing key equals binding key.
    #[default]
    Direct,
    /// Every bound queue.
    Fanout,
    /// Words split on `.`, `*` one word, `#` zero or more.
    Topic,
    /// Binding arguments matched against the message headers.
    Headers,
}

impl From<Kind> for ExchangeType {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Direct => ExchangeType::Direct,
            Kind::Fanout => ExchangeType::Fanout,
            Kind::Topic => ExchangeType::Topic,
            Kind::Headers => ExchangeType::Headers,
        }
    }
}

/// A `KEY=VALUE` argument (headers, binding and queue arguments). Integers, `true` and `false`
/// become typed values; everything else is a string. Publishing and binding use the same rule,
/// so a header given to both matches.
#[derive(Clone, Debug)]
pub(crate) struct Pair {
    pub(crate) key: String,
    pub(crate) value: FieldValue,
}

/// Parses `KEY=VALUE` for clap.
pub(crate) fn pair(text: &str) -> Result<Pair, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    if key.is_empty() {
        return Err(format!("the key is empty in {text:?}"));
    }
    let value = if let Ok(n) = value.parse::<i64>() {
        FieldValue::Int(n)
    } else {
        match value {
            "true" => FieldValue::Bool(true),
            "false" => FieldValue::Bool(false),
            s => FieldValue::String(s.to_string()),
        }
    };
    Ok(Pair {
        key: key.to_string(),
        value,
    })
}

/// Collects pairs into a table; a key given twice keeps its last value.
pub(crate) fn table(pairs: &[Pair]) -> FieldTable {
    pairs
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

/// Parses a duration in seconds (fractions allowed) for clap.
pub(crate) fn seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {text:?}"))?;
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("expected a non-negative number of seconds, got {text:?}"))
}
