//! Chats: a conversation between operators and one agent.

use serde::{Deserialize, Serialize};

use super::cursor::ChatCursor;
use super::slug;

pub const MAX_TITLE_CHARS: usize = 200;

/// A chat as stored and as shown.
///
/// `activity_ms` is the time of the latest message (or of creation) and orders the chat index.
/// `last_seq` is the sequence number of the newest message; messages in a chat are numbered
/// 1, 2, 3, … so the pair `(ts_ms, seq)` is unique within the chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub id: String,
    pub title: Option<String>,
    pub agent: Option<String>,
    pub node: Option<String>,
    pub archived: bool,
    pub created_ms: u64,
    pub activity_ms: u64,
    pub last_seq: u64,
}

/// Fields a caller may set when creating a chat.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChat {
    pub id: Option<String>,
    pub title: Option<String>,
    pub agent: Option<String>,
    pub node: Option<String>,
}

/// A partial update; absent fields are left as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatPatch {
    pub title: Option<String>,
    pub archived: Option<bool>,
    pub node: Option<String>,
}

/// A rule a chat's fields broke, named by the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

impl FieldError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

impl NewChat {
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(id) = &self.id {
            slug::validate(id).map_err(|e| FieldError::new("id", e.to_string()))?;
        }
        validate_title(self.title.as_deref())?;
        validate_optional_slug("agent", self.agent.as_deref())?;
        validate_optional_slug("node", self.node.as_deref())
    }

    /// The chat this request creates, with `id` already decided by the caller.
    pub fn into_chat(self, id: String, now_ms: u64) -> Chat {
        Chat {
            id,
            title: self.title,
            agent: self.agent,
            node: self.node,
            archived: false,
            created_ms: now_ms,
            activity_ms: now_ms,
            last_seq: 0,
        }
    }
}

impl ChatPatch {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_title(self.title.as_deref())?;
        validate_optional_slug("node", self.node.as_deref())
    }

    /// The fields this patch sets, comma-separated, for the audit trail.
    pub fn field_names(&self) -> String {
        [
            ("title", self.title.is_some()),
            ("archived", self.archived.is_some()),
            ("node", self.node.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect::<Vec<_>>()
        .join(",")
    }

    pub fn apply(&self, chat: &mut Chat) {
        if let Some(title) = &self.title {
            chat.title = Some(title.clone());
        }
        if let Some(archived) = self.archived {
            chat.archived = archived;
        }
        if let Some(node) = &self.node {
            chat.node = Some(node.clone());
        }
    }
}

/// A page of the chat index and where the next one starts, if anywhere.
#[derive(Debug)]
pub struct ChatPage {
    pub items: Vec<Chat>,
    pub next: Option<ChatCursor>,
}

/// A chat created implicitly by its first send (`auto_create_chats`).
pub fn implicit(id: &str, now_ms: u64) -> Chat {
    NewChat::default().into_chat(id.to_owned(), now_ms)
}

fn validate_title(title: Option<&str>) -> Result<(), FieldError> {
    match title {
        Some(t) if t.chars().count() > MAX_TITLE_CHARS => Err(FieldError::new(
            "title",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

fn validate_optional_slug(field: &'static str, value: Option<&str>) -> Result<(), FieldError> {
    match value {
        Some(v) => slug::validate(v).map_err(|e| FieldError::new(field, e.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields_by_name() {
        let bad_id = NewChat {
            id: Some("no spaces".into()),
            ..Default::default()
        };
        assert_eq!(bad_id.validate().unwrap_err().field, "id");
        let long_title = ChatPatch {
            title: Some("x".repeat(201)),
            ..Default::default()
        };
        assert_eq!(long_title.validate().unwrap_err().field, "title");
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let mut chat = implicit("ops", 5);
        ChatPatch {
            archived: Some(true),
            ..Default::default()
        }
        .apply(&mut chat);
        assert!(chat.archived);
        assert_eq!(chat.title, None);
        assert_eq!(chat.activity_ms, 5);
    }
}
