//! Lockout (SPEC §4): `failures` failed authentications from one client address within `window`
//! lock that address out of authentication for `duration`.
//!
//! Failures are counted in memory (a restart forgiving a few failures costs nothing); a lockout,
//! once engaged, is written to the database with its `auth.lockout` audit record, so it outlives a
//! restart. Only a presented credential that is wrong counts as a failure — a request with no
//! credential at all is merely unauthenticated.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::config::AuthConfig;
use crate::domain::audit::{Action, Context, Outcome, Target};

use super::{Console, ServiceError};

/// Addresses with recent failures kept at most; past it, stale ones are dropped first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub failures: usize,
    pub window: Duration,
    pub duration: Duration,
}

impl LockoutPolicy {
    pub fn from_config(auth: &AuthConfig) -> Self {
        let minutes = Duration::from_secs(auth.lockout_minutes * 60);
        Self {
            failures: auth.lockout_failures,
            window: minutes,
            duration: minutes,
        }
    }
}

pub struct Lockouts {
    policy: LockoutPolicy,
    failures: Mutex<HashMap<String, VecDeque<u64>>>,
    locked: Mutex<HashMap<String, u64>>,
}

impl Lockouts {
    pub fn new(policy: LockoutPolicy, locked: Vec<(String, u64)>) -> Self {
        Self {
            policy,
            failures: Mutex::default(),
            locked: Mutex::new(locked.into_iter().collect()),
        }
    }

    /// How much longer `address` is locked out at `now_ms`, if it is.
    pub fn remaining(&self, address: &str, now_ms: u64) -> Option<Duration> {
        let mut locked = self.locked.lock().unwrap_or_else(PoisonError::into_inner);
        match locked.get(address) {
            Some(&until) if until > now_ms => Some(Duration::from_millis(until - now_ms)),
            Some(_) => {
                locked.remove(address);
                None
            }
            None => None,
        }
    }

    /// Counts a failure; returns the lock's end when this failure engages it.
    fn count_failure(&self, address: &str, now_ms: u64) -> Option<u64> {
        let window_ms = self.policy.window.as_millis() as u64;
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED && !failures.contains_key(address) {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now_ms.saturating_sub(*t) < window_ms)
            });
        }
        let times = failures.entry(address.to_owned()).or_default();
        times.push_back(now_ms);
        while times
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= window_ms)
        {
            times.pop_front();
        }
        if times.len() < self.policy.failures {
            return None;
        }
        failures.remove(address);
        let until = now_ms + self.policy.duration.as_millis() as u64;
        self.locked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address.to_owned(), until);
        Some(until)
    }
}

impl Console {
    /// Refuses authentication from a locked-out address.
    pub fn check_lockout(&self, address: Option<&str>) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        match address.and_then(|a| self.lockouts.remaining(a, now)) {
            Some(retry_after) => Err(ServiceError::Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `ctx`'s address; engages and records the lockout
    /// when this is the failure that reaches the limit.
    pub async fn authentication_failed(&self, ctx: &Context) {
        let Some(address) = ctx.client_ip.as_deref() else {
            return;
        };
        let now = self.clock.now_ms();
        let Some(until) = self.lockouts.count_failure(address, now) else {
            return;
        };
        tracing::warn!(
            event = "auth_lockout",
            client_ip = address,
            until_ms = until,
            "address locked out of authentication"
        );
        let audit = ctx
            .draft(
                now,
                Action::AuthLockout,
                Target::new("address", address),
                Outcome::Denied,
            )
            .detail("until_ms", until)
            .detail("failures", self.lockouts.policy.failures as u64);
        if let Err(error) = self.store.lock_out(address.to_owned(), until, audit).await {
            tracing::error!(event = "error", %error, "could not record a lockout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockouts() -> Lockouts {
        Lockouts::new(
            LockoutPolicy {
                failures: 5,
                window: Duration::from_secs(900),
                duration: Duration::from_secs(900),
            },
            Vec::new(),
        )
    }

    #[test]
    fn the_fifth_failure_in_the_window_locks_the_address() {
        let lockouts = lockouts();
        for t in 0..4 {
            assert_eq!(lockouts.count_failure("10.0.0.1", t * 1000), None);
        }
        assert!(lockouts.remaining("10.0.0.1", 4_000).is_none());
        assert_eq!(lockouts.count_failure("10.0.0.1", 4_000), Some(904_000));
        assert_eq!(
            lockouts.remaining("10.0.0.1", 4_000),
            Some(Duration::from_secs(900))
        );
        assert!(lockouts.remaining("10.0.0.2", 4_000).is_none());
        assert!(
            lockouts.remaining("10.0.0.1", 904_000).is_none(),
            "it expires"
        );
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let lockouts = lockouts();
        for t in 0..4 {
            lockouts.count_failure("10.0.0.1", t);
        }
        assert_eq!(lockouts.count_failure("10.0.0.1", 900_000), None);
    }
}
