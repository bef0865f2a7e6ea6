//! Named points where a test can make the process fail on purpose, to prove atomicity and
//! failure handling black-box.
//!
//! `SOFIIA_FAILPOINTS` is a comma-separated list of `name=error` (fail every time) or
//! `name=after:N` (pass N times, then fail every time):
//! * `audit.append` makes audit appends fail inside their write transaction, after the action
//!   they record was applied there;
//! * `store.commit` fails commits as a rejected operation would;
//! * `store.io` fails commits as a failing disk would: the writer stops and the service exits.
//!
//! Honoured only in builds with the `test-hooks` feature, which release builds never have: there
//! the variable is ignored, with a warning, and a check costs one branch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static ACTIVE: OnceLock<Vec<Point>> = OnceLock::new();

struct Point {
    name: String,
    /// Checks that pass before the point starts failing.
    passes: u64,
    checked: AtomicU64,
}

/// Reads `SOFIIA_FAILPOINTS`.
pub fn init_from_env() {
    let spec = std::env::var("SOFIIA_FAILPOINTS").unwrap_or_default();
    if !cfg!(feature = "test-hooks") {
        if !spec.is_empty() {
            tracing::warn!(
                event = "test_hook_ignored",
                "SOFIIA_FAILPOINTS is ignored: this build has no test hooks"
            );
        }
        let _ = ACTIVE.set(Vec::new());
        return;
    }
    let active: Vec<Point> = spec
        .split(',')
        .filter_map(|spec| {
            let (name, trigger) = spec.trim().split_once('=')?;
            let passes = match trigger {
                "error" => 0,
                other => other.strip_prefix("after:")?.parse().ok()?,
            };
            Some(Point {
                name: name.to_owned(),
                passes,
                checked: AtomicU64::new(0),
            })
        })
        .collect();
    if !active.is_empty() {
        let names: Vec<&str> = active.iter().map(|p| p.name.as_str()).collect();
        tracing::warn!(event = "failpoints_active", points = ?names, "failpoints are active (test mode)");
    }
    let _ = ACTIVE.set(active);
}

/// Whether the point `name` fails this time: the caller then fails as if its operation had.
pub fn fails(name: &str) -> bool {
    let Some(point) = ACTIVE.get().and_then(|a| a.iter().find(|p| p.name == name)) else {
        return false;
    };
    point.checked.fetch_add(1, Ordering::Relaxed) >= point.passes
}
