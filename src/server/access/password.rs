//! Passwords as RabbitMQ stores them: never in clear, but `base64(salt ++ H(salt ++ password))`
//! with a 4-byte random salt and H = SHA-256 (`rabbit_password_hashing_sha256`, RabbitMQ's
//! default) or SHA-512 (`rabbit_password_hashing_sha512`), so that the `password_hash` of a
//! user exported from RabbitMQ's definitions imports as it is, and the other way round.

use base64::Engine;
use sha2::{Digest, Sha256, Sha512};

/// RabbitMQ's name of the SHA-256 scheme, the one carrot writes.
pub const SHA256: &str = "rabbit_password_hashing_sha256";
/// RabbitMQ's name of the SHA-512 scheme, which carrot reads.
pub const SHA512: &str = "rabbit_password_hashing_sha512";

/// The salted hash of `password` under RabbitMQ's SHA-256 scheme, base64-encoded.
pub fn hash(password: &str) -> String {
    let salt: [u8; 4] = uuid::Uuid::new_v4().as_bytes()[..4]
        .try_into()
        .unwrap_or([0; 4]);
    let mut salted = salt.to_vec();
    salted.extend_from_slice(&digest(SHA256, &salt, password).unwrap_or_default());
    base64::engine::general_purpose::STANDARD.encode(salted)
}

/// Whether `algorithm` is a hashing scheme carrot can check.
pub fn is_known(algorithm: &str) -> bool {
    matches!(algorithm, SHA256 | SHA512)
}

/// Whether `password` matches `stored` (base64 of salt and hash) under `algorithm`. An
/// empty hash matches nothing (RabbitMQ: a user without a password cannot log in with one).
pub fn verify(algorithm: &str, stored: &str, password: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(stored) else {
        return false;
    };
    if bytes.len() <= 4 {
        return false;
    }
    let (salt, expected) = bytes.split_at(4);
    match digest(algorithm, salt, password) {
        // Equal lengths compared in full: no early exit on the first differing byte.
        Some(actual) if actual.len() == expected.len() => {
            actual
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        _ => false,
    }
}

/// Whether `stored` is well-formed base64 of a salt and a hash of `algorithm`'s length.
pub fn is_well_formed(algorithm: &str, stored: &str) -> bool {
    let length = match algorithm {
        SHA256 => 32,
        SHA512 => 64,
        _ => return false,
    };
    stored.is_empty()
        || base64::engine::general_purpose::STANDARD
            .decode(stored)
            .is_ok_and(|b| b.len() == 4 + length)
}

fn digest(algorithm: &str, salt: &[u8], password: &str) -> Option<Vec<u8>> {
    match algorithm {
        SHA256 => Some(
            Sha256::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize()
                .to_vec(),
        ),
        SHA512 => Some(
            Sha512::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize()
                .to_vec(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_is_salted() {
        let one = hash("s3cret");
        let two = hash("s3cret");
        assert_ne!(one, two, "each hash has its own salt");
        assert!(verify(SHA256, &one, "s3cret"));
        assert!(verify(SHA256, &two, "s3cret"));
        assert!(!verify(SHA256, &one, "s3cret "));
        assert!(!verify(SHA512, &one, "s3cret"));
        assert!(!verify(SHA256, "", ""));
        assert!(!verify(SHA256, "not base64!", "s3cret"));
        assert!(is_well_formed(SHA256, &one));
        assert!(!is_well_formed(SHA512, &one));
    }

    #[test]
    fn a_hash_exported_by_rabbitmq_verifies() {
        // RabbitMQ 3.10's definitions export of a user added with `rabbitmqctl add_user
        // hashprobe s3cret`.
        let stored = "ZpB2+OnKh1kFOg9ufwGhP4G6besZdvwz811LcE1GOOgdENn+";
        assert!(is_well_formed(SHA256, stored));
        assert!(verify(SHA256, stored, "s3cret"));
        assert!(!verify(SHA256, stored, "S3cret"));
    }
}
