//! API key format: `sk_<12-char id>_<32 random bytes, base64url>` (SPEC §4).
//!
//! The id is the lookup key and is safe to show and log; the secret part is stored only as its
//! SHA-256. Keys carry 256 bits of entropy, so a fast hash is enough: there is nothing to
//! brute-force that a slow hash would protect.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::role::Role;

const PREFIX: &str = "sk_";
pub const ID_LEN: usize = 12;
const SECRET_BYTES: usize = 32;
/// Length of the base64url (unpadded) encoding of the secret.
const SECRET_LEN: usize = 43;
const ID_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// SHA-256 of a key's secret part.
pub type SecretHash = [u8; 32];

pub const MAX_NAME_CHARS: usize = 64;

/// A stored API key: everything but the secret, which is kept only as its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub secret_hash: SecretHash,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    pub last_used_ms: Option<u64>,
}

impl ApiKey {
    /// Whether the key may authenticate at `now_ms`: not revoked and not expired.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// Key names are labels for people: 1–64 printable characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    let count = name.chars().count();
    let breaks_lines = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if count == 0 || count > MAX_NAME_CHARS || name.chars().any(breaks_lines) {
        Err(format!(
            "must be 1-{MAX_NAME_CHARS} characters without control characters or line separators"
        ))
    } else {
        Ok(())
    }
}

/// A freshly generated key: the full text is shown once, then only `id` and `hash` are kept.
pub struct GeneratedKey {
    pub id: String,
    pub full: String,
    pub hash: SecretHash,
}

/// A presented credential split into its parts; says nothing yet about validity.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Builds a key from 44 bytes of entropy supplied by the caller (12 for the id, 32 for the secret),
/// so this module stays free of I/O.
pub fn generate(entropy: &[u8; ID_LEN + SECRET_BYTES]) -> GeneratedKey {
    let id: String = entropy[..ID_LEN]
        .iter()
        .map(|b| ID_ALPHABET[usize::from(b % 32)] as char)
        .collect();
    let secret = URL_SAFE_NO_PAD.encode(&entropy[ID_LEN..]);
    let hash = hash_secret(&secret);
    GeneratedKey {
        full: format!("{PREFIX}{id}_{secret}"),
        id,
        hash,
    }
}

/// Splits `sk_<id>_<secret>`; `None` when the shape is wrong.
pub fn parse(text: &str) -> Option<PresentedKey<'_>> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?);
    let secret = secret.strip_prefix('_')?;
    let shape_ok = id.bytes().all(|b| ID_ALPHABET.contains(&b))
        && secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shape_ok.then_some(PresentedKey { id, secret })
}

pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares a presented secret with a stored hash in constant time.
pub fn secret_matches(secret: &str, stored: &SecretHash) -> bool {
    hash_secret(secret).ct_eq(stored).into()
}

/// Compares two tokens (e.g. `SOFIIA_ADMIN_TOKEN`) without leaking where they differ.
///
/// Both sides are hashed first so the comparison also hides the expected token's length.
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    hash_secret(presented).ct_eq(&hash_secret(expected)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GeneratedKey {
        let mut entropy = [0u8; 44];
        for (i, b) in entropy.iter_mut().enumerate() {
            *b = (i * 37 % 251) as u8;
        }
        generate(&entropy)
    }

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = sample();
        assert_eq!(key.full.len(), 3 + 12 + 1 + 43);
        let presented = parse(&key.full).expect("parses");
        assert_eq!(presented.id, key.id);
        assert!(secret_matches(presented.secret, &key.hash));
    }

    #[test]
    fn rejects_malformed_and_wrong_secrets() {
        let key = sample();
        assert!(parse("").is_none());
        assert!(parse("sk_short").is_none());
        assert!(parse(&key.full.replace("sk_", "pk_")).is_none());
        assert!(parse(&format!("{}x", key.full)).is_none());
        let other = format!("sk_{}_{}", key.id, "A".repeat(43));
        let presented = parse(&other).expect("well-formed");
        assert!(!secret_matches(presented.secret, &key.hash));
    }

    #[test]
    fn names_may_not_break_lines() {
        assert!(validate_name("ops script").is_ok());
        for bad in ["", "a\nb", "a\u{2028}b", "a\u{2029}b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "abcd"));
    }
}
