//! Online backups: a consistent copy of the database taken while the service keeps serving.
//!
//! redb has no backup call, and a raw copy of an open file can catch a commit half-written. A
//! backup is therefore copied row by row from **one** read transaction — one snapshot, so every
//! row is as of one commit — into a new database file, which is fsync'd, then renamed into place
//! and its directory fsync'd: a backup file either is complete or does not exist under its name.
//! The read transaction is held for the whole copy (that is what makes it one snapshot): meanwhile
//! pages freed by new commits are not reused, and compaction waits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableTable, TableDefinition, TableHandle, Value,
};

use super::audit_partition::{INDEX_COUNT, reported_name, stored_partitions};
use super::inspect::{InspectError, Inspection};
use super::tables::{
    API_KEYS, CHAT_INDEX, CHATS, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, LOCKOUTS, MESSAGES, META,
    RATE_WINDOWS, RETENTION_RUNS, SESSIONS,
};
use super::{SCHEMA_VERSION, Store, StoreError};
use crate::domain::audit::Verification;

/// Rows written to the copy per write transaction.
const COPY_CHUNK: usize = 10_000;

/// What a backup holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    pub file: PathBuf,
    pub bytes: u64,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
}

/// What a backup file holds, found by opening it with redb's integrity check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    pub file: PathBuf,
    pub bytes: u64,
    pub schema_version: u32,
    pub audit: Verification,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
}

/// Why a file cannot stand in for the database.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("{0} was not closed cleanly: it is not a complete backup")]
    NotClean(String),
    #[error("{0} records no schema version: it is not a sofiia-console database")]
    NoSchema(String),
    #[error(
        "{file} was written by a newer sofiia-console (schema version {found}; this binary knows up to {SCHEMA_VERSION})"
    )]
    Newer { file: String, found: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the backup `file` without changing it (`inspect`): every page's checksum, a schema
/// version this binary knows, and the audit chain from its checkpoint to its head. A file that
/// is damaged, was left mid-write, or holds no schema version is an error; a chain that does not
/// verify is reported in `audit`.
pub fn check_copy(file: &Path) -> Result<Checked, CheckError> {
    let shown = file.display().to_string();
    let inspection = Inspection::open(file)?;
    if inspection.needed_recovery() {
        return Err(CheckError::NotClean(shown));
    }
    let schema_version = inspection
        .schema_version()?
        .ok_or_else(|| CheckError::NoSchema(shown.clone()))?;
    if schema_version > SCHEMA_VERSION {
        return Err(CheckError::Newer {
            file: shown,
            found: schema_version,
        });
    }
    let audit = inspection.verify_audit()?;
    let stats = inspection.file_stats()?;
    Ok(Checked {
        file: file.to_owned(),
        bytes: stats.file_bytes,
        schema_version,
        audit,
        rows: stats.rows,
    })
}

impl Store {
    /// Copies the database, as of one snapshot, to `file` (which must not exist).
    pub fn copy_to(&self, file: &Path) -> Result<Copied, StoreError> {
        if file.exists() {
            return Err(StoreError::Database(format!(
                "{} exists already",
                file.display()
            )));
        }
        let partial = file.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        let rows = self.scan(|txn| copy_snapshot(txn, &partial));
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                return Err(error);
            }
        };
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&partial, file))
            .and_then(|()| sync_dir(file))
            .map_err(|e| StoreError::Io(format!("{}: {e}", file.display())))?;
        Ok(Copied {
            file: file.to_owned(),
            bytes: std::fs::metadata(file).map_or(0, |m| m.len()),
            rows,
        })
    }
}

/// Copies every table of `txn` into a new database at `path`; rows per table, the audit
/// partitions' summed under the names of what they hold.
fn copy_snapshot(txn: &ReadTransaction, path: &Path) -> Result<BTreeMap<String, u64>, StoreError> {
    let target =
        Database::create(path).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    let mut rows = BTreeMap::new();
    let mut tables = BTreeSet::new();
    let mut copy = |name: &str, copied: Option<u64>| {
        if let Some(copied) = copied {
            *rows.entry(reported_name(name).to_owned()).or_default() += copied;
            tables.insert(name.to_owned());
        }
    };
    copy(META.name(), copy_table(txn, &target, META)?);
    copy(CHATS.name(), copy_table(txn, &target, CHATS)?);
    copy(CHAT_INDEX.name(), copy_table(txn, &target, CHAT_INDEX)?);
    copy(MESSAGES.name(), copy_table(txn, &target, MESSAGES)?);
    copy(IDEMPOTENCY.name(), copy_table(txn, &target, IDEMPOTENCY)?);
    copy(
        IDEMPOTENCY_EXPIRY.name(),
        copy_table(txn, &target, IDEMPOTENCY_EXPIRY)?,
    );
    copy(RATE_WINDOWS.name(), copy_table(txn, &target, RATE_WINDOWS)?);
    copy(LOCKOUTS.name(), copy_table(txn, &target, LOCKOUTS)?);
    copy(SESSIONS.name(), copy_table(txn, &target, SESSIONS)?);
    copy(API_KEYS.name(), copy_table(txn, &target, API_KEYS)?);
    for partition in stored_partitions(txn)? {
        let names = partition.names();
        copy(
            names.events().name(),
            copy_table(txn, &target, names.events())?,
        );
        for position in 0..INDEX_COUNT {
            let index = names.index(position);
            copy(index.name(), copy_table(txn, &target, index)?);
        }
    }
    copy(
        RETENTION_RUNS.name(),
        copy_table(txn, &target, RETENTION_RUNS)?,
    );
    // A table this list does not know would be lost from the copy: refuse instead.
    for table in txn.list_tables()? {
        if !tables.contains(table.name()) {
            return Err(StoreError::Database(format!(
                "the backup does not know the table {}",
                table.name()
            )));
        }
    }
    let mut last = target.begin_write()?;
    last.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Database(e.to_string()))?;
    last.commit()?;
    Ok(rows)
}

/// Copies one table, `COPY_CHUNK` rows per transaction; `None` when the snapshot has no such
/// table.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    target: &Database,
    definition: TableDefinition<K, V>,
) -> Result<Option<u64>, StoreError> {
    let source = match txn.open_table(definition) {
        Ok(source) => source,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let mut rows = source.iter()?;
    let mut copied = 0;
    loop {
        let mut write = target.begin_write()?;
        // Only the last commit needs to be durable: the file is fsync'd before it is named.
        write
            .set_durability(Durability::None)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let mut done = true;
        {
            let mut table = write.open_table(definition)?;
            for row in rows.by_ref().take(COPY_CHUNK) {
                let (key, value) = row?;
                table.insert(key.value(), value.value())?;
                copied += 1;
                done = false;
            }
        }
        write.commit()?;
        if done {
            return Ok(Some(copied));
        }
    }
}

/// Makes a rename in `file`'s directory durable.
pub(super) fn sync_dir(file: &Path) -> std::io::Result<()> {
    match file.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
