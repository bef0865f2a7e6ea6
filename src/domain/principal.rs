//! Who is making a request, once authenticated.

use serde::{Deserialize, Serialize};

use super::role::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// An API key from the key table.
    Key,
    /// The admin token supplied by the environment or a token file.
    AdminToken,
}

/// An authenticated caller. A session acts as the credential it was opened with: same author,
/// same idempotency scope, same rate limits; only the audit trail says it came through a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub credential: Credential,
    pub id: String,
    pub role: Role,
    pub via_session: bool,
}

impl Principal {
    pub fn admin_token() -> Self {
        Self {
            credential: Credential::AdminToken,
            id: "admin-token".into(),
            role: Role::Admin,
            via_session: false,
        }
    }

    /// Stable name used as message author and as the idempotency scope.
    pub fn label(&self) -> String {
        match self.credential {
            Credential::Key => format!("key:{}", self.id),
            Credential::AdminToken => format!("token:{}", self.id),
        }
    }
}
