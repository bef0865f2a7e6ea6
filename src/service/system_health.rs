//! The system-health cards of `GET /api/admin/system/health` (SPEC §11): for each part of the
//! appliance a status an operator can act on and the figures behind it, answered from memory and
//! a few header reads — never a walk over the data.
//!
//! The rule behind each status is written down in `docs/system-health.md`; the thresholds are the
//! constants below.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Console;
use super::agents::NodeHealth;
use super::health::{self, DiskSpace};
use crate::domain::rate::Scope;
use crate::domain::retention::RunStatus;
use crate::domain::rfc3339;
use crate::monitoring::series;
use crate::store::writer::Writer;

/// A commit p95 at or above this is `degraded`: a group commit is one fsync, a few ms.
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// A writer queue at or above this share of its capacity is `degraded`.
const QUEUE_BUSY_PERCENT: usize = 80;
/// A key in progress for longer than this is stuck: `degraded`.
const STUCK_IN_PROGRESS: Duration = Duration::from_secs(300);
/// A record still kept this long after its expiry means retention is not keeping up (it keeps
/// them `retention.idempotency_hours`, 24 by default, and runs daily).
const EXPIRED_TOO_LONG: Duration = Duration::from_secs(72 * 3600);
/// The window of the rate-limit and event-stream figures.
const RECENT_MINUTES: u64 = 5;
/// Rate-limit refusals above this share of the window's sends (and at least
/// `REFUSALS_NOTICED` of them) are `degraded`.
const REFUSED_PERCENT: u64 = 10;
const REFUSALS_NOTICED: u64 = 10;
/// Retention whose last success is older than this is `degraded`; older than twice it, `error`.
const RETENTION_DUE: Duration = Duration::from_secs(26 * 3600);
/// This many failed retention runs in a row are an `error`.
const RETENTION_FAILURES: u32 = 2;

/// Worst last: the overall status is the worst card's, `unknown` counting as `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CardStatus {
    Unknown,
    Ok,
    Degraded,
    Error,
}

#[derive(Debug, Serialize)]
pub struct Card<F> {
    pub status: CardStatus,
    /// One sentence an operator can act on.
    pub summary: String,
    pub figures: F,
}

fn card<F>(status: CardStatus, summary: impl Into<String>, figures: F) -> Card<F> {
    Card {
        status,
        summary: summary.into(),
        figures,
    }
}

#[derive(Debug, Serialize)]
pub struct SystemHealth {
    pub status: CardStatus,
    pub checked_at: String,
    pub cards: Cards,
}

#[derive(Debug, Serialize)]
pub struct Cards {
    pub database: Card<DatabaseFigures>,
    pub disk: Card<DiskFigures>,
    pub agents: Card<AgentsFigures>,
    pub idempotency: Card<IdempotencyFigures>,
    pub rate_limits: Card<RateLimitFigures>,
    pub retention: Card<RetentionFigures>,
    pub audit: Card<AuditFigures>,
    pub sse: Card<SseFigures>,
}

#[derive(Debug, Serialize)]
pub struct DatabaseFigures {
    pub size_bytes: u64,
    /// Over the last write transactions; `null` before the first.
    pub commit_p95_ms: Option<f64>,
    pub writer_queue_depth: usize,
    pub writer_queue_capacity: usize,
}

#[derive(Debug, Serialize)]
pub struct DiskFigures {
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub free_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct AgentsFigures {
    pub nodes: Vec<NodeFigures>,
    /// Sends answered without an agent reply in the last hour.
    pub degraded_last_hour: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeFigures {
    pub name: String,
    pub circuit: &'static str,
    pub last_success_at: Option<String>,
    pub last_error_at: Option<String>,
    pub last_error: Option<&'static str>,
    pub errors_last_hour: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct IdempotencyFigures {
    pub records: u64,
    /// Keys this process is working on now.
    pub in_progress: usize,
    pub oldest_in_progress_s: Option<u64>,
    /// When the oldest record still kept past its expiry expired.
    pub oldest_expired_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RateLimitFigures {
    pub window_minutes: u64,
    pub sends: u64,
    pub rejected_chat: u64,
    pub rejected_operator: u64,
    pub chat_per_minute: u64,
    pub chat_burst: u64,
    pub operator_per_minute: u64,
    pub operator_burst: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct RetentionFigures {
    pub last_run_id: Option<u64>,
    pub last_run_status: Option<&'static str>,
    pub last_run_started_at: Option<String>,
    pub last_run_finished_at: Option<String>,
    pub last_run_deleted: Option<u64>,
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
    pub next_run_at: String,
}

#[derive(Debug, Serialize)]
pub struct AuditFigures {
    pub entries: u64,
    pub head_seq: u64,
    pub checkpoint_seq: Option<u64>,
    /// The last verification since the service started.
    pub last_verified_at: Option<String>,
    pub last_verification_valid: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct SseFigures {
    pub subscribers: usize,
    pub events_published: u64,
    pub dropped_last_hour: u64,
    pub dropped_recently: u64,
}

impl Console {
    pub fn system_health(&self) -> SystemHealth {
        let cards = Cards {
            database: self.database_card(),
            disk: self.disk_card(),
            agents: self.agents_card(),
            idempotency: self.idempotency_card(),
            rate_limits: rate_limits_card(self.send_settings.limits),
            retention: self.retention_card(),
            audit: self.audit_card(),
            sse: self.sse_card(),
        };
        let status = [
            cards.database.status,
            cards.disk.status,
            cards.agents.status,
            cards.idempotency.status,
            cards.rate_limits.status,
            cards.retention.status,
            cards.audit.status,
            cards.sse.status,
        ]
        .into_iter()
        .max()
        .map_or(CardStatus::Unknown, |worst| worst.max(CardStatus::Ok));
        SystemHealth {
            status,
            checked_at: rfc3339(self.clock.now_ms()),
            cards,
        }
    }

    fn database_card(&self) -> Card<DatabaseFigures> {
        let writer = self.store.writer();
        let commit_p95 = writer.commit_p95();
        let figures = DatabaseFigures {
            size_bytes: self.store.file_bytes(),
            commit_p95_ms: commit_p95.map(|p95| p95.as_secs_f64() * 1000.0),
            writer_queue_depth: writer.queue_depth(),
            writer_queue_capacity: Writer::QUEUE_CAPACITY,
        };
        let check = self.database_check();
        if check.status == health::Status::Error {
            return card(CardStatus::Error, check.detail, figures);
        }
        if figures.writer_queue_depth * 100 >= figures.writer_queue_capacity * QUEUE_BUSY_PERCENT {
            return card(
                CardStatus::Degraded,
                "the writer's queue is nearly full: writes are arriving faster than they commit",
                figures,
            );
        }
        if commit_p95.is_some_and(|p95| p95 >= SLOW_COMMIT) {
            return card(
                CardStatus::Degraded,
                "commits are slow: look at the disk's latency and at retention or compaction running",
                figures,
            );
        }
        card(CardStatus::Ok, "reads and commits are flowing", figures)
    }

    fn disk_card(&self) -> Card<DiskFigures> {
        let space = self.disk_space();
        let check = health::disk_verdict(space);
        let Some(DiskSpace { free, total }) = space else {
            let figures = DiskFigures {
                free_bytes: None,
                total_bytes: None,
                free_percent: None,
            };
            return card(
                CardStatus::Error,
                "the data directory's volume cannot be inspected",
                figures,
            );
        };
        let percent = free as f64 * 100.0 / total as f64;
        let figures = DiskFigures {
            free_bytes: Some(free),
            total_bytes: Some(total),
            free_percent: Some((percent * 10.0).round() / 10.0),
        };
        let status = match check.status {
            health::Status::Ok => CardStatus::Ok,
            health::Status::Degraded => CardStatus::Degraded,
            health::Status::Error => CardStatus::Error,
        };
        card(status, check.detail, figures)
    }

    fn agents_card(&self) -> Card<AgentsFigures> {
        let nodes = self.agents.health(Instant::now());
        let figures = AgentsFigures {
            nodes: nodes.iter().map(node_figures).collect(),
            degraded_last_hour: series::recent_degraded(60),
        };
        if nodes.is_empty() {
            return card(
                CardStatus::Ok,
                "no agent nodes configured: sends are stored and answered with llm_unconfigured",
                figures,
            );
        }
        let open: Vec<&str> = nodes
            .iter()
            .filter(|node| node.circuit != "closed")
            .map(|node| node.name.as_str())
            .collect();
        if open.len() == nodes.len() {
            return card(
                CardStatus::Error,
                "every agent node's circuit is open: sends are stored and answered degraded",
                figures,
            );
        }
        if !open.is_empty() {
            return card(
                CardStatus::Degraded,
                format!("circuit open for: {}", open.join(", ")),
                figures,
            );
        }
        card(
            CardStatus::Ok,
            "every agent node's circuit is closed",
            figures,
        )
    }

    fn idempotency_card(&self) -> Card<IdempotencyFigures> {
        let (in_progress, oldest) = self.inflight.in_progress();
        let stored = match self.store.idempotency_figures(self.clock.now_ms()) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(event = "error", %error, "idempotency figures unreadable");
                let figures = IdempotencyFigures {
                    in_progress,
                    oldest_in_progress_s: oldest.map(|age| age.as_secs()),
                    ..IdempotencyFigures::default()
                };
                return card(
                    CardStatus::Error,
                    "idempotency records cannot be read",
                    figures,
                );
            }
        };
        let figures = IdempotencyFigures {
            records: stored.records,
            in_progress,
            oldest_in_progress_s: oldest.map(|age| age.as_secs()),
            oldest_expired_at: stored.oldest_expired_ms.map(rfc3339),
        };
        let now_ms = self.clock.now_ms();
        if oldest.is_some_and(|age| age > STUCK_IN_PROGRESS) {
            return card(
                CardStatus::Degraded,
                "a send has been in progress for over five minutes: look at the agent nodes",
                figures,
            );
        }
        if stored
            .oldest_expired_ms
            .is_some_and(|at| now_ms.saturating_sub(at) > EXPIRED_TOO_LONG.as_millis() as u64)
        {
            return card(
                CardStatus::Degraded,
                "expired records are piling up: retention is not keeping up",
                figures,
            );
        }
        card(CardStatus::Ok, "no send is stuck", figures)
    }

    fn retention_card(&self) -> Card<RetentionFigures> {
        let state = match self.retention_state() {
            Ok(state) => state,
            Err(error) => {
                tracing::error!(event = "error", %error, "retention job log unreadable");
                return card(
                    CardStatus::Error,
                    "the retention job log cannot be read",
                    RetentionFigures::default(),
                );
            }
        };
        let (status, summary) = retention_verdict(
            state.latest.as_ref().map(|run| run.status),
            state.last_success_ms,
            state.consecutive_failures,
            self.clock.now_ms(),
        );
        let latest = state.latest.as_ref();
        let figures = RetentionFigures {
            last_run_id: latest.map(|run| run.id),
            last_run_status: latest.map(|run| run.status.as_str()),
            last_run_started_at: latest.map(|run| rfc3339(run.started_ms)),
            last_run_finished_at: latest.and_then(|run| run.finished_ms).map(rfc3339),
            last_run_deleted: latest.map(|run| run.deleted()),
            last_success_at: state.last_success_ms.map(rfc3339),
            consecutive_failures: state.consecutive_failures,
            next_run_at: rfc3339(state.next_run_ms),
        };
        card(status, summary, figures)
    }

    fn audit_card(&self) -> Card<AuditFigures> {
        let verification = series::last_verification();
        let figures = |entries, head_seq, checkpoint_seq| AuditFigures {
            entries,
            head_seq,
            checkpoint_seq,
            last_verified_at: verification.map(|(at, _)| rfc3339(at)),
            last_verification_valid: verification.map(|(_, valid)| valid),
        };
        let stored = match self.store.audit_figures() {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(event = "error", %error, "audit figures unreadable");
                return card(
                    CardStatus::Error,
                    "the audit trail cannot be read",
                    figures(0, 0, None),
                );
            }
        };
        let figures = figures(stored.entries, stored.head_seq, stored.checkpoint_seq);
        match verification {
            None => card(
                CardStatus::Unknown,
                "not verified since the service started: run a verification",
                figures,
            ),
            Some((_, true)) => card(CardStatus::Ok, "the chain verified", figures),
            Some((_, false)) => card(
                CardStatus::Error,
                "the last verification found the chain broken: see docs/audit-format.md",
                figures,
            ),
        }
    }

    fn sse_card(&self) -> Card<SseFigures> {
        let figures = SseFigures {
            subscribers: self.bus.subscribers(),
            events_published: self.bus.published(),
            dropped_last_hour: series::recent_sse_drops(60),
            dropped_recently: series::recent_sse_drops(RECENT_MINUTES),
        };
        if figures.dropped_recently > 0 {
            return card(
                CardStatus::Degraded,
                "event-stream subscribers are falling behind and being dropped",
                figures,
            );
        }
        card(CardStatus::Ok, "every subscriber keeps up", figures)
    }
}

fn node_figures(node: &NodeHealth) -> NodeFigures {
    NodeFigures {
        name: node.name.clone(),
        circuit: node.circuit,
        last_success_at: node.last_success_ms.map(rfc3339),
        last_error_at: node.last_error_ms.map(rfc3339),
        last_error: node.last_error,
        errors_last_hour: node.errors_last_hour,
    }
}

fn rate_limits_card(limits: crate::domain::rate::SendLimits) -> Card<RateLimitFigures> {
    let figures = RateLimitFigures {
        window_minutes: RECENT_MINUTES,
        sends: series::recent_sends(RECENT_MINUTES),
        rejected_chat: series::recent_rate_limited(Scope::Chat, RECENT_MINUTES),
        rejected_operator: series::recent_rate_limited(Scope::Operator, RECENT_MINUTES),
        chat_per_minute: limits.chat.per_minute,
        chat_burst: limits.chat.burst,
        operator_per_minute: limits.operator.per_minute,
        operator_burst: limits.operator.burst,
    };
    let rejected = figures.rejected_chat + figures.rejected_operator;
    if rejected >= REFUSALS_NOTICED && rejected * 100 > figures.sends * REFUSED_PERCENT {
        return card(
            CardStatus::Degraded,
            "many sends are refused by the rate limits: a client retrying too fast, or limits set too low",
            figures,
        );
    }
    card(CardStatus::Ok, "sends are within their limits", figures)
}

/// The retention status from the job log (also `/api/health`'s `retention` check).
pub fn retention_verdict(
    latest: Option<RunStatus>,
    last_success_ms: Option<u64>,
    consecutive_failures: u32,
    now_ms: u64,
) -> (CardStatus, String) {
    let due_ms = RETENTION_DUE.as_millis() as u64;
    let age_ms = last_success_ms.map(|at| now_ms.saturating_sub(at));
    if consecutive_failures >= RETENTION_FAILURES {
        return (
            CardStatus::Error,
            format!("the last {consecutive_failures} retention runs failed"),
        );
    }
    if age_ms.is_some_and(|age| age > 2 * due_ms) {
        return (
            CardStatus::Error,
            "no successful retention run for over two days: the database keeps growing".into(),
        );
    }
    match latest {
        None => (CardStatus::Unknown, "retention has not run yet".into()),
        Some(RunStatus::Failed | RunStatus::Interrupted) => (
            CardStatus::Degraded,
            "the last retention run did not finish: the next one resumes it".into(),
        ),
        Some(_) if age_ms.is_none_or(|age| age > due_ms) => (
            CardStatus::Degraded,
            "no successful retention run in the last 26 hours".into(),
        ),
        Some(_) => (CardStatus::Ok, "retention runs on schedule".into()),
    }
}
