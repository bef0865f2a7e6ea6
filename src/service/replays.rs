//! Completed sends that were replayed lately, kept in memory so a client retrying one key again
//! and again is answered without a read transaction.
//!
//! A completed record never changes while it lives: its key can only be claimed again once it
//! has expired, and `IdempotencyRecord::is_live` says when that is. So a copy here can be
//! trusted for exactly as long as the record itself; an expired copy is ignored and the file
//! asked again. Only records read back completed are kept, and only the most recent
//! `CAPACITY` of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::idempotency::{IdempotencyKey, IdempotencyRecord, RecordState};

/// Completed records kept; at most about a mebibyte of response bodies.
const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct Replays(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    /// Scope, then key.
    records: HashMap<String, HashMap<String, Arc<IdempotencyRecord>>>,
    /// `(scope, key)` in the order they were kept, oldest first.
    order: VecDeque<(String, String)>,
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

    /// Keeps `record` for `(scope, key)` if it is completed, forgetting the oldest one kept
    /// when full.
    pub fn keep(&self, scope: &str, key: &IdempotencyKey, record: Arc<IdempotencyRecord>) {
        if !matches!(record.state, RecordState::Completed { .. }) {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = kept.records.entry(scope.to_owned()).or_default();
        if keys.insert(key.as_str().to_owned(), record).is_some() {
            return;
        }
        kept.order
            .push_back((scope.to_owned(), key.as_str().to_owned()));
        if kept.order.len() > CAPACITY {
            kept.forget_oldest();
        }
    }
}

impl Kept {
    fn forget_oldest(&mut self) {
        let Some((scope, key)) = self.order.pop_front() else {
            return;
        };
        if let Some(keys) = self.records.get_mut(&scope) {
            keys.remove(&key);
            if keys.is_empty() {
                self.records.remove(&scope);
            }
        }
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
        let state = RecordState::Completed {
            status: 200,
            body: b"{}".to_vec(),
        };
        record(state, expires_ms)
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
    }
}
