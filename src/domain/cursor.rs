//! Opaque page cursors (SPEC §5).
//!
//! A cursor is the base64url encoding of the full sort key of the last row served, including the
//! unique tie-breaker, behind a one-byte tag naming which listing it belongs to. Resuming
//! *strictly after* a full unique key is what makes paging stable: rows sharing a timestamp are
//! still ordered by the tie-breaker, and rows inserted meanwhile land either before the cursor or
//! after it, never on it. Decoding checks the tag and the exact length, so garbage is a clean
//! error and a cursor from one listing cannot be replayed against another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::message::Position;
use super::slug;

const MESSAGE_TAG: u8 = b'm';
const CHAT_TAG: u8 = b'c';
const AUDIT_TAG: u8 = b'a';
const RUN_TAG: u8 = b'r';

/// Direction of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// Rows read from an ordered set, and whether more follow the last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice<T> {
    pub items: Vec<T>,
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not valid for this listing")]
pub struct InvalidCursor;

/// Position in the chat index: newest activity first, ties by id ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCursor {
    pub activity_ms: u64,
    pub id: String,
}

pub fn encode_message(position: Position) -> String {
    let mut bytes = Vec::with_capacity(17);
    bytes.push(MESSAGE_TAG);
    bytes.extend_from_slice(&position.ts_ms.to_be_bytes());
    bytes.extend_from_slice(&position.seq.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode_message(text: &str) -> Result<Position, InvalidCursor> {
    let bytes: [u8; 16] = decode_tagged(text, MESSAGE_TAG)?
        .try_into()
        .map_err(|_| InvalidCursor)?;
    let (ts, seq) = bytes.split_at(8);
    Ok(Position {
        ts_ms: u64::from_be_bytes(ts.try_into().map_err(|_| InvalidCursor)?),
        seq: u64::from_be_bytes(seq.try_into().map_err(|_| InvalidCursor)?),
    })
}

/// Position in the audit trail: the `seq` of the last event served.
pub fn encode_audit(seq: u64) -> String {
    encode_number(AUDIT_TAG, seq)
}

pub fn decode_audit(text: &str) -> Result<u64, InvalidCursor> {
    decode_number(text, AUDIT_TAG)
}

/// Position in the retention job log: the id of the last run served.
pub fn encode_run(id: u64) -> String {
    encode_number(RUN_TAG, id)
}

pub fn decode_run(text: &str) -> Result<u64, InvalidCursor> {
    decode_number(text, RUN_TAG)
}

fn encode_number(tag: u8, number: u64) -> String {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&number.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_number(text: &str, tag: u8) -> Result<u64, InvalidCursor> {
    let bytes: [u8; 8] = decode_tagged(text, tag)?
        .try_into()
        .map_err(|_| InvalidCursor)?;
    Ok(u64::from_be_bytes(bytes))
}

pub fn encode_chat(cursor: &ChatCursor) -> String {
    let mut bytes = Vec::with_capacity(9 + cursor.id.len());
    bytes.push(CHAT_TAG);
    bytes.extend_from_slice(&cursor.activity_ms.to_be_bytes());
    bytes.extend_from_slice(cursor.id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode_chat(text: &str) -> Result<ChatCursor, InvalidCursor> {
    let bytes = decode_tagged(text, CHAT_TAG)?;
    if bytes.len() < 9 {
        return Err(InvalidCursor);
    }
    let (activity, id) = bytes.split_at(8);
    let id = std::str::from_utf8(id).map_err(|_| InvalidCursor)?;
    slug::validate(id).map_err(|_| InvalidCursor)?;
    Ok(ChatCursor {
        activity_ms: u64::from_be_bytes(activity.try_into().map_err(|_| InvalidCursor)?),
        id: id.to_owned(),
    })
}

/// Decodes base64url and strips the expected tag; the payload is returned without it.
fn decode_tagged(text: &str, tag: u8) -> Result<Vec<u8>, InvalidCursor> {
    if text.is_empty() || text.len() > 128 {
        return Err(InvalidCursor);
    }
    let mut bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidCursor)?;
    if bytes.first() != Some(&tag) {
        return Err(InvalidCursor);
    }
    bytes.remove(0);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_cursor_round_trips() {
        let position = Position {
            ts_ms: 1_700_000_000_000,
            seq: 42,
        };
        assert_eq!(decode_message(&encode_message(position)), Ok(position));
    }

    #[test]
    fn chat_cursor_round_trips() {
        let cursor = ChatCursor {
            activity_ms: 7,
            id: "ops-1".into(),
        };
        assert_eq!(decode_chat(&encode_chat(&cursor)), Ok(cursor));
    }

    #[test]
    fn audit_cursor_round_trips() {
        assert_eq!(decode_audit(&encode_audit(77)), Ok(77));
        assert_eq!(
            decode_audit(&encode_message(Position { ts_ms: 1, seq: 1 })),
            Err(InvalidCursor)
        );
    }

    #[test]
    fn garbage_is_rejected() {
        let chat = encode_chat(&ChatCursor {
            activity_ms: 7,
            id: "ops".into(),
        });
        for text in ["", "!!!", "bQ", "AAAAAAAAAAAAAAAAAAAAAAAA", chat.as_str()] {
            assert_eq!(decode_message(text), Err(InvalidCursor), "{text}");
        }
        let message = encode_message(Position { ts_ms: 1, seq: 1 });
        assert_eq!(decode_chat(&message), Err(InvalidCursor));
        let bad_id = URL_SAFE_NO_PAD.encode(b"c\0\0\0\0\0\0\0\x01a b");
        assert_eq!(decode_chat(&bad_id), Err(InvalidCursor));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn slug() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_-]{1,64}"
        }

        proptest! {
            #[test]
            fn every_cursor_round_trips(ts_ms: u64, seq: u64, id in slug()) {
                let position = Position { ts_ms, seq };
                prop_assert_eq!(decode_message(&encode_message(position)), Ok(position));
                prop_assert_eq!(decode_audit(&encode_audit(seq)), Ok(seq));
                prop_assert_eq!(decode_run(&encode_run(seq)), Ok(seq));
                let chat = ChatCursor { activity_ms: ts_ms, id };
                prop_assert_eq!(decode_chat(&encode_chat(&chat)), Ok(chat));
            }

            #[test]
            fn a_cursor_of_one_listing_is_refused_by_every_other(ts_ms: u64, seq: u64, id in slug()) {
                let message = encode_message(Position { ts_ms, seq });
                let chat = encode_chat(&ChatCursor { activity_ms: ts_ms, id });
                let audit = encode_audit(seq);
                let run = encode_run(seq);
                prop_assert_eq!(decode_chat(&message), Err(InvalidCursor));
                prop_assert_eq!(decode_audit(&message), Err(InvalidCursor));
                prop_assert_eq!(decode_message(&chat), Err(InvalidCursor));
                prop_assert_eq!(decode_run(&audit), Err(InvalidCursor));
                prop_assert_eq!(decode_audit(&run), Err(InvalidCursor));
                prop_assert_eq!(decode_message(&audit), Err(InvalidCursor));
            }

            #[test]
            fn any_text_decodes_or_is_refused_without_panic(text in any::<String>()) {
                let _ = decode_message(&text);
                let _ = decode_chat(&text);
                let _ = decode_audit(&text);
                let _ = decode_run(&text);
            }

            #[test]
            fn any_bytes_behind_a_tag_decode_or_are_refused_without_panic(
                tag in prop::sample::select(vec![MESSAGE_TAG, CHAT_TAG, AUDIT_TAG, RUN_TAG]),
                body in prop::collection::vec(any::<u8>(), 0..80),
            ) {
                let mut bytes = vec![tag];
                bytes.extend(body);
                let text = URL_SAFE_NO_PAD.encode(bytes);
                if let Ok(chat) = decode_chat(&text) {
                    prop_assert!(slug::validate(&chat.id).is_ok());
                }
                let _ = (decode_message(&text), decode_audit(&text), decode_run(&text));
            }
        }
    }
}
