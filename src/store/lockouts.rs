//! Addresses locked out of authentication, kept so a restart does not lift a lockout.

use redb::ReadableTable;

use super::tables::LOCKOUTS;
use super::{Store, StoreError, audit};
use crate::domain::audit::Draft;

impl Store {
    /// Locks `address` until `until_ms` and records `audit` with it.
    pub async fn lock_out(
        &self,
        address: String,
        until_ms: u64,
        audit: Draft,
    ) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                t.lockouts.insert(address.as_str(), until_ms)?;
                audit::append(t, audit)?;
                Ok(())
            })
            .await
    }

    /// Every lockout still in force at `now_ms`.
    pub fn lockouts(&self, now_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(move |txn| {
            let mut active = Vec::new();
            for row in txn.open_table(LOCKOUTS)?.iter()? {
                let (address, until) = row?;
                if until.value() > now_ms {
                    active.push((address.value().to_owned(), until.value()));
                }
            }
            Ok(active)
        })
    }
}
