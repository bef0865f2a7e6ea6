//! Messages, keyed `(chat id, ts_ms, seq)`.

use std::ops::Bound::{Excluded, Included};

use redb::ReadableTable;

use super::batch::WriteTables;
use super::codec::{self, Record, RecordView};
use super::tables::{CHATS, MESSAGES};
use super::{Store, StoreError};
use crate::domain::chat::Chat;
use crate::domain::cursor::Order;
use crate::domain::message::{Message, MessageRef, MessageRole, Position};

impl Record for Message {
    const VERSION: u8 = 1;
    const NAME: &'static str = "message";
}

impl<'a> RecordView<'a> for MessageRef<'a> {
    type Record = Message;
}

/// A message about to be appended; the writer assigns its place.
pub(super) struct Draft {
    pub id: String,
    pub role: MessageRole,
    pub author: String,
    pub text: String,
    pub metadata: Option<String>,
    pub reason_code: Option<String>,
    pub node: Option<String>,
    pub model: Option<String>,
}

impl Store {
    /// What an agent call needs: the node the chat is pinned to, and its last `turns` operator
    /// and agent messages, oldest first (system notices are not conversation).
    pub fn agent_context(
        &self,
        chat_id: String,
        turns: usize,
    ) -> Result<(Option<String>, Vec<Message>), StoreError> {
        self.read(move |txn| {
            let pinned =
                super::chats::load(&txn.open_table(CHATS)?, &chat_id)?.and_then(|c| c.node);
            let table = txn.open_table(MESSAGES)?;
            let id = chat_id.as_str();
            let mut recent = Vec::with_capacity(turns);
            for row in table.range((id, 0, 0)..=(id, u64::MAX, u64::MAX))?.rev() {
                let message: Message = codec::decode(row?.1.value())?;
                if message.role != MessageRole::System {
                    recent.push(message);
                    if recent.len() == turns {
                        break;
                    }
                }
            }
            recent.reverse();
            Ok((pinned, recent))
        })
    }

    /// Up to `limit` of a chat's messages strictly after `after` in `order`, each passed to
    /// `render` borrowed from the page it is stored in; `None` when the chat does not exist.
    pub fn messages<T>(
        &self,
        chat_id: &str,
        order: Order,
        after: Option<Position>,
        limit: usize,
        mut render: impl FnMut(MessageRef<'_>) -> T,
    ) -> Result<Option<Vec<T>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(MESSAGES)?;
            let id = chat_id;
            let first = Included((id, 0, 0));
            let last = Included((id, u64::MAX, u64::MAX));
            let bounds = match (order, after) {
                (_, None) => (first, last),
                (Order::Asc, Some(p)) => (Excluded((id, p.ts_ms, p.seq)), last),
                (Order::Desc, Some(p)) => (first, Excluded((id, p.ts_ms, p.seq))),
            };
            let range = table.range(bounds)?;
            let rows: Box<dyn Iterator<Item = _>> = match order {
                Order::Asc => Box::new(range),
                Order::Desc => Box::new(range.rev()),
            };
            let mut page = Vec::with_capacity(limit);
            for row in rows.take(limit) {
                let (_, value) = row?;
                page.push(render(codec::decode_view(value.value())?));
            }
            // A chat with messages exists; only an empty page needs to ask.
            if page.is_empty() && txn.open_table(CHATS)?.get(chat_id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(page))
        })
    }
}

/// Appends a message to `chat`: the next `seq`, and a timestamp no earlier than the chat's latest,
/// so `(ts_ms, seq)` order equals insertion order and paging never skips a late-inserted row.
/// Stores the chat with its new activity.
pub(super) fn append(
    t: &mut WriteTables<'_>,
    mut chat: Chat,
    draft: Draft,
    now_ms: u64,
) -> Result<Message, StoreError> {
    let message = Message {
        id: draft.id,
        seq: chat.last_seq + 1,
        ts_ms: now_ms.max(chat.activity_ms),
        role: draft.role,
        author: draft.author,
        text: draft.text,
        metadata: draft.metadata,
        reason_code: draft.reason_code,
        node: draft.node,
        model: draft.model,
    };
    t.messages.insert(
        (chat.id.as_str(), message.ts_ms, message.seq),
        codec::encode(&message)?.as_slice(),
    )?;
    chat.last_seq = message.seq;
    chat.activity_ms = message.ts_ms;
    t.put_chat(chat)?;
    Ok(message)
}

pub(super) fn load(
    messages: &impl ReadableTable<(&'static str, u64, u64), &'static [u8]>,
    chat_id: &str,
    position: Position,
) -> Result<Option<Message>, StoreError> {
    codec::get(messages, (chat_id, position.ts_ms, position.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page is decoded as `MessageRef`s from what was encoded as `Message`s: the two must read
    /// the same fields in the same order.
    #[test]
    fn a_stored_message_decodes_as_its_borrowed_form() {
        let message = Message {
            id: "01J".into(),
            seq: 7,
            ts_ms: 1_700_000_000_000,
            role: MessageRole::Agent,
            author: "node:a".into(),
            text: "hello".into(),
            metadata: Some(r#"{"k":1}"#.into()),
            reason_code: None,
            node: Some("a".into()),
            model: Some("m".into()),
        };
        let stored = codec::encode(&message).expect("encodes");

        let borrowed: MessageRef<'_> = codec::decode_view(&stored).expect("decodes");

        assert_eq!(borrowed, message.borrowed());
    }
}
