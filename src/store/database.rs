//! The database behind a gate that compaction can close.
//!
//! redb compacts a file only with exclusive access: no read or write transaction may be live
//! (`Database::compact` takes `&mut Database`). Every transaction is therefore opened under a
//! shared hold of one `RwLock`, held for as long as the transaction lives; compaction takes the
//! exclusive hold, which waits for the live transactions to end and holds new ones back until it
//! is done. Outside a compaction a shared hold is one uncontended atomic operation.
//!
//! A reader that finds the gate closed waits, bounded by `PAUSE_WAIT_LIMIT`, off the async
//! runtime (the worker's other tasks move to other threads while it waits), and fails with
//! `StoreError::Unavailable` when the pause outlasts the bound. Writers need no bound here: only
//! the writer thread writes, and it is the thread that compacts.
//!
//! Invariant: a holder never asks for a second hold (a shared hold taken while one is held
//! would wait behind a queued exclusive one forever).

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard};
use redb::{Database, ReadTransaction, ReadableDatabase};

use super::StoreError;

/// Longest a reader waits for a compaction to end before it gives up: the request it serves is
/// answered `503` rather than held without end.
const PAUSE_WAIT_LIMIT: Duration = Duration::from_secs(30);

pub struct Gated {
    database: RwLock<Database>,
    path: PathBuf,
}

impl Gated {
    pub fn new(database: Database, path: &Path) -> Self {
        Self {
            database: RwLock::new(database),
            path: path.to_owned(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction, held open only while `f` runs.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let database = self.shared()?;
        let txn = database.begin_read()?;
        f(&txn)
    }

    /// A shared hold: at once when no compaction runs, else after it (bounded).
    fn shared(&self) -> Result<RwLockReadGuard<'_, Database>, StoreError> {
        if let Some(held) = self.database.try_read() {
            return Ok(held);
        }
        tokio::task::block_in_place(|| self.database.try_read_for(PAUSE_WAIT_LIMIT))
            .ok_or(StoreError::Unavailable)
    }

    /// A shared hold for the writer thread, which may wait as long as it takes.
    pub(super) fn for_writing(&self) -> RwLockReadGuard<'_, Database> {
        self.database.read()
    }

    /// Runs `f` with the database to itself: once every live transaction has ended, and with new
    /// ones held back until it returns. Only the writer thread calls it, between batches.
    pub(super) fn exclusive<T>(&self, f: impl FnOnce(&mut Database) -> T) -> T {
        f(&mut self.database.write())
    }
}
