//! Counts over the last minutes, kept in memory for the system-health cards ("rejections in the
//! last 5 minutes", "errors in the last hour"), where a Prometheus counter only knows its total.
//!
//! One slot per wall-clock minute for the last hour, each one atomic word holding its minute
//! (high 32 bits) and its count (low 32 bits): counting is one atomic update, no lock, and a
//! slot reused when its minute comes round again is restamped and reset in the same update.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

const SLOTS: u64 = 60;
const MINUTE_MS: u64 = 60_000;

pub struct RecentCount {
    slots: [Slot; SLOTS as usize],
}

impl Default for RecentCount {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

#[derive(Default)]
struct Slot(AtomicU64);

fn packed(minute: u64, count: u64) -> u64 {
    (minute << 32) | count.min(u64::from(u32::MAX))
}

impl RecentCount {
    pub fn add(&self) {
        self.add_at(now_ms());
    }

    /// Counted in the current minute and the `minutes - 1` before it (at most an hour).
    pub fn last(&self, minutes: u64) -> u64 {
        self.last_at(now_ms(), minutes)
    }

    fn add_at(&self, now_ms: u64) {
        let minute = now_ms / MINUTE_MS;
        let slot = &self.slots[(minute % SLOTS) as usize];
        let _ = slot.0.fetch_update(Relaxed, Relaxed, |word| {
            let count = if word >> 32 == minute {
                word & u64::from(u32::MAX)
            } else {
                0
            };
            Some(packed(minute, count + 1))
        });
    }

    fn last_at(&self, now_ms: u64, minutes: u64) -> u64 {
        let current = now_ms / MINUTE_MS;
        let since = current.saturating_sub(minutes.clamp(1, SLOTS) - 1);
        self.slots
            .iter()
            .map(|slot| slot.0.load(Relaxed))
            .filter(|word| (since..=current).contains(&(word >> 32)))
            .map(|word| word & u64::from(u32::MAX))
            .sum()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn counts_fall_out_of_the_window_as_minutes_pass() {
        let recent = RecentCount::default();
        recent.add_at(T);
        recent.add_at(T + MINUTE_MS);
        recent.add_at(T + MINUTE_MS);
        assert_eq!(recent.last_at(T + MINUTE_MS, 1), 2);
        assert_eq!(recent.last_at(T + MINUTE_MS, 5), 3);
        assert_eq!(recent.last_at(T + 5 * MINUTE_MS, 5), 2);
        assert_eq!(recent.last_at(T + 6 * MINUTE_MS, 5), 0);
    }

    #[test]
    fn a_slot_is_reset_when_its_minute_comes_round_again() {
        let recent = RecentCount::default();
        recent.add_at(T);
        recent.add_at(T + SLOTS * MINUTE_MS);
        assert_eq!(recent.last_at(T + SLOTS * MINUTE_MS, 60), 1);
    }
}
