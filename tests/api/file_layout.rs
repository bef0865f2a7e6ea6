//! The names of the audit trail's tables, for the tests that change a stopped server's file the
//! way someone with redb and write access could: the chain is tamper-evident against exactly
//! that. Events and index entries of `seq` live in the tables of partition `seq >> 14`.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// The table holding the event `seq`, keyed by `seq`.
pub fn audit_events(seq: u64) -> String {
    format!("audit.{:010}", seq >> 14)
}

/// The table of index `kind` (`actor`, `action`, `target`, `outcome`) holding the entries of
/// `seq`, keyed `(value, seq)`.
pub fn audit_index(kind: &str, seq: u64) -> String {
    format!("{}.{kind}", audit_events(seq))
}

/// Puts the audit trail back the way schemas 1 to 5 kept it, every event in one `audit` table
/// (the first partition holds them all in these tests), and returns how many there are.
pub fn unpartition_audit(txn: &WriteTransaction) -> usize {
    let name = audit_events(1);
    let partition: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
    let events: Vec<(u64, Vec<u8>)> = txn
        .open_table(partition)
        .expect("the first partition")
        .iter()
        .expect("iterate")
        .map(|row| {
            let (seq, raw) = row.expect("row");
            (seq.value(), raw.value().to_vec())
        })
        .collect();
    let mut single = txn.open_table(LEGACY_EVENTS).expect("audit table");
    for (seq, raw) in &events {
        single.insert(*seq, raw.as_slice()).expect("insert");
    }
    drop(single);
    assert!(txn.delete_table(partition).expect("delete"));
    for kind in INDEX_KINDS {
        let name = audit_index(kind, 1);
        let index: TableDefinition<(&str, u64), ()> = TableDefinition::new(&name);
        assert!(txn.delete_table(index).expect("delete"), "{name} existed");
    }
    events.len()
}

const LEGACY_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const INDEX_KINDS: [&str; 4] = ["actor", "action", "target", "outcome"];
