//! Counters with a fixed label set, registered once and kept: the send path increments an atomic,
//! never looks a series up. Beside some of them, a count over the last hour (`recent`) for the
//! system-health cards.
//!
//! Every series here exists from the start at zero, so a rate over it is defined before its first
//! event and an alert can tell "none happened" from "never measured".

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use metrics::Counter;

use super::recent::RecentCount;
use super::{
    AUDIT_EVENTS, AUDIT_VERIFICATIONS, DEGRADED, IDEMPOTENCY, RATE_LIMITED, RETENTION_DELETED,
    RETENTION_RUNS, SENDS, SSE_DROPPED,
};
use crate::domain::audit::Action;
use crate::domain::rate::Scope;
use crate::domain::retention::{Class, RunStatus};
use crate::domain::send::DegradedReason;

/// How a send ended, as `sofiia_sends_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Stored, with the agent's reply.
    Ok,
    /// Stored, with a degraded reply (no agent answered; `sofiia_degraded_total` says why).
    Degraded,
    /// Answered from its idempotency record: nothing new was stored.
    Replayed,
    /// Refused before anything was stored: invalid, rate-limited, an idempotency conflict.
    Rejected,
    /// The service could not complete it (storage unavailable, deadline passed).
    Failed,
}

impl SendOutcome {
    const ALL: [SendOutcome; 5] = [
        SendOutcome::Ok,
        SendOutcome::Degraded,
        SendOutcome::Replayed,
        SendOutcome::Rejected,
        SendOutcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Ok => "ok",
            SendOutcome::Degraded => "degraded",
            SendOutcome::Replayed => "replayed",
            SendOutcome::Rejected => "rejected",
            SendOutcome::Failed => "failed",
        }
    }
}

/// What an `Idempotency-Key` led to, as `sofiia_idempotency_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyResult {
    /// The key was free: the send ran.
    New,
    /// The key's completed answer was returned.
    Replay,
    /// The key was used before with a different request.
    Mismatch,
    /// The key's first request was still running after the wait.
    InProgress,
    /// The key was left in progress by a process that died; this one finished it.
    Takeover,
}

impl IdempotencyResult {
    const ALL: [IdempotencyResult; 5] = [
        IdempotencyResult::New,
        IdempotencyResult::Replay,
        IdempotencyResult::Mismatch,
        IdempotencyResult::InProgress,
        IdempotencyResult::Takeover,
    ];

    fn as_str(self) -> &'static str {
        match self {
            IdempotencyResult::New => "new",
            IdempotencyResult::Replay => "replay",
            IdempotencyResult::Mismatch => "mismatch",
            IdempotencyResult::InProgress => "in_progress",
            IdempotencyResult::Takeover => "takeover",
        }
    }
}

/// One kept counter per value of a label.
struct Family<const N: usize>([Counter; N]);

impl<const N: usize> Family<N> {
    fn new<T: Copy>(
        name: &'static str,
        label: &'static str,
        values: [T; N],
        as_str: fn(T) -> &'static str,
    ) -> Self {
        Self(values.map(|value| metrics::counter!(name, label => as_str(value))))
    }
}

static SEND_OUTCOMES: LazyLock<Family<5>> =
    LazyLock::new(|| Family::new(SENDS, "outcome", SendOutcome::ALL, SendOutcome::as_str));
static IDEMPOTENCY_RESULTS: LazyLock<Family<5>> = LazyLock::new(|| {
    Family::new(
        IDEMPOTENCY,
        "result",
        IdempotencyResult::ALL,
        IdempotencyResult::as_str,
    )
});
static RATE_LIMITED_SCOPES: LazyLock<Family<2>> =
    LazyLock::new(|| Family::new(RATE_LIMITED, "scope", Scope::ALL, Scope::as_str));
static AUDIT_ACTIONS: LazyLock<Family<{ Action::ALL.len() }>> =
    LazyLock::new(|| Family::new(AUDIT_EVENTS, "action", Action::ALL, Action::as_str));
static VERIFICATIONS: LazyLock<Family<2>> = LazyLock::new(|| {
    Family::new(AUDIT_VERIFICATIONS, "result", [true, false], |valid| {
        if valid { "valid" } else { "invalid" }
    })
});
static DEGRADED_REASONS: LazyLock<Family<5>> = LazyLock::new(|| {
    Family::new(
        DEGRADED,
        "reason_code",
        DegradedReason::ALL,
        DegradedReason::code,
    )
});
static SSE_DROPS: LazyLock<Counter> = LazyLock::new(|| metrics::counter!(SSE_DROPPED));

/// Sends of the last hour, whatever their outcome.
static SENDS_RECENT: LazyLock<RecentCount> = LazyLock::new(RecentCount::default);
/// Rate-limit refusals of the last hour, by `Scope` discriminant.
static RATE_LIMITED_RECENT: LazyLock<[RecentCount; 2]> = LazyLock::new(Default::default);
static DEGRADED_RECENT: LazyLock<RecentCount> = LazyLock::new(RecentCount::default);
static SSE_DROPS_RECENT: LazyLock<RecentCount> = LazyLock::new(RecentCount::default);
/// When this process last verified the audit chain (Unix ms; 0: not yet), and the verdict.
static LAST_VERIFICATION_MS: AtomicU64 = AtomicU64::new(0);
static LAST_VERIFICATION_VALID: AtomicBool = AtomicBool::new(false);

pub fn send(outcome: SendOutcome) {
    SEND_OUTCOMES.0[outcome as usize].increment(1);
    SENDS_RECENT.add();
}

pub fn idempotency(result: IdempotencyResult) {
    IDEMPOTENCY_RESULTS.0[result as usize].increment(1);
}

pub fn rate_limited(scope: Scope) {
    RATE_LIMITED_SCOPES.0[scope as usize].increment(1);
    RATE_LIMITED_RECENT[scope as usize].add();
}

/// Audit events committed, by action: `counts[i]` of `Action::ALL[i]`.
pub fn audit_events(counts: &[u32; Action::ALL.len()]) {
    for (counter, &count) in AUDIT_ACTIONS.0.iter().zip(counts) {
        if count > 0 {
            counter.increment(u64::from(count));
        }
    }
}

pub fn degraded(reason: DegradedReason) {
    DEGRADED_REASONS.0[reason as usize].increment(1);
    DEGRADED_RECENT.add();
}

pub fn audit_verification(valid: bool, at_ms: u64) {
    VERIFICATIONS.0[usize::from(!valid)].increment(1);
    LAST_VERIFICATION_VALID.store(valid, Relaxed);
    LAST_VERIFICATION_MS.store(at_ms, Relaxed);
}

pub fn sse_dropped() {
    SSE_DROPS.increment(1);
    SSE_DROPS_RECENT.add();
}

/// Sends in the last `minutes` (current minute included).
pub fn recent_sends(minutes: u64) -> u64 {
    SENDS_RECENT.last(minutes)
}

pub fn recent_rate_limited(scope: Scope, minutes: u64) -> u64 {
    RATE_LIMITED_RECENT[scope as usize].last(minutes)
}

pub fn recent_degraded(minutes: u64) -> u64 {
    DEGRADED_RECENT.last(minutes)
}

pub fn recent_sse_drops(minutes: u64) -> u64 {
    SSE_DROPS_RECENT.last(minutes)
}

/// The last verification of the audit chain in this process: when (Unix ms) and whether the
/// chain was valid.
pub fn last_verification() -> Option<(u64, bool)> {
    let at_ms = LAST_VERIFICATION_MS.load(Relaxed);
    (at_ms > 0).then(|| (at_ms, LAST_VERIFICATION_VALID.load(Relaxed)))
}

/// Registers every fixed series at zero (the recorder has just been installed).
pub(super) fn register() {
    LazyLock::force(&SEND_OUTCOMES);
    LazyLock::force(&IDEMPOTENCY_RESULTS);
    LazyLock::force(&RATE_LIMITED_SCOPES);
    LazyLock::force(&AUDIT_ACTIONS);
    LazyLock::force(&VERIFICATIONS);
    LazyLock::force(&DEGRADED_REASONS);
    LazyLock::force(&SSE_DROPS);
    for class in Class::ALL {
        metrics::counter!(RETENTION_DELETED, "class" => class.as_str()).absolute(0);
    }
    for status in [
        RunStatus::Ok,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
    ] {
        metrics::counter!(RETENTION_RUNS, "status" => status.as_str()).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each family is indexed by its enum's discriminant: the `ALL` lists must be in declaration
    /// order.
    #[test]
    fn every_label_list_is_in_declaration_order() {
        assert!(
            SendOutcome::ALL
                .iter()
                .enumerate()
                .all(|(i, v)| *v as usize == i)
        );
        assert!(
            IdempotencyResult::ALL
                .iter()
                .enumerate()
                .all(|(i, v)| *v as usize == i)
        );
        assert!(Scope::ALL.iter().enumerate().all(|(i, v)| *v as usize == i));
        assert!(
            Action::ALL
                .iter()
                .enumerate()
                .all(|(i, v)| *v as usize == i)
        );
        assert!(
            DegradedReason::ALL
                .iter()
                .enumerate()
                .all(|(i, v)| *v as usize == i)
        );
    }
}
