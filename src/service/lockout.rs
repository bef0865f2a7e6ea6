//! Lockout (SPEC §4): `failures` failed authentications from one client within `window` lock
//! that client out of authentication for `duration`.
//!
//! A client is an IPv4 address or an IPv6 /64: one host is routinely handed a whole /64, so
//! counting single IPv6 addresses would give an attacker 2^64 fresh starts.
//!
//! Failures are counted in memory (a restart forgiving a few failures costs nothing), for at most
//! `MAX_TRACKED` clients: past that, the client whose last failure is oldest is forgotten first,
//! and a periodic sweep forgets clients whose failures have all left the window. A lockout, once
//! engaged, is written to the database — so it outlives a restart — and takes effect when the
//! writer publishes it, right after that commit. Its `auth.lockout` record is aggregated like
//! every other denial (`denials`), so an attacker rotating through addresses cannot flood the
//! trail: the first lockout of a client in a window commits with its record, the rest are
//! counted into the window's summary. Only a presented credential that is wrong counts as a
//! failure — a request with no credential at all is merely unauthenticated.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lru::LruCache;

use crate::config::AuthConfig;
use crate::domain::audit::{Action, Context, Outcome, Target};

use super::{Console, ServiceError};

/// Clients with recent failures kept at most.
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

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }
}

/// Recent failures by client, least recently failed first out.
pub struct Lockouts {
    policy: LockoutPolicy,
    failures: Mutex<LruCache<String, VecDeque<u64>>>,
}

impl Lockouts {
    pub fn new(policy: LockoutPolicy) -> Self {
        Self::with_capacity(policy, MAX_TRACKED)
    }

    fn with_capacity(policy: LockoutPolicy, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            policy,
            failures: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Counts a failure of `client`; returns the lock's end when this failure engages it. The
    /// client's count starts over then, so failures racing the lockout's commit do not engage it
    /// twice.
    fn count_failure(&self, client: &str, now_ms: u64) -> Option<u64> {
        let window_ms = self.policy.window_ms();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let times = failures.get_or_insert_mut(client.to_owned(), VecDeque::new);
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
        failures.pop(client);
        Some(now_ms + self.policy.duration.as_millis() as u64)
    }

    /// Forgets clients whose failures have all left the window.
    fn sweep(&self, now_ms: u64) {
        let window_ms = self.policy.window_ms();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        // Least recently failed first: stop at the first client still inside the window.
        while let Some((_, times)) = failures.peek_lru() {
            if times
                .back()
                .is_some_and(|t| now_ms.saturating_sub(*t) < window_ms)
            {
                break;
            }
            failures.pop_lru();
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The client an address belongs to: the address itself for IPv4, its /64 for IPv6 (an
/// IPv4-mapped IPv6 address is its IPv4 address). Text that is no address is its own client.
pub fn client_of(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !(u128::from(u64::MAX));
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_owned(),
    }
}

impl Console {
    /// Refuses authentication from a locked-out client.
    pub fn check_lockout(&self, address: Option<&str>) -> Result<(), ServiceError> {
        let Some(address) = address else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        match self.store.published().lockout_until(&client_of(address)) {
            Some(until) if until > now => Err(ServiceError::Locked {
                retry_after: Duration::from_millis(until - now),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `ctx`'s address; engages and records the lockout
    /// when this is the failure that reaches the limit. Returns once the lockout is in force.
    pub async fn authentication_failed(&self, ctx: &Context) {
        let Some(address) = ctx.client_ip.as_deref() else {
            return;
        };
        let client = client_of(address);
        let now = self.clock.now_ms();
        let Some(until) = self.lockouts.count_failure(&client, now) else {
            return;
        };
        tracing::warn!(
            event = "auth_lockout",
            client = %client,
            until_ms = until,
            "client locked out of authentication"
        );
        let lockout = ctx
            .draft(
                now,
                Action::AuthLockout,
                Target::new("address", &client),
                Outcome::Denied,
            )
            .detail("until_ms", until)
            .detail("failures", self.lockouts.policy.failures as u64);
        let record = self.admit_denial(lockout);
        if let Err(error) = self.store.lock_out(client, until, record).await {
            tracing::error!(event = "error", %error, "could not record a lockout");
        }
    }

    /// Forgets what no longer matters: clients with no recent failure, lockouts that ended.
    pub fn sweep_lockouts(&self) {
        let now = self.clock.now_ms();
        self.lockouts.sweep(now);
        self.store.published().forget_ended_lockouts(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            failures: 5,
            window: Duration::from_secs(900),
            duration: Duration::from_secs(900),
        }
    }

    #[test]
    fn the_fifth_failure_in_the_window_engages_the_lock_and_starts_over() {
        let lockouts = Lockouts::new(policy());
        for t in 0..4 {
            assert_eq!(lockouts.count_failure("10.0.0.1", t * 1000), None);
        }
        assert_eq!(lockouts.count_failure("10.0.0.2", 4_000), None);
        assert_eq!(lockouts.count_failure("10.0.0.1", 4_000), Some(904_000));
        assert_eq!(
            lockouts.count_failure("10.0.0.1", 4_001),
            None,
            "a failure racing the lockout's commit does not engage it again"
        );
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let lockouts = Lockouts::new(policy());
        for t in 0..4 {
            lockouts.count_failure("10.0.0.1", t);
        }
        assert_eq!(lockouts.count_failure("10.0.0.1", 900_000), None);
    }

    #[test]
    fn tracking_is_bounded_and_forgets_the_least_recent_first() {
        let lockouts = Lockouts::with_capacity(policy(), 3);
        for t in 0..4 {
            lockouts.count_failure("10.0.0.1", t);
        }
        for (n, client) in ["10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().enumerate() {
            lockouts.count_failure(client, 10 + n as u64);
        }
        assert_eq!(lockouts.tracked(), 3);
        assert_eq!(
            lockouts.count_failure("10.0.0.1", 20),
            None,
            "the oldest client was forgotten, its four failures with it"
        );
    }

    #[test]
    fn a_sweep_forgets_clients_with_no_failure_in_the_window() {
        let lockouts = Lockouts::new(policy());
        lockouts.count_failure("10.0.0.1", 0);
        lockouts.count_failure("10.0.0.2", 600_000);
        lockouts.sweep(900_000);
        assert_eq!(lockouts.tracked(), 1);
        lockouts.sweep(1_500_000);
        assert_eq!(lockouts.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_their_64_bit_prefix() {
        assert_eq!(
            client_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client_of("2001:db8:1:2::9"), "2001:db8:1:2::/64");
        assert_eq!(client_of("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_of("192.0.2.7"), "192.0.2.7");
    }
}
