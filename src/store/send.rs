//! The two write transactions of a send (SPEC §6).
//!
//! `begin_send` claims the idempotency key, charges the rate limits, stores the operator's
//! message, creates the chat if need be and records it all in the audit trail — one
//! transaction; `finish_send` stores the outcome, completes the key's record and records the
//! reply in a second one. `send_answered` is both in one, for an answer known before the send
//! starts. `begin` re-decides every claim inside the writer with `domain::idempotency::decide`.

use super::audit;
use super::batch::WriteTables;
use super::idempotency::{self, Claim, Claimed};
use super::messages::{self, Draft};
use super::rate::{self, Charge};
use super::{Store, StoreError};
use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::domain::chat;
use crate::domain::idempotency::{
    IdempotencyKey, IdempotencyRecord, NextAction, RecordState, decide,
};
use crate::domain::message::{Message, MessageRole};
use crate::domain::rate::{Quota, Scope, SendLimits};
use crate::domain::send::{Answer, degraded_body, reply_body};

/// The first transaction of a send.
///
/// The caller must be the only task in this process working on `claim`'s key (see
/// `service::inflight`): a record found in progress is then abandoned and is taken over.
pub struct BeginSend {
    pub chat_id: String,
    pub auto_create_chat: bool,
    pub message_id: String,
    pub author: String,
    pub text: String,
    pub metadata: Option<String>,
    pub now_ms: u64,
    pub claim: Option<Claim>,
    pub limits: SendLimits,
    pub audit: Context,
}

/// What the first transaction found or did. `quota` is the rate-limit standing after it.
#[derive(Debug)]
pub enum Begun {
    /// Admitted and charged: the operator message is stored (and the key, if any, claimed).
    Stored { message: Message, quota: Quota },
    /// The key was claimed by a request that never finished (its process crashed); its operator
    /// message, stored back then, is returned; nothing new is written or charged.
    TakenOver { message: Message, quota: Quota },
    /// The same request already finished; nothing was written or charged.
    Replay {
        status: u16,
        body: Vec<u8>,
        quota: Quota,
    },
    /// The key belongs to a different request; nothing was written.
    Mismatch,
    /// No such chat and chats are not created implicitly.
    ChatNotFound,
    /// Over a limit; nothing was written or charged.
    RateLimited {
        scope: Scope,
        retry_after_ms: u64,
        quota: Quota,
    },
}

/// What the second transaction stored.
#[derive(Debug)]
pub struct Finished {
    /// The exact response body, as the idempotency record keeps it.
    pub body: Vec<u8>,
    /// The agent's reply, or the system message recording the degraded outcome.
    pub message: Message,
}

/// The second transaction of a send.
pub struct FinishSend {
    pub chat_id: String,
    pub operator: Message,
    pub answer: Answer,
    /// The id of the message that records the answer.
    pub message_id: String,
    pub now_ms: u64,
    /// `(scope, key)` of the record to complete, when the send carried a key.
    pub completes: Option<(String, IdempotencyKey)>,
    /// Whether this request finishes one abandoned by a crashed process.
    pub took_over: bool,
    pub audit: Context,
}

impl Store {
    pub async fn begin_send(&self, send: BeginSend) -> Result<Begun, StoreError> {
        self.writer()
            .execute(move |t| {
                let (begun, claimed) = begin(t, &send)?;
                if let Some(claimed) = claimed {
                    claimed.save(t)?;
                }
                Ok(begun)
            })
            .await
    }

    /// Both transactions of a send in one, for an answer known before the send starts (no
    /// agent to call): with no call to wait for there is no window between claim and reply to
    /// protect, so the claim, the message, the answer and the completed record commit together.
    /// `Finished` is present when the send was stored (or taken over) and answered. A new key's
    /// record is written once, already completed.
    pub async fn send_answered(
        &self,
        send: BeginSend,
        answer: Answer,
        answer_id: String,
    ) -> Result<(Begun, Option<Finished>), StoreError> {
        self.writer()
            .execute(move |t| {
                let chat_id = send.chat_id.clone();
                let completes = send
                    .claim
                    .as_ref()
                    .map(|c| (c.scope.clone(), c.key.clone()));
                let audit = send.audit.clone();
                let now_ms = send.now_ms;
                let (begun, claimed) = begin(t, &send)?;
                let (operator, took_over) = match &begun {
                    Begun::Stored { message, .. } => (message.clone(), false),
                    Begun::TakenOver { message, .. } => (message.clone(), true),
                    _ => return Ok((begun, None)),
                };
                // A taken-over key has a record to complete; a new claim is written below.
                let completes = completes.filter(|_| took_over);
                let finished = finish_op(
                    t,
                    &FinishSend {
                        chat_id,
                        operator,
                        answer: answer.clone(),
                        message_id: answer_id.clone(),
                        now_ms,
                        completes,
                        took_over,
                        audit,
                    },
                )?;
                if let Some(claimed) = claimed {
                    claimed.save_completed(t, finished.body.clone())?;
                }
                Ok((begun, Some(finished)))
            })
            .await
    }

    /// Stores the outcome and returns the response body, which a completed record replays.
    pub async fn finish_send(&self, finish: FinishSend) -> Result<Finished, StoreError> {
        self.writer().execute(move |t| finish_op(t, &finish)).await
    }
}

/// The first half of a send. When it stores the message under a new claim, the claim's record
/// (in progress, naming the message) comes back unsaved with it.
fn begin(
    t: &mut WriteTables<'_>,
    send: &BeginSend,
) -> Result<(Begun, Option<Claimed>), StoreError> {
    // A record that expired may still sit under this key; claiming replaces it.
    let mut expired = None;
    if let Some(claim) = &send.claim {
        let existing = idempotency::load_record(&t.idempotency, &claim.scope, &claim.key)?;
        match decide(existing.as_ref(), &claim.fingerprint, send.now_ms) {
            NextAction::Claim => expired = existing,
            NextAction::Resume { message } => {
                let chat_id = existing.map(|r| r.chat_id).unwrap_or_default();
                let operator =
                    messages::load(&t.messages, &chat_id, message)?.ok_or_else(|| {
                        StoreError::Corrupt("in-progress record names a missing message".into())
                    })?;
                let quota = standing(t, send)?;
                let taken_over = Begun::TakenOver {
                    message: operator,
                    quota,
                };
                return Ok((taken_over, None));
            }
            NextAction::Replay { status, body } => {
                let quota = standing(t, send)?;
                let replay = Begun::Replay {
                    status,
                    body,
                    quota,
                };
                return Ok((replay, None));
            }
            NextAction::Mismatch => return Ok((Begun::Mismatch, None)),
        }
    }

    let existing_chat = t.chat(&send.chat_id)?;
    if existing_chat.is_none() && !send.auto_create_chat {
        return Ok((Begun::ChatNotFound, None));
    }
    let quota = match rate::charge(t, &send.limits, &send.chat_id, &send.author, send.now_ms)? {
        Charge::Admitted(quota) => quota,
        Charge::Refused {
            scope,
            retry_after_ms,
            quota,
        } => {
            let limited = Begun::RateLimited {
                scope,
                retry_after_ms,
                quota,
            };
            return Ok((limited, None));
        }
    };
    let chat = match existing_chat {
        Some(chat) => chat,
        None => {
            // Stored by the append below, with its first message.
            let chat = chat::implicit(&send.chat_id, send.now_ms);
            let created = send.audit.draft(
                send.now_ms,
                Action::ChatCreate,
                Target::new("chat", &chat.id),
                Outcome::Ok,
            );
            audit::append(t, created.detail("implicit", true))?;
            chat
        }
    };
    let idempotency = if send.claim.is_some() { "new" } else { "none" };
    let sent = send
        .audit
        .draft(
            send.now_ms,
            Action::ChatSend,
            Target::new("chat", &send.chat_id),
            Outcome::Ok,
        )
        .detail("message_id", send.message_id.as_str())
        .detail("text_chars", send.text.chars().count() as u64)
        .detail("idempotency", idempotency);
    let draft = Draft {
        id: send.message_id.clone(),
        role: MessageRole::Operator,
        author: send.author.clone(),
        text: send.text.clone(),
        metadata: send.metadata.clone(),
        reason_code: None,
        node: None,
        model: None,
    };
    let message = messages::append(t, chat, draft, send.now_ms)?;
    audit::append(t, sent.detail("seq", message.seq))?;

    let claimed = send.claim.as_ref().map(|claim| Claimed {
        record: IdempotencyRecord {
            fingerprint: claim.fingerprint,
            chat_id: send.chat_id.clone(),
            created_ms: send.now_ms,
            expires_ms: claim.expires_ms,
            state: RecordState::InProgress {
                message: message.position(),
            },
        },
        scope: claim.scope.clone(),
        key: claim.key.clone(),
        replaces_expiry: expired.map(|r| r.expires_ms),
    });
    Ok((Begun::Stored { message, quota }, claimed))
}

/// The sender's standing, read inside the writer without charging.
fn standing(t: &WriteTables<'_>, send: &BeginSend) -> Result<Quota, StoreError> {
    rate::standing(t, &send.limits, &send.chat_id, &send.author, send.now_ms)
}

fn finish_op(t: &mut WriteTables<'_>, finish: &FinishSend) -> Result<Finished, StoreError> {
    let chat = t
        .chat(&finish.chat_id)?
        .ok_or_else(|| StoreError::Corrupt(format!("chat {} vanished mid-send", finish.chat_id)))?;
    let draft = match &finish.answer {
        Answer::Reply { text, node, model } => Draft {
            id: finish.message_id.clone(),
            role: MessageRole::Agent,
            author: format!("node:{node}"),
            text: text.clone(),
            metadata: None,
            reason_code: None,
            node: Some(node.clone()),
            model: Some(model.clone()),
        },
        Answer::Degraded(reason) => Draft {
            id: finish.message_id.clone(),
            role: MessageRole::System,
            author: "system".into(),
            text: reason.user_message().into(),
            metadata: None,
            reason_code: Some(reason.code().into()),
            node: None,
            model: None,
        },
    };
    let stored = messages::append(t, chat, draft, finish.now_ms)?;
    let mut replied = finish
        .audit
        .draft(
            finish.now_ms,
            Action::ChatReply,
            Target::new("chat", &finish.chat_id),
            Outcome::Ok,
        )
        .detail("message_id", stored.id.as_str())
        .detail("reply_to", finish.operator.id.as_str())
        .detail("took_over", finish.took_over);
    let body = match &finish.answer {
        Answer::Reply { node, model, .. } => {
            replied = replied
                .detail("node", node.as_str())
                .detail("model", model.as_str());
            reply_body(&finish.chat_id, &finish.operator, &stored)
        }
        Answer::Degraded(reason) => {
            replied = replied.detail("degraded", reason.code());
            degraded_body(&finish.chat_id, &finish.operator, *reason, &stored)
        }
    };
    audit::append(t, replied)?;

    if let Some((scope, key)) = &finish.completes {
        idempotency::complete(t, scope, key, body.clone())?;
    }
    Ok(Finished {
        body,
        message: stored,
    })
}
