//! Messages, keyed `(chat id, ts_ms, seq)`.
//!
//! A message is stored as the JSON the API shows for it, after a format byte: reading a page of
//! messages — the hottest read there is — is then a copy of stored bytes, with nothing decoded or
//! serialised. Every other record is a postcard envelope (`codec`); a short message takes about
//! half the bytes as one, but would have to be decoded and re-rendered on every page.

use std::ops::Bound::{Excluded, Included};

use redb::ReadableTable;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::batch::WriteTables;
use super::tables::{CHATS, MESSAGES};
use super::{Store, StoreError};
use crate::domain::chat::Chat;
use crate::domain::cursor::{Order, Slice};
use crate::domain::message::{Message, MessageJson, MessageRole, Position};

/// The format byte in front of a stored message: its JSON view (`Message::view`). Format 1, a
/// postcard envelope, was never released.
const FORMAT: u8 = 2;

/// A stored message as decoded: the view's fields, the metadata object kept as its JSON text.
#[derive(Deserialize)]
struct StoredMessage {
    id: String,
    seq: u64,
    ts_ms: u64,
    role: MessageRole,
    author: String,
    text: String,
    metadata: Option<Box<RawValue>>,
    reason_code: Option<String>,
    node: Option<String>,
    model: Option<String>,
}

fn encode(message: &Message) -> Result<Vec<u8>, StoreError> {
    let mut bytes = vec![FORMAT];
    serde_json::to_writer(&mut bytes, &message.view())
        .map_err(|e| StoreError::Corrupt(format!("encoding a message: {e}")))?;
    Ok(bytes)
}

/// The JSON of a stored message, after checking its format byte.
fn json(stored: &[u8]) -> Result<&[u8], StoreError> {
    match stored.split_first() {
        Some((&FORMAT, json)) => Ok(json),
        Some((format, _)) => Err(StoreError::Corrupt(format!(
            "message has unknown format {format}"
        ))),
        None => Err(StoreError::Corrupt("message is empty".into())),
    }
}

fn decode(stored: &[u8]) -> Result<Message, StoreError> {
    let decoded: StoredMessage = serde_json::from_slice(json(stored)?)
        .map_err(|e| StoreError::Corrupt(format!("decoding a message: {e}")))?;
    Ok(Message {
        id: decoded.id,
        seq: decoded.seq,
        ts_ms: decoded.ts_ms,
        role: decoded.role,
        author: decoded.author,
        text: decoded.text,
        metadata: decoded.metadata.map(|raw| raw.get().to_owned()),
        reason_code: decoded.reason_code,
        node: decoded.node,
        model: decoded.model,
    })
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
                let message = decode(row?.1.value())?;
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

    /// Up to `limit` of a chat's messages strictly after `after` in `order`, as their stored
    /// JSON, stopping early once they hold `max_bytes` (always at least one message); `None`
    /// when the chat does not exist.
    pub fn messages(
        &self,
        chat_id: &str,
        order: Order,
        after: Option<Position>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Option<Slice<MessageJson>>, StoreError> {
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
            let mut bytes = 0;
            let mut more = false;
            for row in rows {
                if page.len() == limit || bytes >= max_bytes {
                    more = true;
                    break;
                }
                let (key, value) = row?;
                let (_, ts_ms, seq) = key.value();
                let json = json(value.value())?.to_vec();
                bytes += json.len();
                page.push(MessageJson {
                    position: Position { ts_ms, seq },
                    json,
                });
            }
            // A chat with messages exists; only an empty page needs to ask.
            if page.is_empty() && txn.open_table(CHATS)?.get(chat_id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(Slice { items: page, more }))
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
        encode(&message)?.as_slice(),
    )?;
    chat.last_seq = message.seq;
    chat.activity_ms = message.ts_ms;
    t.appended_message(&chat.id, &message);
    t.put_chat(chat)?;
    Ok(message)
}

pub(super) fn load(
    messages: &impl ReadableTable<(&'static str, u64, u64), &'static [u8]>,
    chat_id: &str,
    position: Position,
) -> Result<Option<Message>, StoreError> {
    messages
        .get((chat_id, position.ts_ms, position.seq))?
        .map(|stored| decode(stored.value()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(metadata: Option<&str>, reason_code: Option<&str>) -> Message {
        Message {
            id: "01J".into(),
            seq: 7,
            ts_ms: 1_700_000_000_000,
            role: MessageRole::Agent,
            author: "node:a".into(),
            text: "a \"quoted\"\nline — ünïcode".into(),
            metadata: metadata.map(str::to_owned),
            reason_code: reason_code.map(str::to_owned),
            node: Some("a".into()),
            model: None,
        }
    }

    /// What a page hands out is what the API shows for the message, and decoding gives the
    /// message back, optional fields present or not.
    #[test]
    fn a_stored_message_is_its_view_and_decodes_back() {
        for original in [
            message(Some(r#"{"k":[1,{"n":null}]}"#), None),
            message(None, Some("llm_timeout")),
        ] {
            let stored = encode(&original).expect("encodes");

            let view = serde_json::to_vec(&original.view()).expect("renders");
            assert_eq!(json(&stored).expect("format"), view.as_slice());
            assert_eq!(decode(&stored).expect("decodes"), original);
        }
    }

    #[test]
    fn an_unknown_format_is_reported_not_misread() {
        let mut stored = encode(&message(None, None)).expect("encodes");
        stored[0] = 1;

        assert!(matches!(decode(&stored), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(&[]), Err(StoreError::Corrupt(_))));
    }
}
