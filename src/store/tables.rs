//! Every redb table, its key layout and what its values hold.
//!
//! Keys are tuples of fixed-width integers and strings, which redb orders field by field, so a
//! range scan over a key prefix is an index scan. Values are envelopes (see `codec`).

use redb::TableDefinition;

/// `name → bytes`: schema version (u32 LE), the audit chain head and checkpoint, and when the
/// daily retention run last ran.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// `chat id → Chat`.
pub const CHATS: TableDefinition<&str, &[u8]> = TableDefinition::new("chats");

/// `(u64::MAX - activity_ms, chat id) → ()`: ascending key order is newest activity first,
/// ties broken by id ascending.
pub const CHAT_INDEX: TableDefinition<(u64, &str), ()> = TableDefinition::new("chat_index");

/// `(chat id, ts_ms, seq) → Message`.
pub const MESSAGES: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("messages");

/// `(principal, idempotency key) → IdempotencyRecord`.
pub const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");

/// `(expires_ms, principal, idempotency key) → ()`: what retention prunes, oldest first.
pub const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("idempotency_expiry");

/// `(scope, key) → TAT` (Unix ms): the GCRA state of each rate-limited chat and operator.
pub const RATE_WINDOWS: TableDefinition<(&str, &str), u64> = TableDefinition::new("rate_windows");

/// `client address → locked until` (Unix ms): addresses locked out of authentication.
pub const LOCKOUTS: TableDefinition<&str, u64> = TableDefinition::new("lockouts");

/// `SHA-256 of the session token → Session`: the token itself is never stored.
pub const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

/// `key id → ApiKey`.
pub const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");

/// `seq → audit Event`: the hash chain, gapless from the first kept event to the head.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Audit index keys lead with the event's bucket, `seq >> AUDIT_BUCKET_BITS`: the entries of
/// consecutive events then sit together in a few leaves of each index — which is what a batch of
/// sends inserts and what retention deletes — instead of one leaf per distinct value. A query
/// walks a value's entries bucket by bucket (`audit::IndexWalk`).
pub const AUDIT_BUCKET_BITS: u32 = 14;

/// An audit index key: `(bucket, value, seq)`.
pub type AuditIndexKey<'a> = (u64, &'a str, u64);

pub fn audit_index_key(value: &str, seq: u64) -> AuditIndexKey<'_> {
    (seq >> AUDIT_BUCKET_BITS, value, seq)
}

/// `(bucket, actor "kind:id", seq) → ()`.
pub const AUDIT_BY_ACTOR: TableDefinition<AuditIndexKey<'static>, ()> =
    TableDefinition::new("audit_actor_index");

/// `(bucket, action, seq) → ()`.
pub const AUDIT_BY_ACTION: TableDefinition<AuditIndexKey<'static>, ()> =
    TableDefinition::new("audit_action_index");

/// `(bucket, target "kind:id", seq) → ()`.
pub const AUDIT_BY_TARGET: TableDefinition<AuditIndexKey<'static>, ()> =
    TableDefinition::new("audit_target_index");

/// `(bucket, outcome, seq) → ()` for `denied` and `error` events only: nearly every event is
/// `ok`, so an `ok` filter is served by the events themselves, and the index stays small and
/// cheap.
pub const AUDIT_BY_OUTCOME: TableDefinition<AuditIndexKey<'static>, ()> =
    TableDefinition::new("audit_outcome_index");

/// Every audit index, in the order `audit::indexed_values` gives an event's values.
pub const AUDIT_INDEXES: [TableDefinition<AuditIndexKey<'static>, ()>; 4] = [
    AUDIT_BY_ACTOR,
    AUDIT_BY_ACTION,
    AUDIT_BY_TARGET,
    AUDIT_BY_OUTCOME,
];

/// The audit indexes of schema versions 1 and 2, keyed `(value, seq)`: rebuilt into the ones
/// above and dropped by the migration to version 3.
pub const LEGACY_AUDIT_INDEXES: [TableDefinition<(&str, u64), ()>; 4] = [
    TableDefinition::new("audit_by_actor"),
    TableDefinition::new("audit_by_action"),
    TableDefinition::new("audit_by_target"),
    TableDefinition::new("audit_by_outcome"),
];

/// `run id → Run`: the retention job log, ids ascending from 1.
pub const RETENTION_RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("retention_runs");

/// The chat index key for a chat with the given activity time.
pub fn chat_index_key(activity_ms: u64, id: &str) -> (u64, &str) {
    (u64::MAX - activity_ms, id)
}
