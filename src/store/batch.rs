//! `WriteTables`: one write transaction's tables, shared by every operation of a batch, with a
//! write-back for the few records nearly every send rewrites.
//!
//! Opening a redb table is a lookup in the table tree and closing it writes its root back; paid
//! once per batch rather than once per use, it stops dominating small operations.
//!
//! A send rewrites its chat twice (one message in, one answer out, each moving the chat in the
//! activity index), both rate windows, and the audit chain head twice. Within a batch of sends
//! those are the same few records over and over, so they are kept here, read through and
//! written once when the batch is flushed: the chat record and its index entry once per chat, the
//! operator's window once per operator, the chain head once per batch. Callers see exactly what
//! they would see had every write gone straight to its table.
//!
//! Invariant: the chats, chat index, rate windows and the chain head are reached only through
//! the methods here, never through the raw tables, so nothing reads around the write-back (the
//! two read-only views for retention say what they leave out).

use std::collections::HashMap;

use redb::{ReadableTable, Table, WriteTransaction};

use super::StoreError;
use super::audit::Head;
use super::audit_partition::{Partition, PartitionTables, drop_partition};
use super::codec;
use super::published::{Appended, Change, Committed, Kept};
use super::rate::{WindowMap, Windows};
use super::tables::{
    API_KEYS, CHAT_INDEX, CHATS, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, LOCKOUTS, MESSAGES, META,
    RATE_WINDOWS, RETENTION_RUNS, SESSIONS, chat_index_key,
};
use crate::domain::audit::{Action, Event};
use crate::domain::chat::Chat;
use crate::domain::message::Message;
use crate::domain::rate::Scope;

/// Where the audit chain head is kept in `meta`.
pub const AUDIT_HEAD_KEY: &str = "audit_head";

pub struct WriteTables<'t> {
    txn: &'t WriteTransaction,
    pub messages: Table<'t, (&'static str, u64, u64), &'static [u8]>,
    pub idempotency: Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub idempotency_expiry: Table<'t, (u64, &'static str, &'static str), ()>,
    pub lockouts: Table<'t, &'static str, u64>,
    pub sessions: Table<'t, &'static [u8], &'static [u8]>,
    pub api_keys: Table<'t, &'static str, &'static [u8]>,
    /// The audit partition last reached, opened on first use: a batch of sends appends to one.
    audit: Option<PartitionTables<'t>>,
    pub retention_runs: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    chats: Table<'t, &'static str, &'static [u8]>,
    chat_index: Table<'t, (u64, &'static str), ()>,
    rate_windows: Table<'t, (&'static str, &'static str), u64>,
    pending: Pending,
    /// What the batch's operations changed in the published state, applied once it commits.
    changes: Vec<Change>,
}

/// Records written in this batch and not yet in their tables.
#[derive(Default)]
struct Pending {
    chats: HashMap<String, PendingChat>,
    rate_windows: WindowMap,
    /// Windows deleted in this batch, before any written after them.
    dropped_windows: Vec<(Scope, String)>,
    audit_head: Option<Head>,
    /// Audit events appended, by `Action` discriminant.
    audit_events: [u32; Action::ALL.len()],
    /// What is kept of the batch's appends for the `CommitListener`, and what it wants.
    appended: Vec<Appended>,
    kept: Kept,
}

struct PendingChat {
    chat: Chat,
    /// The activity the chat index holds for this chat (`None`: not indexed yet).
    indexed_activity: Option<u64>,
    /// Whether `chat` differs from what is stored, and so is written at flush.
    changed: bool,
}

/// Windows as this batch has left them.
impl Windows for WriteTables<'_> {
    fn tat(&self, scope: Scope, key: &str) -> Result<Option<u64>, StoreError> {
        let pending = self.pending.rate_windows.get(&scope);
        if let Some(tat) = pending.and_then(|windows| windows.get(key)) {
            return Ok(Some(*tat));
        }
        Ok(self
            .rate_windows
            .get((scope.as_str(), key))?
            .map(|v| v.value()))
    }
}

impl<'t> WriteTables<'t> {
    /// The batch's tables; `kept` says which appends to keep a copy of for `Committed`.
    pub fn open(txn: &'t WriteTransaction, kept: Kept) -> Result<Self, redb::TableError> {
        Ok(Self {
            txn,
            messages: txn.open_table(MESSAGES)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            idempotency_expiry: txn.open_table(IDEMPOTENCY_EXPIRY)?,
            lockouts: txn.open_table(LOCKOUTS)?,
            sessions: txn.open_table(SESSIONS)?,
            api_keys: txn.open_table(API_KEYS)?,
            audit: None,
            retention_runs: txn.open_table(RETENTION_RUNS)?,
            meta: txn.open_table(META)?,
            chats: txn.open_table(CHATS)?,
            chat_index: txn.open_table(CHAT_INDEX)?,
            rate_windows: txn.open_table(RATE_WINDOWS)?,
            pending: Pending {
                kept,
                ..Pending::default()
            },
            changes: Vec::new(),
        })
    }

    /// The chat as this batch has left it. A stored chat read here is kept for the batch, so
    /// the read that precedes every update is the only one.
    pub fn chat(&mut self, id: &str) -> Result<Option<Chat>, StoreError> {
        if let Some(pending) = self.pending.chats.get(id) {
            return Ok(Some(pending.chat.clone()));
        }
        let Some(stored) = codec::get::<_, Chat>(&self.chats, id)? else {
            return Ok(None);
        };
        let pending = PendingChat {
            indexed_activity: Some(stored.activity_ms),
            chat: stored.clone(),
            changed: false,
        };
        self.pending.chats.insert(id.to_owned(), pending);
        Ok(Some(stored))
    }

    /// Stores `chat` (new or changed), keeping the activity index in step at flush.
    pub fn put_chat(&mut self, chat: Chat) -> Result<(), StoreError> {
        if let Some(pending) = self.pending.chats.get_mut(chat.id.as_str()) {
            pending.chat = chat;
            pending.changed = true;
            return Ok(());
        }
        // Not read in this batch: a new chat, unless a caller skipped `chat`.
        let indexed_activity =
            codec::get::<_, Chat>(&self.chats, chat.id.as_str())?.map(|stored| stored.activity_ms);
        let pending = PendingChat {
            chat,
            indexed_activity,
            changed: true,
        };
        self.pending.chats.insert(pending.chat.id.clone(), pending);
        Ok(())
    }

    pub fn set_rate_window(&mut self, scope: Scope, key: &str, tat: u64) {
        let windows = self.pending.rate_windows.entry(scope).or_default();
        match windows.get_mut(key) {
            Some(pending) => *pending = tat,
            None => {
                windows.insert(key.to_owned(), tat);
            }
        }
    }

    /// The rate windows as stored, without this batch's charges (which `tat` sees): for
    /// retention, which looks for idle ones and checks each through `tat` before it drops it.
    pub fn stored_rate_windows(&self) -> &Table<'t, (&'static str, &'static str), u64> {
        &self.rate_windows
    }

    /// Deletes a rate window (one idle long enough that it reads as none).
    pub fn drop_rate_window(&mut self, scope: Scope, key: &str) -> Result<(), StoreError> {
        if let Some(windows) = self.pending.rate_windows.get_mut(&scope) {
            windows.remove(key);
        }
        self.rate_windows.remove((scope.as_str(), key))?;
        self.pending.dropped_windows.push((scope, key.to_owned()));
        Ok(())
    }

    /// The chats as stored, without this batch's changes: for retention, which needs only the
    /// ids of chats old enough to have old messages (a chat created in this batch has none).
    pub fn stored_chats(&self) -> &Table<'t, &'static str, &'static [u8]> {
        &self.chats
    }

    /// A record kept in `meta` (chain checkpoint, schedule state).
    pub fn meta<T: codec::Record>(&self, key: &str) -> Result<Option<T>, StoreError> {
        codec::get(&self.meta, key)
    }

    pub fn set_meta<T: codec::Record>(&mut self, key: &str, value: &T) -> Result<(), StoreError> {
        self.meta.insert(key, codec::encode(value)?.as_slice())?;
        Ok(())
    }

    /// The newest audit event, where the next one chains on (`None`: the trail is empty).
    pub fn audit_head(&self) -> Result<Option<Head>, StoreError> {
        match self.pending.audit_head {
            Some(head) => Ok(Some(head)),
            None => codec::get(&self.meta, AUDIT_HEAD_KEY),
        }
    }

    /// The tables of an audit partition, created with its first event. Only one partition is
    /// open at a time: the one a batch appends to, or the one retention works on.
    pub fn audit_partition(
        &mut self,
        partition: Partition,
    ) -> Result<&mut PartitionTables<'t>, StoreError> {
        let tables = match self.audit.take() {
            Some(open) if open.partition == partition => open,
            _ => PartitionTables::open(self.txn, partition)?,
        };
        Ok(self.audit.insert(tables))
    }

    /// Drops every table of an audit partition, with all its events and index entries.
    pub fn drop_audit_partition(&mut self, partition: Partition) -> Result<(), StoreError> {
        if self
            .audit
            .as_ref()
            .is_some_and(|open| open.partition == partition)
        {
            self.audit = None;
        }
        drop_partition(self.txn, partition)
    }

    pub fn set_audit_head(&mut self, head: Head) {
        self.pending.audit_head = Some(head);
    }

    /// Counts an appended event, and keeps it when the batch keeps them.
    pub fn appended_audit_event(&mut self, event: &Event) {
        self.pending.audit_events[event.record.action as usize] += 1;
        if self.pending.kept.audit {
            self.pending.appended.push(Appended::Audit(event.clone()));
        }
    }

    /// Keeps an appended message when the batch keeps them.
    pub fn appended_message(&mut self, chat_id: &str, message: &Message) {
        if self.pending.kept.messages {
            self.pending.appended.push(Appended::Message {
                chat_id: chat_id.to_owned(),
                message: message.clone(),
            });
        }
    }

    /// Records an effect on the published state, to be applied if and when the batch commits.
    pub(super) fn publish(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Writes the batch's pending records to their tables, and returns what the batch changed
    /// in the published state, to apply once it is committed. The writer calls it once, after
    /// the last operation and before the commit.
    pub(super) fn flush(mut self) -> Result<Committed, StoreError> {
        for (id, pending) in self.pending.chats.drain() {
            if !pending.changed {
                continue;
            }
            let chat = &pending.chat;
            self.chats
                .insert(id.as_str(), codec::encode(chat)?.as_slice())?;
            if pending.indexed_activity != Some(chat.activity_ms) {
                if let Some(previous) = pending.indexed_activity {
                    self.chat_index.remove(chat_index_key(previous, &id))?;
                }
                self.chat_index
                    .insert(chat_index_key(chat.activity_ms, &id), ())?;
            }
        }
        for (scope, windows) in &self.pending.rate_windows {
            for (key, tat) in windows {
                self.rate_windows
                    .insert((scope.as_str(), key.as_str()), *tat)?;
            }
        }
        if let Some(head) = self.pending.audit_head {
            self.meta
                .insert(AUDIT_HEAD_KEY, codec::encode(&head)?.as_slice())?;
        }
        Ok(Committed {
            dropped_windows: self.pending.dropped_windows,
            windows: self.pending.rate_windows,
            changes: self.changes,
            audit_events: self.pending.audit_events,
            appended: self.pending.appended,
        })
    }
}
