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

// The audit trail's events and indexes live in partition tables (`audit_partition`).

/// `seq → audit Event`: the whole chain in one table, in schemas 1 to 5; moved into partitions
/// and dropped by the migration to version 6.
pub const LEGACY_AUDIT_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// The audit indexes of schemas 3 to 5, keyed `(seq >> 14, value, seq)`: dropped by the
/// migration to version 6, which builds each partition's indexes from its events.
pub const BUCKETED_AUDIT_INDEXES: [TableDefinition<(u64, &str, u64), ()>; 4] = [
    TableDefinition::new("audit_actor_index"),
    TableDefinition::new("audit_action_index"),
    TableDefinition::new("audit_target_index"),
    TableDefinition::new("audit_outcome_index"),
];

/// The audit indexes of schemas 1 and 2, keyed `(value, seq)`: dropped likewise.
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
