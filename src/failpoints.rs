//! Named points where a test can make the process stop dead, to prove crash recovery.
//!
//! `SOFIIA_FAILPOINTS=send.after_claim=pause` makes every send park forever right after its first
//! transaction is durable; the test then kills the process with SIGKILL, which is exactly a crash
//! between the claim and the reply. Read once at start-up; unset in production, where a check
//! costs one branch.

use std::sync::OnceLock;

static ACTIVE: OnceLock<Vec<String>> = OnceLock::new();

/// Reads `SOFIIA_FAILPOINTS` (comma-separated `name=pause`).
pub fn init_from_env() {
    let active: Vec<String> = std::env::var("SOFIIA_FAILPOINTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|spec| spec.trim().strip_suffix("=pause"))
        .map(str::to_owned)
        .collect();
    if !active.is_empty() {
        tracing::warn!(event = "failpoints_active", points = ?active, "failpoints are active (test mode)");
    }
    let _ = ACTIVE.set(active);
}

/// Parks the calling task forever when the failpoint `name` is active.
pub async fn hit(name: &str) {
    if ACTIVE.get().is_some_and(|a| a.iter().any(|p| p == name)) {
        tracing::warn!(event = "failpoint", point = name, "paused at failpoint");
        std::future::pending::<()>().await;
    }
}
