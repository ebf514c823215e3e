//! The `raw` serializer: bodies that are already bytes or text, passed through unchanged.
//!
//! Encoding accepts strings (sent as `text/plain`, `utf-8`), byte strings (`serde_bytes`,
//! `bytes::Bytes`) and sequences of `u8` such as `Vec<u8>` (sent as `application/data`,
//! `binary`). Decoding gives the body to any type that can be built from a string, from bytes,
//! or from a sequence of bytes (`String`, `Vec<u8>`, `serde_bytes::ByteBuf`, ...).

use serde::de::value::{Error as DeError, SeqDeserializer};
use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// What the raw serializer produced.
#[derive(Debug)]
pub(crate) struct RawBody {
    pub(crate) bytes: Vec<u8>,
    pub(crate) is_text: bool,
}

/// Serializes `value` as a raw body.
pub(crate) fn to_body<T: Serialize + ?Sized>(value: &T) -> Result<RawBody, RawError> {
    value.serialize(RawSerializer)
}

/// Why a value cannot be sent raw.
#[derive(Debug)]
pub(crate) struct RawError(String);

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RawError {}
impl ser::Error for RawError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}

fn unsupported(what: &str) -> RawError {
    RawError(format!(
        "the raw serializer sends strings and bytes only, not {what}: use the json serializer for structured data"
    ))
}

struct RawSerializer;

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $what:literal;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<RawBody, RawError> { Err(unsupported($what)) }
    )*};
}

impl ser::Serializer for RawSerializer {
    type Ok = RawBody;
    type Error = RawError;
    type SerializeSeq = ByteSeq;
    type SerializeTuple = ByteSeq;
    type SerializeTupleStruct = Impossible<RawBody, RawError>;
    type SerializeTupleVariant = Impossible<RawBody, RawError>;
    type SerializeMap = Impossible<RawBody, RawError>;
    type SerializeStruct = Impossible<RawBody, RawError>;
    type SerializeStructVariant = Impossible<RawBody, RawError>;

    fn serialize_str(self, v: &str) -> Result<RawBody, RawError> {
        Ok(RawBody {
            bytes: v.as_bytes().to_vec(),
            is_text: true,
        })
    }
    fn serialize_char(self, v: char) -> Result<RawBody, RawError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<RawBody, RawError> {
        Ok(RawBody {
            bytes: v.to_vec(),
            is_text: false,
        })
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<RawBody, RawError> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<RawBody, RawError> {
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ByteSeq, RawError> {
        Ok(ByteSeq(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<ByteSeq, RawError> {
        Ok(ByteSeq(Vec::with_capacity(len)))
    }
    refuse! {
        serialize_bool(bool) -> "a boolean";
        serialize_i8(i8) -> "a number";
        serialize_i16(i16) -> "a number";
        serialize_i32(i32) -> "a number";
        serialize_i64(i64) -> "a number";
        serialize_u8(u8) -> "a number";
        serialize_u16(u16) -> "a number";
        serialize_u32(u32) -> "a number";
        serialize_u64(u64) -> "a number";
        serialize_f32(f32) -> "a number";
        serialize_f64(f64) -> "a number";
        serialize_none() -> "None";
        serialize_unit() -> "()";
        serialize_unit_struct(&'static str) -> "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) -> "an enum";
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<RawBody, RawError> {
        Err(unsupported("an enum"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(unsupported("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(unsupported("an enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(unsupported("a map"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RawError> {
        Err(unsupported("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(unsupported("an enum"))
    }
}

/// Collects a sequence of `u8` (such as a `Vec<u8>` or `[u8; N]`) into a binary body.
pub(crate) struct ByteSeq(Vec<u8>);

struct ByteOnly;

impl ByteSeq {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        self.0.push(value.serialize(ByteOnly)?);
        Ok(())
    }
}

impl ser::SerializeSeq for ByteSeq {
    type Ok = RawBody;
    type Error = RawError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        self.push(value)
    }
    fn end(self) -> Result<RawBody, RawError> {
        Ok(RawBody {
            bytes: self.0,
            is_text: false,
        })
    }
}

impl ser::SerializeTuple for ByteSeq {
    type Ok = RawBody;
    type Error = RawError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        self.push(value)
    }
    fn end(self) -> Result<RawBody, RawError> {
        Ok(RawBody {
            bytes: self.0,
            is_text: false,
        })
    }
}

/// Accepts exactly one `u8`: the elements of a byte sequence.
impl ser::Serializer for ByteOnly {
    type Ok = u8;
    type Error = RawError;
    type SerializeSeq = Impossible<u8, RawError>;
    type SerializeTuple = Impossible<u8, RawError>;
    type SerializeTupleStruct = Impossible<u8, RawError>;
    type SerializeTupleVariant = Impossible<u8, RawError>;
    type SerializeMap = Impossible<u8, RawError>;
    type SerializeStruct = Impossible<u8, RawError>;
    type SerializeStructVariant = Impossible<u8, RawError>;

    fn serialize_u8(self, v: u8) -> Result<u8, RawError> {
        Ok(v)
    }
    fn serialize_bool(self, _: bool) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_i8(self, _: i8) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_i16(self, _: i16) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_i32(self, _: i32) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_i64(self, _: i64) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_u16(self, _: u16) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_u32(self, _: u32) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_u64(self, _: u64) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_f32(self, _: f32) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_f64(self, _: f64) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_char(self, _: char) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_str(self, _: &str) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_none(self) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_unit(self) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, RawError> {
        Err(not_byte())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RawError> {
        Err(not_byte())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RawError> {
        Err(not_byte())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(not_byte())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(not_byte())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(not_byte())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RawError> {
        Err(not_byte())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(not_byte())
    }
}

fn not_byte() -> RawError {
    unsupported("a sequence of anything but bytes")
}

/// Gives a raw body to a `Deserialize` type: as a string when it is text (`text`, the body
/// read in its character set), else as bytes; byte types always get the body as sent.
pub(crate) struct RawDeserializer<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) text: Option<&'a str>,
}

impl<'de> de::Deserializer<'de> for RawDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text {
            Some(s) => visitor.visit_borrowed_str(s),
            None => visitor.visit_borrowed_bytes(self.body),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Some(s) = self.text {
            return visitor.visit_borrowed_str(s);
        }
        match std::str::from_utf8(self.body) {
            Ok(s) => visitor.visit_borrowed_str(s),
            Err(e) => Err(de::Error::custom(format!(
                "the body is not UTF-8 text: {e}"
            ))),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.body)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.body)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(SeqDeserializer::<_, DeError>::new(
            self.body.iter().copied(),
        ))
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char unit unit_struct tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn strings_are_text_and_byte_vectors_are_binary() {
        let t = to_body("héllo").unwrap();
        assert!(t.is_text);
        assert_eq!(t.bytes, "héllo".as_bytes());
        let b = to_body(&vec![0u8, 255, 7]).unwrap();
        assert!(!b.is_text);
        assert_eq!(b.bytes, vec![0, 255, 7]);
        assert!(to_body(&42).unwrap_err().to_string().contains("json"));
        assert!(to_body(&vec![1u32]).is_err());
    }

    #[test]
    fn bodies_decode_to_strings_and_byte_vectors() {
        let s = String::deserialize(RawDeserializer {
            body: b"abc",
            text: Some("abc"),
        })
        .unwrap();
        assert_eq!(s, "abc");
        let v = Vec::<u8>::deserialize(RawDeserializer {
            body: &[1, 2],
            text: None,
        })
        .unwrap();
        assert_eq!(v, vec![1, 2]);
        assert!(String::deserialize(RawDeserializer {
            body: &[0xff],
            text: None
        })
        .is_err());
    }
}
