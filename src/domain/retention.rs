//! Retention (SPEC §10): which rows age out and when, the daily schedule, and the job log entry
//! that records each run.
//!
//! The rules are here, free of storage, so that a dry run and a real run — and the store that
//! carries them out — cannot disagree about what is old.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rfc3339;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// A kind of row retention removes, in the order a run takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Audit,
    Idempotency,
    Messages,
    Sessions,
    RateWindows,
    Lockouts,
    RetentionRuns,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Audit,
        Class::Idempotency,
        Class::Messages,
        Class::Sessions,
        Class::RateWindows,
        Class::Lockouts,
        Class::RetentionRuns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Audit => "audit",
            Class::Idempotency => "idempotency",
            Class::Messages => "messages",
            Class::Sessions => "sessions",
            Class::RateWindows => "rate_windows",
            Class::Lockouts => "lockouts",
            Class::RetentionRuns => "retention_runs",
        }
    }
}

/// How long each class is kept, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub audit_days: u64,
    /// An idempotency record goes once it has expired and is at least this old.
    pub idempotency_hours: u64,
    /// The lifetime a record is given when claimed (`idempotency.ttl_hours`).
    pub idempotency_ttl_hours: u64,
    /// 0 keeps messages forever.
    pub messages_days: u64,
    /// A session ends this long after its last request (or at its absolute end).
    pub session_idle_minutes: u64,
    /// A rate window untouched for this long is as good as none, and goes.
    pub rate_window_idle_hours: u64,
    /// Job log entries kept, newest first.
    pub runs_kept: u64,
}

/// What is old at one instant: a run fixes its cutoffs when it starts, so every batch and the
/// dry run that previews it judge by the same line. Rows only ever get younger (a session is
/// touched, a window charged), so a row a cutoff spares never becomes eligible mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cutoffs {
    pub now_ms: u64,
    /// Audit events with `ts_ms` before this go.
    pub audit_before_ms: u64,
    /// Idempotency records whose expiry is at or before this go.
    pub idempotency_expired_by_ms: u64,
    /// Messages with `ts_ms` before this go; `None` keeps them all.
    pub messages_before_ms: Option<u64>,
    /// Sessions idle for this long (or past their absolute end) go.
    pub session_idle_ms: u64,
    /// Rate windows whose theoretical arrival time is at or before this go.
    pub rate_window_idle_by_ms: u64,
    /// Lockouts that ended at or before this go.
    pub lockout_ended_by_ms: u64,
    pub runs_kept: u64,
}

impl Keep {
    pub fn cutoffs(&self, now_ms: u64) -> Cutoffs {
        // Kept at least until it expires, and at least `idempotency_hours` after its creation
        // (`expires_ms - ttl`): a live record is never removed, whatever the setting.
        let kept_past_expiry = self
            .idempotency_hours
            .saturating_sub(self.idempotency_ttl_hours)
            * HOUR_MS;
        Cutoffs {
            now_ms,
            audit_before_ms: now_ms.saturating_sub(self.audit_days * DAY_MS),
            idempotency_expired_by_ms: now_ms.saturating_sub(kept_past_expiry),
            messages_before_ms: (self.messages_days > 0)
                .then(|| now_ms.saturating_sub(self.messages_days * DAY_MS)),
            session_idle_ms: self.session_idle_minutes * MINUTE_MS,
            rate_window_idle_by_ms: now_ms.saturating_sub(self.rate_window_idle_hours * HOUR_MS),
            lockout_ended_by_ms: now_ms,
            runs_kept: self.runs_kept,
        }
    }
}

/// A time of day in UTC, `HH:MM`: when the daily run is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyTime {
    minute_of_day: u64,
}

impl DailyTime {
    pub const MIDNIGHT: DailyTime = DailyTime { minute_of_day: 0 };

    pub fn parse(text: &str) -> Option<Self> {
        let (hours, minutes) = text.split_once(':')?;
        if hours.len() != 2 || minutes.len() != 2 {
            return None;
        }
        let hours: u64 = hours.parse().ok()?;
        let minutes: u64 = minutes.parse().ok()?;
        (hours < 24 && minutes < 60).then_some(Self {
            minute_of_day: hours * 60 + minutes,
        })
    }

    /// The first instant at this time of day strictly after `after_ms`.
    pub fn next_after(self, after_ms: u64) -> u64 {
        let today = after_ms - after_ms % DAY_MS + self.minute_of_day * MINUTE_MS;
        if today > after_ms {
            today
        } else {
            today + DAY_MS
        }
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Api,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Deleting now (or the process died while it was: see `Interrupted`).
    Running,
    Ok,
    /// A batch failed; what was deleted before it stays deleted.
    Failed,
    /// The service stopped between two batches.
    Cancelled,
    /// The process ended mid-run; found so at the next start.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// One class in one run: rows deleted (or, in a dry run, that would be), rows left, and the
/// oldest and newest timestamp among the affected rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub deleted: u64,
    pub remaining: u64,
    pub oldest_ms: Option<u64>,
    pub newest_ms: Option<u64>,
}

impl Tally {
    /// Counts one affected row with timestamp `at_ms`.
    pub fn count(&mut self, at_ms: u64) {
        self.deleted += 1;
        self.oldest_ms = Some(self.oldest_ms.map_or(at_ms, |t| t.min(at_ms)));
        self.newest_ms = Some(self.newest_ms.map_or(at_ms, |t| t.max(at_ms)));
    }

    /// Adds the rows another part of the same run affected.
    pub fn add(&mut self, other: &Tally) {
        self.deleted += other.deleted;
        for at in [other.oldest_ms, other.newest_ms].into_iter().flatten() {
            self.oldest_ms = Some(self.oldest_ms.map_or(at, |t| t.min(at)));
            self.newest_ms = Some(self.newest_ms.map_or(at, |t| t.max(at)));
        }
    }
}

/// A job log entry (SPEC §10). Written when a run starts, brought up to date by every batch it
/// deletes (in the batch's own transaction), and finished by its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub cutoffs: Cutoffs,
    pub classes: BTreeMap<Class, Tally>,
    pub db_bytes_before: u64,
    pub db_bytes_after: Option<u64>,
    pub compacted: bool,
    /// How long compaction held writes and reads back.
    pub pause_ms: u64,
    pub status: RunStatus,
    pub error: Option<String>,
}

impl Run {
    /// A run starting at `started_ms` on a file of `db_bytes`, its id not yet given (the store
    /// gives it when the entry is written).
    pub fn starting(
        trigger: Trigger,
        dry_run: bool,
        started_ms: u64,
        keep: &Keep,
        db_bytes: u64,
    ) -> Self {
        Self {
            id: 0,
            trigger,
            dry_run,
            started_ms,
            finished_ms: None,
            cutoffs: keep.cutoffs(started_ms),
            classes: BTreeMap::new(),
            db_bytes_before: db_bytes,
            db_bytes_after: None,
            compacted: false,
            pause_ms: 0,
            status: RunStatus::Running,
            error: None,
        }
    }

    pub fn deleted(&self) -> u64 {
        self.classes.values().map(|t| t.deleted).sum()
    }
}

/// A job log entry as the API and the CLI show it: times in RFC 3339 (UTC).
#[derive(Debug, Serialize, Deserialize)]
pub struct RunView {
    pub id: u64,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Per class: rows deleted (in a dry run, that would be), rows remaining, and the oldest
    /// and newest timestamp among the affected rows.
    pub per_class: BTreeMap<String, TallyView>,
    pub db_bytes_before: u64,
    pub db_bytes_after: Option<u64>,
    pub compacted: bool,
    pub pause_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TallyView {
    pub deleted: u64,
    pub remaining: u64,
    pub oldest_at: Option<String>,
    pub newest_at: Option<String>,
}

impl From<Run> for RunView {
    fn from(run: Run) -> Self {
        let per_class = run
            .classes
            .iter()
            .map(|(class, tally)| (class.as_str().to_owned(), TallyView::from(*tally)))
            .collect();
        Self {
            id: run.id,
            trigger: run.trigger,
            dry_run: run.dry_run,
            status: run.status,
            started_at: rfc3339(run.started_ms),
            finished_at: run.finished_ms.map(rfc3339),
            per_class,
            db_bytes_before: run.db_bytes_before,
            db_bytes_after: run.db_bytes_after,
            compacted: run.compacted,
            pause_ms: run.pause_ms,
            error: run.error,
        }
    }
}

impl From<Tally> for TallyView {
    fn from(tally: Tally) -> Self {
        Self {
            deleted: tally.deleted,
            remaining: tally.remaining,
            oldest_at: tally.oldest_ms.map(rfc3339),
            newest_at: tally.newest_ms.map(rfc3339),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const DAY: u64 = DAY_MS;

    /// The default settings.
    pub(crate) fn keep() -> Keep {
        Keep {
            audit_days: 90,
            idempotency_hours: 24,
            idempotency_ttl_hours: 24,
            messages_days: 0,
            session_idle_minutes: 30,
            rate_window_idle_hours: 24,
            runs_kept: 1000,
        }
    }

    #[test]
    fn cutoffs_follow_the_settings() {
        let now = 1_000 * DAY;
        let cut = keep().cutoffs(now);
        assert_eq!(cut.audit_before_ms, now - 90 * DAY);
        assert_eq!(cut.idempotency_expired_by_ms, now, "expired records go");
        assert_eq!(cut.messages_before_ms, None, "0 keeps messages");
        assert_eq!(cut.rate_window_idle_by_ms, now - DAY);

        let longer = Keep {
            idempotency_hours: 72,
            messages_days: 30,
            ..keep()
        };
        let cut = longer.cutoffs(now);
        assert_eq!(cut.idempotency_expired_by_ms, now - 2 * DAY);
        assert_eq!(cut.messages_before_ms, Some(now - 30 * DAY));

        let shorter = Keep {
            idempotency_hours: 1,
            ..keep()
        };
        assert_eq!(
            shorter.cutoffs(now).idempotency_expired_by_ms,
            now,
            "a live record is never pruned"
        );
    }

    #[test]
    fn daily_time_parses_strictly_and_finds_the_next_slot() {
        assert_eq!(DailyTime::parse("3:15"), None);
        assert_eq!(DailyTime::parse("24:00"), None);
        assert_eq!(DailyTime::parse("03:60"), None);
        assert_eq!(DailyTime::parse("0315"), None);
        let at = DailyTime::parse("03:15").expect("valid");
        let slot = 3 * HOUR_MS + 15 * MINUTE_MS;
        assert_eq!(at.next_after(10 * DAY), 10 * DAY + slot);
        assert_eq!(at.next_after(10 * DAY + slot - 1), 10 * DAY + slot);
        assert_eq!(at.next_after(10 * DAY + slot), 11 * DAY + slot);
        assert_eq!(at.next_after(10 * DAY + 23 * HOUR_MS), 11 * DAY + slot);
    }

    #[test]
    fn tally_keeps_the_range_of_affected_rows() {
        let mut tally = Tally::default();
        tally.count(50);
        tally.count(10);
        let mut other = Tally::default();
        other.count(70);
        tally.add(&other);
        assert_eq!(tally.deleted, 3);
        assert_eq!((tally.oldest_ms, tally.newest_ms), (Some(10), Some(70)));
    }
}
