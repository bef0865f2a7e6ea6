//! What the process keeps in memory beside the file, and the one place it changes.
//!
//! Keys, sessions, lockouts and rate windows are read on nearly every request, and completed
//! sends are replayed again and again; reading them from memory spares a read transaction each
//! time. A copy is only safe while it cannot drift from the file, so it changes in exactly one
//! way: an operation in the writer records its effect as a `Change` in its batch, and the writer
//! applies the batch's changes here right after the batch commits — never when it aborts (the
//! changes are dropped with the transaction), and whether or not the caller is still waiting.
//! A handler cancelled mid-request (a client hanging up, the request deadline, shutdown) can
//! therefore never leave a committed change unpublished, nor publish one that did not commit.
//!
//! Invariant: nothing outside the writer's `publish` step mutates this state, except dropping
//! entries that have expired by their own timestamps, which reads as their absence anyway.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{ReadTransaction, ReadableTable};

use super::StoreError;
use super::codec;
use super::rate::{WindowMap, WindowMirror};
use super::replays::Replays;
use super::tables::{API_KEYS, LOCKOUTS, SESSIONS};
use crate::domain::api_key::ApiKey;
use crate::domain::audit::{Action, Event};
use crate::domain::idempotency::{IdempotencyKey, IdempotencyRecord};
use crate::domain::message::Message;
use crate::domain::rate::Scope;
use crate::domain::session::{Session, TokenHash};

/// One committed change to the published state.
#[derive(Debug)]
pub(super) enum Change {
    /// A key was created or changed (revoked, used).
    Key(ApiKey),
    /// A session was opened or touched.
    Session {
        hash: TokenHash,
        session: Session,
    },
    SessionEnded(TokenHash),
    Lockout {
        address: String,
        until_ms: u64,
    },
    /// An ended lockout was deleted.
    LockoutDeleted(String),
    /// A send completed its idempotency record: replays are answered from memory.
    Completed {
        scope: String,
        key: IdempotencyKey,
        record: Arc<IdempotencyRecord>,
    },
    /// An expired idempotency record was deleted: no copy of it may outlive it.
    RecordDeleted {
        scope: String,
        key: String,
    },
}

/// What one committed batch changed.
pub(super) struct Committed {
    /// Rate windows deleted, applied before `windows` (a window deleted and then charged again
    /// in one batch ends up charged).
    pub dropped_windows: Vec<(Scope, String)>,
    pub windows: WindowMap,
    pub changes: Vec<Change>,
    /// Audit events appended, by `Action` discriminant (for the metrics; not published state).
    pub audit_events: [u32; Action::ALL.len()],
    /// What the batch appended that its `CommitListener` wants, in commit order.
    pub appended: Vec<Appended>,
}

/// Something a batch appended, for the `CommitListener`.
#[derive(Debug, Clone)]
pub enum Appended {
    Audit(Event),
    Message { chat_id: String, message: Message },
}

/// Which appends a `CommitListener` wants now: batches keep copies of only those.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kept {
    pub audit: bool,
    pub messages: bool,
}

/// Told of every audit event and message once committed, in commit order (the event bus). It runs
/// on the writer thread, between a commit and its answers, so it must never wait.
pub trait CommitListener: Send + Sync {
    fn wants(&self) -> Kept;
    fn committed(&self, appended: &Appended);
}

pub struct Published {
    keys: RwLock<HashMap<String, ApiKey>>,
    sessions: RwLock<HashMap<TokenHash, Session>>,
    lockouts: RwLock<HashMap<String, u64>>,
    pub(super) windows: WindowMirror,
    replays: Replays,
    listener: OnceLock<Arc<dyn CommitListener>>,
}

impl Published {
    /// The state as stored, read in one transaction before the writer starts, so no commit can
    /// fall between loading and publishing.
    pub(super) fn load(txn: &ReadTransaction) -> Result<Self, StoreError> {
        let mut keys = HashMap::new();
        for row in txn.open_table(API_KEYS)?.iter()? {
            let key: ApiKey = codec::decode(row?.1.value())?;
            keys.insert(key.id.clone(), key);
        }
        let mut sessions = HashMap::new();
        for row in txn.open_table(SESSIONS)?.iter()? {
            let (hash, raw) = row?;
            let hash: TokenHash = hash
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("session key is not a hash".into()))?;
            sessions.insert(hash, codec::decode(raw.value())?);
        }
        let mut lockouts = HashMap::new();
        for row in txn.open_table(LOCKOUTS)?.iter()? {
            let (address, until) = row?;
            lockouts.insert(address.value().to_owned(), until.value());
        }
        Ok(Self {
            keys: RwLock::new(keys),
            sessions: RwLock::new(sessions),
            lockouts: RwLock::new(lockouts),
            windows: WindowMirror::load(txn)?,
            replays: Replays::default(),
            listener: OnceLock::new(),
        })
    }

    /// Sets who is told of committed appends (once; later calls are ignored).
    pub fn listen(&self, listener: Arc<dyn CommitListener>) {
        let _ = self.listener.set(listener);
    }

    /// Which appends a batch should keep copies of.
    pub(super) fn wanted(&self) -> Kept {
        self.listener.get().map(|l| l.wants()).unwrap_or_default()
    }

    /// Applies a committed batch's changes, in the order its operations made them.
    pub(super) fn apply(&self, committed: Committed) {
        if let Some(listener) = self.listener.get() {
            for appended in &committed.appended {
                listener.committed(appended);
            }
        }
        self.windows.forget(&committed.dropped_windows);
        self.windows.publish(committed.windows);
        for change in committed.changes {
            match change {
                Change::Key(key) => {
                    write(&self.keys).insert(key.id.clone(), key);
                }
                Change::Session { hash, session } => {
                    write(&self.sessions).insert(hash, session);
                }
                Change::SessionEnded(hash) => {
                    write(&self.sessions).remove(&hash);
                }
                Change::Lockout { address, until_ms } => {
                    write(&self.lockouts).insert(address, until_ms);
                }
                Change::LockoutDeleted(address) => {
                    write(&self.lockouts).remove(&address);
                }
                Change::RecordDeleted { scope, key } => self.replays.forget(&scope, &key),
                Change::Completed { scope, key, record } => {
                    self.replays.keep(&scope, &key, record);
                }
            }
        }
    }

    /// `f` of the key with this id, if there is one.
    pub fn with_key<T>(&self, id: &str, f: impl FnOnce(&ApiKey) -> T) -> Option<T> {
        read(&self.keys).get(id).map(f)
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = read(&self.keys).values().cloned().collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        keys
    }

    /// `f` of the session under this token hash, if there is one.
    pub fn with_session<T>(&self, hash: &TokenHash, f: impl FnOnce(&Session) -> T) -> Option<T> {
        read(&self.sessions).get(hash).map(f)
    }

    /// Until when `address` is locked out, if a lockout was ever recorded for it.
    pub fn lockout_until(&self, address: &str) -> Option<u64> {
        read(&self.lockouts).get(address).copied()
    }

    /// Forgets lockouts that ended by `now_ms`; an ended lockout reads as none anyway.
    pub fn forget_ended_lockouts(&self, now_ms: u64) {
        write(&self.lockouts).retain(|_, until| *until > now_ms);
    }

    /// The completed record of `(scope, key)`, if one was completed in this process and is still
    /// live at `now_ms`.
    pub fn completed(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        now_ms: u64,
    ) -> Option<Arc<IdempotencyRecord>> {
        self.replays.get(scope, key, now_ms)
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
