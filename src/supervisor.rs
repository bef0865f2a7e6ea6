//! The service manager's view of the process (systemd's `Type=notify`, `sd_notify(3)`):
//! `READY=1` once the database is open and the socket listens, `STOPPING=1` when a stop begins,
//! and — when the unit sets `WatchdogSec=` — `WATCHDOG=1` pings sent only while the writer makes
//! progress, so a writer stuck in storage lets the manager restart the service.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every message is a no-op.

use std::sync::Weak;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::service::Console;

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
