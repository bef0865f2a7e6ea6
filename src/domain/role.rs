//! Roles and what each may do (SPEC §4).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Auditor,
}

/// Something a request wants to do; routes declare one, roles grant a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadChats,
    WriteChats,
    ReadAudit,
    ManageKeys,
    /// Run retention and read its job log.
    ManageRetention,
    /// Read the system-health cards.
    ReadSystemHealth,
    /// Watch the admin event stream.
    WatchEvents,
    /// Take and list backups.
    ManageBackups,
}

impl Role {
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(permission, ReadChats | WriteChats),
            Role::Viewer => matches!(permission, ReadChats | ReadSystemHealth),
            Role::Auditor => matches!(permission, ReadAudit),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "auditor" => Ok(Role::Auditor),
            other => Err(format!(
                "unknown role {other:?}: expected admin, operator, viewer or auditor"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditors_read_only_the_audit_trail() {
        assert!(Role::Auditor.allows(Permission::ReadAudit));
        assert!(!Role::Auditor.allows(Permission::ReadChats));
        assert!(!Role::Operator.allows(Permission::ReadAudit));
        assert!(!Role::Viewer.allows(Permission::WriteChats));
        assert!(!Role::Operator.allows(Permission::ManageKeys));
        assert!(Role::Admin.allows(Permission::ManageKeys));
    }

    #[test]
    fn parses_what_it_prints() {
        for role in [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
