//! The audit trail: append inside the caller's transaction, filtered pages, verification and
//! export (SPEC §9).
//!
//! `append` is called by every audited write *inside its own write transaction*, so an action and
//! its record commit or vanish together. The chain head (`seq`, `ts_ms`, `hash`) lives in `meta`,
//! written back once per batch (`batch`).
//!
//! Retention removes the oldest events (`prune`) and records the last one removed as the chain's
//! *checkpoint* in `meta`, in the same transaction: verification and exports then start from the
//! checkpoint, and the chain from there to the head is as provable as a whole one.

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Included, Unbounded};

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::audit_partition::{
    Events, INDEX_COUNT, IndexEntries, IndexKey, Partition, PartitionTables, clip, index_name,
    open_read, stored_events, stored_partitions,
};
use super::batch::{AUDIT_HEAD_KEY, WriteTables};
use super::codec;
use super::tables::{BUCKETED_AUDIT_INDEXES, LEGACY_AUDIT_EVENTS, LEGACY_AUDIT_INDEXES, META};
use super::{Snapshots, Store, StoreError};
use crate::domain::audit::{
    Anchor, AnchorCheck, AnchorVerdict, Draft, Event, Filter, GENESIS, Hash, Outcome, Record,
    Verification,
};
use crate::domain::retention::Tally;
use crate::failpoints;

/// Export lines are sent to the client in chunks of about this size.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Events verified per read transaction: a walk over millions never pins one snapshot.
const VERIFY_CHUNK: u64 = 20_000;

/// Where the chain checkpoint is kept in `meta`.
pub const AUDIT_CHECKPOINT_KEY: &str = "audit_checkpoint";

/// The last event retention removed: the chain that is kept starts right after it, with its hash
/// as the first kept event's `prev_hash`. A place in the chain, like the head.
pub type Checkpoint = Head;

/// The export's first line when it starts right after the checkpoint (`docs/audit-format.md`).
fn checkpoint_line(checkpoint: &Checkpoint) -> Vec<u8> {
    let line = serde_json::json!({
        "checkpoint": {
            "seq": checkpoint.seq,
            "ts_ms": checkpoint.ts_ms,
            "hash": hex::encode(checkpoint.hash),
        }
    });
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

impl codec::Record for Event {
    const VERSION: u8 = 1;
    const NAME: &'static str = "audit event";
}

/// An event's place in the chain: the newest event (where the next one chains on), or the last
/// one pruned (`Checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub ts_ms: u64,
    pub hash: Hash,
}

impl codec::Record for Head {
    const VERSION: u8 = 1;
    const NAME: &'static str = "audit chain position";
}

pub(super) const EMPTY_HEAD: Head = Head {
    seq: 0,
    ts_ms: 0,
    hash: GENESIS,
};

/// Appends `draft` to the chain inside the batch's transaction. Timestamps never go backwards
/// along the chain, so `seq` order is also time order and a time range is a `seq` range.
pub(super) fn append(t: &mut WriteTables<'_>, draft: Draft) -> Result<Event, StoreError> {
    if failpoints::fails("audit.append") {
        return Err(StoreError::Database("failpoint audit.append".into()));
    }
    let head = t.audit_head()?.unwrap_or(EMPTY_HEAD);
    let event = Event::chain(
        draft.record,
        head.seq + 1,
        draft.at_ms.max(head.ts_ms),
        head.hash,
    );
    let seq = event.seq;
    let tables = t.audit_partition(Partition::of(seq))?;
    tables
        .events
        .insert(seq, codec::encode(&event)?.as_slice())?;
    for (index, value) in tables.indexes.iter_mut().zip(indexed_values(&event.record)) {
        if let Some(value) = value {
            index.insert((value.as_str(), seq), ())?;
        }
    }
    let new_head = Head {
        seq,
        ts_ms: event.ts_ms,
        hash: event.hash,
    };
    t.set_audit_head(new_head);
    t.appended_audit_event(&event);
    Ok(event)
}

/// The value each audit index holds for `record`, in partition index order; `None` where it is
/// not indexed (`ok` outcomes: nearly every event has one, and the events themselves answer it).
fn indexed_values(record: &Record) -> [Option<String>; INDEX_COUNT] {
    [
        Some(record.actor.label()),
        Some(record.action.as_str().to_owned()),
        Some(record.target.label()),
        (record.outcome != Outcome::Ok).then(|| record.outcome.as_str().to_owned()),
    ]
}

/// Moves the events of the single `audit` table of schemas 1 to 5 into partitions, with index
/// entries built afresh from each event, and drops the old tables (the migration to schema 6).
pub(super) fn move_into_partitions(txn: &WriteTransaction) -> Result<(), StoreError> {
    {
        let events = txn.open_table(LEGACY_AUDIT_EVENTS)?;
        let mut open: Option<PartitionTables<'_>> = None;
        for row in events.iter()? {
            let (seq, raw) = row?;
            let (seq, raw) = (seq.value(), raw.value());
            let event: Event = codec::decode(raw)?;
            let partition = Partition::of(seq);
            let tables = match &mut open {
                Some(tables) if tables.partition == partition => tables,
                _ => open.insert(PartitionTables::open(txn, partition)?),
            };
            tables.events.insert(seq, raw)?;
            for (index, value) in tables.indexes.iter_mut().zip(indexed_values(&event.record)) {
                if let Some(value) = value {
                    index.insert((value.as_str(), seq), ())?;
                }
            }
        }
    }
    txn.delete_table(LEGACY_AUDIT_EVENTS)?;
    for index in BUCKETED_AUDIT_INDEXES {
        txn.delete_table(index)?;
    }
    for index in LEGACY_AUDIT_INDEXES {
        txn.delete_table(index)?;
    }
    Ok(())
}

/// The `seq`s of the kept chain, `first..=last`: from just after the checkpoint to the head.
/// `None` when no event is kept.
fn kept_span(checkpoint: Option<Checkpoint>, head: Option<Head>) -> Option<(u64, u64)> {
    let first = checkpoint.map_or(1, |c| c.seq + 1);
    let last = head?.seq;
    (first <= last).then_some((first, last))
}

/// Events in the kept chain as a write transaction sees it (gapless, so no table is counted).
pub(super) fn kept_events(t: &WriteTables<'_>) -> Result<u64, StoreError> {
    let checkpoint: Option<Checkpoint> = t.meta(AUDIT_CHECKPOINT_KEY)?;
    Ok(kept_span(checkpoint, t.audit_head()?).map_or(0, |(first, last)| last - first + 1))
}

/// `kept_span` as a read transaction sees it.
fn kept_chain(txn: &ReadTransaction) -> Result<Option<(u64, u64)>, StoreError> {
    let meta = txn.open_table(META)?;
    let head: Option<Head> = codec::get(&meta, AUDIT_HEAD_KEY)?;
    let checkpoint: Option<Checkpoint> = codec::get(&meta, AUDIT_CHECKPOINT_KEY)?;
    Ok(kept_span(checkpoint, head))
}

/// Removes the oldest events with `ts_ms < before_ms`, each with all its index entries, and
/// moves the checkpoint to the last one removed — all in the caller's transaction, so no event
/// ever lacks its index entries, no entry its event, and the checkpoint always names the event
/// just before the first kept one. The chain head is never touched. Also says whether old events
/// may remain.
///
/// A batch works on the partition of the oldest kept event. When that partition is full (its
/// last `seq` is stored, so no append will reach it) and all of it is old, it is dropped whole, `limit` or not: that costs a
/// few milliseconds whatever it holds, much less than deleting a `limit` of rows. Otherwise the
/// cutoff falls within it, and up to `limit` of its events are deleted row by row.
pub(super) fn prune(
    t: &mut WriteTables<'_>,
    before_ms: u64,
    limit: usize,
) -> Result<(Tally, bool), StoreError> {
    let mut tally = Tally::default();
    let checkpoint: Option<Checkpoint> = t.meta(AUDIT_CHECKPOINT_KEY)?;
    let Some((first, last)) = kept_span(checkpoint, t.audit_head()?) else {
        return Ok((tally, false));
    };
    let partition = Partition::of(first);
    let last_in_partition = last.min(partition.end() - 1);
    let tables = t.audit_partition(partition)?;
    let stored = |seq: u64| -> Result<Event, StoreError> {
        codec::get(&tables.events, seq)?.ok_or_else(|| {
            StoreError::Corrupt(format!("audit event {seq} is missing from the chain"))
        })
    };
    let oldest = stored(first)?;
    let final_event = stored(last_in_partition)?;
    let whole_partition_old =
        last_in_partition == partition.end() - 1 && final_event.ts_ms < before_ms;
    let (last_removed, more) = if whole_partition_old {
        tally.deleted = tables.events.len()?;
        t.drop_audit_partition(partition)?;
        (final_event, last >= partition.end())
    } else {
        let ts_of = |seq: u64| Ok(codec::get::<_, Event>(&tables.events, seq)?.map(|e| e.ts_ms));
        let old_end = first_seq_at_or_after(first, last_in_partition, before_ms, ts_of)?;
        let end = old_end.min(first + limit as u64);
        if end <= first {
            return Ok((tally, false));
        }
        let newest = stored(end - 1)?;
        // Seqs have no gaps, so the batch is the events `first..end`, removed unread. Their
        // index entries are removed by one pass over each of the partition's indexes, keyed by
        // `seq` alone, so no event is decoded to learn its values.
        let mut removed = 0;
        tables.events.retain_in(first..end, |_, _| {
            removed += 1;
            false
        })?;
        for index in tables.indexes.iter_mut() {
            index.retain(|(_, seq), _| !(first..end).contains(&seq))?;
        }
        tally.deleted = removed;
        (newest, end < old_end)
    };
    tally.oldest_ms = Some(oldest.ts_ms);
    tally.newest_ms = Some(last_removed.ts_ms);
    let checkpoint = Checkpoint {
        seq: last_removed.seq,
        ts_ms: last_removed.ts_ms,
        hash: last_removed.hash,
    };
    t.set_meta(AUDIT_CHECKPOINT_KEY, &checkpoint)?;
    Ok((tally, more))
}

/// What a dry run would remove: events with `ts_ms < before_ms`, found by binary search (the
/// chain is gapless and time-ordered, so no walk is needed).
pub(super) fn survey(txn: &ReadTransaction, before_ms: u64) -> Result<Tally, StoreError> {
    let Some((first, last)) = kept_chain(txn)? else {
        return Ok(Tally::default());
    };
    let mut events = Events::new(txn);
    let end = first_seq_at_or_after(first, last, before_ms, |seq| {
        Ok(events.get(seq)?.map(|e| e.ts_ms))
    })?;
    if end <= first {
        return Ok(Tally::default());
    }
    Ok(Tally {
        deleted: end - first,
        remaining: 0,
        oldest_ms: events.get(first)?.map(|e| e.ts_ms),
        newest_ms: events.get(end - 1)?.map(|e| e.ts_ms),
    })
}

impl Store {
    /// Appends events that stand alone (service start and stop, denials, audit reads) in one
    /// group-committed transaction.
    pub async fn append_audit(&self, drafts: Vec<Draft>) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                for draft in &drafts {
                    append(t, draft.clone())?;
                }
                Ok(())
            })
            .await
    }

    /// Newest-first page of events matching `filter`, strictly before `before_seq`.
    pub fn audit_page(
        &self,
        filter: Filter,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.scan(move |txn| page(txn, &filter, before_seq, limit))
    }

    /// Walks the chain; with `expected`, also checks that the chain still holds that event.
    pub fn verify_audit(&self, expected: Option<Anchor>) -> Result<Verification, StoreError> {
        tokio::task::block_in_place(|| {
            let mut report = verify(self)?;
            if let Some(anchor) = expected {
                check_anchor(self, anchor, &mut report)?;
            }
            Ok(report)
        })
    }

    /// Streams the events with `since_ms <= ts_ms < until_ms` as NDJSON, oldest first, in
    /// chunks of about `EXPORT_CHUNK_BYTES`.
    ///
    /// The range is fixed when the export starts (so it ends at the head of that moment, the
    /// export's own record included). An export that starts at the first kept event begins with
    /// the chain checkpoint; each chunk is read in a read transaction of its own, so a
    /// slow client never holds one open (SPEC §3). The producer is a task, not a thread: it waits
    /// for the client without blocking anything. It stops when a chunk is not taken within
    /// `limits.chunk` or the export has run for `limits.total`; the receiver then sees the stream
    /// end with an error, which a client sees as a cut-off body.
    pub fn export_audit(
        &self,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
        limits: StreamLimits,
    ) -> mpsc::Receiver<Result<Vec<u8>, StoreError>> {
        let (sender, receiver) = mpsc::channel(1);
        let store = self.clone();
        tokio::spawn(async move {
            let ends = tokio::time::Instant::now() + limits.total;
            let range = store.read(|txn| export_range(txn, since_ms, until_ms));
            let ExportRange {
                mut from,
                until,
                mut lead,
            } = match range {
                Ok(Some(range)) => range,
                Ok(None) => return,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            loop {
                let chunk = store.read(|txn| export_chunk(txn, from, until));
                let (mut lines, next) = match chunk {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                if let Some(lead) = lead.take() {
                    lines.splice(0..0, lead);
                }
                let taken_by = ends.min(tokio::time::Instant::now() + limits.chunk);
                if !lines.is_empty() {
                    match tokio::time::timeout_at(taken_by, sender.send(Ok(lines))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return, // the client went away
                        Err(_) => {
                            let _ = sender.try_send(Err(StoreError::Deadline));
                            return;
                        }
                    }
                }
                match next {
                    Some(seq) => from = seq,
                    None => return,
                }
            }
        });
        receiver
    }
}

/// How long an export may wait for its reader, chunk by chunk and in all.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub chunk: std::time::Duration,
    pub total: std::time::Duration,
}

/// What an export holds: the events `from..=until`, after `lead` when the range starts right
/// after the chain checkpoint: the checkpoint, which lets the export be verified on its own.
struct ExportRange {
    from: u64,
    until: u64,
    lead: Option<Vec<u8>>,
}

/// The export's range; `None` when no event falls in it.
fn export_range(
    txn: &ReadTransaction,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
) -> Result<Option<ExportRange>, StoreError> {
    let Some((first, last)) = kept_chain(txn)? else {
        return Ok(None);
    };
    let mut events = Events::new(txn);
    let (low, high) = seq_bounds(&mut events, first, last, since_ms, until_ms)?;
    let Some((from, until)) = clip(low, high, first, last) else {
        return Ok(None);
    };
    let checkpoint: Option<Checkpoint> = codec::get(&txn.open_table(META)?, AUDIT_CHECKPOINT_KEY)?;
    let lead = checkpoint
        .filter(|c| from == c.seq + 1)
        .map(|c| checkpoint_line(&c));
    Ok(Some(ExportRange { from, until, lead }))
}

/// The NDJSON lines of events in `from..=until`, up to about `EXPORT_CHUNK_BYTES`, and the
/// `seq` to continue from when the range has more.
fn export_chunk(
    txn: &ReadTransaction,
    from: u64,
    until: u64,
) -> Result<(Vec<u8>, Option<u64>), StoreError> {
    let mut lines = Vec::with_capacity(EXPORT_CHUNK_BYTES + 4096);
    for row in Events::new(txn).range(from, until, false) {
        let (seq, raw) = row?;
        if lines.len() >= EXPORT_CHUNK_BYTES {
            return Ok((lines, Some(seq)));
        }
        let event: Event = codec::decode(raw.value())?;
        serde_json::to_writer(&mut lines, &event.to_json())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        lines.push(b'\n');
    }
    Ok((lines, None))
}

fn page(
    txn: &ReadTransaction,
    filter: &Filter,
    before_seq: Option<u64>,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let Some((first, last)) = kept_chain(txn)? else {
        return Ok(Vec::new());
    };
    let mut events = Events::new(txn);
    let (low, mut high) = seq_bounds(&mut events, first, last, filter.since_ms, filter.until_ms)?;
    if let Some(before) = before_seq {
        high = tighter_upper(high, before);
    }
    let Some((low, high)) = clip(low, high, first, last) else {
        return Ok(Vec::new());
    };
    let span = SeqSpan {
        first: low,
        last: high,
    };
    // Walk the smallest of the given indexes and check the others by point lookups, so only
    // matching events are decoded.
    let mut indexes = Vec::with_capacity(4);
    // In the order the walk is tried when no index runs out first: the target is the most
    // selective of them in practice.
    for (position, value) in [
        (2, filter.target.clone()),
        (0, filter.actor.clone()),
        (1, filter.action.map(|a| a.as_str().to_owned())),
        // `ok` is not indexed (nearly every event is `ok`); the events themselves answer it.
        (
            3,
            filter
                .outcome
                .filter(|o| *o != Outcome::Ok)
                .map(|o| o.as_str().to_owned()),
        ),
    ] {
        if let Some(value) = value {
            indexes.push((position, value));
        }
    }
    if indexes.len() > 1 {
        let smallest = smallest_index(txn, &indexes, span)?;
        indexes.swap(0, smallest);
    }
    let mut found = Vec::with_capacity(limit);
    let Some(((walked, value), others)) = indexes.split_first() else {
        for row in events.range(span.first, span.last, true) {
            let event: Event = codec::decode(row?.1.value())?;
            if filter.matches(&event) {
                found.push(event);
                if found.len() == limit {
                    break;
                }
            }
        }
        return Ok(found);
    };
    let mut lookups = IndexEntries::new(txn);
    'walk: for seq in IndexWalk::new(txn, *walked, value, span, Direction::Newest) {
        let seq = seq?;
        for (position, value) in others {
            if !lookups.contains(*position, value, seq)? {
                continue 'walk;
            }
        }
        let event = events
            .get(seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("audit index names missing event {seq}")))?;
        if filter.matches(&event) {
            found.push(event);
            if found.len() == limit {
                break;
            }
        }
    }
    Ok(found)
}

type SeqBound = std::ops::Bound<u64>;

/// How far the indexes race before the first one given is taken as the walk.
const INDEX_RACE_STEPS: usize = 4096;

/// Which index holds the fewest entries in the span: all are stepped in lockstep and the first
/// to run out wins, so finding it costs at most (number of indexes × its size) cheap steps. When
/// none runs out within `INDEX_RACE_STEPS`, all are large and the first is as good as any.
fn smallest_index(
    txn: &ReadTransaction,
    indexes: &[(usize, String)],
    span: SeqSpan,
) -> Result<usize, StoreError> {
    let mut walks: Vec<IndexWalk<'_>> = indexes
        .iter()
        .map(|(position, value)| IndexWalk::new(txn, *position, value, span, Direction::Oldest))
        .collect();
    for _ in 0..INDEX_RACE_STEPS {
        for (position, walk) in walks.iter_mut().enumerate() {
            if walk.next().transpose()?.is_none() {
                return Ok(position);
            }
        }
    }
    Ok(0)
}

/// An inclusive `seq` range that holds events: what a query walks.
#[derive(Debug, Clone, Copy)]
struct SeqSpan {
    first: u64,
    last: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Oldest,
    Newest,
}

/// The `seq`s of one value's entries in an index within a span, oldest or newest first, read
/// partition by partition.
struct IndexWalk<'i> {
    txn: &'i ReadTransaction,
    position: usize,
    value: &'i str,
    span: SeqSpan,
    direction: Direction,
    /// The partition being read, and the range open on it.
    partition: Partition,
    range: Option<redb::Range<'static, IndexKey<'static>, ()>>,
    done: bool,
}

impl<'i> IndexWalk<'i> {
    fn new(
        txn: &'i ReadTransaction,
        position: usize,
        value: &'i str,
        span: SeqSpan,
        direction: Direction,
    ) -> Self {
        let partition = match direction {
            Direction::Oldest => Partition::of(span.first),
            Direction::Newest => Partition::of(span.last),
        };
        Self {
            txn,
            position,
            value,
            span,
            direction,
            partition,
            range: None,
            done: false,
        }
    }

    /// Opens the range of the current partition, clipped to the span; `None` when the
    /// partition has no such index.
    fn open(&self) -> Result<Option<redb::Range<'static, IndexKey<'static>, ()>>, StoreError> {
        let Some(index) = open_read(self.txn, self.partition.names().index(self.position))? else {
            return Ok(None);
        };
        let low = (self.value, self.span.first.max(self.partition.start()));
        let high = (self.value, self.span.last.min(self.partition.end() - 1));
        Ok(Some(index.range(low..=high)?))
    }

    /// Moves to the next partition in the walk's direction; `false` past the span.
    fn advance(&mut self) -> bool {
        match self.direction {
            Direction::Oldest if self.partition < Partition::of(self.span.last) => {
                self.partition = self.partition.next();
                true
            }
            Direction::Newest if self.partition > Partition::of(self.span.first) => {
                self.partition = Partition::of(self.partition.start() - 1);
                true
            }
            _ => false,
        }
    }
}

impl Iterator for IndexWalk<'_> {
    type Item = Result<u64, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.range.is_none() {
                match self.open() {
                    Ok(Some(range)) => self.range = Some(range),
                    Ok(None) => {
                        self.done = !self.advance();
                        continue;
                    }
                    Err(error) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
            }
            let range = self.range.as_mut()?;
            let row = match self.direction {
                Direction::Oldest => range.next(),
                Direction::Newest => range.next_back(),
            };
            match row {
                Some(Ok((key, _))) => return Some(Ok(key.value().1)),
                Some(Err(error)) => {
                    self.done = true;
                    return Some(Err(error.into()));
                }
                None => {
                    self.range = None;
                    self.done = !self.advance();
                }
            }
        }
        None
    }
}

/// The `seq` range holding `since_ms <= ts_ms < until_ms` within `first..=last`, found by
/// binary search: timestamps are non-decreasing along the chain.
fn seq_bounds(
    events: &mut Events<'_>,
    first: u64,
    last: u64,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
) -> Result<(SeqBound, SeqBound), StoreError> {
    let mut ts_of = |seq: u64| Ok(events.get(seq)?.map(|e| e.ts_ms));
    let low = match since_ms {
        Some(since) => Included(first_seq_at_or_after(first, last, since, &mut ts_of)?),
        None => Unbounded,
    };
    let high = match until_ms {
        Some(until) => Excluded(first_seq_at_or_after(first, last, until, &mut ts_of)?),
        None => Unbounded,
    };
    Ok((low, high))
}

/// The smallest `seq` in `first..=last` whose event has `ts_ms >= at`, or `last + 1`. An event
/// missing from a damaged file counts as one at or after `at`: a query must not fail on it.
fn first_seq_at_or_after(
    first: u64,
    last: u64,
    at: u64,
    mut ts_of: impl FnMut(u64) -> Result<Option<u64>, StoreError>,
) -> Result<u64, StoreError> {
    let (mut low, mut high) = (first, last + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        match ts_of(mid)? {
            Some(ts_ms) if ts_ms < at => low = mid + 1,
            _ => high = mid,
        }
    }
    Ok(low)
}

fn tighter_upper(high: SeqBound, before: u64) -> SeqBound {
    match high {
        Included(h) if h < before => Included(h),
        Excluded(h) if h <= before => Excluded(h),
        _ => Excluded(before),
    }
}

/// Walks the chain from the checkpoint (or the first event) to the head as it was when the walk
/// began: every `seq` present once and in order, every stored record in its canonical encoding,
/// every `prev_hash` the hash before it, every `hash` its content's, and the head naming the last
/// event. Each chunk of `VERIFY_CHUNK` events is read in a transaction of its own; when retention
/// moves the checkpoint past the walk meanwhile, the walk continues from the new checkpoint.
pub(super) fn verify(store: &impl Snapshots) -> Result<Verification, StoreError> {
    let (head, checkpoint, total_entries) = store.snapshot(|txn| {
        let meta = txn.open_table(META)?;
        // A damaged head is a finding to report, not a reason to fail the verification.
        let head = match meta.get(AUDIT_HEAD_KEY)? {
            Some(raw) => codec::decode::<Head>(raw.value()).ok(),
            None => Some(EMPTY_HEAD),
        };
        let checkpoint: Option<Checkpoint> = codec::get(&meta, AUDIT_CHECKPOINT_KEY)?;
        Ok((head, checkpoint, stored_events(txn)?))
    })?;
    let mut walk = Walk::from(checkpoint);
    let mut report = Verification {
        valid: true,
        total_entries,
        checked_from_seq: walk.next_seq,
        head_seq: head.map_or(0, |h| h.seq),
        head_hash: head.map_or_else(String::new, |h| hex::encode(h.hash)),
        first_invalid_seq: None,
        reason: None,
        expected: None,
    };
    let last = head.map_or(u64::MAX, |h| h.seq);
    while walk.next_seq <= last {
        let finding = store.snapshot(|txn| {
            let checkpoint: Option<Checkpoint> =
                codec::get(&txn.open_table(META)?, AUDIT_CHECKPOINT_KEY)?;
            if let Some(checkpoint) = checkpoint.filter(|c| c.seq >= walk.next_seq) {
                walk = Walk::from(Some(checkpoint));
                report.checked_from_seq = walk.next_seq;
            }
            // A chunk stays within one partition, whose index entries it then checks exactly.
            let from = walk.next_seq;
            let partition = Partition::of(from);
            let until = last
                .min(from.saturating_add(VERIFY_CHUNK - 1))
                .min(partition.end() - 1);
            let mut expected = Expected::default();
            let events = open_read(txn, partition.names().events())?;
            if let Some(finding) =
                walk.step(events.as_ref(), until, head.is_none(), &mut expected)?
            {
                return Ok(Some(finding));
            }
            // The first chunk also owns the partition's seqs before it: retention removed those
            // events, so any entry left for them is an orphan.
            let first_chunk = from == report.checked_from_seq;
            let low = if first_chunk { partition.start() } else { from };
            if let Some(finding) = check_indexes(txn, low, walk.next_seq, &expected)? {
                return Ok(Some(finding));
            }
            // After the last chunk, entries beyond it must still have their events (appended
            // since the walk began), or they are orphans of a cut tail.
            if walk.next_seq > last {
                return check_entries_beyond(txn, last);
            }
            Ok(None)
        })?;
        if let Some((seq, reason)) = finding {
            report.invalid(seq, reason);
            return Ok(report);
        }
        if walk.ended {
            break;
        }
    }
    let ends_at = walk.next_seq - 1;
    match head {
        None => report.invalid(ends_at, "the chain head in meta cannot be decoded".into()),
        Some(head) if head.seq != ends_at => report.invalid(
            walk.next_seq,
            format!(
                "the chain head names event {} but the chain ends at {ends_at}",
                head.seq
            ),
        ),
        Some(head) if head.hash != walk.prev_hash => report.invalid(
            head.seq,
            "the chain head's hash differs from the last event's".into(),
        ),
        Some(_) => {}
    }
    Ok(report)
}

/// Looks for the expected event in the chain as verified: beyond its head, before its checkpoint,
/// or at its place with the expected hash or another. Anything but `InChain` makes the report
/// invalid.
fn check_anchor(
    store: &impl Snapshots,
    anchor: Anchor,
    report: &mut Verification,
) -> Result<(), StoreError> {
    let verdict = store.snapshot(|txn| {
        if anchor.seq > report.head_seq {
            return Ok(AnchorVerdict::BeyondHead);
        }
        let checkpoint: Option<Checkpoint> =
            codec::get(&txn.open_table(META)?, AUDIT_CHECKPOINT_KEY)?;
        let stored_hash = match checkpoint {
            Some(c) if anchor.seq < c.seq => return Ok(AnchorVerdict::Pruned),
            Some(c) if anchor.seq == c.seq => Some(c.hash),
            _ => match open_read(txn, Partition::of(anchor.seq).names().events())? {
                Some(events) => match events.get(anchor.seq)? {
                    Some(raw) => codec::decode::<Event>(raw.value()).ok().map(|e| e.hash),
                    None => None,
                },
                None => None,
            },
        };
        Ok(match stored_hash {
            Some(hash) if hash == anchor.hash => AnchorVerdict::InChain,
            _ => AnchorVerdict::HashDiffers,
        })
    })?;
    if verdict != AnchorVerdict::InChain && report.valid {
        let seq = anchor.seq;
        let head = report.head_seq;
        report.invalid(
            seq,
            match verdict {
                AnchorVerdict::BeyondHead => format!(
                    "the chain ends at {head}, before the expected event {seq}: its tail was cut"
                ),
                AnchorVerdict::Pruned => format!(
                    "the expected event {seq} was removed by retention and cannot be checked; record a newer head"
                ),
                _ => format!(
                    "event {seq} does not have the expected hash: the chain was rewritten or replaced"
                ),
            },
        );
    }
    report.expected = Some(AnchorCheck {
        seq: anchor.seq,
        hash: hex::encode(anchor.hash),
        verdict,
    });
    Ok(())
}

/// Where a chain walk stands: the next event it expects and the hash that event must chain on.
struct Walk {
    next_seq: u64,
    prev_hash: Hash,
    /// The chain ended before the head (only when the head is unreadable and bounds nothing).
    ended: bool,
}

impl From<Option<Checkpoint>> for Walk {
    fn from(checkpoint: Option<Checkpoint>) -> Self {
        let (next_seq, prev_hash) = checkpoint.map_or((1, GENESIS), |c| (c.seq + 1, c.hash));
        Self {
            next_seq,
            prev_hash,
            ended: false,
        }
    }
}

/// The index entries the events of one chunk call for, per index in partition index order.
#[derive(Default)]
struct Expected([BTreeSet<(String, u64)>; INDEX_COUNT]);

impl Expected {
    fn add(&mut self, event: &Event) {
        for (entries, value) in self.0.iter_mut().zip(indexed_values(&event.record)) {
            if let Some(value) = value {
                entries.insert((value, event.seq));
            }
        }
    }
}

/// Compares the index entries of the seqs `low..end` (all in one partition) with the ones the
/// chunk's events call for: an entry without its event, or an event without its entry, is the
/// first problem found.
fn check_indexes(
    txn: &ReadTransaction,
    low: u64,
    end: u64,
    expected: &Expected,
) -> Result<Option<(u64, String)>, StoreError> {
    let partition = Partition::of(low);
    let names = partition.names();
    for (position, wanted) in expected.0.iter().enumerate() {
        let mut found = BTreeSet::new();
        if let Some(index) = open_read(txn, names.index(position))? {
            for row in index.iter()? {
                let (key, _) = row?;
                let (value, seq) = key.value();
                if (low..end).contains(&seq) {
                    found.insert((value.to_owned(), seq));
                }
            }
        }
        let name = index_name(position);
        if let Some((value, seq)) = found.difference(wanted).next() {
            return Ok(Some((
                *seq,
                format!("{name} holds an entry ({value:?}, {seq}) whose event does not exist"),
            )));
        }
        if let Some((value, seq)) = wanted.difference(&found).next() {
            return Ok(Some((
                *seq,
                format!("event {seq} lacks its {name} entry ({value:?})"),
            )));
        }
    }
    Ok(None)
}

/// The first index entry for a seq after `last` whose event does not exist.
fn check_entries_beyond(
    txn: &ReadTransaction,
    last: u64,
) -> Result<Option<(u64, String)>, StoreError> {
    let mut events = Events::new(txn);
    for partition in stored_partitions(txn)?.range(Partition::of(last)..) {
        let names = partition.names();
        for position in 0..INDEX_COUNT {
            let Some(index) = open_read(txn, names.index(position))? else {
                continue;
            };
            for row in index.iter()? {
                let (key, _) = row?;
                let (value, seq) = key.value();
                if seq > last && events.get(seq)?.is_none() {
                    let name = index_name(position);
                    return Ok(Some((
                        seq,
                        format!(
                            "{name} holds an entry ({value:?}, {seq}) whose event does not exist"
                        ),
                    )));
                }
            }
        }
    }
    Ok(None)
}

impl Walk {
    /// Checks the events from `next_seq` through `until`, noting the index entries each calls
    /// for; the first problem found, if any.
    fn step(
        &mut self,
        events: Option<&ReadOnlyTable<u64, &'static [u8]>>,
        until: u64,
        open_ended: bool,
        expected: &mut Expected,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let mut rows = match events {
            Some(events) => Some(events.range(self.next_seq..=until)?),
            None => None,
        };
        while self.next_seq <= until {
            let Some(row) = rows.as_mut().and_then(|rows| rows.next()).transpose()? else {
                if open_ended {
                    self.ended = true;
                    return Ok(None);
                }
                let missing = self.next_seq;
                return Ok(Some((missing, format!("event {missing} is missing"))));
            };
            let (key, raw) = row;
            let seq = key.value();
            if seq != self.next_seq {
                let missing = self.next_seq;
                return Ok(Some((missing, format!("event {missing} is missing"))));
            }
            let event = match codec::decode::<Event>(raw.value()) {
                Ok(event) => event,
                Err(_) => {
                    return Ok(Some((seq, "the stored event cannot be decoded".into())));
                }
            };
            if let Err(reason) = check_event(&event, raw.value(), seq, &self.prev_hash) {
                return Ok(Some((seq, reason)));
            }
            expected.add(&event);
            self.prev_hash = event.hash;
            self.next_seq += 1;
        }
        Ok(None)
    }
}

fn check_event(event: &Event, raw: &[u8], seq: u64, prev_hash: &Hash) -> Result<(), String> {
    if codec::encode(event).map_err(|e| e.to_string())? != raw {
        return Err("the stored bytes are not the event's encoding".into());
    }
    if event.seq != seq {
        return Err(format!(
            "the event stored under {seq} says it is {}",
            event.seq
        ));
    }
    if &event.prev_hash != prev_hash {
        return Err("prev_hash differs from the previous event's hash".into());
    }
    if event.computed_hash() != event.hash {
        return Err("hash does not match the event's content".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;
    use redb::{Database, ReadableDatabase};

    use super::*;
    use crate::domain::audit::{Action, Context, Target};
    use crate::store::audit_partition::PARTITION_BITS;
    use crate::store::published::Kept;

    const SPAN: u64 = 1 << PARTITION_BITS;

    struct Memory(Database);

    impl Snapshots for Memory {
        fn snapshot<T>(
            &self,
            f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
        ) -> Result<T, StoreError> {
            f(&self.0.begin_read()?)
        }
    }

    fn in_one_transaction<T>(db: &Database, f: impl FnOnce(&mut WriteTables<'_>) -> T) -> T {
        let txn = db.begin_write().expect("write");
        let mut tables = WriteTables::open(&txn, Kept::default()).expect("tables");
        let result = f(&mut tables);
        tables.flush().expect("flush");
        txn.commit().expect("commit");
        result
    }

    /// Events `1..=count`, the event `seq` at `ts_ms = seq`; every tenth denied, so the outcome
    /// index has entries too.
    fn chain_of(count: u64) -> Memory {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("in-memory database");
        in_one_transaction(&db, |t| {
            for seq in 1..=count {
                let outcome = if seq % 10 == 0 {
                    Outcome::Denied
                } else {
                    Outcome::Ok
                };
                let target = Target::new("chat", &format!("c{}", seq % 7));
                let draft = Context::system().draft(seq, Action::ChatSend, target, outcome);
                append(t, draft).expect("append");
            }
        });
        Memory(db)
    }

    #[test]
    fn a_prune_drops_whole_old_partitions_and_deletes_rows_only_where_the_cutoff_falls() {
        let total = 2 * SPAN + SPAN / 2;
        let store = chain_of(total);
        // Events before `cutoff` are old: all of the first partition, half of the second.
        let cutoff = SPAN + SPAN / 2;
        let mut batches = Vec::new();
        loop {
            let (tally, more) =
                in_one_transaction(&store.0, |t| prune(t, cutoff, 1000).expect("prune"));
            batches.push(tally.deleted);
            if !more {
                break;
            }
        }

        assert_eq!(batches[0], SPAN - 1, "the first partition went whole");
        assert!(
            batches[1..].iter().all(|deleted| *deleted <= 1000),
            "{batches:?}"
        );
        assert_eq!(batches.iter().sum::<u64>(), cutoff - 1, "{batches:?}");
        let report = verify(&store).expect("verify");
        assert!(report.valid, "{report:?}");
        assert_eq!(report.checked_from_seq, cutoff);
        assert_eq!(report.total_entries, total - (cutoff - 1));
        store
            .snapshot(|txn| {
                let stored = stored_partitions(txn)?;
                assert!(!stored.contains(&Partition::of(1)), "{stored:?}");
                assert_eq!(survey(txn, cutoff)?.deleted, 0);
                assert_eq!(survey(txn, cutoff + 1)?.deleted, 1);
                let denied = Filter {
                    outcome: Some(Outcome::Denied),
                    ..Filter::default()
                };
                let oldest_denied = page(txn, &denied, None, 1_000_000)?.last().map(|e| e.seq);
                assert_eq!(oldest_denied, Some(cutoff.next_multiple_of(10)));
                Ok(())
            })
            .expect("read");
    }

    #[test]
    fn queries_and_exports_cross_partitions_in_order() {
        let total = SPAN + 100;
        let store = chain_of(total);
        store
            .snapshot(|txn| {
                let target = Filter {
                    target: Some("chat:c3".into()),
                    ..Filter::default()
                };
                let found = page(txn, &target, None, 1_000_000)?;
                let seqs: Vec<u64> = found.iter().map(|e| e.seq).collect();
                let wanted: Vec<u64> = (1..=total).rev().filter(|s| s % 7 == 3).collect();
                assert_eq!(seqs, wanted);
                let window = Filter {
                    since_ms: Some(SPAN - 5),
                    until_ms: Some(SPAN + 5),
                    ..Filter::default()
                };
                let seqs: Vec<u64> = page(txn, &window, None, 1_000_000)?
                    .iter()
                    .map(|e| e.seq)
                    .collect();
                assert_eq!(seqs, (SPAN - 5..SPAN + 5).rev().collect::<Vec<_>>());
                let (lines, next) = export_chunk(txn, SPAN - 2, SPAN + 1)?;
                assert_eq!(next, None);
                let exported: Vec<u64> = String::from_utf8(lines)
                    .expect("UTF-8")
                    .lines()
                    .map(|line| {
                        let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
                        event["seq"].as_u64().expect("seq")
                    })
                    .collect();
                assert_eq!(exported, vec![SPAN - 2, SPAN - 1, SPAN, SPAN + 1]);
                Ok(())
            })
            .expect("read");
    }
}
