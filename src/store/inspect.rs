//! Reading a stopped service's database without changing it, for `preflight` and `evidence`.
//!
//! `Store::open` creates a missing file, migrates it and starts the writer: right for a service,
//! wrong for a check that must leave the file as it found it. An inspection instead
//!
//! * holds the file with a read-only open, so a service starting meanwhile is refused rather
//!   than written under the check (a file a crash left needing recovery cannot be opened
//!   read-only; it is inspected without that hold, and says so);
//! * verifies every page's checksum with redb's integrity check, run on a writable open whose
//!   writes go to memory (`overlay`), never to the file;
//! * reads through that open: schema version, audit chain, rows per table. The chain of a file
//!   of an older schema is walked as the service will see it: migrated, on that open, so in
//!   memory (about the size of its audit trail), never in the file.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Builder, Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    StorageError,
};

use super::audit;
use super::maintenance::{FileStats, table_rows};
use super::overlay::Overlay;
use super::tables::META;
use super::{SCHEMA_VERSION, Snapshots, StoreError, schema};
use crate::domain::audit::Verification;

/// Enough to walk the trees without holding a large file in memory.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0} does not exist")]
    Missing(String),
    #[error("{0} is in use by another process (is the service running?)")]
    Locked(String),
    #[error("{path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    #[error("cannot open {path}: {reason}")]
    Other { path: String, reason: String },
}

/// A stopped service's database, checked and open for reading.
pub struct Inspection {
    db: Database,
    /// Keeps a service from opening the file while it is inspected.
    _hold: Option<ReadOnlyDatabase>,
    needed_recovery: bool,
    /// The schema version the file holds, read before anything could migrate the open.
    file_schema: Option<u32>,
    path: PathBuf,
}

impl Inspection {
    /// Opens the file at `path` and verifies its integrity; a damaged file is an error.
    pub fn open(path: &Path) -> Result<Self, InspectError> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(InspectError::Missing(shown));
        }
        // redb documents that a file damaged outside it may make an open panic; a check must
        // report that, not die of it — nor print the panic, which the default hook would do
        // before it is caught. Inspections run in the command-line tools, never in the service,
        // so the process-wide hook is theirs to swap for the moment.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let opened = catch_unwind(AssertUnwindSafe(|| Self::open_checked(path, &shown)));
        std::panic::set_hook(hook);
        opened.unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the database library failed reading it");
            Err(InspectError::Damaged {
                path: shown.clone(),
                reason: reason.to_owned(),
            })
        })
    }

    fn open_checked(path: &Path, shown: &str) -> Result<Self, InspectError> {
        let (hold, needed_recovery) = match Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(hold) => (Some(hold), false),
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(InspectError::Locked(shown.to_owned()));
            }
            Err(DatabaseError::RepairAborted) => (None, true),
            Err(other) => return Err(classify(shown, other)),
        };
        let other = |e: std::io::Error| InspectError::Other {
            path: shown.to_owned(),
            reason: e.to_string(),
        };
        let overlay = Overlay::new(File::open(path).map_err(other)?).map_err(other)?;
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create_with_backend(overlay)
            .map_err(|e| classify(shown, e))?;
        let file_schema = db
            .begin_read()
            .map_err(StoreError::from)
            .and_then(|txn| schema::version_in(&txn.open_table(META)?))
            .map_err(|e| InspectError::Other {
                path: shown.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            db,
            _hold: hold,
            needed_recovery,
            file_schema,
            path: path.to_owned(),
        })
    }

    /// Whether the file was left by a crash: the service recovers it at its next start (the
    /// inspection did so in memory only).
    pub fn needed_recovery(&self) -> bool {
        self.needed_recovery
    }

    /// The schema version the file holds, if one was ever written.
    pub fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        Ok(self.file_schema)
    }

    /// Walks the audit chain; a file of an older schema is first migrated in memory, since the
    /// chain's layout is the schema's.
    pub fn verify_audit(&self) -> Result<Verification, StoreError> {
        if self.file_schema.is_some_and(|found| found < SCHEMA_VERSION) {
            schema::prepare(&self.db, &self.path.display().to_string())
                .map_err(|e| StoreError::Database(e.to_string()))?;
        }
        audit::verify(self)
    }

    /// Size, reclaimable space and rows per table, as `db stats` reports them.
    pub fn file_stats(&self) -> Result<FileStats, StoreError> {
        // Sizing the free space needs a write transaction; it is aborted, and would only have
        // reached the overlay.
        let txn = self.db.begin_write()?;
        let reclaimable_bytes = txn.stats()?.fragmented_bytes();
        txn.abort()?;
        Ok(FileStats {
            path: self.path.display().to_string(),
            file_bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            reclaimable_bytes,
            rows: self.snapshot(table_rows)?,
        })
    }
}

impl Snapshots for Inspection {
    fn snapshot<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.db.begin_read()?)
    }
}

fn classify(path: &str, error: DatabaseError) -> InspectError {
    match error {
        DatabaseError::Storage(StorageError::Corrupted(reason)) => InspectError::Damaged {
            path: path.to_owned(),
            reason,
        },
        other => InspectError::Other {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableDefinition;
    use sha2::{Digest, Sha256};

    const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
    const MARKER: &[u8] = b"a value preflight must find intact";

    fn database_with_a_row(path: &Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 4u32.to_le_bytes().as_slice())
            .unwrap();
        txn.open_table(ROWS).unwrap().insert(1, MARKER).unwrap();
        txn.commit().unwrap();
    }

    fn digest(path: &Path) -> Vec<u8> {
        Sha256::digest(std::fs::read(path).unwrap()).to_vec()
    }

    #[test]
    fn an_inspection_reads_and_verifies_without_changing_a_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sofiia.redb");
        database_with_a_row(&path);
        let before = digest(&path);

        let inspection = Inspection::open(&path).unwrap();
        assert!(!inspection.needed_recovery());
        assert_eq!(inspection.schema_version().unwrap(), Some(4));
        let stats = inspection.file_stats().unwrap();
        assert_eq!(stats.rows.get("rows"), Some(&1));
        drop(inspection);

        assert_eq!(digest(&path), before);
    }

    #[test]
    fn a_service_cannot_open_the_file_while_it_is_inspected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sofiia.redb");
        database_with_a_row(&path);

        let inspection = Inspection::open(&path).unwrap();
        assert!(matches!(
            Database::create(&path),
            Err(DatabaseError::DatabaseAlreadyOpen)
        ));
        drop(inspection);
        let held = Database::create(&path).unwrap();
        assert!(matches!(
            Inspection::open(&path),
            Err(InspectError::Locked(_))
        ));
        drop(held);
    }

    #[test]
    fn a_flipped_byte_in_a_page_is_reported_damaged_and_a_missing_file_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sofiia.redb");
        database_with_a_row(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(MARKER.len())
            .position(|w| w == MARKER)
            .expect("the value is stored as is");
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        assert!(matches!(
            Inspection::open(&path),
            Err(InspectError::Damaged { .. })
        ));
        assert!(matches!(
            Inspection::open(&dir.path().join("none.redb")),
            Err(InspectError::Missing(_))
        ));
    }
}
