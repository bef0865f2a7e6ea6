//! Counts over the last minutes, kept in memory for the system-health cards ("rejections in the
//! last 5 minutes", "errors in the last hour"), where a Prometheus counter only knows its total.
//!
//! One slot per wall-clock minute for the last hour, each an atomic count stamped with its
//! minute: counting is two atomic operations, no lock. A slot is reused when its minute comes
//! round again; a count made while another thread resets the slot for a new minute may be lost,
//! which a health figure can afford and the Prometheus counters beside it do not suffer.

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
struct Slot {
    minute: AtomicU64,
    count: AtomicU64,
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
        let stamped = slot.minute.load(Relaxed);
        if stamped != minute
            && slot
                .minute
                .compare_exchange(stamped, minute, Relaxed, Relaxed)
                .is_ok()
        {
            slot.count.store(0, Relaxed);
        }
        slot.count.fetch_add(1, Relaxed);
    }

    fn last_at(&self, now_ms: u64, minutes: u64) -> u64 {
        let current = now_ms / MINUTE_MS;
        let since = current.saturating_sub(minutes.clamp(1, SLOTS) - 1);
        self.slots
            .iter()
            .filter(|slot| (since..=current).contains(&slot.minute.load(Relaxed)))
            .map(|slot| slot.count.load(Relaxed))
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
