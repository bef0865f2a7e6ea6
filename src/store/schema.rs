//! Schema version, forward migration and the downgrade guard (SPEC §3).
//!
//! The version is a u32 (little-endian) under `meta["schema_version"]`, deliberately outside any
//! envelope so that every release, old or new, can read it before anything else.

use redb::{Database, ReadableTable, WriteTransaction};

use super::tables::{
    API_KEYS, AUDIT, AUDIT_BY_ACTION, AUDIT_BY_ACTOR, AUDIT_BY_OUTCOME, AUDIT_BY_TARGET,
    CHAT_INDEX, CHATS, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, LOCKOUTS, MESSAGES, META, RATE_WINDOWS,
    RETENTION_RUNS, SESSIONS,
};
use super::{OpenError, StoreError};

/// The schema this binary writes.
///
/// 2: the retention job log, the audit chain checkpoint, and the `retention.*` audit actions. A
/// version-1 binary could not read a pruned chain or the new actions, so it must refuse the file.
pub const SCHEMA_VERSION: u32 = 2;
const VERSION_KEY: &str = "schema_version";

/// Brings the file to `SCHEMA_VERSION` in one transaction, or refuses a newer file untouched.
pub(super) fn prepare(db: &Database, path: &str) -> Result<(), OpenError> {
    let failed = |e: StoreError| OpenError::Other {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let txn = db.begin_write().map_err(|e| failed(e.into()))?;
    let found = stored_version(&txn).map_err(failed)?;
    if let Some(found) = found.filter(|v| *v > SCHEMA_VERSION) {
        return Err(OpenError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    // Every step so far only adds tables: version 1 → 2 adds the retention job log. A later
    // step that rewrites records goes here, keyed on `found`.
    create_tables(&txn).map_err(failed)?;
    if found != Some(SCHEMA_VERSION) {
        write_version(&txn).map_err(failed)?;
    }
    txn.commit().map_err(|e| failed(e.into()))
}

fn stored_version(txn: &WriteTransaction) -> Result<Option<u32>, StoreError> {
    let meta = txn.open_table(META)?;
    let Some(raw) = meta.get(VERSION_KEY)? else {
        return Ok(None);
    };
    let bytes: [u8; 4] = raw
        .value()
        .try_into()
        .map_err(|_| StoreError::Corrupt("schema_version is not 4 bytes".into()))?;
    Ok(Some(u32::from_le_bytes(bytes)))
}

fn write_version(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    Ok(())
}

fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CHATS)?;
    txn.open_table(CHAT_INDEX)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(IDEMPOTENCY_EXPIRY)?;
    txn.open_table(API_KEYS)?;
    txn.open_table(RATE_WINDOWS)?;
    txn.open_table(LOCKOUTS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(RETENTION_RUNS)?;
    txn.open_table(AUDIT)?;
    for index in [
        AUDIT_BY_ACTOR,
        AUDIT_BY_ACTION,
        AUDIT_BY_TARGET,
        AUDIT_BY_OUTCOME,
    ] {
        txn.open_table(index)?;
    }
    Ok(())
}
