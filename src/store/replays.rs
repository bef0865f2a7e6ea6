//! Sends completed lately, kept in memory so a client retrying one key again and again is
//! answered without a read transaction.
//!
//! The writer keeps each record it completes here once its batch commits (`published`). A
//! completed record never changes while it lives: its key can only be claimed again once it has
//! expired, and `IdempotencyRecord::is_live` says when that is. So a copy here can be trusted for
//! exactly as long as the record itself; an expired copy is ignored and the file asked instead.
//! Kept are the most recent ones, up to `CAPACITY` records and `BODY_BYTES` of response bodies
//! between them, and none whose body is over `MAX_BODY_BYTES` (an agent's answer alone may be a
//! mebibyte).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::idempotency::{IdempotencyKey, IdempotencyRecord, RecordState};

/// Most completed records kept.
const CAPACITY: usize = 1024;
/// Most bytes of response bodies kept, all records together.
const BODY_BYTES: usize = 4 * 1024 * 1024;
/// A record whose body is larger is not kept.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Default)]
pub struct Replays(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    /// Scope, then key.
    records: HashMap<String, HashMap<String, Arc<IdempotencyRecord>>>,
    /// `(scope, key)` in the order they were kept, oldest first.
    order: VecDeque<(String, String)>,
    /// The sum of the kept records' body lengths.
    body_bytes: usize,
}

impl Replays {
    /// The completed record kept for `(scope, key)`, if it is still live at `now_ms`.
    pub fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        now_ms: u64,
    ) -> Option<Arc<IdempotencyRecord>> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let record = kept.records.get(scope)?.get(key.as_str())?;
        record.is_live(now_ms).then(|| Arc::clone(record))
    }

    /// Keeps `record` for `(scope, key)` if it is completed and its body small enough (replacing
    /// the copy of an earlier, expired claim of the key), forgetting the oldest records kept
    /// while over the bounds.
    pub fn keep(&self, scope: &str, key: &IdempotencyKey, record: Arc<IdempotencyRecord>) {
        let size = match &record.state {
            RecordState::Completed { body, .. } if body.len() <= MAX_BODY_BYTES => body.len(),
            _ => return,
        };
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = kept.records.entry(scope.to_owned()).or_default();
        match keys.insert(key.as_str().to_owned(), record) {
            Some(replaced) => kept.body_bytes -= body_len(&replaced),
            None => kept
                .order
                .push_back((scope.to_owned(), key.as_str().to_owned())),
        }
        kept.body_bytes += size;
        while kept.order.len() > CAPACITY || kept.body_bytes > BODY_BYTES {
            kept.forget_oldest();
        }
    }
}

impl Replays {
    /// Forgets the record of `(scope, key)`, deleted from the file.
    pub fn forget(&self, scope: &str, key: &str) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(keys) = kept.records.get_mut(scope) else {
            return;
        };
        let Some(record) = keys.remove(key) else {
            return;
        };
        if keys.is_empty() {
            kept.records.remove(scope);
        }
        kept.body_bytes -= body_len(&record);
        // At most `CAPACITY` records are kept, so this walk happens at most that many times
        // before the cache is empty, however many records are deleted.
        kept.order.retain(|(s, k)| !(s == scope && k == key));
    }
}

impl Kept {
    fn forget_oldest(&mut self) {
        let Some((scope, key)) = self.order.pop_front() else {
            return;
        };
        let Some(keys) = self.records.get_mut(&scope) else {
            return;
        };
        if let Some(record) = keys.remove(&key) {
            self.body_bytes -= body_len(&record);
        }
        if keys.is_empty() {
            self.records.remove(&scope);
        }
    }
}

fn body_len(record: &IdempotencyRecord) -> usize {
    match &record.state {
        RecordState::Completed { body, .. } => body.len(),
        RecordState::InProgress { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::idempotency::fingerprint;
    use crate::domain::message::Position;

    fn record(state: RecordState, expires_ms: u64) -> Arc<IdempotencyRecord> {
        Arc::new(IdempotencyRecord {
            fingerprint: fingerprint("POST", "/x", &serde_json::json!({})),
            chat_id: "c".into(),
            created_ms: 0,
            expires_ms,
            state,
        })
    }

    fn completed(expires_ms: u64) -> Arc<IdempotencyRecord> {
        completed_with(b"{}".to_vec(), expires_ms)
    }

    fn completed_with(body: Vec<u8>, expires_ms: u64) -> Arc<IdempotencyRecord> {
        record(RecordState::Completed { status: 200, body }, expires_ms)
    }

    fn key(n: usize) -> IdempotencyKey {
        IdempotencyKey::parse(format!("k-{n}").as_bytes()).expect("key")
    }

    #[test]
    fn keeps_completed_records_until_they_expire() {
        let replays = Replays::default();
        replays.keep("key:a", &key(1), completed(100));
        let in_progress = RecordState::InProgress {
            message: Position { ts_ms: 1, seq: 1 },
        };
        replays.keep("key:a", &key(2), record(in_progress, 100));

        assert!(replays.get("key:a", &key(1), 99).is_some());
        assert!(replays.get("key:a", &key(1), 100).is_none(), "expired");
        assert!(replays.get("key:b", &key(1), 0).is_none(), "other scope");
        assert!(replays.get("key:a", &key(2), 0).is_none(), "not completed");
    }

    #[test]
    fn a_deleted_record_is_forgotten() {
        let replays = Replays::default();
        replays.keep("key:a", &key(1), completed(100));
        replays.keep("key:a", &key(2), completed(100));
        replays.forget("key:a", key(1).as_str());
        replays.forget("key:a", "never-kept");

        assert!(replays.get("key:a", &key(1), 0).is_none());
        assert!(replays.get("key:a", &key(2), 0).is_some());
        let kept = replays.0.lock().expect("lock");
        assert_eq!((kept.order.len(), kept.body_bytes), (1, 2));
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let replays = Replays::default();
        for n in 0..=CAPACITY {
            replays.keep("key:a", &key(n), completed(100));
        }
        replays.keep("key:a", &key(CAPACITY), completed(100));

        assert!(replays.get("key:a", &key(0), 0).is_none());
        assert!(replays.get("key:a", &key(1), 0).is_some());
        assert!(replays.get("key:a", &key(CAPACITY), 0).is_some());
        let kept = replays.0.lock().expect("lock");
        assert_eq!(kept.order.len(), CAPACITY);
        assert_eq!(kept.body_bytes, CAPACITY * 2);
    }

    #[test]
    fn bodies_are_bounded_one_by_one_and_together() {
        let replays = Replays::default();
        let too_large = completed_with(vec![b' '; MAX_BODY_BYTES + 1], 100);
        replays.keep("key:a", &key(0), too_large);
        assert!(
            replays.get("key:a", &key(0), 0).is_none(),
            "too large to keep"
        );

        let fit = BODY_BYTES / MAX_BODY_BYTES;
        for n in 1..=fit + 1 {
            let largest = completed_with(vec![b' '; MAX_BODY_BYTES], 100);
            replays.keep("key:a", &key(n), largest);
        }

        assert!(
            replays.get("key:a", &key(1), 0).is_none(),
            "the oldest is forgotten"
        );
        assert!(replays.get("key:a", &key(2), 0).is_some());
        assert!(replays.get("key:a", &key(fit + 1), 0).is_some());
        let kept = replays.0.lock().expect("lock");
        assert_eq!(kept.body_bytes, fit * MAX_BODY_BYTES);
    }
}
