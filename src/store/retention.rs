//! Retention in the store (SPEC §10): what a dry run counts, what a run deletes — one class, one
//! batch, one write transaction at a time — and the job log.
//!
//! Which rows of a class are old is decided once, by `eligible`, over any readable table: a dry
//! run calls it in read transactions and counts, a run calls it inside the writer and deletes
//! what it found, so the two cannot disagree. Every batch also adds what it deleted to its run's
//! job log entry in the same transaction, so the entry's counts are exact even when the process
//! dies mid-run (the next start closes such an entry as `interrupted`).
//!
//! Deleting a row deletes everything that points at it in the same transaction — an event's
//! index entries, a record's expiry entry — and every in-memory copy goes through the writer's
//! post-commit step (`published`), like any other write.

use std::collections::BTreeMap;

use std::ops::Bound::{Excluded, Unbounded};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::audit::{self, AUDIT_CHECKPOINT_KEY, Checkpoint};
use super::audit_partition::stored_events;
use super::batch::WriteTables;
use super::codec::{self, Record};
use super::published::Change;
use super::rate::Windows;
use super::tables::{
    CHATS, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, LOCKOUTS, MESSAGES, RATE_WINDOWS, RETENTION_RUNS,
    SESSIONS,
};
use super::{Store, StoreError};
use crate::domain::audit::Draft;
use crate::domain::rate::Scope;
use crate::domain::retention::{Class, Cutoffs, Run, RunStatus, Tally};
use crate::domain::session::{Session, TokenHash};

impl Record for Run {
    const VERSION: u8 = 1;
    const NAME: &'static str = "retention run";
}

/// Where `meta` keeps when the daily run last started (Unix ms, as a `ScheduledAt`).
const LAST_SCHEDULED_KEY: &str = "retention_last_scheduled";

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct ScheduledAt(u64);

impl Record for ScheduledAt {
    const VERSION: u8 = 1;
    const NAME: &'static str = "retention schedule";
}

/// Rows a dry run reads per read transaction: a count over millions never pins one snapshot.
const SURVEY_CHUNK: usize = 10_000;

/// Where the next look at a class starts. Classes whose old rows sort first (audit events,
/// idempotency expiry, the job log) start over each batch, since the previous one deleted what
/// it found; a dry run, which deletes nothing, moves on past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    Start,
    Expiry(u64, String, String),
    /// This chat's old messages may not all be gone yet.
    ChatFrom(String),
    ChatAfter(String),
    Session(TokenHash),
    Window(Scope, String),
    Lockout(String),
    Run(u64),
}

/// Whether every batch of `class` starts over (`Resume::Start`): its old rows sort first and a
/// batch deletes the first of them, so a batch never depends on where the one before ended.
pub fn starts_over(class: Class) -> bool {
    matches!(class, Class::Audit | Class::Idempotency)
}

/// The eligible rows one look found, and where the next look starts (`None`: the class is done).
struct Found<K> {
    rows: Vec<(K, u64)>,
    next: Option<Resume>,
}

/// What a batch deleted, and where the next batch of the class starts (`None`: it is done).
#[derive(Debug)]
pub struct Pruned {
    pub tally: Tally,
    pub next: Option<Resume>,
}

/// How a run ended, for its summary.
#[derive(Debug, Clone)]
pub struct Closing {
    pub status: RunStatus,
    pub error: Option<String>,
    pub finished_ms: u64,
    pub db_bytes_after: u64,
    pub compacted: bool,
    pub pause_ms: u64,
    /// A scheduled run: remembered, so a restart knows when the next one is due.
    pub scheduled: bool,
}

impl Store {
    /// Per class, what a run with `cutoffs` would delete now, and what would remain.
    pub fn survey(&self, cutoffs: &Cutoffs) -> Result<BTreeMap<Class, Tally>, StoreError> {
        let mut tallies = BTreeMap::new();
        for class in Class::ALL {
            let mut tally = match class {
                Class::Audit => self.scan(|txn| audit::survey(txn, cutoffs.audit_before_ms))?,
                _ => self.survey_class(class, cutoffs)?,
            };
            let rows = self.scan(|txn| class_rows(txn, class))?;
            tally.remaining = rows.saturating_sub(tally.deleted);
            tallies.insert(class, tally);
        }
        Ok(tallies)
    }

    fn survey_class(&self, class: Class, cutoffs: &Cutoffs) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        let mut resume = Resume::Start;
        loop {
            let (found, next) = self.scan(|txn| {
                let found = eligible_in(txn, class, cutoffs, &resume, SURVEY_CHUNK)?;
                Ok((found.timestamps, found.next))
            })?;
            for at in found {
                tally.count(at);
            }
            match next {
                Some(next) => resume = next,
                None => return Ok(tally),
            }
        }
    }

    /// Writes a new job log entry for `run`, with the next id.
    pub async fn open_run(&self, run: Run) -> Result<Run, StoreError> {
        self.writer()
            .execute(move |t| {
                let mut run = run.clone();
                run.id = next_run_id(t)?;
                save_run(t, &run)?;
                Ok(run)
            })
            .await
    }

    /// Deletes one batch of `class` from `resume` on, adding it to run `run_id`'s counts in the
    /// same transaction.
    pub async fn prune_batch(
        &self,
        run_id: u64,
        class: Class,
        cutoffs: Cutoffs,
        resume: Resume,
        limit: usize,
    ) -> Result<Pruned, StoreError> {
        self.writer()
            .execute(move |t| {
                let pruned = prune(t, class, &cutoffs, &resume, limit)?;
                let mut run = load_run(t, run_id)?;
                run.classes.entry(class).or_default().add(&pruned.tally);
                save_run(t, &run)?;
                Ok(pruned)
            })
            .await
    }

    /// Finishes run `run_id` and records it as `audit` (with the run's counts) in one
    /// transaction: a finished entry and its audit event exist together or not at all. The job
    /// log is trimmed to `cutoffs.runs_kept` entries in the same transaction.
    pub async fn close_run(
        &self,
        run_id: u64,
        closing: Closing,
        audit: Draft,
    ) -> Result<Run, StoreError> {
        self.writer()
            .execute(move |t| {
                let mut run = load_run(t, run_id)?;
                run.status = closing.status;
                run.error = closing.error.clone();
                run.finished_ms = Some(closing.finished_ms);
                run.db_bytes_after = Some(closing.db_bytes_after);
                run.compacted = closing.compacted;
                run.pause_ms = closing.pause_ms;
                let trimmed = prune(t, Class::RetentionRuns, &run.cutoffs, &Resume::Start, 64)?;
                run.classes
                    .entry(Class::RetentionRuns)
                    .or_default()
                    .add(&trimmed.tally);
                for (class, tally) in &mut run.classes {
                    tally.remaining = write_rows(t, *class)?;
                }
                if closing.scheduled {
                    t.set_meta(LAST_SCHEDULED_KEY, &ScheduledAt(run.started_ms))?;
                }
                save_run(t, &run)?;
                audit::append(
                    t,
                    described(audit.clone(), &run, t.meta(AUDIT_CHECKPOINT_KEY)?),
                )?;
                Ok(run)
            })
            .await
    }

    /// Writes a finished dry run and its audit event in one transaction.
    pub async fn record_dry_run(&self, run: Run, audit: Draft) -> Result<Run, StoreError> {
        self.writer()
            .execute(move |t| {
                let mut run = run.clone();
                run.id = next_run_id(t)?;
                save_run(t, &run)?;
                audit::append(t, described(audit.clone(), &run, None))?;
                Ok(run)
            })
            .await
    }

    /// Closes every entry left `running` by a process that ended mid-run, as `interrupted` at
    /// `now_ms`, each with its audit event (`audit`, with the run's counts). Only a process that
    /// has no run of its own calls this: at start-up.
    pub async fn close_interrupted_runs(
        &self,
        now_ms: u64,
        audit: Draft,
    ) -> Result<Vec<Run>, StoreError> {
        // Nearly always there is none: then nothing is written.
        let any_open = self.read(|txn| {
            for row in txn.open_table(RETENTION_RUNS)?.iter()?.rev() {
                if codec::decode::<Run>(row?.1.value())?.status == RunStatus::Running {
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        if !any_open {
            return Ok(Vec::new());
        }
        self.writer()
            .execute(move |t| {
                let mut open = Vec::new();
                for row in t.retention_runs.iter()? {
                    let run: Run = codec::decode(row?.1.value())?;
                    if run.status == RunStatus::Running {
                        open.push(run);
                    }
                }
                for run in &mut open {
                    run.status = RunStatus::Interrupted;
                    run.finished_ms = Some(now_ms);
                    run.error = Some("the service stopped during the run".into());
                    save_run(t, run)?;
                    let checkpoint = t.meta(AUDIT_CHECKPOINT_KEY)?;
                    audit::append(t, described(audit.clone(), run, checkpoint))?;
                }
                Ok(open)
            })
            .await
    }

    /// Newest-first job log entries with ids below `before_id`.
    pub fn retention_runs(
        &self,
        before_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(RETENTION_RUNS)?;
            let rows = table.range(..before_id.unwrap_or(u64::MAX))?.rev();
            rows.take(limit)
                .map(|row| codec::decode(row?.1.value()))
                .collect()
        })
    }

    pub fn retention_run(&self, id: u64) -> Result<Option<Run>, StoreError> {
        self.read(|txn| codec::get(&txn.open_table(RETENTION_RUNS)?, id))
    }

    /// When the daily run last started, if it ever ran.
    pub fn last_scheduled_run_ms(&self) -> Result<Option<u64>, StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(super::tables::META)?;
            Ok(codec::get::<_, ScheduledAt>(&meta, LAST_SCHEDULED_KEY)?.map(|at| at.0))
        })
    }
}

/// `draft` with a run's outcome: its id and status, and per class the rows it deleted; for a run
/// that pruned the trail, the checkpoint it left.
fn described(draft: Draft, run: &Run, checkpoint: Option<Checkpoint>) -> Draft {
    let mut draft = draft
        .detail("run_id", run.id)
        .detail("status", run.status.as_str())
        .detail("deleted", run.deleted());
    for (class, tally) in &run.classes {
        draft = draft.detail(&format!("deleted_{}", class.as_str()), tally.deleted);
    }
    let pruned_audit = run
        .classes
        .get(&Class::Audit)
        .is_some_and(|t| t.deleted > 0);
    if let Some(checkpoint) = checkpoint.filter(|_| pruned_audit && !run.dry_run) {
        draft = draft
            .detail("checkpoint_seq", checkpoint.seq)
            .detail("checkpoint_hash", hex::encode(checkpoint.hash));
    }
    draft
}

/// Ids ascend from 1.
fn next_run_id(t: &WriteTables<'_>) -> Result<u64, StoreError> {
    Ok(t.retention_runs.last()?.map_or(1, |(id, _)| id.value() + 1))
}

fn load_run(t: &WriteTables<'_>, id: u64) -> Result<Run, StoreError> {
    codec::get(&t.retention_runs, id)?
        .ok_or_else(|| StoreError::Corrupt(format!("retention run {id} is missing")))
}

fn save_run(t: &mut WriteTables<'_>, run: &Run) -> Result<(), StoreError> {
    t.retention_runs
        .insert(run.id, codec::encode(run)?.as_slice())?;
    Ok(())
}

/// Deletes what one look at `class` finds eligible, with everything that points at it.
fn prune(
    t: &mut WriteTables<'_>,
    class: Class,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Pruned, StoreError> {
    let mut tally = Tally::default();
    let next = match class {
        Class::Audit => {
            let more;
            (tally, more) = audit::prune(t, cutoffs.audit_before_ms, limit)?;
            more.then_some(Resume::Start)
        }
        Class::Idempotency => {
            let found = expired_records(&t.idempotency_expiry, cutoffs, resume, limit)?;
            for ((expires_ms, scope, key), at) in found.rows {
                t.idempotency_expiry
                    .remove((expires_ms, scope.as_str(), key.as_str()))?;
                // An entry left by an earlier claim of the key does not own the record.
                let record: Option<crate::domain::idempotency::IdempotencyRecord> =
                    codec::get(&t.idempotency, (scope.as_str(), key.as_str()))?;
                if record.is_some_and(|r| r.expires_ms == expires_ms) {
                    t.idempotency.remove((scope.as_str(), key.as_str()))?;
                    t.publish(Change::RecordDeleted { scope, key });
                }
                tally.count(at);
            }
            found.next.map(|_| Resume::Start)
        }
        Class::Messages => {
            let found = old_messages(t.stored_chats(), &t.messages, cutoffs, resume, limit)?;
            for ((chat, ts_ms, seq), at) in found.rows {
                t.messages.remove((chat.as_str(), ts_ms, seq))?;
                tally.count(at);
            }
            found.next
        }
        Class::Sessions => {
            let found = ended_sessions(&t.sessions, cutoffs, resume, limit)?;
            for (hash, at) in found.rows {
                t.sessions.remove(hash.as_slice())?;
                t.publish(Change::SessionEnded(hash));
                tally.count(at);
            }
            found.next
        }
        Class::RateWindows => {
            let found = idle_windows(t.stored_rate_windows(), cutoffs, resume, limit)?;
            for ((scope, key), at) in found.rows {
                // A window charged earlier in this batch is not idle.
                if t.tat(scope, &key)? == Some(at) {
                    t.drop_rate_window(scope, &key)?;
                    tally.count(at);
                }
            }
            found.next
        }
        Class::Lockouts => {
            let found = ended_lockouts(&t.lockouts, cutoffs, resume, limit)?;
            for (address, at) in found.rows {
                t.lockouts.remove(address.as_str())?;
                t.publish(Change::LockoutDeleted(address));
                tally.count(at);
            }
            found.next
        }
        Class::RetentionRuns => {
            let found = surplus_runs(&t.retention_runs, cutoffs, resume, limit)?;
            for (id, at) in found.rows {
                t.retention_runs.remove(id)?;
                tally.count(at);
            }
            found.next.map(|_| Resume::Start)
        }
    };
    Ok(Pruned { tally, next })
}

/// The timestamps of what one look at `class` finds eligible in a read transaction.
struct Seen {
    timestamps: Vec<u64>,
    next: Option<Resume>,
}

fn eligible_in(
    txn: &ReadTransaction,
    class: Class,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Seen, StoreError> {
    fn seen<K>(found: Found<K>) -> Seen {
        Seen {
            timestamps: found.rows.into_iter().map(|(_, at)| at).collect(),
            next: found.next,
        }
    }
    Ok(match class {
        Class::Audit => unreachable_class(class)?,
        Class::Idempotency => seen(expired_records(
            &txn.open_table(IDEMPOTENCY_EXPIRY)?,
            cutoffs,
            resume,
            limit,
        )?),
        Class::Messages => seen(old_messages(
            &txn.open_table(CHATS)?,
            &txn.open_table(MESSAGES)?,
            cutoffs,
            resume,
            limit,
        )?),
        Class::Sessions => seen(ended_sessions(
            &txn.open_table(SESSIONS)?,
            cutoffs,
            resume,
            limit,
        )?),
        Class::RateWindows => seen(idle_windows(
            &txn.open_table(RATE_WINDOWS)?,
            cutoffs,
            resume,
            limit,
        )?),
        Class::Lockouts => seen(ended_lockouts(
            &txn.open_table(LOCKOUTS)?,
            cutoffs,
            resume,
            limit,
        )?),
        Class::RetentionRuns => seen(surplus_runs(
            &txn.open_table(RETENTION_RUNS)?,
            cutoffs,
            resume,
            limit,
        )?),
    })
}

fn unreachable_class(class: Class) -> Result<Seen, StoreError> {
    Err(StoreError::Database(format!(
        "{} is surveyed by its own index",
        class.as_str()
    )))
}

/// Rows in the table that holds `class`.
fn class_rows(txn: &ReadTransaction, class: Class) -> Result<u64, StoreError> {
    Ok(match class {
        Class::Audit => stored_events(txn)?,
        Class::Idempotency => txn.open_table(IDEMPOTENCY)?.len()?,
        Class::Messages => txn.open_table(MESSAGES)?.len()?,
        Class::Sessions => txn.open_table(SESSIONS)?.len()?,
        Class::RateWindows => txn.open_table(RATE_WINDOWS)?.len()?,
        Class::Lockouts => txn.open_table(LOCKOUTS)?.len()?,
        Class::RetentionRuns => txn.open_table(RETENTION_RUNS)?.len()?,
    })
}

fn write_rows(t: &WriteTables<'_>, class: Class) -> Result<u64, StoreError> {
    Ok(match class {
        Class::Audit => audit::kept_events(t)?,
        Class::Idempotency => t.idempotency.len()?,
        Class::Messages => t.messages.len()?,
        Class::Sessions => t.sessions.len()?,
        Class::RateWindows => t.stored_rate_windows().len()?,
        Class::Lockouts => t.lockouts.len()?,
        Class::RetentionRuns => t.retention_runs.len()?,
    })
}

type ExpiryKey = (u64, String, String);

/// Idempotency records expired by the cutoff, oldest expiry first, from their expiry index.
fn expired_records(
    expiry: &impl ReadableTable<(u64, &'static str, &'static str), ()>,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Found<ExpiryKey>, StoreError> {
    let end = (cutoffs.idempotency_expired_by_ms.saturating_add(1), "", "");
    let rows = match resume {
        Resume::Expiry(at, scope, key) => expiry.range::<(u64, &str, &str)>((
            Excluded((*at, scope.as_str(), key.as_str())),
            Excluded(end),
        ))?,
        _ => expiry.range::<(u64, &str, &str)>(..end)?,
    };
    let mut found = Vec::new();
    for row in rows.take(limit) {
        let entry = row?.0;
        let (expires_ms, scope, key) = entry.value();
        found.push(((expires_ms, scope.to_owned(), key.to_owned()), expires_ms));
    }
    let next = (found.len() == limit).then(|| {
        let ((at, scope, key), _) = found.last().expect("a full look found rows");
        Resume::Expiry(*at, scope.clone(), key.clone())
    });
    Ok(Found { rows: found, next })
}

type MessageKey = (String, u64, u64);

/// Messages older than the cutoff, chat by chat (none when messages are kept forever). One look
/// visits at most `limit` chats and finds at most `limit` messages.
fn old_messages(
    chats: &impl ReadableTable<&'static str, &'static [u8]>,
    messages: &impl ReadableTable<(&'static str, u64, u64), &'static [u8]>,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Found<MessageKey>, StoreError> {
    let Some(before_ms) = cutoffs.messages_before_ms else {
        return Ok(Found {
            rows: Vec::new(),
            next: None,
        });
    };
    let ids = match resume {
        Resume::ChatFrom(id) => chats.range::<&str>(id.as_str()..)?,
        Resume::ChatAfter(id) => chats.range::<&str>((Excluded(id.as_str()), Unbounded))?,
        _ => chats.iter()?,
    };
    let mut found = Vec::new();
    let mut visited = 0;
    let mut last_chat = String::new();
    for row in ids.take(limit) {
        let chat = row?.0.value().to_owned();
        let id = chat.as_str();
        for row in messages.range((id, 0, 0)..(id, before_ms, 0))? {
            if found.len() == limit {
                return Ok(Found {
                    rows: found,
                    next: Some(Resume::ChatFrom(chat)),
                });
            }
            let (_, ts_ms, seq) = row?.0.value();
            found.push(((chat.clone(), ts_ms, seq), ts_ms));
        }
        visited += 1;
        last_chat = chat;
    }
    // A look that visited `limit` chats may have left some unvisited.
    let next = (visited == limit).then_some(Resume::ChatAfter(last_chat));
    Ok(Found { rows: found, next })
}

/// One look through a small table that has no index by age: up to `limit` rows in key order
/// after `after`, each judged by `judge` — whether it is eligible (and its timestamp), and the
/// position to resume after it. The next look starts after the last row examined.
fn look_through<'a, K, V, R>(
    table: &impl ReadableTable<K, V>,
    after: Option<K::SelfType<'a>>,
    limit: usize,
    mut judge: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Result<Judged<R>, StoreError>,
) -> Result<Found<R>, StoreError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let rows = match after {
        Some(after) => table.range::<K::SelfType<'a>>((Excluded(after), Unbounded))?,
        None => table.range::<K::SelfType<'a>>(..)?,
    };
    let (mut found, mut examined, mut last) = (Vec::new(), 0, None);
    for row in rows.take(limit) {
        let (key, value) = row?;
        let judged = judge(key.value(), value.value())?;
        found.extend(judged.eligible);
        examined += 1;
        last = Some(judged.resume);
    }
    let next = last.filter(|_| examined == limit);
    Ok(Found { rows: found, next })
}

/// A row judged by a look: `(what to delete, its timestamp)` when eligible, and where to resume.
struct Judged<R> {
    eligible: Option<(R, u64)>,
    resume: Resume,
}

/// Sessions past their end (idle, or absolute) by the cutoff's `now`.
fn ended_sessions(
    sessions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Found<TokenHash>, StoreError> {
    let after = match resume {
        Resume::Session(hash) => Some(hash.as_slice()),
        _ => None,
    };
    look_through(sessions, after, limit, |hash, raw| {
        let hash: TokenHash = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt("session key is not a hash".into()))?;
        let session: Session = codec::decode(raw)?;
        let ends_ms = session.ends_ms(cutoffs.session_idle_ms);
        Ok(Judged {
            eligible: (ends_ms <= cutoffs.now_ms).then_some((hash, ends_ms)),
            resume: Resume::Session(hash),
        })
    })
}

type WindowKey = (Scope, String);

/// Rate windows idle since before the cutoff (their theoretical arrival time long past: a full
/// bucket, the same as no window at all).
fn idle_windows(
    windows: &impl ReadableTable<(&'static str, &'static str), u64>,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Found<WindowKey>, StoreError> {
    let after = match resume {
        Resume::Window(scope, key) => Some((scope.as_str(), key.as_str())),
        _ => None,
    };
    look_through(windows, after, limit, |(scope, key), tat| {
        let scope = Scope::parse(scope)
            .ok_or_else(|| StoreError::Corrupt(format!("rate window of unknown scope {scope}")))?;
        Ok(Judged {
            eligible: (tat <= cutoffs.rate_window_idle_by_ms)
                .then(|| ((scope, key.to_owned()), tat)),
            resume: Resume::Window(scope, key.to_owned()),
        })
    })
}

/// Lockouts that have ended.
fn ended_lockouts(
    lockouts: &impl ReadableTable<&'static str, u64>,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Found<String>, StoreError> {
    let after = match resume {
        Resume::Lockout(address) => Some(address.as_str()),
        _ => None,
    };
    look_through(lockouts, after, limit, |address, until| {
        Ok(Judged {
            eligible: (until <= cutoffs.lockout_ended_by_ms).then(|| (address.to_owned(), until)),
            resume: Resume::Lockout(address.to_owned()),
        })
    })
}

/// Job log entries beyond the newest `runs_kept`, oldest first.
fn surplus_runs(
    runs: &impl ReadableTable<u64, &'static [u8]>,
    cutoffs: &Cutoffs,
    resume: &Resume,
    limit: usize,
) -> Result<Found<u64>, StoreError> {
    let Some(newest) = runs.last()?.map(|(id, _)| id.value()) else {
        return Ok(Found {
            rows: Vec::new(),
            next: None,
        });
    };
    // Ids are consecutive: the oldest are deleted first, and only by this.
    let end = (newest + 1).saturating_sub(cutoffs.runs_kept);
    let start = match resume {
        Resume::Run(after) => after + 1,
        _ => 0,
    };
    let mut found = Vec::new();
    for row in runs.range(start..end)?.take(limit) {
        let (id, raw) = row?;
        let run: Run = codec::decode(raw.value())?;
        found.push((id.value(), run.started_ms));
    }
    let next = (found.len() == limit).then(|| Resume::Run(found.last().map_or(0, |(id, _)| *id)));
    Ok(Found { rows: found, next })
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;
    use redb::{Database, ReadableDatabase};

    use super::*;

    fn cutoffs(now_ms: u64) -> Cutoffs {
        crate::domain::retention::tests::keep().cutoffs(now_ms)
    }

    /// A look in small steps visits every row once and finds exactly the eligible ones.
    #[test]
    fn looks_resume_after_the_last_row_examined() {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .expect("in-memory database");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(LOCKOUTS).expect("table");
            for n in 0..7u64 {
                // Even addresses ended at 100; odd ones last until 1000.
                let until = if n % 2 == 0 { 100 } else { 1000 };
                table
                    .insert(format!("10.0.0.{n}").as_str(), until)
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
        let read = db.begin_read().expect("read");
        let table = read.open_table(LOCKOUTS).expect("table");

        let mut resume = Resume::Start;
        let mut found = Vec::new();
        let mut looks = 0;
        loop {
            let look = ended_lockouts(&table, &cutoffs(500), &resume, 3).expect("look");
            found.extend(look.rows.into_iter().map(|(address, _)| address));
            looks += 1;
            match look.next {
                Some(next) => resume = next,
                None => break,
            }
        }

        assert_eq!(found, ["10.0.0.0", "10.0.0.2", "10.0.0.4", "10.0.0.6"]);
        assert_eq!(looks, 3, "7 rows in looks of 3");
    }
}
