//! Where the audit trail is stored: partitions of `PARTITION_SPAN` consecutive `seq`s, each five
//! tables of its own — the events, and the entries of the four secondary indexes for them.
//!
//! Retention removes old events a whole partition at a time, by dropping its tables: that frees
//! their pages without reading them. Deleting the same events row by row reads and rewrites every
//! cold leaf they sit in, in five B-trees, and holds the single writer (and every send queued
//! behind it) for as long (`docs/performance.md` has the figures). Only the partition the
//! retention cutoff falls in loses rows one by one.
//!
//! Invariants, kept by `audit::append` and `audit::prune`: the event `seq` is stored in
//! `Partition::of(seq)` only, and its index entries in that partition's index tables only; a
//! partition's tables appear with its first event and are dropped together in one transaction.
//! The chain is gapless from the first kept event (right after the checkpoint in `meta`) to the
//! head in `meta`, so those two records say which partitions hold events without listing tables.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use redb::{
    Key, ReadOnlyTable, ReadTransaction, ReadableTableMetadata, Table, TableDefinition, TableError,
    TableHandle, Value, WriteTransaction,
};

use super::StoreError;
use super::codec;
use crate::domain::audit::Event;

/// `seq`s per partition: `2^PARTITION_BITS`.
pub const PARTITION_BITS: u32 = 14;

/// A partition index key: `(value, seq)`.
pub type IndexKey<'a> = (&'a str, u64);

/// How many secondary indexes a partition has.
pub const INDEX_COUNT: usize = 4;

/// What each index of a partition holds, in `audit::indexed_values` order: the suffix of its
/// table's name, and the name it is reported under (`db stats`, backups).
const INDEXES: [(&str, &str); INDEX_COUNT] = [
    ("actor", "audit_actor_index"),
    ("action", "audit_action_index"),
    ("target", "audit_target_index"),
    ("outcome", "audit_outcome_index"),
];

/// The name index `position` (in `audit::indexed_values` order) is reported under.
pub fn index_name(position: usize) -> &'static str {
    INDEXES[position].1
}

/// The name the events of every partition are reported under.
pub const EVENTS_NAME: &str = "audit";
/// Every partition table's name starts with this.
const PREFIX: &str = "audit.";

/// The `seq`s `number << PARTITION_BITS ..` up to the next partition's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(u64);

impl Partition {
    pub fn of(seq: u64) -> Self {
        Self(seq >> PARTITION_BITS)
    }

    /// The first `seq` of the partition (of the first, 0, which no event has).
    pub fn start(self) -> u64 {
        self.0 << PARTITION_BITS
    }

    /// One past the last `seq` of the partition.
    pub fn end(self) -> u64 {
        (self.0 + 1) << PARTITION_BITS
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    pub fn names(self) -> Names {
        let events = format!("{PREFIX}{:010}", self.0);
        Names {
            indexes: INDEXES.map(|(suffix, _)| format!("{events}.{suffix}")),
            events,
        }
    }
}

/// The tables of one partition.
pub struct Names {
    events: String,
    indexes: [String; INDEX_COUNT],
}

impl Names {
    pub fn events(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.events)
    }

    /// The index `position` in `audit::indexed_values` order.
    pub fn index(&self, position: usize) -> TableDefinition<'_, IndexKey<'static>, ()> {
        TableDefinition::new(&self.indexes[position])
    }
}

/// What a stored table is: the events of a partition, or one of its indexes (by position).
fn parse(name: &str) -> Option<(Partition, Option<usize>)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (number, suffix) = match rest.split_once('.') {
        Some((number, suffix)) => (number, Some(suffix)),
        None => (rest, None),
    };
    let partition = Partition(number.parse().ok()?);
    match suffix {
        None => Some((partition, None)),
        Some(suffix) => {
            let position = INDEXES.iter().position(|(s, _)| *s == suffix)?;
            Some((partition, Some(position)))
        }
    }
}

/// The name a table's rows are reported under: partition tables by what they hold, summed over
/// partitions, so that figures do not change shape as partitions come and go.
pub fn reported_name(name: &str) -> &str {
    match parse(name) {
        Some((_, None)) => EVENTS_NAME,
        Some((_, Some(position))) => INDEXES[position].1,
        None => name,
    }
}

/// The partitions with any table in the file, whatever the chain's head and checkpoint say.
pub fn stored_partitions(txn: &ReadTransaction) -> Result<BTreeSet<Partition>, StoreError> {
    Ok(txn
        .list_tables()?
        .filter_map(|table| parse(table.name()).map(|(partition, _)| partition))
        .collect())
}

/// Events stored, counted table by table (not derived from the head and checkpoint, so a
/// damaged chain is counted as it is).
pub fn stored_events(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let mut total = 0;
    for partition in stored_partitions(txn)? {
        if let Some(events) = open_read(txn, partition.names().events())? {
            total += events.len()?;
        }
    }
    Ok(total)
}

/// A table of a read transaction; `None` when the file has no such table.
pub fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Tables of one kind in a read transaction, each opened once and kept by what it holds;
/// `None` for one the file does not have.
struct Opened<'t, Id, K: Key + 'static, V: Value + 'static> {
    txn: &'t ReadTransaction,
    tables: BTreeMap<Id, Option<ReadOnlyTable<K, V>>>,
}

impl<'t, Id: Ord, K: Key + 'static, V: Value + 'static> Opened<'t, Id, K, V> {
    fn new(txn: &'t ReadTransaction) -> Self {
        Self {
            txn,
            tables: BTreeMap::new(),
        }
    }

    /// The table `id`, opened on first use under the name `name` gives.
    fn get(
        &mut self,
        id: Id,
        name: impl FnOnce() -> String,
    ) -> Result<Option<&ReadOnlyTable<K, V>>, StoreError> {
        let table = match self.tables.entry(id) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => {
                let name = name();
                slot.insert(open_read(self.txn, TableDefinition::new(&name))?)
            }
        };
        Ok(table.as_ref())
    }
}

/// The events of a read transaction, each partition's table opened once.
pub struct Events<'t>(Opened<'t, Partition, u64, &'static [u8]>);

impl<'t> Events<'t> {
    pub fn new(txn: &'t ReadTransaction) -> Self {
        Self(Opened::new(txn))
    }

    /// The partition's events; `None` when it has none stored.
    pub fn partition(
        &mut self,
        partition: Partition,
    ) -> Result<Option<&ReadOnlyTable<u64, &'static [u8]>>, StoreError> {
        self.0.get(partition, || partition.names().events)
    }

    pub fn get(&mut self, seq: u64) -> Result<Option<Event>, StoreError> {
        match self.partition(Partition::of(seq))? {
            Some(events) => codec::get(events, seq),
            None => Ok(None),
        }
    }

    /// The stored events with `seq` in `low..=high`, oldest first or newest first, read
    /// partition by partition.
    pub fn range(&mut self, low: u64, high: u64, newest_first: bool) -> EventRange<'_, 't> {
        let next = if newest_first {
            Partition::of(high)
        } else {
            Partition::of(low)
        };
        EventRange {
            events: self,
            low,
            high,
            newest_first,
            next: (low <= high).then_some(next),
            rows: None,
        }
    }
}

/// The iterator of `Events::range`.
pub struct EventRange<'e, 't> {
    events: &'e mut Events<'t>,
    low: u64,
    high: u64,
    newest_first: bool,
    /// The partition to read once `rows` runs out.
    next: Option<Partition>,
    rows: Option<redb::Range<'static, u64, &'static [u8]>>,
}

impl EventRange<'_, '_> {
    /// Opens the rows of the next partition that has any; `false` past the range.
    fn open_next(&mut self) -> Result<bool, StoreError> {
        while let Some(partition) = self.next.take() {
            self.next = if self.newest_first {
                (partition.start() > self.low).then(|| Partition(partition.0 - 1))
            } else {
                (partition.end() <= self.high).then(|| partition.next())
            };
            if let Some(table) = self.events.partition(partition)? {
                let low = self.low.max(partition.start());
                let high = self.high.min(partition.end() - 1);
                self.rows = Some(table.range(low..=high)?);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Iterator for EventRange<'_, '_> {
    type Item = Result<(u64, redb::AccessGuard<'static, &'static [u8]>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(rows) = &mut self.rows {
                let row = if self.newest_first {
                    rows.next_back()
                } else {
                    rows.next()
                };
                match row {
                    Some(Ok((seq, raw))) => return Some(Ok((seq.value(), raw))),
                    Some(Err(error)) => return Some(Err(error.into())),
                    None => self.rows = None,
                }
            }
            match self.open_next() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// Point lookups in the index tables of a read transaction, each table opened once.
pub struct IndexEntries<'t>(Opened<'t, (usize, Partition), IndexKey<'static>, ()>);

impl<'t> IndexEntries<'t> {
    pub fn new(txn: &'t ReadTransaction) -> Self {
        Self(Opened::new(txn))
    }

    /// Whether index `position` holds `value` for the event `seq`.
    pub fn contains(&mut self, position: usize, value: &str, seq: u64) -> Result<bool, StoreError> {
        let partition = Partition::of(seq);
        let table = self.0.get((position, partition), || {
            partition.names().indexes[position].clone()
        })?;
        match table {
            Some(table) => Ok(table.get((value, seq))?.is_some()),
            None => Ok(false),
        }
    }
}

/// One partition's tables, open in a write transaction.
pub struct PartitionTables<'t> {
    pub partition: Partition,
    pub events: Table<'t, u64, &'static [u8]>,
    /// In `audit::indexed_values` order.
    pub indexes: [Table<'t, IndexKey<'static>, ()>; INDEX_COUNT],
}

impl<'t> PartitionTables<'t> {
    /// Opens (and, for a partition's first event, creates) the partition's tables.
    pub fn open(txn: &'t WriteTransaction, partition: Partition) -> Result<Self, StoreError> {
        let names = partition.names();
        Ok(Self {
            partition,
            events: txn.open_table(names.events())?,
            indexes: [
                txn.open_table(names.index(0))?,
                txn.open_table(names.index(1))?,
                txn.open_table(names.index(2))?,
                txn.open_table(names.index(3))?,
            ],
        })
    }
}

/// Drops every table of the partition (none may be open).
pub fn drop_partition(txn: &WriteTransaction, partition: Partition) -> Result<(), StoreError> {
    let names = partition.names();
    txn.delete_table(names.events())?;
    for position in 0..INDEX_COUNT {
        txn.delete_table(names.index(position))?;
    }
    Ok(())
}

/// `Bound`s on `seq` narrowed to an inclusive range within `first..=last`; `None` when empty.
pub fn clip(low: Bound<u64>, high: Bound<u64>, first: u64, last: u64) -> Option<(u64, u64)> {
    let low = match low {
        Included(s) => s.max(first),
        Excluded(s) => s.saturating_add(1).max(first),
        Unbounded => first,
    };
    let high = match high {
        Included(s) => s.min(last),
        Excluded(0) => return None,
        Excluded(s) => (s - 1).min(last),
        Unbounded => last,
    };
    (low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_partition_and_index() {
        let partition = Partition::of(5 << PARTITION_BITS);
        let names = partition.names();
        assert_eq!(parse(names.events().name()), Some((partition, None)));
        for (position, (_, reported)) in INDEXES.iter().enumerate() {
            assert_eq!(
                parse(names.index(position).name()),
                Some((partition, Some(position)))
            );
            assert_eq!(reported_name(names.index(position).name()), *reported);
        }
        assert_eq!(reported_name(names.events().name()), EVENTS_NAME);
        assert_eq!(reported_name("messages"), "messages");
        assert_eq!(parse("audit.x"), None);
        assert_eq!(parse("audit.0000000001.nothing"), None);
    }

    #[test]
    fn a_partition_spans_its_seqs_and_no_other() {
        let p = Partition::of(1);
        assert_eq!((p.start(), p.end()), (0, 1 << PARTITION_BITS));
        assert_eq!(Partition::of(p.end() - 1), p);
        assert_eq!(Partition::of(p.end()), p.next());
    }
}
