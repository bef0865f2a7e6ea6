//! Wall-clock time in milliseconds, with a frozen mode for tests.
//!
//! `SOFIIA_FROZEN_CLOCK_MS=<unix ms>` stops the clock at that instant. Black-box tests use it to
//! produce rows that share a timestamp (the paging tie-break) and to age data without sleeping.
//! `SOFIIA_CLOCK_START_MS=<unix ms>` sets the clock to that instant at start-up, from where it
//! runs: a test starts the service a moment before a scheduled time and sees the schedule fire.
//! Both are honoured only in builds with the `test-hooks` feature, which release builds never
//! have: there the variables are ignored, with a warning.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    frozen_ms: Option<u64>,
    /// Added to the system clock: the distance to `SOFIIA_CLOCK_START_MS` at start-up.
    offset_ms: i64,
}

impl Clock {
    pub fn from_env() -> Self {
        let setting = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let frozen_ms = setting("SOFIIA_FROZEN_CLOCK_MS");
        let start_ms = setting("SOFIIA_CLOCK_START_MS");
        if !cfg!(feature = "test-hooks") {
            if frozen_ms.is_some() || start_ms.is_some() {
                tracing::warn!(
                    event = "test_hook_ignored",
                    "SOFIIA_FROZEN_CLOCK_MS and SOFIIA_CLOCK_START_MS are ignored: this build has no test hooks"
                );
            }
            return Self::default();
        }
        if let Some(ms) = frozen_ms {
            tracing::warn!(
                event = "clock_frozen",
                frozen_ms = ms,
                "the clock is frozen (test mode)"
            );
        }
        let offset_ms = start_ms.map_or(0, |start| {
            tracing::warn!(
                event = "clock_moved",
                start_ms = start,
                "the clock starts at a set instant (test mode)"
            );
            start as i64 - system_ms() as i64
        });
        Self {
            frozen_ms,
            offset_ms,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.frozen_ms
            .unwrap_or_else(|| system_ms().saturating_add_signed(self.offset_ms))
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
