//! Identifiers chosen by people: chat ids, agent and node names.

use thiserror::Error;

/// Longest slug accepted anywhere.
pub const MAX_SLUG_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidSlug;

/// Checks that `value` is a slug: `[A-Za-z0-9_-]{1,64}`.
///
/// Slugs appear in URLs and in redb keys, so they exclude anything that needs escaping.
pub fn validate(value: &str) -> Result<(), InvalidSlug> {
    let ok = !value.is_empty()
        && value.len() <= MAX_SLUG_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(InvalidSlug) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs_and_rejects_the_rest() {
        assert!(validate("ops-1_A").is_ok());
        assert!(validate(&"a".repeat(64)).is_ok());
        assert_eq!(validate(""), Err(InvalidSlug));
        assert_eq!(validate(&"a".repeat(65)), Err(InvalidSlug));
        assert_eq!(validate("a b"), Err(InvalidSlug));
        assert_eq!(validate("a/b"), Err(InvalidSlug));
        assert_eq!(validate("é"), Err(InvalidSlug));
    }
}
