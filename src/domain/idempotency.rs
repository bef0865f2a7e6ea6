//! Idempotency keys, request fingerprints and the decision taken on a stored record (SPEC §6).
//!
//! The rules live here, free of storage, so that the read-only fast path and the writer — which
//! re-decides authoritatively inside its transaction — cannot disagree.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::message::Position;

pub const MAX_KEY_LEN: usize = 255;

/// A validated `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1-255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let visible = |b: &u8| (0x21..=0x7e).contains(b);
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.iter().all(visible) {
            return Err(InvalidIdempotencyKey);
        }
        // Visible ASCII is valid UTF-8.
        String::from_utf8(raw.to_vec())
            .map(Self)
            .map_err(|_| InvalidIdempotencyKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 over method, path and canonical body: what "the same request" means.
pub type Fingerprint = [u8; 32];

/// Fingerprints a request whose JSON body has already been parsed.
///
/// The body is re-serialised canonically (object keys sorted, no insignificant whitespace), so a
/// client that re-orders keys or re-indents on retry is still recognised as sending the same
/// request. Fields are length-prefixed so no two different requests share an input.
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> Fingerprint {
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), canonical.as_slice()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A stored idempotency record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: Fingerprint,
    pub chat_id: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub state: RecordState,
}

impl IdempotencyRecord {
    /// Whether the key still holds this record at `now_ms`; an expired record is as good as
    /// none, and a new request may claim its key.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    /// Claimed: the operator message at `message` is durable; the reply is not yet stored.
    InProgress { message: Position },
    /// Finished: the exact response to replay. The body is encoded as one byte string (the
    /// same bytes on disk as a sequence of `u8`, but decoded by one copy, not byte by byte).
    Completed {
        status: u16,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// What to do with a send, given the record stored under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextAction {
    /// No live record: claim the key and store the operator message.
    Claim,
    /// The same request already finished: answer with the stored response.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used for a different request.
    Mismatch,
    /// The same request was claimed but not finished. If a task in this process is still running
    /// it, wait for that task; otherwise its process died (or its second transaction failed) and
    /// the request is finished now, reusing the operator message stored under `message`.
    Resume { message: Position },
}

/// Decides from the stored record alone. Whether a claimed request is still running is not in
/// the record — only the process knows its own tasks — so `Resume` leaves that to the caller.
pub fn decide(
    record: Option<&IdempotencyRecord>,
    fingerprint: &Fingerprint,
    now_ms: u64,
) -> NextAction {
    let Some(record) = record.filter(|r| r.is_live(now_ms)) else {
        return NextAction::Claim;
    };
    if &record.fingerprint != fingerprint {
        return NextAction::Mismatch;
    }
    match &record.state {
        RecordState::Completed { status, body } => NextAction::Replay {
            status: *status,
            body: body.clone(),
        },
        RecordState::InProgress { message } => NextAction::Resume { message: *message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(state: RecordState) -> IdempotencyRecord {
        IdempotencyRecord {
            fingerprint: fingerprint("POST", "/x", &json!({"text": "a"})),
            chat_id: "c".into(),
            created_ms: 0,
            expires_ms: 100,
            state,
        }
    }

    #[test]
    fn key_rules() {
        assert!(IdempotencyKey::parse(b"abc-123_!~").is_ok());
        assert!(IdempotencyKey::parse(&[b'a'; 255]).is_ok());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(&[b'a'; 256]).is_err());
        assert!(IdempotencyKey::parse(b"a b").is_err());
        assert!(IdempotencyKey::parse("é".as_bytes()).is_err());
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_content() {
        let a = fingerprint(
            "POST",
            "/p",
            &json!({"text": "hi", "metadata": {"x": 1, "y": 2}}),
        );
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "metadata": {"y":2,"x":1}, "text":"hi" }"#).unwrap();
        assert_eq!(a, fingerprint("POST", "/p", &b));
        assert_ne!(a, fingerprint("POST", "/p", &json!({"text": "hi!"})));
        assert_ne!(a, fingerprint("POST", "/q", &b));
    }

    #[test]
    fn decisions() {
        let fp = fingerprint("POST", "/x", &json!({"text": "a"}));
        let other = fingerprint("POST", "/x", &json!({"text": "b"}));
        let position = Position { ts_ms: 1, seq: 1 };
        let running = record(RecordState::InProgress { message: position });
        let done = record(RecordState::Completed {
            status: 200,
            body: b"{}".to_vec(),
        });
        assert_eq!(decide(None, &fp, 0), NextAction::Claim);
        assert_eq!(decide(Some(&done), &fp, 100), NextAction::Claim, "expired");
        assert_eq!(decide(Some(&done), &other, 0), NextAction::Mismatch);
        assert!(matches!(
            decide(Some(&done), &fp, 0),
            NextAction::Replay { status: 200, .. }
        ));
        assert_eq!(decide(Some(&running), &other, 0), NextAction::Mismatch);
        assert_eq!(
            decide(Some(&running), &fp, 0),
            NextAction::Resume { message: position }
        );
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::*;

        /// JSON values as clients send them: nested, with unicode and escapes, and integers
        /// beyond 2^53.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map(any::<String>(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// `value` written with every object's keys in reverse order and spaces between tokens.
        fn reordered_text(value: &Value) -> String {
            match value {
                Value::Object(map) => {
                    let members: Vec<String> = map
                        .iter()
                        .rev()
                        .map(|(k, v)| {
                            format!("{} : {}", Value::from(k.as_str()), reordered_text(v))
                        })
                        .collect();
                    format!("{{ {} }}", members.join(" ,\n "))
                }
                Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(reordered_text).collect();
                    format!("[ {} ]", items.join(" , "))
                }
                other => other.to_string(),
            }
        }

        proptest! {
            #[test]
            fn key_order_and_whitespace_do_not_change_the_fingerprint(
                fields in prop::collection::btree_map(any::<String>(), json_value(), 0..8),
            ) {
                let body = Value::Object(fields.into_iter().collect::<Map<_, _>>());
                let retried: Value = serde_json::from_str(&reordered_text(&body)).unwrap();
                prop_assert_eq!(
                    fingerprint("POST", "/api/chats/c/send", &retried),
                    fingerprint("POST", "/api/chats/c/send", &body)
                );
            }

            #[test]
            fn a_different_request_has_a_different_fingerprint(
                body in json_value(),
                other in json_value(),
                path in "/[a-z/]{0,20}",
                split in 0usize..20,
            ) {
                let same = fingerprint("POST", &path, &body);
                if other != body {
                    prop_assert_ne!(fingerprint("POST", &path, &other), same);
                }
                // Length prefixes: moving a byte from the path into the method changes it.
                let split = split.min(path.len());
                let (head, tail) = path.split_at(split);
                if !head.is_empty() {
                    prop_assert_ne!(fingerprint(&format!("POST{head}"), tail, &body), same);
                }
            }

            #[test]
            fn any_bytes_parse_as_a_key_or_are_refused_without_panic(
                raw in prop::collection::vec(any::<u8>(), 0..300),
            ) {
                if let Ok(key) = IdempotencyKey::parse(&raw) {
                    prop_assert_eq!(key.as_str().as_bytes(), raw.as_slice());
                }
            }
        }
    }
}
