//! Body compression as kombu does it: the publisher compresses the serialized body and names
//! the method in the `compression` header (a content type); the consumer decompresses before
//! decoding.
//!
//! | name and aliases (kombu's) | header | format |
//! | --- | --- | --- |
//! | `gzip`, `zlib` | `application/x-gzip` | a zlib stream (what Python's `zlib.compress` writes, not a gzip file) |
//! | `bzip2`, `bzip` | `application/x-bz2` | bzip2 |
//! | `lzma`, `xz` | `application/x-lzma` | an xz container (Python's `lzma.compress`) |
//! | `brotli` | `application/x-brotli` | brotli |
//! | `zstd`, `zstandard` | `application/zstd` | a zstd frame |
//!
//! Each is behind the cargo feature of its name (`zlib` for gzip); all are on by default.
//! Decompression stops at a limit (the connection's maximum message size,
//! [`ConnectionBuilder::max_message_size`](crate::ConnectionBuilder::max_message_size)), so a
//! small body that would inflate into gigabytes is refused instead of exhausting memory.

use std::io::Read;
#[cfg(any(
    feature = "zlib",
    feature = "bzip2",
    feature = "lzma",
    feature = "brotli"
))]
use std::io::Write;

use crate::error::{Error, Result};

/// A compression method, by kombu's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// zlib (`application/x-gzip`).
    Gzip,
    /// bzip2 (`application/x-bz2`).
    Bzip2,
    /// xz (`application/x-lzma`).
    Lzma,
    /// brotli (`application/x-brotli`).
    Brotli,
    /// zstd (`application/zstd`).
    Zstd,
}

const ALL: [(Compression, &str, &[&str]); 5] = [
    (Compression::Gzip, "application/x-gzip", &["gzip", "zlib"]),
    (Compression::Bzip2, "application/x-bz2", &["bzip2", "bzip"]),
    (Compression::Lzma, "application/x-lzma", &["lzma", "xz"]),
    (Compression::Brotli, "application/x-brotli", &["brotli"]),
    (
        Compression::Zstd,
        "application/zstd",
        &["zstd", "zstandard"],
    ),
];

impl Compression {
    /// The method a name, an alias or a content type names (`"gzip"`, `"xz"`,
    /// `"application/zstd"`, ...), case-insensitively.
    pub fn from_name(name: &str) -> Result<Compression> {
        let wanted = name.trim();
        ALL.iter()
            .find(|(_, content_type, aliases)| {
                content_type.eq_ignore_ascii_case(wanted)
                    || aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
            })
            .map(|(method, _, _)| *method)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown compression {name:?}: use one of gzip (zlib), bzip2, lzma (xz), brotli or zstd, or their content types"
                ))
            })
    }

    /// The content type kombu writes in the `compression` header.
    pub fn content_type(self) -> &'static str {
        ALL.iter()
            .find(|(method, _, _)| *method == self)
            .map_or("", |(_, content_type, _)| content_type)
    }

    /// kombu's main name for it.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(method, _, _)| *method == self)
            .map_or("", |(_, _, aliases)| aliases[0])
    }

    /// Whether this build of carrot has it (each method is a cargo feature).
    pub fn is_available(self) -> bool {
        match self {
            Compression::Gzip => cfg!(feature = "zlib"),
            Compression::Bzip2 => cfg!(feature = "bzip2"),
            Compression::Lzma => cfg!(feature = "lzma"),
            Compression::Brotli => cfg!(feature = "brotli"),
            Compression::Zstd => cfg!(feature = "zstd"),
        }
    }

    fn feature(self) -> &'static str {
        match self {
            Compression::Gzip => "zlib",
            other => other.name(),
        }
    }

    fn unavailable(self) -> Error {
        Error::Unsupported(format!(
            "{} compression is not in this build of carrot: enable its cargo feature `{}` (on by default)",
            self.name(),
            self.feature()
        ))
    }

    /// Compresses a body.
    pub fn compress(self, body: &[u8]) -> Result<Vec<u8>> {
        #[allow(unused_variables)]
        let failed = |e: std::io::Error| Error::Encode {
            serializer: format!("{} compression", self.name()),
            source: e.into(),
        };
        match self {
            #[cfg(feature = "zlib")]
            Compression::Gzip => {
                let mut out = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
                out.write_all(body).map_err(failed)?;
                out.finish().map_err(failed)
            }
            #[cfg(feature = "bzip2")]
            Compression::Bzip2 => {
                let mut out = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                out.write_all(body).map_err(failed)?;
                out.finish().map_err(failed)
            }
            #[cfg(feature = "lzma")]
            Compression::Lzma => {
                let mut out = liblzma::write::XzEncoder::new(Vec::new(), 6);
                out.write_all(body).map_err(failed)?;
                out.finish().map_err(failed)
            }
            #[cfg(feature = "brotli")]
            Compression::Brotli => {
                let mut out = Vec::new();
                {
                    // Python's brotli.compress defaults: quality 11, window 22.
                    let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
                    writer.write_all(body).map_err(failed)?;
                    writer.flush().map_err(failed)?;
                }
                Ok(out)
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => zstd::stream::encode_all(body, 3).map_err(failed),
            #[allow(unreachable_patterns)]
            other => {
                let _ = body;
                Err(other.unavailable())
            }
        }
    }

    /// Decompresses a body, refusing one that inflates past `limit` bytes.
    pub fn decompress(self, body: &[u8], limit: usize) -> Result<Vec<u8>> {
        match self {
            #[cfg(feature = "zlib")]
            Compression::Gzip => self.bounded(flate2::read::ZlibDecoder::new(body), limit),
            #[cfg(feature = "bzip2")]
            Compression::Bzip2 => self.bounded(bzip2::read::MultiBzDecoder::new(body), limit),
            #[cfg(feature = "lzma")]
            Compression::Lzma => {
                self.bounded(liblzma::read::XzDecoder::new_multi_decoder(body), limit)
            }
            #[cfg(feature = "brotli")]
            Compression::Brotli => self.bounded(brotli::Decompressor::new(body, 4096), limit),
            #[cfg(feature = "zstd")]
            Compression::Zstd => {
                let decoder =
                    zstd::stream::read::Decoder::new(body).map_err(|e| self.corrupt(e))?;
                self.bounded(decoder, limit)
            }
            #[allow(unreachable_patterns)]
            other => {
                let _ = (body, limit);
                Err(other.unavailable())
            }
        }
    }

    #[allow(dead_code)]
    fn bounded(self, reader: impl Read, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        reader
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| self.corrupt(e))?;
        if out.len() > limit {
            return Err(Error::Decode {
                content_type: self.content_type().to_string(),
                source: format!(
                    "the body inflates past {limit} bytes, the connection's maximum message size: refused (raise it with ConnectionBuilder::max_message_size if such bodies are expected)"
                )
                .into(),
            });
        }
        Ok(out)
    }

    #[allow(dead_code)]
    fn corrupt(self, e: std::io::Error) -> Error {
        Error::Decode {
            content_type: self.content_type().to_string(),
            source: format!("the body is not valid {} data: {e}", self.name()).into(),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_content_types_resolve() {
        for (name, method) in [
            ("gzip", Compression::Gzip),
            ("ZLIB", Compression::Gzip),
            ("application/x-gzip", Compression::Gzip),
            ("bzip", Compression::Bzip2),
            ("xz", Compression::Lzma),
            ("application/x-brotli", Compression::Brotli),
            ("zstandard", Compression::Zstd),
        ] {
            assert_eq!(Compression::from_name(name).unwrap(), method, "{name}");
        }
        let err = Compression::from_name("snappy").unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }

    #[test]
    fn every_method_round_trips_and_is_bounded() {
        let body: Vec<u8> = (0..20_000u32)
            .flat_map(|n| (n % 251).to_le_bytes())
            .collect();
        for (method, _, _) in ALL {
            if !method.is_available() {
                continue;
            }
            let packed = method.compress(&body).unwrap();
            assert!(packed.len() < body.len(), "{method}");
            assert_eq!(
                method.decompress(&packed, body.len()).unwrap(),
                body,
                "{method}"
            );
            let err = method.decompress(&packed, body.len() - 1).unwrap_err();
            assert!(
                err.to_string().contains("maximum message size"),
                "{method}: {err}"
            );
            let err = method
                .decompress(b"not compressed at all", 1 << 20)
                .unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{method}: {err:?}");
        }
    }
}
