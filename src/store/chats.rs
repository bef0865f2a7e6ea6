//! Chats and the activity index.

use redb::ReadableTable;

use super::audit;
use super::codec::{self, Record};
use super::tables::{CHAT_INDEX, CHATS, chat_index_key};
use super::{Store, StoreError};
use crate::domain::audit::Draft;
use crate::domain::chat::{Chat, ChatPage, ChatPatch};
use crate::domain::cursor::ChatCursor;

impl Record for Chat {
    const VERSION: u8 = 1;
    const NAME: &'static str = "chat";
}

/// Chats a page of the index looks at, at most, before it ends (it runs inline on a runtime
/// worker: a bounded read).
const MAX_SCANNED: usize = 1000;

fn cursor_of(chat: &Chat) -> ChatCursor {
    ChatCursor {
        activity_ms: chat.activity_ms,
        id: chat.id.clone(),
    }
}

/// A chat with that id already exists.
#[derive(Debug)]
pub struct ChatExists;

impl Store {
    /// Creates `chat` and records `audit` with it.
    pub async fn create_chat(
        &self,
        chat: Chat,
        audit: Draft,
    ) -> Result<Result<Chat, ChatExists>, StoreError> {
        self.writer()
            .execute(move |t| {
                if t.chat(&chat.id)?.is_some() {
                    return Ok(Err(ChatExists));
                }
                t.put_chat(chat.clone())?;
                audit::append(t, audit.clone())?;
                Ok(Ok(chat.clone()))
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
                let Some(mut chat) = t.chat(&id)? else {
                    return Ok(None);
                };
                patch.apply(&mut chat);
                t.put_chat(chat.clone())?;
                audit::append(t, audit.clone())?;
                Ok(Some(chat))
            })
            .await
    }

    pub fn chat(&self, id: String) -> Result<Option<Chat>, StoreError> {
        self.read(move |txn| load(&txn.open_table(CHATS)?, &id))
    }

    /// One page of the chat index strictly after `after`: up to `limit` chats, optionally only
    /// (un)archived ones, looking at no more than `MAX_SCANNED` chats. The page's cursor follows
    /// its last chat when another match follows, or the last chat looked at when the scan ran
    /// out first — so a filter that matches little costs many short pages, never one long scan.
    pub fn list_chats(
        &self,
        after: Option<ChatCursor>,
        archived: Option<bool>,
        limit: usize,
    ) -> Result<ChatPage, StoreError> {
        self.read(move |txn| {
            let index = txn.open_table(CHAT_INDEX)?;
            let chats = txn.open_table(CHATS)?;
            let range = match &after {
                Some(c) => index.range(chat_index_key(c.activity_ms, &c.id)..)?,
                None => index.range::<(u64, &str)>(..)?,
            };
            let mut items: Vec<Chat> = Vec::with_capacity(limit);
            let mut scanned = 0;
            for entry in range {
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
                    if items.len() == limit {
                        let next = items.last().map(cursor_of);
                        return Ok(ChatPage { items, next });
                    }
                    items.push(chat);
                } else if scanned >= MAX_SCANNED {
                    let next = Some(cursor_of(&chat));
                    return Ok(ChatPage { items, next });
                }
                scanned += 1;
            }
            Ok(ChatPage { items, next: None })
        })
    }
}

pub(super) fn load(
    chats: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Chat>, StoreError> {
    codec::get(chats, id)
}
