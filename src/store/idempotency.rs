//! Idempotency records (SPEC §6): claimed by a send's first transaction, completed with the
//! exact response by its second, replayed byte for byte while they live.
//!
//! The record, not what a caller read a moment earlier, settles what happens to a key: the send
//! transaction re-decides every claim inside the writer (`send`).

use std::sync::Arc;

use redb::{ReadableTable, Table};

use super::batch::WriteTables;
use super::codec::{self, Record};
use super::published::Change;
use super::tables::IDEMPOTENCY;
use super::{Store, StoreError};
use crate::domain::idempotency::{Fingerprint, IdempotencyKey, IdempotencyRecord, RecordState};

impl Record for IdempotencyRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "idempotency record";
}

type RecordTable<'t> = Table<'t, (&'static str, &'static str), &'static [u8]>;

/// The idempotency side of a send: who claims which key for which request.
pub struct Claim {
    pub scope: String,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub expires_ms: u64,
}

impl Store {
    /// The record under `(scope, key)`, read without the writer (the replay fast path).
    pub fn idempotency_record(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.read(|txn| load_record(&txn.open_table(IDEMPOTENCY)?, scope, key))
    }
}

/// A key claimed by a send whose record is not written yet: the caller writes it once, in the
/// state its transaction leaves the send in.
pub(super) struct Claimed {
    pub scope: String,
    pub key: IdempotencyKey,
    pub record: IdempotencyRecord,
    /// The expiry of an expired record this claim replaces, whose index entry goes with it.
    pub replaces_expiry: Option<u64>,
}

impl Claimed {
    pub(super) fn save(self, t: &mut WriteTables<'_>) -> Result<(), StoreError> {
        self.write(t)
    }

    fn write(&self, t: &mut WriteTables<'_>) -> Result<(), StoreError> {
        let (scope, key) = (self.scope.as_str(), self.key.as_str());
        if let Some(expired_ms) = self.replaces_expiry {
            t.idempotency_expiry.remove((expired_ms, scope, key))?;
        }
        save_record(&mut t.idempotency, scope, &self.key, &self.record)?;
        t.idempotency_expiry
            .insert((self.record.expires_ms, scope, key), ())?;
        Ok(())
    }

    /// Writes the claim already completed with `body` (a send answered in the transaction that
    /// claimed it).
    pub(super) fn save_completed(
        mut self,
        t: &mut WriteTables<'_>,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.record.state = RecordState::Completed { status: 200, body };
        self.write(t)?;
        publish_completed(t, self.scope, self.key, self.record);
        Ok(())
    }
}

/// Completes the record under `(scope, key)` with `body`.
pub(super) fn complete(
    t: &mut WriteTables<'_>,
    scope: &str,
    key: &IdempotencyKey,
    body: Vec<u8>,
) -> Result<(), StoreError> {
    let mut record = load_record(&t.idempotency, scope, key)?
        .ok_or_else(|| StoreError::Corrupt("completing a send whose record is missing".into()))?;
    record.state = RecordState::Completed { status: 200, body };
    save_record(&mut t.idempotency, scope, key, &record)?;
    publish_completed(t, scope.to_owned(), key.clone(), record);
    Ok(())
}

/// Replays of a completed record are answered from memory once its batch commits.
fn publish_completed(
    t: &mut WriteTables<'_>,
    scope: String,
    key: IdempotencyKey,
    record: IdempotencyRecord,
) {
    t.publish(Change::Completed {
        scope,
        key,
        record: Arc::new(record),
    });
}

pub(super) fn load_record(
    records: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    scope: &str,
    key: &IdempotencyKey,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    codec::get(records, (scope, key.as_str()))
}

fn save_record(
    records: &mut RecordTable<'_>,
    scope: &str,
    key: &IdempotencyKey,
    record: &IdempotencyRecord,
) -> Result<(), StoreError> {
    records.insert((scope, key.as_str()), codec::encode(record)?.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before the body was declared a byte string must still decode: postcard
    /// writes a byte string exactly as it writes a sequence of `u8`.
    #[test]
    fn completed_body_is_encoded_as_a_plain_byte_sequence() {
        let body = br#"{"chat_id":"c"}"#.to_vec();
        let state = RecordState::Completed {
            status: 200,
            body: body.clone(),
        };
        // Variant 1, then the fields, the body as a sequence of `u8`.
        let as_sequence = postcard::to_allocvec(&(1u32, 200u16, body)).expect("encodes");

        assert_eq!(postcard::to_allocvec(&state).expect("encodes"), as_sequence);
        assert_eq!(
            postcard::from_bytes::<RecordState>(&as_sequence).expect("decodes"),
            state
        );
    }
}
