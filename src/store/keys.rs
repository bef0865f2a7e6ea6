//! API keys.

use redb::ReadableTable;

use super::audit;
use super::codec::{self, Record};
use super::tables::API_KEYS;
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
                t.api_keys
                    .insert(key.id.as_str(), codec::encode(&key)?.as_slice())?;
                audit::append(t, audit)?;
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
                t.api_keys
                    .insert(id.as_str(), codec::encode(&key)?.as_slice())?;
                audit::append(t, audit)?;
                Ok(Some(key))
            })
            .await
    }

    /// Records when keys were last used. Keys that have disappeared are skipped.
    pub async fn record_key_use(&self, id: String, used_ms: u64) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                if let Some(mut key) = codec::get::<_, ApiKey>(&t.api_keys, id.as_str())? {
                    key.last_used_ms = Some(used_ms);
                    t.api_keys
                        .insert(id.as_str(), codec::encode(&key)?.as_slice())?;
                }
                Ok(())
            })
            .await
    }

    pub fn all_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.read(|txn| {
            txn.open_table(API_KEYS)?
                .iter()?
                .map(|row| codec::decode(row?.1.value()))
                .collect()
        })
    }
}
