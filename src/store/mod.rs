//! The only code that touches redb: tables, envelopes, schema, the group-commit writer, and one
//! file per kind of record with the reads and writes it supports.
//!
//! Bounded reads run in read transactions on the caller's thread (`Store::read`), reads that
//! grow with the data off the async runtime (`Store::scan`); writes go through the single
//! `Writer`.

pub mod audit;
mod audit_partition;
pub mod backup;
mod batch;
pub mod chats;
pub mod codec;
mod database;
pub mod figures;
pub mod idempotency;
pub mod inspect;
pub mod keys;
pub mod lockouts;
pub mod maintenance;
pub mod messages;
mod overlay;
pub mod published;
pub mod rate;
mod replays;
pub mod restore;
pub mod retention;
mod schema;
pub mod send;
pub mod sessions;
pub mod tables;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase};

pub use schema::SCHEMA_VERSION;
pub use writer::{Writer, WriterThread};

use database::Gated;
use published::Published;

/// A storage failure. Never shown to clients (it maps to `500 internal`, or `503` when storage
/// is gone).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused an operation for reasons of that operation (a record that does not
    /// decode, a value too large, a damaged page it reached); others may still succeed.
    #[error("database: {0}")]
    Database(String),
    #[error("damaged record: {0}")]
    Corrupt(String),
    /// The storage itself failed (an I/O error). redb refuses every later write after one, so
    /// the writer stops and the process must be restarted (`Writer::failure`).
    #[error("storage failed: {0}")]
    Io(String),
    #[error("the writer is not running")]
    Unavailable,
    #[error("the reader did not keep up")]
    Deadline,
}

impl From<redb::Error> for StoreError {
    fn from(error: redb::Error) -> Self {
        match error {
            redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::DatabaseClosed
            | redb::Error::LockPoisoned(_) => StoreError::Io(error.to_string()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// Why the database could not be opened; each says what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{path} is in use by another process (is the service running? use the CLI's --url to go through it)"
    )]
    Locked { path: String },
    #[error(
        "{path} was written by a newer sofiia-console (schema version {found}; this binary knows up to {known}); refusing to start — install the newer release or restore a backup"
    )]
    TooNew {
        path: String,
        found: u32,
        known: u32,
    },
    #[error("cannot open {path}: {reason}")]
    Other { path: String, reason: String },
}

/// redb's page cache. Bounded so the service's memory stays predictable on an appliance (SPEC §14:
/// ≤ 200 MiB under load); the operating system's page cache still holds the rest of the file.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The open database, its writer, and the state it publishes in memory.
#[derive(Clone)]
pub struct Store {
    db: Arc<Gated>,
    writer: Writer,
    published: Arc<Published>,
}

impl Store {
    /// Opens (or creates) the database file, migrates it forward, and starts the writer.
    pub fn open(path: &Path) -> Result<(Store, WriterThread), OpenError> {
        let shown = path.display().to_string();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => OpenError::Locked {
                    path: shown.clone(),
                },
                other => OpenError::Other {
                    path: shown.clone(),
                    reason: other.to_string(),
                },
            })?;
        schema::prepare(&db, &shown)?;
        let failed = |reason: String| OpenError::Other {
            path: shown.clone(),
            reason,
        };
        let txn = db.begin_read().map_err(|e| failed(e.to_string()))?;
        let published = Arc::new(Published::load(&txn).map_err(|e| failed(e.to_string()))?);
        drop(txn);
        let db = Arc::new(Gated::new(db, path));
        let (writer, thread) =
            Writer::start(db.clone(), published.clone()).map_err(|e| failed(e.to_string()))?;
        Ok((
            Store {
                db,
                writer,
                published,
            },
            thread,
        ))
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The in-memory state the writer publishes after each commit.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// Runs `f` in a read transaction on the calling task's thread.
    ///
    /// For bounded reads only — point lookups and one page of rows — which redb serves from
    /// its page cache in microseconds: moving them off the runtime (`block_in_place` hands the
    /// worker to a fresh thread, `spawn_blocking` hands the read to one) costs two context
    /// switches, more than the read itself (`docs/performance.md`). Work that grows with the
    /// data goes through `scan`.
    pub fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    {
        self.db.read(f)
    }

    /// Runs `f` in a read transaction off the async runtime, for reads whose cost grows with the
    /// data (filtered audit queries, chain verification): the worker's other tasks move to
    /// other threads while it runs, so a long walk stalls no request.
    pub fn scan<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    {
        tokio::task::block_in_place(|| self.db.read(f))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }
}

/// Where read transactions come from: the live store, or an inspection of a stopped file, so
/// a read such as the chain walk is written once for both.
pub(crate) trait Snapshots {
    fn snapshot<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

impl Snapshots for Store {
    fn snapshot<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(f)
    }
}
