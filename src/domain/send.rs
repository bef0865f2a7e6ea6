//! The response to a send, built once and stored byte for byte for replays.

use serde::Serialize;

use super::message::{Message, MessageView};

/// Why a send was answered without an agent reply. A degraded outcome never fails the send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DegradedReason {
    /// No agent node is configured.
    LlmUnconfigured,
    /// The node did not answer within its timeout.
    LlmTimeout,
    /// The node failed: unreachable, 5xx, or an answer that is not a completion.
    LlmError,
    /// The node answered 429.
    LlmRateLimit,
    /// Every node that could answer has its circuit open.
    LlmUnavailable,
}

impl DegradedReason {
    pub const ALL: [DegradedReason; 5] = [
        DegradedReason::LlmUnconfigured,
        DegradedReason::LlmTimeout,
        DegradedReason::LlmError,
        DegradedReason::LlmRateLimit,
        DegradedReason::LlmUnavailable,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DegradedReason::LlmUnconfigured => "llm_unconfigured",
            DegradedReason::LlmTimeout => "llm_timeout",
            DegradedReason::LlmError => "llm_error",
            DegradedReason::LlmRateLimit => "llm_rate_limit",
            DegradedReason::LlmUnavailable => "llm_unavailable",
        }
    }

    /// Safe to show to the operator; the full cause goes only to the log.
    pub fn user_message(self) -> &'static str {
        match self {
            DegradedReason::LlmUnconfigured => {
                "No agent node is configured; the message was stored without a reply."
            }
            DegradedReason::LlmTimeout => {
                "The agent did not answer in time; the message was stored without a reply."
            }
            DegradedReason::LlmError => {
                "The agent failed to answer; the message was stored without a reply."
            }
            DegradedReason::LlmRateLimit => {
                "The agent is busy; the message was stored without a reply."
            }
            DegradedReason::LlmUnavailable => {
                "No agent node is available right now; the message was stored without a reply."
            }
        }
    }
}

/// How the agent step of a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `node` answered `text`, naming `model`.
    Reply {
        text: String,
        node: String,
        model: String,
    },
    Degraded(DegradedReason),
}

#[derive(Serialize)]
struct SendBody<'a> {
    chat_id: &'a str,
    message: MessageView<'a>,
    reply: Option<MessageView<'a>>,
    degraded: Option<DegradedView<'a>>,
}

#[derive(Serialize)]
struct DegradedView<'a> {
    reason_code: &'static str,
    message: &'static str,
    message_id: &'a str,
}

/// Serialises the `200` body of a send the agent answered (SPEC §6).
pub fn reply_body(chat_id: &str, operator: &Message, reply: &Message) -> Vec<u8> {
    let body = SendBody {
        chat_id,
        message: operator.view(),
        reply: Some(reply.view()),
        degraded: None,
    };
    // Plain structs with string keys: serialisation cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Serialises the `200` body of a send answered with a degraded outcome (SPEC §6); `notice` is
/// the system message that records the outcome in the chat's history.
pub fn degraded_body(
    chat_id: &str,
    operator: &Message,
    reason: DegradedReason,
    notice: &Message,
) -> Vec<u8> {
    let body = SendBody {
        chat_id,
        message: operator.view(),
        reply: None,
        degraded: Some(DegradedView {
            reason_code: reason.code(),
            message: reason.user_message(),
            message_id: &notice.id,
        }),
    };
    // Plain structs with string keys: serialisation cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}
