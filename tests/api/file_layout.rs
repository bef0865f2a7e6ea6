//! The names of the audit trail's tables, for the tests that change a stopped server's file the
//! way someone with redb and write access could: the chain is tamper-evident against exactly
//! that. Events and index entries of `seq` live in the tables of partition `seq >> 14`.

/// The table holding the event `seq`, keyed by `seq`.
pub fn audit_events(seq: u64) -> String {
    format!("audit.{:010}", seq >> 14)
}

/// The table of index `kind` (`actor`, `action`, `target`, `outcome`) holding the entries of
/// `seq`, keyed `(value, seq)`.
pub fn audit_index(kind: &str, seq: u64) -> String {
    format!("{}.{kind}", audit_events(seq))
}
