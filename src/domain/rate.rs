//! GCRA — the generic cell rate algorithm, a leaky-bucket meter kept as one timestamp per key
//! (SPEC §7).
//!
//! A limit of `per_minute` with `burst` admits `burst` requests at once and then one every
//! `60 000 / per_minute` ms. The state is the *theoretical arrival time* (TAT): when the bucket
//! would be empty if requests kept arriving at the limit. A request at `now` is admitted iff
//! `TAT − (burst − 1)·T ≤ now`; admitting it moves TAT to `max(TAT, now) + T`. One `u64` per key,
//! exact arithmetic, no timers: idle keys need no upkeep, and a key whose TAT has passed is
//! indistinguishable from a fresh one.
//!
//! A stored TAT is read through `clamp`: it can never lie further ahead of now than a fully
//! spent bucket, `burst·T`. Only a wall clock stepped backwards puts it further, and without the
//! clamp every recent sender would be refused for as long as the step — across restarts, since
//! the TAT is stored. The clamped TAT is stored back even when the request is refused (else it
//! would be clamped anew, relative to a moving now, forever), so a step back costs at most one
//! interval.

use serde::{Deserialize, Serialize};

/// A configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per_minute: u64,
    pub burst: u64,
}

/// The result of metering one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted: store `tat`; `remaining` more would be admitted right now; the bucket is full
    /// again after `reset_ms`.
    Admit {
        tat: u64,
        remaining: u64,
        reset_ms: u64,
    },
    /// Refused: retrying after `retry_after_ms` would be admitted (if nothing else is charged).
    Reject { retry_after_ms: u64, reset_ms: u64 },
}

impl Limit {
    /// Milliseconds between requests at the sustained rate (at least 1).
    pub fn interval_ms(&self) -> u64 {
        (60_000 / self.per_minute.max(1)).max(1)
    }

    /// How far TAT may run ahead of now: the burst beyond the first request.
    fn tolerance_ms(&self) -> u64 {
        self.interval_ms() * self.burst.saturating_sub(1)
    }

    /// How far TAT can lie ahead of now: a bucket spent to its last request.
    fn span_ms(&self) -> u64 {
        self.interval_ms() * self.burst.max(1)
    }

    /// The stored `tat` as the clock at `now_ms` allows it: not before now (an idle key is a
    /// full bucket) and not beyond a fully spent bucket (a clock stepped back).
    pub fn clamp(&self, tat: Option<u64>, now_ms: u64) -> u64 {
        tat.unwrap_or(now_ms)
            .clamp(now_ms, now_ms.saturating_add(self.span_ms()))
    }

    /// Seconds for the bucket to refill from empty: the window `RateLimit-Policy` reports.
    pub fn window_s(&self) -> u64 {
        self.span_ms().div_ceil(1000)
    }

    /// Meters a request at `now_ms` against the stored `tat` (`None` for a key never seen).
    pub fn decide(&self, tat: Option<u64>, now_ms: u64) -> Decision {
        let tat = self.clamp(tat, now_ms);
        let allow_at = tat.saturating_sub(self.tolerance_ms());
        if now_ms < allow_at {
            return Decision::Reject {
                retry_after_ms: allow_at - now_ms,
                reset_ms: tat - now_ms,
            };
        }
        let next = tat + self.interval_ms();
        Decision::Admit {
            tat: next,
            remaining: self.remaining(next, now_ms),
            reset_ms: next - now_ms,
        }
    }

    /// How many requests `tat` still admits at `now_ms`, for the `RateLimit` header.
    pub fn remaining(&self, tat: u64, now_ms: u64) -> u64 {
        let headroom = (now_ms + self.tolerance_ms()).checked_sub(tat);
        headroom
            .map_or(0, |h| h / self.interval_ms() + 1)
            .min(self.burst)
    }
}

/// What a send is metered against (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Chat,
    Operator,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Chat, Scope::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

/// The two limits every send must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub chat: Limit,
    pub operator: Limit,
}

/// One scope's standing after a request: what the `RateLimit` header reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    pub remaining: u64,
    pub reset_ms: u64,
}

impl Meter {
    pub fn of(limit: &Limit, tat: Option<u64>, now_ms: u64) -> Self {
        let tat = limit.clamp(tat, now_ms);
        Self {
            remaining: limit.remaining(tat, now_ms),
            reset_ms: tat - now_ms,
        }
    }
}

/// Both scopes' standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub chat: Meter,
    pub operator: Meter,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        per_minute: 30,
        burst: 10,
    };

    fn run(limit: Limit, mut tat: Option<u64>, now: u64, requests: usize) -> (usize, Option<u64>) {
        let mut admitted = 0;
        for _ in 0..requests {
            if let Decision::Admit { tat: next, .. } = limit.decide(tat, now) {
                tat = Some(next);
                admitted += 1;
            }
        }
        (admitted, tat)
    }

    #[test]
    fn admits_exactly_the_burst_at_once() {
        let (admitted, _) = run(LIMIT, None, 1_000_000, 100);
        assert_eq!(admitted, 10);
    }

    #[test]
    fn refills_at_the_sustained_rate_and_retry_after_is_exact() {
        let now = 1_000_000;
        let (_, tat) = run(LIMIT, None, now, 10);
        let Decision::Reject { retry_after_ms, .. } = LIMIT.decide(tat, now) else {
            panic!("the bucket is empty");
        };
        assert_eq!(retry_after_ms, 2_000);
        assert!(matches!(
            LIMIT.decide(tat, now + retry_after_ms - 1),
            Decision::Reject { .. }
        ));
        assert!(matches!(
            LIMIT.decide(tat, now + retry_after_ms),
            Decision::Admit { .. }
        ));
    }

    #[test]
    fn remaining_counts_down_and_an_idle_key_is_fresh() {
        let now = 5_000;
        let Decision::Admit { tat, remaining, .. } = LIMIT.decide(None, now) else {
            panic!("a fresh key is admitted");
        };
        assert_eq!(remaining, 9);
        let Decision::Admit { remaining, .. } = LIMIT.decide(Some(tat), now) else {
            panic!("the burst allows a second");
        };
        assert_eq!(remaining, 8);
        let (admitted, _) = run(LIMIT, Some(tat), now + 3_600_000, 100);
        assert_eq!(admitted, 10, "an hour later the key is as good as new");
    }

    #[test]
    fn burst_of_one_is_a_plain_rate() {
        let limit = Limit {
            per_minute: 60,
            burst: 1,
        };
        let (admitted, tat) = run(limit, None, 0, 5);
        assert_eq!(admitted, 1);
        assert!(matches!(limit.decide(tat, 1_000), Decision::Admit { .. }));
    }

    #[test]
    fn a_clock_stepped_back_costs_at_most_one_interval() {
        let before_step = 10_000_000;
        let (_, tat) = run(LIMIT, None, before_step, 10);
        let after_step = before_step - 3_600_000;
        let Decision::Reject { retry_after_ms, .. } = LIMIT.decide(tat, after_step) else {
            panic!("the bucket was spent");
        };
        assert_eq!(retry_after_ms, LIMIT.interval_ms());
        let stored_back = Some(LIMIT.clamp(tat, after_step));
        assert!(matches!(
            LIMIT.decide(stored_back, after_step + LIMIT.interval_ms()),
            Decision::Admit { .. }
        ));
        let meter = Meter::of(&LIMIT, tat, after_step);
        assert_eq!(meter.reset_ms, LIMIT.span_ms());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn limit() -> impl Strategy<Value = Limit> {
            (1u64..=100_000, 1u64..=1_000)
                .prop_map(|(per_minute, burst)| Limit { per_minute, burst })
        }

        proptest! {
            #[test]
            fn no_span_admits_more_than_the_burst_and_the_rate(
                limit in (1u64..=100_000, 1u64..=50).prop_map(|(per_minute, burst)| Limit { per_minute, burst }),
                start in 0u64..1u64 << 45,
                gaps in prop::collection::vec(prop_oneof![3 => Just(0u64), 1 => 0u64..5_000], 1..400),
            ) {
                let mut tat = None;
                let mut now = start;
                let mut admitted = 0u64;
                for gap in gaps {
                    now += gap;
                    if let Decision::Admit { tat: next, .. } = limit.decide(tat, now) {
                        tat = Some(next);
                        admitted += 1;
                    }
                    let bound = limit.burst + (now - start) / limit.interval_ms();
                    prop_assert!(admitted <= bound, "{admitted} admitted, bound {bound}");
                }
            }

            #[test]
            fn a_refusal_says_exactly_when_to_retry(
                limit in limit(),
                now in 0u64..1u64 << 45,
                spent in 0u64..2_000,
            ) {
                let mut tat = None;
                for _ in 0..spent {
                    if let Decision::Admit { tat: next, .. } = limit.decide(tat, now) {
                        tat = Some(next);
                    }
                }
                if let Decision::Reject { retry_after_ms, .. } = limit.decide(tat, now) {
                    prop_assert!(retry_after_ms > 0);
                    let admitted_then = matches!(limit.decide(tat, now + retry_after_ms), Decision::Admit { .. });
                    prop_assert!(admitted_then);
                    let refused_before = matches!(limit.decide(tat, now + retry_after_ms - 1), Decision::Reject { .. });
                    prop_assert!(refused_before);
                }
            }

            #[test]
            fn remaining_counts_exactly_the_requests_still_admitted_now(
                limit in limit(),
                now in 0u64..1u64 << 45,
                spent in 0u64..50,
            ) {
                let mut tat = None;
                let mut last_remaining = limit.burst;
                for _ in 0..=spent {
                    match limit.decide(tat, now) {
                        Decision::Admit { tat: next, remaining, .. } => {
                            tat = Some(next);
                            last_remaining = remaining;
                        }
                        Decision::Reject { .. } => {
                            prop_assert_eq!(last_remaining, 0);
                            return Ok(());
                        }
                    }
                }
                prop_assert!(last_remaining < limit.burst);
                for _ in 0..last_remaining {
                    let Decision::Admit { tat: next, .. } = limit.decide(tat, now) else {
                        return Err(TestCaseError::fail("refused a request `remaining` promised"));
                    };
                    tat = Some(next);
                }
                let refused = matches!(limit.decide(tat, now), Decision::Reject { .. });
                prop_assert!(refused);
            }

            #[test]
            fn any_stored_state_and_clock_are_metered_without_panic(
                limit in limit(),
                tat: Option<u64>,
                now in 0u64..u64::MAX / 2,
            ) {
                let _ = limit.decide(tat, now);
                let _ = limit.remaining(tat.unwrap_or(now), now);
            }
        }
    }
}
