//! The service manager's view of the process (systemd's `Type=notify`, `sd_notify(3)`):
//! `EXTEND_TIMEOUT_USEC=` while the database opens (a migration can take minutes), `READY=1`
//! once the database is open and the socket listens, `STOPPING=1` when a stop begins, and —
//! when the unit sets `WatchdogSec=` — `WATCHDOG=1` pings sent only while the writer makes
//! progress, so a writer stuck in storage lets the manager restart the service.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every message is a no-op.

use std::sync::Weak;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::service::Console;

/// Each start-timeout extension asks for this much more time…
const START_EXTENSION: Duration = Duration::from_secs(30);
/// …and one is sent this often while the database opens…
const START_EXTENSION_EVERY: Duration = Duration::from_secs(10);
/// …for at most this long: a start that has not opened its file by then fails when the last
/// extension runs out.
const START_EXTENSION_LIMIT: Duration = Duration::from_secs(60 * 60);

/// Runs `open` (opening the database, which migrates it in one transaction when its schema is
/// older: about ten seconds per million audit events) while telling the service manager to
/// extend the start timeout, so that the unit's `TimeoutStartSec=` bounds a start that hangs,
/// not an upgrade of a large file; a start killed in the middle of its migration would roll it
/// back and begin again, forever.
pub fn extending_start_timeout<T>(open: impl FnOnce() -> T) -> T {
    let (opened, waiting) = mpsc::channel::<()>();
    let extender = std::thread::spawn(move || {
        let times = START_EXTENSION_LIMIT.as_secs() / START_EXTENSION_EVERY.as_secs();
        for _ in 0..times {
            let usec = u32::try_from(START_EXTENSION.as_micros()).unwrap_or(u32::MAX);
            notify(&[NotifyState::ExtendTimeoutUsec(usec)]);
            if waiting.recv_timeout(START_EXTENSION_EVERY) != Err(RecvTimeoutError::Timeout) {
                return;
            }
        }
    });
    let result = open();
    drop(opened);
    let _ = extender.join();
    result
}

pub fn ready() {
    notify(&[NotifyState::Ready]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(state: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!(event = "error", %error, "could not notify the service manager");
    }
}

/// The watchdog interval the service manager asked for, if it asked for one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Pings the watchdog every half `interval`, each time only after a probe has passed through
/// the writer's queue (it runs between two write transactions): a writer that stops committing
/// stops the pings. Ends with the console.
pub async fn watchdog(console: Weak<Console>, interval: Duration) {
    let every = interval / 2;
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let Some(console) = console.upgrade() else {
            return;
        };
        let writer = console.store.writer().clone();
        drop(console);
        match tokio::time::timeout(every, writer.with_database(|_| ())).await {
            Ok(Ok(())) => notify(&[NotifyState::Watchdog]),
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(
                    event = "watchdog_missed",
                    "the writer did not answer in time; no watchdog ping"
                );
            }
        }
    }
}
