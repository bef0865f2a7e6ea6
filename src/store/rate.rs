//! Rate windows: the GCRA state of every metered key, charged inside the send's own write
//! transaction.
//!
//! Metering in the writer makes the limit exact under any concurrency (the writer is the single
//! point every send passes, in order) and durable with the message it admits, so a restart never
//! hands out a fresh burst and a refused request leaves nothing behind.
//!
//! Every window is also mirrored in memory (`WindowMirror`), so a replay can report the sender's
//! standing without a read transaction.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use redb::{ReadTransaction, ReadableTable};

use super::StoreError;
use super::batch::WriteTables;
use super::tables::RATE_WINDOWS;
use crate::domain::rate::{Decision, Meter, Quota, Scope, SendLimits};

/// Rate windows by scope, then metered key: the theoretical arrival time of each (Unix ms).
pub(super) type WindowMap = HashMap<Scope, HashMap<String, u64>>;

/// Every rate window, in memory. This process is the file's only writer and every window is
/// written by the writer, which publishes a batch's windows here once the batch is committed:
/// the mirror is never ahead of the file, and at most one commit behind it.
pub struct WindowMirror(RwLock<WindowMap>);

impl WindowMirror {
    /// The windows stored in the file, read at start-up.
    pub(super) fn load(txn: &ReadTransaction) -> Result<Self, StoreError> {
        let mut windows = WindowMap::new();
        for row in txn.open_table(RATE_WINDOWS)?.iter()? {
            let (key, tat) = row?;
            let (scope, metered) = key.value();
            let scope = Scope::parse(scope).ok_or_else(|| {
                StoreError::Corrupt(format!("rate window of unknown scope {scope}"))
            })?;
            windows
                .entry(scope)
                .or_default()
                .insert(metered.to_owned(), tat.value());
        }
        Ok(Self(RwLock::new(windows)))
    }

    /// Drops the windows a committed batch deleted.
    pub(super) fn forget(&self, dropped: &[(Scope, String)]) {
        if dropped.is_empty() {
            return;
        }
        let mut windows = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for (scope, key) in dropped {
            if let Some(keys) = windows.get_mut(scope) {
                keys.remove(key);
            }
        }
    }

    /// Takes in the windows a committed batch wrote.
    pub(super) fn publish(&self, written: WindowMap) {
        if written.is_empty() {
            return;
        }
        let mut windows = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for (scope, keys) in written {
            windows.entry(scope).or_default().extend(keys);
        }
    }
}

/// The outcome of charging a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    Admitted(Quota),
    Refused {
        scope: Scope,
        retry_after_ms: u64,
        quota: Quota,
    },
}

/// Charges one request to the chat's and the operator's windows, both or neither.
pub(super) fn charge(
    t: &mut WriteTables<'_>,
    limits: &SendLimits,
    chat_id: &str,
    operator: &str,
    now_ms: u64,
) -> Result<Charge, StoreError> {
    let chat_tat = t.tat(Scope::Chat, chat_id)?;
    let operator_tat = t.tat(Scope::Operator, operator)?;
    let chat = limits.chat.decide(chat_tat, now_ms);
    let op = limits.operator.decide(operator_tat, now_ms);
    let standing = Quota {
        chat: Meter::of(&limits.chat, chat_tat, now_ms),
        operator: Meter::of(&limits.operator, operator_tat, now_ms),
    };
    // When both refuse, the longer wait is the one after which a retry really is admitted.
    let refusal = [(Scope::Chat, chat), (Scope::Operator, op)]
        .into_iter()
        .filter_map(|(scope, d)| match d {
            Decision::Reject { retry_after_ms, .. } => Some((scope, retry_after_ms)),
            Decision::Admit { .. } => None,
        })
        .max_by_key(|(_, wait)| *wait);
    if let Some((scope, retry_after_ms)) = refusal {
        // A TAT beyond what the clock allows (the clock stepped back) is stored clamped, so
        // time passing refills the bucket again.
        for (scope, limit, key, tat) in [
            (Scope::Chat, &limits.chat, chat_id, chat_tat),
            (Scope::Operator, &limits.operator, operator, operator_tat),
        ] {
            let clamped = limit.clamp(tat, now_ms);
            if tat.is_some_and(|tat| tat > clamped) {
                t.set_rate_window(scope, key, clamped);
            }
        }
        return Ok(Charge::Refused {
            scope,
            retry_after_ms,
            quota: standing,
        });
    }
    let (
        Decision::Admit {
            tat: chat_next,
            remaining: chat_remaining,
            reset_ms: chat_reset,
        },
        Decision::Admit {
            tat: op_next,
            remaining: op_remaining,
            reset_ms: op_reset,
        },
    ) = (chat, op)
    else {
        return Err(StoreError::Corrupt(
            "rate decision neither admitted nor refused".into(),
        ));
    };
    t.set_rate_window(Scope::Chat, chat_id, chat_next);
    t.set_rate_window(Scope::Operator, operator, op_next);
    Ok(Charge::Admitted(Quota {
        chat: Meter {
            remaining: chat_remaining,
            reset_ms: chat_reset,
        },
        operator: Meter {
            remaining: op_remaining,
            reset_ms: op_reset,
        },
    }))
}

/// Both scopes' standing without charging (for replays, which cost nothing).
pub(super) fn standing(
    windows: &impl Windows,
    limits: &SendLimits,
    chat_id: &str,
    operator: &str,
    now_ms: u64,
) -> Result<Quota, StoreError> {
    Ok(Quota {
        chat: Meter::of(&limits.chat, windows.tat(Scope::Chat, chat_id)?, now_ms),
        operator: Meter::of(
            &limits.operator,
            windows.tat(Scope::Operator, operator)?,
            now_ms,
        ),
    })
}

/// Where windows are read from: the mirror of committed windows, or a batch in the writer
/// (which sees the batch's own charges).
pub(super) trait Windows {
    /// The theoretical arrival time (GCRA state) of a metered key, if it has one.
    fn tat(&self, scope: Scope, key: &str) -> Result<Option<u64>, StoreError>;
}

impl Windows for WindowMirror {
    fn tat(&self, scope: Scope, key: &str) -> Result<Option<u64>, StoreError> {
        let windows = self.0.read().unwrap_or_else(PoisonError::into_inner);
        Ok(windows.get(&scope).and_then(|keys| keys.get(key)).copied())
    }
}

impl super::Store {
    /// The sender's rate-limit standing as of the last commit, without charging and without a
    /// read transaction (what a replay reports).
    pub fn rate_standing(
        &self,
        limits: &SendLimits,
        chat_id: &str,
        operator: &str,
        now_ms: u64,
    ) -> Result<Quota, StoreError> {
        standing(&self.published.windows, limits, chat_id, operator, now_ms)
    }
}
