//! Schema version, forward migration and the downgrade guard (SPEC §3).
//!
//! The version is a u32 (little-endian) under `meta["schema_version"]`, deliberately outside any
//! envelope so that every release, old or new, can read it before anything else.

use redb::{Database, ReadableTable, WriteTransaction};

use super::tables::{
    API_KEYS, CHAT_INDEX, CHATS, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, LOCKOUTS, MESSAGES, META,
    RATE_WINDOWS, RETENTION_RUNS, SESSIONS,
};
use super::{OpenError, StoreError};

/// The schema this binary writes.
///
/// 2: the retention job log, the audit chain checkpoint, and the `retention.*` audit actions. A
/// version-1 binary could not read a pruned chain or the new actions, so it must refuse the file.
/// 3: audit index keys lead with a bucket of `seq` (`tables::BUCKETED_AUDIT_INDEXES`).
/// 4: the `backup.create` audit action, which a version-3 binary could not read.
/// 5: the `backup.restore` audit action, likewise.
/// 6: the audit trail in partitions of `seq`s (`audit_partition`), which a version-5 binary
/// would not find.
pub const SCHEMA_VERSION: u32 = 6;
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
    // Version 1 → 2 adds the retention job log (a table); → 6 moves the audit trail into
    // partitions, building their indexes from the events, and drops the tables of versions 1
    // to 5 (3 to 5 only changed how the indexes were keyed, and added audit actions).
    create_tables(&txn).map_err(failed)?;
    if found.is_some_and(|version| version < 6) {
        move_audit_into_partitions(&txn).map_err(failed)?;
    }
    if found != Some(SCHEMA_VERSION) {
        write_version(&txn).map_err(failed)?;
    }
    txn.commit().map_err(|e| failed(e.into()))
}

fn stored_version(txn: &WriteTransaction) -> Result<Option<u32>, StoreError> {
    version_in(&txn.open_table(META)?)
}

/// The schema version recorded in `meta`; `None` in a file that never held one.
pub(super) fn version_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<u32>, StoreError> {
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

fn move_audit_into_partitions(txn: &WriteTransaction) -> Result<(), StoreError> {
    tracing::info!(
        event = "migration",
        "moving the audit trail into partitions (once, at the upgrade to schema 6)"
    );
    super::audit::move_into_partitions(txn)
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
    Ok(())
}
