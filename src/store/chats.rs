//! Chats and the activity index.

use redb::{ReadableTable, Table};

use super::audit;
use super::codec::{self, Record};
use super::tables::{CHAT_INDEX, CHATS, chat_index_key};
use super::{Store, StoreError};
use crate::domain::audit::Draft;
use crate::domain::chat::{Chat, ChatPatch};
use crate::domain::cursor::ChatCursor;

impl Record for Chat {
    const VERSION: u8 = 1;
    const NAME: &'static str = "chat";
}

/// A chat with that id already exists.
#[derive(Debug)]
pub struct ChatExists;

pub(super) type ChatTable<'t> = Table<'t, &'static str, &'static [u8]>;
pub(super) type ChatIndexTable<'t> = Table<'t, (u64, &'static str), ()>;

impl Store {
    /// Creates `chat` and records `audit` with it.
    pub async fn create_chat(
        &self,
        chat: Chat,
        audit: Draft,
    ) -> Result<Result<Chat, ChatExists>, StoreError> {
        self.writer()
            .execute(move |t| {
                if t.chats.get(chat.id.as_str())?.is_some() {
                    return Ok(Err(ChatExists));
                }
                save(&mut t.chats, &mut t.chat_index, &chat, None)?;
                audit::append(t, audit)?;
                Ok(Ok(chat))
            })
            .await
    }

    /// Applies `patch` and records `audit` with it; `None` when the chat does not exist.
    pub async fn update_chat(
        &self,
        id: String,
        patch: ChatPatch,
        audit: Draft,
    ) -> Result<Option<Chat>, StoreError> {
        self.writer()
            .execute(move |t| {
                let Some(mut chat) = load(&t.chats, &id)? else {
                    return Ok(None);
                };
                let activity = chat.activity_ms;
                patch.apply(&mut chat);
                save(&mut t.chats, &mut t.chat_index, &chat, Some(activity))?;
                audit::append(t, audit)?;
                Ok(Some(chat))
            })
            .await
    }

    pub fn chat(&self, id: String) -> Result<Option<Chat>, StoreError> {
        self.read(move |txn| load(&txn.open_table(CHATS)?, &id))
    }

    /// One page of the chat index strictly after `after`, optionally only (un)archived chats.
    pub fn list_chats(
        &self,
        after: Option<ChatCursor>,
        archived: Option<bool>,
        limit: usize,
    ) -> Result<Vec<Chat>, StoreError> {
        self.read(move |txn| {
            let index = txn.open_table(CHAT_INDEX)?;
            let chats = txn.open_table(CHATS)?;
            let mut range = match &after {
                Some(c) => index.range(chat_index_key(c.activity_ms, &c.id)..)?,
                None => index.range::<(u64, &str)>(..)?,
            };
            let mut page = Vec::with_capacity(limit);
            while page.len() < limit {
                let Some(entry) = range.next() else { break };
                let (key, _) = entry?;
                let (rank, id) = key.value();
                if after
                    .as_ref()
                    .is_some_and(|c| chat_index_key(c.activity_ms, &c.id) == (rank, id))
                {
                    continue;
                }
                let chat = load(&chats, id)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("chat index names missing chat {id}"))
                })?;
                if archived.is_none_or(|want| chat.archived == want) {
                    page.push(chat);
                }
            }
            Ok(page)
        })
    }
}

pub(super) fn load(
    chats: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Chat>, StoreError> {
    codec::get(chats, id)
}

/// Writes `chat` and keeps the activity index in step. `previous_activity` is the activity the
/// index currently holds for it (`None` for a new chat).
pub(super) fn save(
    chats: &mut ChatTable<'_>,
    index: &mut ChatIndexTable<'_>,
    chat: &Chat,
    previous_activity: Option<u64>,
) -> Result<(), StoreError> {
    chats.insert(chat.id.as_str(), codec::encode(chat)?.as_slice())?;
    if previous_activity != Some(chat.activity_ms) {
        if let Some(previous) = previous_activity {
            index.remove(chat_index_key(previous, &chat.id))?;
        }
        index.insert(chat_index_key(chat.activity_ms, &chat.id), ())?;
    }
    Ok(())
}
