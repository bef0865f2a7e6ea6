//! Admin-page sessions (SPEC §4): a cookie token standing for the key it was opened with.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::principal::Credential;
use super::role::Role;

/// A stored session. The token is not here: only its hash is the table's key, so the database
/// holds nothing that opens a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub credential: Credential,
    /// The key id, or for the admin token a fingerprint of the token in force at login.
    pub credential_id: String,
    pub role: Role,
    pub created_ms: u64,
    pub last_seen_ms: u64,
    /// The absolute end, however active the session.
    pub expires_ms: u64,
}

impl Session {
    /// Whether the session is usable at `now_ms`: before its absolute end and not idle for
    /// `idle_ms` or longer.
    pub fn is_live(&self, now_ms: u64, idle_ms: u64) -> bool {
        now_ms < self.expires_ms && now_ms.saturating_sub(self.last_seen_ms) < idle_ms
    }

    /// When it ends if nothing more happens.
    pub fn ends_ms(&self, idle_ms: u64) -> u64 {
        (self.last_seen_ms + idle_ms).min(self.expires_ms)
    }
}

pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let session = Session {
            credential: Credential::Key,
            credential_id: "k".into(),
            role: Role::Admin,
            created_ms: 0,
            last_seen_ms: 1_000,
            expires_ms: 10_000,
        };
        assert!(session.is_live(1_500, 1_000));
        assert!(!session.is_live(2_000, 1_000), "idle");
        assert!(!session.is_live(10_000, 100_000), "absolute");
        assert_eq!(session.ends_ms(1_000), 2_000);
    }
}
