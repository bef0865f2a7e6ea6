//! Wall-clock time in milliseconds, with a frozen mode for tests.
//!
//! `SOFIIA_FROZEN_CLOCK_MS=<unix ms>` stops the clock at that instant. Black-box tests use it to
//! produce rows that share a timestamp (the paging tie-break) and to age data without sleeping.
//! It is honoured only in builds with the `test-hooks` feature, which release builds never
//! have: there the variable is ignored, with a warning.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    frozen_ms: Option<u64>,
}

impl Clock {
    pub fn from_env() -> Self {
        let frozen_ms = std::env::var("SOFIIA_FROZEN_CLOCK_MS")
            .ok()
            .and_then(|v| v.parse().ok());
        if !cfg!(feature = "test-hooks") {
            if frozen_ms.is_some() {
                tracing::warn!(
                    event = "test_hook_ignored",
                    "SOFIIA_FROZEN_CLOCK_MS is ignored: this build has no test hooks"
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
        Self { frozen_ms }
    }

    pub fn now_ms(&self) -> u64 {
        self.frozen_ms.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
    }
}
