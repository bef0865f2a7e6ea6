//! Which idempotency keys a task in this process is working on right now.
//!
//! The first request for a key becomes its *leader* and does the work; concurrent requests for the
//! same key become *followers* and wait for the leader to finish, then read its stored answer.
//! So 50 simultaneous retries cost one claim, not 50 trips through the writer. When no leader is
//! registered for a key whose record is still in progress, nobody in this process is working on
//! it: the claim was abandoned by a crash, and the next leader takes it over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

type Slot = (String, String);

#[derive(Default)]
pub struct Inflight {
    /// Each key worked on, with when its leader began.
    leaders: Mutex<HashMap<Slot, (watch::Receiver<()>, Instant)>>,
}

pub enum Turn {
    /// This task works on the key; dropping the guard releases it and wakes the followers.
    Lead(LeaderGuard),
    /// Another task works on the key; wait on this, then look at the record again.
    Follow(Finished),
}

pub struct LeaderGuard {
    registry: Arc<Inflight>,
    slot: Slot,
    _done: watch::Sender<()>,
}

pub struct Finished(watch::Receiver<()>);

impl Inflight {
    pub fn join(self: &Arc<Self>, scope: &str, key: &str) -> Turn {
        let slot = (scope.to_owned(), key.to_owned());
        let mut leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((receiver, _)) = leaders.get(&slot) {
            return Turn::Follow(Finished(receiver.clone()));
        }
        let (done, receiver) = watch::channel(());
        leaders.insert(slot.clone(), (receiver, Instant::now()));
        Turn::Lead(LeaderGuard {
            registry: self.clone(),
            slot,
            _done: done,
        })
    }
}

impl Inflight {
    /// Keys being worked on, and how long the oldest of them has been.
    pub fn in_progress(&self) -> (usize, Option<Duration>) {
        let leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = leaders.values().map(|(_, began)| began.elapsed()).max();
        (leaders.len(), oldest)
    }
}

impl Finished {
    /// Resolves when the leader's guard is dropped.
    pub async fn wait(mut self) {
        // The leader never sends; `changed` returns once its sender is dropped.
        while self.0.changed().await.is_ok() {}
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.registry
            .leaders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_followers_wake_when_it_finishes() {
        let registry = Arc::new(Inflight::default());
        let Turn::Lead(guard) = registry.join("p", "k") else {
            panic!("first caller leads");
        };
        let Turn::Follow(finished) = registry.join("p", "k") else {
            panic!("second caller follows");
        };
        assert!(matches!(registry.join("p", "other"), Turn::Lead(_)));
        let waiter = tokio::spawn(finished.wait());
        drop(guard);
        waiter.await.unwrap();
        assert!(matches!(registry.join("p", "k"), Turn::Lead(_)));
    }
}
