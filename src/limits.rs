//! What AMQP 0-9-1 cannot carry, refused the same way on every broker before anything is sent.
//!
//! Exchange and queue names, routing keys, consumer tags and the keys of header and argument
//! tables are AMQP short strings: at most 255 bytes. RabbitMQ cannot even receive a longer
//! one (the frame cannot encode it); the embedded brokers refuse it too, with the same
//! [`Error::InvalidArgument`], so that code that works on one broker works on all.

use crate::entity::{ExchangeSpec, QueueSpec};
use crate::error::{Error, Result};
use crate::table::{FieldTable, FieldValue};

/// The longest AMQP short string, in bytes.
pub(crate) const SHORT_STRING_MAX: usize = 255;

/// Refuses a name (or routing key, consumer tag) longer than 255 bytes.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.len() <= SHORT_STRING_MAX {
        return Ok(());
    }
    let mut end = 40;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Err(Error::InvalidArgument(format!(
        "the {what} {:?}... is {} bytes long: AMQP 0-9-1 allows at most {SHORT_STRING_MAX} bytes (RabbitMQ cannot receive it); use a shorter one",
        &name[..end],
        name.len()
    )))
}

/// Refuses a table (headers, arguments) with a key longer than 255 bytes, at any depth.
pub(crate) fn check_table(what: &str, table: &FieldTable) -> Result<()> {
    for (key, value) in table.iter() {
        check_name(&format!("{what} key"), key)?;
        check_value(what, value)?;
    }
    Ok(())
}

fn check_value(what: &str, value: &FieldValue) -> Result<()> {
    match value {
        FieldValue::Table(t) => check_table(what, t),
        FieldValue::Array(items) => items.iter().try_for_each(|v| check_value(what, v)),
        _ => Ok(()),
    }
}

/// Checks an exchange declaration.
pub(crate) fn check_exchange(spec: &ExchangeSpec) -> Result<()> {
    check_name("exchange name", &spec.name)?;
    check_table("exchange argument", &spec.arguments)
}

/// Checks a queue declaration.
pub(crate) fn check_queue(spec: &QueueSpec) -> Result<()> {
    check_name("queue name", &spec.name)?;
    check_table("queue argument", &spec.arguments)
}

/// Checks a binding.
pub(crate) fn check_binding(
    queue: &str,
    exchange: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> Result<()> {
    check_name("queue name", queue)?;
    check_name("exchange name", exchange)?;
    check_name("binding key", routing_key)?;
    check_table("binding argument", arguments)
}

/// Checks the names, key and arguments of an exchange-to-exchange binding.
pub(crate) fn check_exchange_binding(
    destination: &str,
    source: &str,
    routing_key: &str,
    arguments: &FieldTable,
) -> Result<()> {
    check_name("exchange name", destination)?;
    check_name("exchange name", source)?;
    check_name("binding key", routing_key)?;
    check_table("binding argument", arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_up_to_255_bytes_pass_longer_ones_are_refused() {
        assert!(check_name("queue name", &"q".repeat(255)).is_ok());
        let err = check_name("queue name", &"é".repeat(150)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("300 bytes"), "{err}");
    }

    #[test]
    fn nested_table_keys_are_checked() {
        let mut inner = FieldTable::new();
        inner.insert("k".repeat(256), FieldValue::Int(1));
        let mut outer = FieldTable::new();
        outer.insert(
            "list".into(),
            FieldValue::Array(vec![FieldValue::Table(inner)]),
        );
        assert!(check_table("header", &outer).is_err());
    }
}
