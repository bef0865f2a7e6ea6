//! API keys. Every change is published (`published`), so authentication reads memory.

use super::audit;
use super::batch::WriteTables;
use super::codec::{self, Record};
use super::published::Change;
use super::{Store, StoreError};
use crate::domain::api_key::ApiKey;
use crate::domain::audit::Draft;

impl Record for ApiKey {
    const VERSION: u8 = 1;
    const NAME: &'static str = "api key";
}

impl Store {
    pub async fn insert_key(&self, key: ApiKey, audit: Draft) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                save(t, &key)?;
                audit::append(t, audit.clone())?;
                Ok(())
            })
            .await
    }

    /// Marks a key revoked at `audit.at_ms` and records `audit`; `None` when there is no such
    /// key. Revoking twice keeps the first revocation time.
    pub async fn revoke_key(&self, id: String, audit: Draft) -> Result<Option<ApiKey>, StoreError> {
        self.writer()
            .execute(move |t| {
                let Some(mut key) = codec::get::<_, ApiKey>(&t.api_keys, id.as_str())? else {
                    return Ok(None);
                };
                key.revoked_ms.get_or_insert(audit.at_ms);
                save(t, &key)?;
                audit::append(t, audit.clone())?;
                Ok(Some(key))
            })
            .await
    }

    /// Records when a key was last used, unless a later use is recorded already. Keys that have
    /// disappeared are skipped.
    pub async fn record_key_use(&self, id: String, used_ms: u64) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                let Some(mut key) = codec::get::<_, ApiKey>(&t.api_keys, id.as_str())? else {
                    return Ok(());
                };
                if key.last_used_ms.is_none_or(|recorded| recorded < used_ms) {
                    key.last_used_ms = Some(used_ms);
                    save(t, &key)?;
                }
                Ok(())
            })
            .await
    }
}

fn save(t: &mut WriteTables<'_>, key: &ApiKey) -> Result<(), StoreError> {
    t.api_keys
        .insert(key.id.as_str(), codec::encode(key)?.as_slice())?;
    t.publish(Change::Key(key.clone()));
    Ok(())
}
