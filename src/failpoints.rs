//! Named points where a test can make the process fail on purpose, to prove atomicity
//! black-box.
//!
//! `SOFIIA_FAILPOINTS` is a comma-separated list of `name=error`:
//! * `audit.append=error` makes every audit append fail inside its write transaction, after the
//!   action it records was applied there;
//! * `store.commit=error` fails every commit.
//!
//! Both prove that an action and its audit record commit together or not at all. Read once at
//! start-up; unset in production, where a check costs one branch.

use std::sync::OnceLock;

static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();

/// Reads `SOFIIA_FAILPOINTS`.
pub fn init_from_env() {
    let active: Vec<String> = std::env::var("SOFIIA_FAILPOINTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|spec| spec.trim().strip_suffix("=error"))
        .map(str::to_owned)
        .collect();
    if !active.is_empty() {
        tracing::warn!(event = "failpoints_active", points = ?active, "failpoints are active (test mode)");
    }
    let _ = ACTIVE.set(active);
}

/// Whether `name=error` is active: the caller then fails as if its operation had.
pub fn fails(name: &str) -> bool {
    ACTIVE.get().is_some_and(|a| a.iter().any(|n| n == name))
}
