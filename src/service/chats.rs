//! Chats and their message history.

use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::domain::chat::{Chat, ChatPage, ChatPatch, NewChat};
use crate::domain::cursor::{ChatCursor, Order, Slice};
use crate::domain::message::{MessageJson, Position};
use crate::domain::slug;

use super::{Console, ServiceError};

/// The message JSON one page may hold before it ends early (its last message may pass it).
const PAGE_BYTES: usize = 1024 * 1024;

impl Console {
    pub async fn create_chat(&self, ctx: &Context, new: NewChat) -> Result<Chat, ServiceError> {
        new.validate()
            .map_err(|e| ServiceError::validation(e.field, e.problem))?;
        let id = new
            .id
            .clone()
            .unwrap_or_else(|| ulid::Ulid::generate().to_string());
        let now = self.clock.now_ms();
        let audit = ctx.draft(
            now,
            Action::ChatCreate,
            Target::new("chat", &id),
            Outcome::Ok,
        );
        let chat = new.into_chat(id, now);
        self.store
            .create_chat(chat, audit)
            .await?
            .map_err(|_| ServiceError::Conflict("a chat with this id already exists".into()))
    }

    pub fn chat(&self, id: &str) -> Result<Chat, ServiceError> {
        check_chat_id(id)?;
        self.store
            .chat(id.to_owned())?
            .ok_or(ServiceError::NotFound("chat"))
    }

    pub async fn update_chat(
        &self,
        ctx: &Context,
        id: &str,
        patch: ChatPatch,
    ) -> Result<Chat, ServiceError> {
        check_chat_id(id)?;
        patch
            .validate()
            .map_err(|e| ServiceError::validation(e.field, e.problem))?;
        let audit = ctx
            .draft(
                self.clock.now_ms(),
                Action::ChatUpdate,
                Target::new("chat", id),
                Outcome::Ok,
            )
            .detail("fields", patch.field_names());
        self.store
            .update_chat(id.to_owned(), patch, audit)
            .await?
            .ok_or(ServiceError::NotFound("chat"))
    }

    pub fn list_chats(
        &self,
        after: Option<ChatCursor>,
        archived: Option<bool>,
        limit: usize,
    ) -> Result<ChatPage, ServiceError> {
        Ok(self.store.list_chats(after, archived, limit)?)
    }

    /// Up to `limit` messages after `after` in `order`, as JSON, and fewer when they would
    /// come to more than `PAGE_BYTES`: one response never holds more than about a mebibyte,
    /// whatever the messages' size.
    pub fn messages(
        &self,
        chat_id: &str,
        order: Order,
        after: Option<Position>,
        limit: usize,
    ) -> Result<Slice<MessageJson>, ServiceError> {
        check_chat_id(chat_id)?;
        self.store
            .messages(chat_id, order, after, limit, PAGE_BYTES)?
            .ok_or(ServiceError::NotFound("chat"))
    }
}

/// A path segment that is not a slug cannot name a chat.
fn check_chat_id(id: &str) -> Result<(), ServiceError> {
    slug::validate(id).map_err(|_| ServiceError::NotFound("chat"))
}
