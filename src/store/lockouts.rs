//! Clients locked out of authentication, kept so a restart does not lift a lockout.

use super::published::Change;
use super::{Store, StoreError, audit};
use crate::domain::audit::Draft;

impl Store {
    /// Locks `client` out until `until_ms`, recording `audit` with it when there is a record
    /// to write (lockout records are aggregated like other denials).
    pub async fn lock_out(
        &self,
        client: String,
        until_ms: u64,
        audit: Option<Draft>,
    ) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                t.lockouts.insert(client.as_str(), until_ms)?;
                if let Some(audit) = &audit {
                    audit::append(t, audit.clone())?;
                }
                t.publish(Change::Lockout {
                    address: client.clone(),
                    until_ms,
                });
                Ok(())
            })
            .await
    }
}
