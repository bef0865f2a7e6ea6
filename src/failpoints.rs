//! Named points where a test can make the process fail on purpose, to prove atomicity and
//! failure handling black-box.
//!
//! `SOFIIA_FAILPOINTS` is a comma-separated list of `name=error` (fail every time),
//! `name=after:N` (pass N times, then fail every time) or `name=sleep:MS` (take MS milliseconds
//! longer every time):
//! * `audit.append` makes audit appends fail inside their write transaction, after the action
//!   they record was applied there;
//! * `store.commit` fails commits as a rejected operation would, or slows them as a slow disk
//!   would;
//! * `store.io` fails commits as a failing disk would: the writer stops and the service exits.
//!
//! Honoured only in builds with the `test-hooks` feature, which release builds never have: there
//! the variable is ignored, with a warning, and a check costs one branch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static ACTIVE: OnceLock<Vec<Point>> = OnceLock::new();

struct Point {
    name: String,
    trigger: Trigger,
    checked: AtomicU64,
}

enum Trigger {
    /// Fails once this many checks have passed.
    FailAfter(u64),
    Sleep(Duration),
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
            let trigger = match trigger {
                "error" => Trigger::FailAfter(0),
                other => match other.split_once(':')? {
                    ("after", n) => Trigger::FailAfter(n.parse().ok()?),
                    ("sleep", ms) => Trigger::Sleep(Duration::from_millis(ms.parse().ok()?)),
                    _ => return None,
                },
            };
            Some(Point {
                name: name.to_owned(),
                trigger,
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
/// A point that slows instead sleeps here (on the caller's thread, which is the writer's).
pub fn fails(name: &str) -> bool {
    let Some(point) = ACTIVE.get().and_then(|a| a.iter().find(|p| p.name == name)) else {
        return false;
    };
    match point.trigger {
        Trigger::FailAfter(passes) => point.checked.fetch_add(1, Ordering::Relaxed) >= passes,
        Trigger::Sleep(pause) => {
            std::thread::sleep(pause);
            false
        }
    }
}
