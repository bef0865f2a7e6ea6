//! Who is making a request, once authenticated.

use super::role::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An API key from the key table.
    Key,
    /// The admin token supplied by the environment or a token file.
    AdminToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub credential: Credential,
    pub id: String,
    pub role: Role,
}

impl Principal {
    pub fn admin_token() -> Self {
        Self {
            credential: Credential::AdminToken,
            id: "admin-token".into(),
            role: Role::Admin,
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
