//! The counts the system-health cards show, read in one short transaction each and never by a
//! walk: table lengths (redb keeps them in each table's header), the audit head and checkpoint,
//! and the first entry of the idempotency expiry index (the record that expired first).

use redb::{ReadableTable, ReadableTableMetadata};

use super::audit::{AUDIT_CHECKPOINT_KEY, Checkpoint, EMPTY_HEAD, Head};
use super::audit_partition::stored_events;
use super::batch::AUDIT_HEAD_KEY;
use super::codec;
use super::tables::{IDEMPOTENCY, IDEMPOTENCY_EXPIRY, META};
use super::{Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct IdempotencyFigures {
    pub records: u64,
    /// When the record that expired first expired, if any has: retention deletes them oldest
    /// first, so this says how far behind it is.
    pub oldest_expired_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct AuditFigures {
    pub entries: u64,
    pub head_seq: u64,
    /// The last event retention removed, if it has removed any.
    pub checkpoint_seq: Option<u64>,
}

impl Store {
    pub fn idempotency_figures(&self, now_ms: u64) -> Result<IdempotencyFigures, StoreError> {
        self.read(|txn| {
            let expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
            let oldest_expired_ms = expiry
                .first()?
                .map(|(key, _)| key.value().0)
                .filter(|expires_ms| *expires_ms < now_ms);
            Ok(IdempotencyFigures {
                records: txn.open_table(IDEMPOTENCY)?.len()?,
                oldest_expired_ms,
            })
        })
    }

    /// The newest event of the chain (seq 0 and the genesis hash before the first).
    pub fn audit_head(&self) -> Result<Head, StoreError> {
        self.read(|txn| {
            let head: Option<Head> = codec::get(&txn.open_table(META)?, AUDIT_HEAD_KEY)?;
            Ok(head.unwrap_or(EMPTY_HEAD))
        })
    }

    pub fn audit_figures(&self) -> Result<AuditFigures, StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            let head: Option<Head> = codec::get(&meta, AUDIT_HEAD_KEY)?;
            let checkpoint: Option<Checkpoint> = codec::get(&meta, AUDIT_CHECKPOINT_KEY)?;
            Ok(AuditFigures {
                entries: stored_events(txn)?,
                head_seq: head.map_or(0, |h| h.seq),
                checkpoint_seq: checkpoint.map(|c| c.seq),
            })
        })
    }
}
