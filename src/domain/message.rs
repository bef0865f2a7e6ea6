//! Messages in a chat and the rules for what an operator may send.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const MAX_TEXT_CHARS: usize = 16_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    Operator,
    Agent,
    System,
}

/// A stored message. `metadata` holds the caller's JSON object as text, exactly as sent.
///
/// Ordering within a chat is by `(ts_ms, seq)`: the writer assigns both, and never gives a later
/// `seq` an earlier `ts_ms`, so a reader paging in either order never skips or repeats a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub seq: u64,
    pub ts_ms: u64,
    pub role: MessageRole,
    pub author: String,
    pub text: String,
    pub metadata: Option<String>,
    pub reason_code: Option<String>,
    /// For agent replies: the node that answered and the model it named.
    pub node: Option<String>,
    pub model: Option<String>,
}

/// The position of a message in its chat, enough to load it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub ts_ms: u64,
    pub seq: u64,
}

impl Message {
    pub fn position(&self) -> Position {
        Position {
            ts_ms: self.ts_ms,
            seq: self.seq,
        }
    }

    /// The JSON shape of a message in every response.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            id: &self.id,
            seq: self.seq,
            ts_ms: self.ts_ms,
            role: self.role,
            author: &self.author,
            text: &self.text,
            metadata: self
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<&RawValue>(m).ok()),
            reason_code: self.reason_code.as_deref(),
            node: self.node.as_deref(),
            model: self.model.as_deref(),
        }
    }
}

/// A message as the JSON of its view, ready to be written into a response, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageJson {
    pub position: Position,
    pub json: Vec<u8>,
}

impl AsRef<[u8]> for MessageJson {
    fn as_ref(&self) -> &[u8] {
        &self.json
    }
}

#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    pub id: &'a str,
    pub seq: u64,
    pub ts_ms: u64,
    pub role: MessageRole,
    pub author: &'a str,
    pub text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", borrow)]
    pub metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
}

/// Why an operator's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("text must not be empty")]
    Empty,
    #[error("text must be at most {MAX_TEXT_CHARS} characters")]
    TooLong,
}

pub fn validate_text(text: &str) -> Result<(), TextError> {
    if text.trim().is_empty() {
        Err(TextError::Empty)
    } else if text.chars().count() > MAX_TEXT_CHARS {
        Err(TextError::TooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(validate_text("  "), Err(TextError::Empty));
        assert!(validate_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert_eq!(
            validate_text(&"a".repeat(MAX_TEXT_CHARS + 1)),
            Err(TextError::TooLong)
        );
    }

    #[test]
    fn view_embeds_metadata_as_json() {
        let message = Message {
            id: "m".into(),
            seq: 1,
            ts_ms: 2,
            role: MessageRole::Operator,
            author: "key:x".into(),
            text: "hi".into(),
            metadata: Some(r#"{"a":1}"#.into()),
            reason_code: None,
            node: None,
            model: None,
        };
        let json = serde_json::to_string(&message.view()).unwrap();
        assert_eq!(
            json,
            r#"{"id":"m","seq":1,"ts_ms":2,"role":"operator","author":"key:x","text":"hi","metadata":{"a":1}}"#
        );
    }
}
