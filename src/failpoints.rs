//! Named points where a test can make the process fail on purpose, to prove crash recovery and
//! atomicity black-box.
//!
//! `SOFIIA_FAILPOINTS` is a comma-separated list of `name=pause` or `name=error`:
//! * `send.after_claim=pause` parks every send right after its first transaction is durable; the
//!   test then kills the process with SIGKILL — exactly a crash between the claim and the reply.
//! * `audit.append=error` makes every audit append fail inside its write transaction, after the
//!   action it records was applied there; `store.commit=error` fails every commit. Both prove that
//!   an action and its audit record commit together or not at all.
//!
//! Read once at start-up; unset in production, where a check costs one branch.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pause,
    Error,
}

static ACTIVE: OnceLock<Vec<(String, Mode)>> = OnceLock::new();

/// Reads `SOFIIA_FAILPOINTS`.
pub fn init_from_env() {
    let active: Vec<(String, Mode)> = std::env::var("SOFIIA_FAILPOINTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|spec| {
            let (name, mode) = spec.trim().split_once('=')?;
            let mode = match mode {
                "pause" => Mode::Pause,
                "error" => Mode::Error,
                _ => return None,
            };
            Some((name.to_owned(), mode))
        })
        .collect();
    if !active.is_empty() {
        tracing::warn!(event = "failpoints_active", points = ?active, "failpoints are active (test mode)");
    }
    let _ = ACTIVE.set(active);
}

fn is_active(name: &str, mode: Mode) -> bool {
    ACTIVE
        .get()
        .is_some_and(|a| a.iter().any(|(n, m)| n == name && *m == mode))
}

/// Parks the calling task forever when `name=pause` is active.
pub async fn pause(name: &str) {
    if is_active(name, Mode::Pause) {
        tracing::warn!(event = "failpoint", point = name, "paused at failpoint");
        std::future::pending::<()>().await;
    }
}

/// Whether `name=error` is active: the caller then fails as if its operation had.
pub fn fails(name: &str) -> bool {
    is_active(name, Mode::Error)
}
