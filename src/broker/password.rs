//! Salted password hashes in RabbitMQ's `rabbit_password_hashing_sha256` format:
//! `base64(salt[4] ++ sha256(salt ++ password))`, so definitions move between the two brokers.

use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

/// Hashes `password` with the given 4-byte salt (the caller supplies randomness, so this stays
/// deterministic and usable inside state machines).
pub fn hash(password: &str, salt: [u8; 4]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&h.finalize());
    STANDARD.encode(out)
}

/// Checks `password` against a stored hash; a malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(raw) = STANDARD.decode(stored) else {
        return false;
    };
    if raw.len() != 4 + 32 {
        return false;
    }
    let salt = [raw[0], raw[1], raw[2], raw[3]];
    // Compare without early exit.
    let expected = hash(password, salt);
    expected.len() == stored.len() && expected.bytes().zip(stored.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejection() {
        let h = hash("guest", [1, 2, 3, 4]);
        assert!(verify("guest", &h));
        assert!(!verify("guesT", &h));
        assert!(!verify("guest", "not base64!"));
        assert!(!verify("guest", "AAAA"));
    }
}
