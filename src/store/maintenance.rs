//! Looking after the file itself: its size, what compaction could give back, and compaction.
//!
//! redb reuses the pages retention frees, so the file stops growing once old rows go; it only
//! shrinks when compacted, which needs the database to itself (`database`). Compaction runs as a
//! writer task: the writer commits what was queued before it, takes the exclusive hold (reads in
//! flight finish first, new ones wait), compacts, and lets everything resume. The time from the
//! writer stopping to its resuming is the pause every request may have felt.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableTableMetadata, TableHandle};
use serde::Serialize;

use super::audit_partition::reported_name;
use super::{Store, StoreError};

/// What one compaction did.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    pub compacted: bool,
    /// How long writes (and, once the exclusive hold was taken, reads) were held back.
    pub pause: Duration,
}

/// The file at a glance (`sofiia-console db stats`).
#[derive(Debug, Serialize)]
pub struct FileStats {
    pub path: String,
    pub file_bytes: u64,
    /// Free pages and the unused parts of used ones: about what compaction would give back.
    pub reclaimable_bytes: u64,
    pub rows: BTreeMap<String, u64>,
}

impl Store {
    /// The size of the database file now.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(self.path()).map_or(0, |m| m.len())
    }

    /// About how many bytes compaction would give back. A walk over every page, done on the
    /// writer thread between batches (it needs a write transaction, which it aborts).
    pub async fn reclaimable_bytes(&self) -> Result<u64, StoreError> {
        self.writer()
            .with_database(|db| {
                let database = db.for_writing();
                let txn = database.begin_write()?;
                let fragmented = txn.stats()?.fragmented_bytes();
                txn.abort()?;
                Ok(fragmented)
            })
            .await?
    }

    /// Compacts the file with the database to itself, and says how long that held requests.
    pub async fn compact(&self) -> Result<Compaction, StoreError> {
        self.writer()
            .with_database(|db| {
                let started = Instant::now();
                let compacted = db.exclusive(|database| database.compact());
                let pause = started.elapsed();
                let compacted = compacted.map_err(redb::Error::from)?;
                Ok(Compaction { compacted, pause })
            })
            .await?
    }

    /// Size, reclaimable space and rows per table.
    pub async fn file_stats(&self) -> Result<FileStats, StoreError> {
        let reclaimable_bytes = self.reclaimable_bytes().await?;
        let rows = self.scan(table_rows)?;
        Ok(FileStats {
            path: self.path().display().to_string(),
            file_bytes: self.file_bytes(),
            reclaimable_bytes,
            rows,
        })
    }
}

/// Rows per table, the audit partitions' summed under the names of what they hold.
pub(super) fn table_rows(txn: &ReadTransaction) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut rows = BTreeMap::new();
    for handle in txn.list_tables()? {
        let name = reported_name(handle.name()).to_owned();
        let table = txn.open_untyped_table(handle)?;
        *rows.entry(name).or_default() += table.len()?;
    }
    Ok(rows)
}
