//! Audit records of denied requests, aggregated so a flood cannot flood the trail.
//!
//! Denials are `auth.denied` (a request refused 401/403) and `auth.login_failed`. The first
//! denial of a client address, actor and action within a window is recorded at once, with all its
//! detail. Further ones in that window are only counted; when the window closes, one summary
//! event carries the count. So an attacker costs the trail at most two events per address, actor
//! and action per window, and at most `MAX_TRACKED` of those are tracked at a time — beyond that,
//! denials are counted together under one overflow entry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::domain::audit::{Actor, Draft};

use super::Console;

/// How long denials of one pair are folded together.
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 10_000;
const OVERFLOW: &str = "*";

#[derive(Default)]
pub struct Denials {
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    first: Draft,
    more: u64,
}

impl Denials {
    /// Counts `draft`; returns it when it opens a window and must be recorded now.
    fn admit(&self, draft: Draft) -> Option<Draft> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let pair = format!(
            "{}|{}|{}",
            draft.record.client_ip.as_deref().unwrap_or("-"),
            draft.record.actor.label(),
            draft.record.action.as_str()
        );
        let overflow = windows.len() >= MAX_TRACKED && !windows.contains_key(&pair);
        let (pair, draft) = if overflow {
            // Past the cap, denials are counted together and attributed to no one address.
            let mut anonymous = draft;
            anonymous.record.client_ip = None;
            anonymous.record.actor = Actor::anonymous();
            anonymous.record.request_id = None;
            (OVERFLOW.to_owned(), anonymous.detail("overflow", true))
        } else {
            (pair, draft)
        };
        match windows.get_mut(&pair) {
            Some(window) => {
                window.more += 1;
                None
            }
            None => {
                windows.insert(
                    pair,
                    Window {
                        first: draft.clone(),
                        more: 0,
                    },
                );
                Some(draft)
            }
        }
    }

    /// Closes every window; returns a summary for each that counted more denials.
    fn close_windows(&self, now_ms: u64) -> Vec<Draft> {
        let windows =
            std::mem::take(&mut *self.windows.lock().unwrap_or_else(PoisonError::into_inner));
        windows
            .into_values()
            .filter(|w| w.more > 0)
            .map(|w| {
                let mut summary = w.first;
                summary.at_ms = now_ms;
                summary.record.request_id = None;
                summary
                    .detail("count", w.more)
                    .detail("aggregated", true)
                    .detail("window_s", WINDOW.as_secs())
            })
            .collect()
    }
}

impl Console {
    /// Counts a denial into its window: the record to write now when it opens the window, else
    /// `None` (it is counted into the window's summary).
    pub fn admit_denial(&self, draft: Draft) -> Option<Draft> {
        self.denials
            .admit(draft)
            .map(|first| first.detail("count", 1u64))
    }

    /// Records a denied request (aggregated). Never blocks the response on the write.
    pub fn record_denial(&self, draft: Draft) {
        let Some(first) = self.admit_denial(draft) else {
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.append_audit(vec![first]).await {
                tracing::error!(event = "error", %error, "could not record a denial");
            }
        });
    }

    /// Writes the summaries of the windows that just closed.
    pub async fn flush_denials(&self) {
        let summaries = self.denials.close_windows(self.clock.now_ms());
        if summaries.is_empty() {
            return;
        }
        if let Err(error) = self.store.append_audit(summaries).await {
            tracing::error!(event = "error", %error, "could not record denial summaries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Action, Actor, Context, Outcome, Target};

    fn denial(ip: &str) -> Draft {
        Context {
            actor: Actor::anonymous(),
            request_id: Some("r".into()),
            client_ip: Some(ip.into()),
        }
        .draft(
            0,
            Action::AuthDenied,
            Target::new("route", "/api/chats"),
            Outcome::Denied,
        )
    }

    #[test]
    fn first_denial_is_recorded_and_the_rest_summarised() {
        let denials = Denials::default();
        assert!(denials.admit(denial("10.0.0.1")).is_some());
        for _ in 0..99 {
            assert!(denials.admit(denial("10.0.0.1")).is_none());
        }
        assert!(denials.admit(denial("10.0.0.2")).is_some());
        let summaries = denials.close_windows(5);
        assert_eq!(summaries.len(), 1);
        assert_eq!(
            summaries[0].record.details.get("count"),
            Some(&crate::domain::audit::Detail::Count(99))
        );
        assert!(
            denials.admit(denial("10.0.0.1")).is_some(),
            "a new window opens"
        );
    }
}
