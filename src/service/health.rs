//! Health checks behind `/api/health`: cheap, and free of secrets.

use std::path::Path;

use serde::Serialize;

use super::Console;
use super::system_health::{CardStatus, retention_verdict};

/// Ordered so the worst check decides the overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
    Error,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn new(status: Status, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DiskSpace {
    pub free: u64,
    pub total: u64,
}

/// Free space below this share of the volume is `degraded`; below a tenth of it, `error`.
const DISK_LOW_PERCENT: f64 = 5.0;

impl Console {
    pub fn database_check(&self) -> Check {
        if !self.store.writer().is_running() {
            tracing::error!(event = "health", "the writer thread has stopped");
            return Check::new(Status::Error, "the database writer has stopped");
        }
        match self.store.read(|_| Ok(())) {
            Ok(()) => Check::new(Status::Ok, "read transaction opened"),
            Err(error) => {
                tracing::error!(event = "health", %error, "database check failed");
                Check::new(Status::Error, "the database cannot be read")
            }
        }
    }

    /// Free and total bytes of the data directory's volume (free as an unprivileged process
    /// sees it).
    pub fn disk_space(&self) -> Option<DiskSpace> {
        disk_space_of(&self.data_dir)
    }

    /// Retention by the job log, as its system-health card rates it — but never worse than
    /// `degraded`: retention falling behind needs an operator, not a restart, and `/api/health`
    /// answers `503` only for what stops the service serving. (`unknown`, before the first run,
    /// is `ok`.)
    pub fn retention_check(&self) -> Check {
        let state = match self.retention_state() {
            Ok(state) => state,
            Err(error) => {
                tracing::error!(event = "health", %error, "retention check failed");
                return Check::new(Status::Degraded, "the retention job log cannot be read");
            }
        };
        let (status, detail) = retention_verdict(
            state.latest.map(|run| run.status),
            state.last_success_ms,
            state.consecutive_failures,
            self.clock.now_ms(),
        );
        let status = match status {
            CardStatus::Unknown | CardStatus::Ok => Status::Ok,
            CardStatus::Degraded | CardStatus::Error => Status::Degraded,
        };
        Check::new(status, detail)
    }

    pub fn disk_check(&self) -> Check {
        disk_verdict(self.disk_space())
    }

    /// No node configured is `ok`: sends are answered with `llm_unconfigured`, the designed
    /// behaviour of such an installation. Any open circuit is `degraded` — never `error`: sends
    /// still succeed (degraded) with every node down.
    pub fn agents_check(&self) -> Check {
        let nodes = self.agents.node_count();
        if nodes == 0 {
            return Check::new(
                Status::Ok,
                "no agent nodes configured: sends are stored and answered with llm_unconfigured",
            );
        }
        let open = self.agents.open_circuits(std::time::Instant::now());
        let status = if open.is_empty() {
            Status::Ok
        } else {
            Status::Degraded
        };
        let detail = if open.is_empty() {
            format!("{nodes} node(s), all circuits closed")
        } else {
            format!("{nodes} node(s); circuit open: {}", open.join(", "))
        };
        Check::new(status, detail)
    }
}

/// Free and total bytes of the volume holding `dir`, as an unprivileged process sees them.
pub fn disk_space_of(dir: &Path) -> Option<DiskSpace> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(DiskSpace {
        free: stats.f_bavail.saturating_mul(stats.f_frsize),
        total: stats.f_blocks.saturating_mul(stats.f_frsize).max(1),
    })
}

/// Free space on the data volume against `DISK_LOW_PERCENT`: under it `degraded`, under a tenth
/// of it `error`.
pub fn disk_verdict(space: Option<DiskSpace>) -> Check {
    let Some(DiskSpace { free, total }) = space else {
        return Check::new(
            Status::Error,
            "the data directory's volume cannot be inspected",
        );
    };
    let percent = free as f64 * 100.0 / total as f64;
    let status = if percent < DISK_LOW_PERCENT / 10.0 {
        Status::Error
    } else if percent < DISK_LOW_PERCENT {
        Status::Degraded
    } else {
        Status::Ok
    };
    Check::new(
        status,
        format!("{} MiB free ({percent:.1}%)", free / (1024 * 1024)),
    )
}
