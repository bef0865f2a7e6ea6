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
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, TableHandle,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::batch::{AUDIT_HEAD_KEY, WriteTables};
use super::codec;
use super::tables::{
    AUDIT, AUDIT_BUCKET_BITS, AUDIT_BY_ACTION, AUDIT_BY_ACTOR, AUDIT_BY_OUTCOME, AUDIT_BY_TARGET,
    AUDIT_INDEXES, AuditIndexKey, META, audit_index_key,
};
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
    t.audit
        .insert(event.seq, codec::encode(&event)?.as_slice())?;
    let seq = event.seq;
    for (index, value) in t
        .audit_indexes
        .iter_mut()
        .zip(indexed_values(&event.record))
    {
        if let Some(value) = value {
            index.insert(audit_index_key(&value, seq), ())?;
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

/// The value each audit index holds for `record`, in `AUDIT_INDEXES` order; `None` where it is
/// not indexed (`ok` outcomes: nearly every event has one, and the events themselves answer it).
fn indexed_values(record: &Record) -> [Option<String>; 4] {
    [
        Some(record.actor.label()),
        Some(record.action.as_str().to_owned()),
        Some(record.target.label()),
        (record.outcome != Outcome::Ok).then(|| record.outcome.as_str().to_owned()),
    ]
}

/// Builds the indexes of every stored event afresh (the migration to bucketed index keys).
pub(super) fn rebuild_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    let events = txn.open_table(AUDIT)?;
    let mut indexes = [
        txn.open_table(AUDIT_INDEXES[0])?,
        txn.open_table(AUDIT_INDEXES[1])?,
        txn.open_table(AUDIT_INDEXES[2])?,
        txn.open_table(AUDIT_INDEXES[3])?,
    ];
    for row in events.iter()? {
        let event: Event = codec::decode(row?.1.value())?;
        for (index, value) in indexes.iter_mut().zip(indexed_values(&event.record)) {
            if let Some(value) = value {
                index.insert(audit_index_key(&value, event.seq), ())?;
            }
        }
    }
    Ok(())
}

/// Removes up to `limit` of the oldest events with `ts_ms < before_ms`, each with all its index
/// entries, and moves the checkpoint to the last one removed — all in the caller's transaction,
/// so no event ever lacks its index entries, no entry its event, and the checkpoint always names
/// the event just before the first kept one. The chain head is never touched. Also says whether
/// old events remain.
pub(super) fn prune(
    t: &mut WriteTables<'_>,
    before_ms: u64,
    limit: usize,
) -> Result<(Tally, bool), StoreError> {
    let mut tally = Tally::default();
    let Some(first) = t.audit.first()?.map(|(seq, _)| seq.value()) else {
        return Ok((tally, false));
    };
    // A batch stays within one index bucket, so its index entries sit in a few leaves.
    let bucket_end = ((first >> AUDIT_BUCKET_BITS) + 1) << AUDIT_BUCKET_BITS;
    let old_end = first_seq_at_or_after(&t.audit, before_ms)?;
    let end = old_end.min(first + limit as u64).min(bucket_end);
    if end <= first {
        return Ok((tally, false));
    }
    // Seqs have no gaps, so the batch is the events `first..end`. Only the first and the last
    // are decoded, for the tally's times and the checkpoint; the rest are removed unread. Their
    // index entries are removed by one pass over the bucket in each index, keyed by `seq`
    // alone, so no event is decoded to learn its values.
    let stored = |seq: u64| -> Result<Event, StoreError> {
        let raw = t.audit.get(seq)?.ok_or_else(|| {
            StoreError::Corrupt(format!("audit event {seq} is missing from the chain"))
        })?;
        codec::decode(raw.value())
    };
    let oldest = stored(first)?;
    let last = Some(stored(end - 1)?);
    let mut removed = 0;
    t.audit.retain_in(first..end, |_, _| {
        removed += 1;
        false
    })?;
    tally.deleted = removed;
    tally.oldest_ms = Some(oldest.ts_ms);
    tally.newest_ms = last.as_ref().map(|e| e.ts_ms);
    let bucket = first >> AUDIT_BUCKET_BITS;
    for index in t.audit_indexes.iter_mut() {
        index.retain_in((bucket, "", 0)..(bucket + 1, "", 0), |(_, _, seq), _| {
            !(first..end).contains(&seq)
        })?;
    }
    if let Some(last) = last {
        let checkpoint = Checkpoint {
            seq: last.seq,
            ts_ms: last.ts_ms,
            hash: last.hash,
        };
        t.set_meta(AUDIT_CHECKPOINT_KEY, &checkpoint)?;
    }
    Ok((tally, end < old_end))
}

/// What a dry run would remove: events with `ts_ms < before_ms`, found by binary search (the
/// chain is gapless and time-ordered, so no walk is needed).
pub(super) fn survey(txn: &ReadTransaction, before_ms: u64) -> Result<Tally, StoreError> {
    let events = txn.open_table(AUDIT)?;
    let Some(first) = events.first()?.map(|(seq, _)| seq.value()) else {
        return Ok(Tally::default());
    };
    let end = first_seq_at_or_after(&events, before_ms)?;
    if end <= first {
        return Ok(Tally::default());
    }
    let ts = |seq: u64| -> Result<Option<u64>, StoreError> {
        Ok(codec::get::<_, Event>(&events, seq)?.map(|e| e.ts_ms))
    };
    Ok(Tally {
        deleted: end - first,
        remaining: 0,
        oldest_ms: ts(first)?,
        newest_ms: ts(end - 1)?,
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
            let (mut from, until, mut lead) = match range {
                Ok(range) => range,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            loop {
                let chunk = store.read(|txn| export_chunk(&txn.open_table(AUDIT)?, from, until));
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
                    Some(seq) => from = Included(seq),
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

/// The `seq` range of an export, and its first line when the range starts right after the
/// chain checkpoint: the checkpoint, which lets the export be verified on its own.
fn export_range(
    txn: &ReadTransaction,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
) -> Result<(SeqBound, SeqBound, Option<Vec<u8>>), StoreError> {
    let events = txn.open_table(AUDIT)?;
    let (from, until) = seq_bounds(&events, since_ms, until_ms)?;
    let first = events.range((from, until))?.next().transpose()?;
    let checkpoint: Option<Checkpoint> = codec::get(&txn.open_table(META)?, AUDIT_CHECKPOINT_KEY)?;
    let lead = checkpoint
        .filter(|c| first.is_some_and(|(seq, _)| seq.value() == c.seq + 1))
        .map(|c| checkpoint_line(&c));
    Ok((from, until, lead))
}

/// The NDJSON lines of events in `(from, until)`, up to about `EXPORT_CHUNK_BYTES`, and the
/// `seq` to continue from when the range has more.
fn export_chunk(
    events: &impl ReadableTable<u64, &'static [u8]>,
    from: SeqBound,
    until: SeqBound,
) -> Result<(Vec<u8>, Option<u64>), StoreError> {
    let mut lines = Vec::with_capacity(EXPORT_CHUNK_BYTES + 4096);
    for row in events.range((from, until))? {
        let (seq, raw) = row?;
        if lines.len() >= EXPORT_CHUNK_BYTES {
            return Ok((lines, Some(seq.value())));
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
    let events = txn.open_table(AUDIT)?;
    let (low, mut high) = seq_bounds(&events, filter.since_ms, filter.until_ms)?;
    if let Some(before) = before_seq {
        high = tighter_upper(high, before);
    }
    let Some(span) = SeqSpan::within(&events, low, high)? else {
        return Ok(Vec::new());
    };
    // Walk the smallest of the given indexes and check the others by point lookups, so only
    // matching events are decoded.
    let mut indexes = Vec::with_capacity(4);
    for (definition, value) in [
        (AUDIT_BY_TARGET, filter.target.clone()),
        (AUDIT_BY_ACTOR, filter.actor.clone()),
        (
            AUDIT_BY_ACTION,
            filter.action.map(|a| a.as_str().to_owned()),
        ),
        // `ok` is not indexed (nearly every event is `ok`); the events themselves answer it.
        (
            AUDIT_BY_OUTCOME,
            filter
                .outcome
                .filter(|o| *o != Outcome::Ok)
                .map(|o| o.as_str().to_owned()),
        ),
    ] {
        if let Some(value) = value {
            indexes.push((txn.open_table(definition)?, value));
        }
    }
    if indexes.len() > 1 {
        let smallest = smallest_index(&indexes, span)?;
        indexes.swap(0, smallest);
    }
    let mut found = Vec::with_capacity(limit);
    let mut consider = |seq: u64| -> Result<bool, StoreError> {
        for (index, value) in indexes.iter().skip(1) {
            if index.get(audit_index_key(value, seq))?.is_none() {
                return Ok(true);
            }
        }
        let raw = events
            .get(seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("audit index names missing event {seq}")))?;
        let event: Event = codec::decode(raw.value())?;
        if filter.matches(&event) {
            found.push(event);
        }
        Ok(found.len() < limit)
    };
    match indexes.first() {
        Some((index, value)) => {
            for seq in IndexWalk::new(index, value, span, Direction::Newest) {
                if !consider(seq?)? {
                    break;
                }
            }
        }
        None => {
            for row in events.range((low, high))?.rev() {
                if !consider(row?.0.value())? {
                    break;
                }
            }
        }
    }
    Ok(found)
}

type SeqBound = std::ops::Bound<u64>;
/// A secondary index: `(bucket, value, seq) → ()`.
type Index = ReadOnlyTable<AuditIndexKey<'static>, ()>;

/// How far the indexes race before the first one given is taken as the walk.
const INDEX_RACE_STEPS: usize = 4096;

/// Which index holds the fewest entries in the span: all are stepped in lockstep and the first
/// to run out wins, so finding it costs at most (number of indexes × its size) cheap steps. When
/// none runs out within `INDEX_RACE_STEPS`, all are large and the first is as good as any.
fn smallest_index(indexes: &[(Index, String)], span: SeqSpan) -> Result<usize, StoreError> {
    let mut walks: Vec<IndexWalk<'_>> = indexes
        .iter()
        .map(|(index, value)| IndexWalk::new(index, value, span, Direction::Oldest))
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

impl SeqSpan {
    /// The bounds narrowed to the events stored; `None` when no event falls within them.
    fn within(
        events: &impl ReadableTable<u64, &'static [u8]>,
        low: SeqBound,
        high: SeqBound,
    ) -> Result<Option<Self>, StoreError> {
        let (Some(first), Some(last)) = (events.first()?, events.last()?) else {
            return Ok(None);
        };
        let first = match low {
            Included(s) => s.max(first.0.value()),
            Excluded(s) => s.saturating_add(1).max(first.0.value()),
            Unbounded => first.0.value(),
        };
        let last = match high {
            Included(s) => s.min(last.0.value()),
            Excluded(0) => return Ok(None),
            Excluded(s) => (s - 1).min(last.0.value()),
            Unbounded => last.0.value(),
        };
        Ok((first <= last).then_some(Self { first, last }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Oldest,
    Newest,
}

/// The `seq`s of one value's entries in an index within a span, oldest or newest first, read
/// bucket by bucket.
struct IndexWalk<'i> {
    index: &'i Index,
    value: &'i str,
    span: SeqSpan,
    direction: Direction,
    /// The bucket being read, and the range open on it.
    bucket: u64,
    range: Option<redb::Range<'i, AuditIndexKey<'static>, ()>>,
    done: bool,
}

impl<'i> IndexWalk<'i> {
    fn new(index: &'i Index, value: &'i str, span: SeqSpan, direction: Direction) -> Self {
        let bucket = match direction {
            Direction::Oldest => span.first >> AUDIT_BUCKET_BITS,
            Direction::Newest => span.last >> AUDIT_BUCKET_BITS,
        };
        Self {
            index,
            value,
            span,
            direction,
            bucket,
            range: None,
            done: false,
        }
    }

    /// Opens the range of the current bucket, clipped to the span.
    fn open(&self) -> Result<redb::Range<'i, AuditIndexKey<'static>, ()>, StoreError> {
        let bucket_first = self.bucket << AUDIT_BUCKET_BITS;
        let bucket_last = bucket_first + ((1 << AUDIT_BUCKET_BITS) - 1);
        let low = (self.bucket, self.value, self.span.first.max(bucket_first));
        let high = (self.bucket, self.value, self.span.last.min(bucket_last));
        Ok(self.index.range(low..=high)?)
    }

    /// Moves to the next bucket in the walk's direction; `false` past the span.
    fn advance(&mut self) -> bool {
        match self.direction {
            Direction::Oldest if self.bucket < self.span.last >> AUDIT_BUCKET_BITS => {
                self.bucket += 1;
                true
            }
            Direction::Newest if self.bucket > self.span.first >> AUDIT_BUCKET_BITS => {
                self.bucket -= 1;
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
            let range = match &mut self.range {
                Some(range) => range,
                None => match self.open() {
                    Ok(range) => self.range.insert(range),
                    Err(error) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                },
            };
            let row = match self.direction {
                Direction::Oldest => range.next(),
                Direction::Newest => range.next_back(),
            };
            match row {
                Some(Ok((key, _))) => return Some(Ok(key.value().2)),
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

/// The `seq` range holding `since_ms <= ts_ms < until_ms`, found by binary search: timestamps
/// are non-decreasing along the chain.
fn seq_bounds(
    events: &impl ReadableTable<u64, &'static [u8]>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
) -> Result<(SeqBound, SeqBound), StoreError> {
    let low = match since_ms {
        Some(since) => Included(first_seq_at_or_after(events, since)?),
        None => Unbounded,
    };
    let high = match until_ms {
        Some(until) => Excluded(first_seq_at_or_after(events, until)?),
        None => Unbounded,
    };
    Ok((low, high))
}

/// The smallest `seq` whose event has `ts_ms >= at`, or one past the last event.
fn first_seq_at_or_after(
    events: &impl ReadableTable<u64, &'static [u8]>,
    at: u64,
) -> Result<u64, StoreError> {
    let (Some(first), Some(last)) = (events.first()?, events.last()?) else {
        return Ok(1);
    };
    let (mut low, mut high) = (first.0.value(), last.0.value() + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        // The next stored event at or after `mid` (the chain is gapless, but a damaged file
        // must not make a query fail).
        let probe = events.range(mid..)?.next().transpose()?;
        match probe {
            Some((seq, raw)) if codec::decode::<Event>(raw.value())?.ts_ms < at => {
                low = seq.value() + 1;
            }
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
        Ok((head, checkpoint, txn.open_table(AUDIT)?.len()?))
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
            // A chunk stays within one index bucket, whose entries it then checks exactly.
            let from = walk.next_seq;
            let bucket_last = (((from >> AUDIT_BUCKET_BITS) + 1) << AUDIT_BUCKET_BITS) - 1;
            let until = last
                .min(from.saturating_add(VERIFY_CHUNK - 1))
                .min(bucket_last);
            let mut expected = Expected::default();
            if let Some(finding) = walk.step(
                &txn.open_table(AUDIT)?,
                until,
                head.is_none(),
                &mut expected,
            )? {
                return Ok(Some(finding));
            }
            // The first chunk also owns the bucket's seqs before it: retention removed those
            // events, so any entry left for them is an orphan.
            let first_chunk = from == report.checked_from_seq;
            let low = if first_chunk {
                from >> AUDIT_BUCKET_BITS << AUDIT_BUCKET_BITS
            } else {
                from
            };
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
            _ => match txn.open_table(AUDIT)?.get(anchor.seq)? {
                Some(raw) => codec::decode::<Event>(raw.value()).ok().map(|e| e.hash),
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

/// The index entries the events of one chunk call for, per index in `AUDIT_INDEXES` order.
#[derive(Default)]
struct Expected([BTreeSet<(String, u64)>; 4]);

impl Expected {
    fn add(&mut self, event: &Event) {
        for (entries, value) in self.0.iter_mut().zip(indexed_values(&event.record)) {
            if let Some(value) = value {
                entries.insert((value, event.seq));
            }
        }
    }
}

/// Compares the index entries of the seqs `low..end` (all in one bucket) with the ones the
/// chunk's events call for: an entry without its event, or an event without its entry, is the
/// first problem found.
fn check_indexes(
    txn: &ReadTransaction,
    low: u64,
    end: u64,
    expected: &Expected,
) -> Result<Option<(u64, String)>, StoreError> {
    let bucket = low >> AUDIT_BUCKET_BITS;
    for (definition, wanted) in AUDIT_INDEXES.iter().zip(&expected.0) {
        let index = txn.open_table(*definition)?;
        let mut found = BTreeSet::new();
        for row in index.range((bucket, "", 0)..(bucket + 1, "", 0))? {
            let (key, _) = row?;
            let (_, value, seq) = key.value();
            if (low..end).contains(&seq) {
                found.insert((value.to_owned(), seq));
            }
        }
        if let Some((value, seq)) = found.difference(wanted).next() {
            let name = definition.name();
            return Ok(Some((
                *seq,
                format!("{name} holds an entry ({value:?}, {seq}) whose event does not exist"),
            )));
        }
        if let Some((value, seq)) = wanted.difference(&found).next() {
            let name = definition.name();
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
    let events = txn.open_table(AUDIT)?;
    for definition in AUDIT_INDEXES {
        let index = txn.open_table(definition)?;
        for row in index.range((last >> AUDIT_BUCKET_BITS, "", 0)..)? {
            let (key, _) = row?;
            let (_, value, seq) = key.value();
            if seq > last && events.get(seq)?.is_none() {
                let name = definition.name();
                return Ok(Some((
                    seq,
                    format!("{name} holds an entry ({value:?}, {seq}) whose event does not exist"),
                )));
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
        events: &impl ReadableTable<u64, &'static [u8]>,
        until: u64,
        open_ended: bool,
        expected: &mut Expected,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let mut rows = events.range(self.next_seq..=until)?;
        while self.next_seq <= until {
            let Some(row) = rows.next().transpose()? else {
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
