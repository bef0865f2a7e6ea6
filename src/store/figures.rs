//! The counts the system-health cards show, read in one short transaction each: table lengths
//! (redb keeps them in each table's header), the audit head and checkpoint, and the expired
//! idempotency records that retention has yet to delete (counted up to a cap, so the card stays
//! cheap however far retention has fallen behind).

use redb::ReadableTableMetadata;

use super::audit::{AUDIT_CHECKPOINT_KEY, Checkpoint, Head};
use super::batch::AUDIT_HEAD_KEY;
use super::codec;
use super::tables::{AUDIT, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, META};
use super::{Store, StoreError};

/// Expired idempotency records counted at most; a card showing this many says "at least".
pub const EXPIRED_COUNT_CAP: u64 = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct IdempotencyFigures {
    pub records: u64,
    /// Records past their expiry, up to `EXPIRED_COUNT_CAP`.
    pub expired: u64,
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
            let mut expired = 0;
            for row in expiry.range(..(now_ms, "", ""))? {
                row?;
                expired += 1;
                if expired == EXPIRED_COUNT_CAP {
                    break;
                }
            }
            Ok(IdempotencyFigures {
                records: txn.open_table(IDEMPOTENCY)?.len()?,
                expired,
            })
        })
    }

    pub fn audit_figures(&self) -> Result<AuditFigures, StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            let head: Option<Head> = codec::get(&meta, AUDIT_HEAD_KEY)?;
            let checkpoint: Option<Checkpoint> = codec::get(&meta, AUDIT_CHECKPOINT_KEY)?;
            Ok(AuditFigures {
                entries: txn.open_table(AUDIT)?.len()?,
                head_seq: head.map_or(0, |h| h.seq),
                checkpoint_seq: checkpoint.map(|c| c.seq),
            })
        })
    }
}
