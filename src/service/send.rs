//! The send path (SPEC §6): validate → claim and store the operator message → reply → complete.
//!
//! Idempotent sends are coordinated in two layers. In this process, `Inflight` makes one task the
//! leader for a key and parks concurrent duplicates until it is done. In the file, the writer
//! re-decides every claim against the stored record, so a key left in progress by a crashed
//! process is taken over (its operator message reused, never stored twice) and a completed one is
//! replayed. The leader's work runs in its own task: a client that hangs up cannot leave a key
//! half-finished behind a live process.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::domain::audit::Context;
use crate::domain::idempotency::{Fingerprint, IdempotencyKey, NextAction, decide};
use crate::domain::message::{Message, validate_text};
use crate::domain::principal::Principal;
use crate::domain::rate::Quota;
use crate::domain::send::{Answer, DegradedReason};
use crate::domain::slug;
use crate::monitoring::series::{self, IdempotencyResult, SendOutcome};
use crate::store::idempotency::Claim;
use crate::store::send::{BeginSend, Begun, FinishSend};

use super::inflight::{LeaderGuard, Turn};
use super::{Console, ServiceError};

/// How long a client should wait before retrying a key that is still in progress.
const IN_PROGRESS_RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct SendRequest {
    pub chat_id: String,
    pub principal: Principal,
    pub text: String,
    /// The caller's metadata object, as JSON text.
    pub metadata: Option<String>,
    pub idempotency: Option<(IdempotencyKey, Fingerprint)>,
    pub audit: Context,
}

/// The answer to a send: a status and exact body bytes, fresh or replayed, and the sender's
/// rate-limit standing after it.
#[derive(Debug)]
pub struct SendResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub replayed: bool,
    /// Stored with a degraded reply.
    pub degraded: bool,
    pub quota: Quota,
}

/// Where a send goes before it runs.
enum Admission {
    /// Its key's answer is already stored.
    Replay(SendResponse),
    /// It runs, holding its key's turn (if it has a key).
    Lead(Option<LeaderGuard>),
}

impl Console {
    pub async fn send(
        self: &Arc<Self>,
        request: SendRequest,
    ) -> Result<SendResponse, ServiceError> {
        match self.admit(&request).await {
            Ok(Admission::Lead(guard)) => self.lead(request, guard).await,
            Ok(Admission::Replay(response)) => {
                series::send(SendOutcome::Replayed);
                Ok(response)
            }
            Err(error) => {
                series::send(failure_outcome(&error));
                Err(error)
            }
        }
    }

    /// Validates the send and settles its idempotency key: replayed, refused, or this task's
    /// turn to run it (concurrent duplicates wait for the one running, up to the configured
    /// wait).
    async fn admit(&self, request: &SendRequest) -> Result<Admission, ServiceError> {
        slug::validate(&request.chat_id)
            .map_err(|e| ServiceError::validation("chat_id", e.to_string()))?;
        validate_text(&request.text)
            .map_err(|e| ServiceError::validation("text", e.to_string()))?;
        if request.idempotency.is_none() && self.send_settings.require_idempotency_key {
            return Err(ServiceError::IdempotencyKey(
                "Idempotency-Key is required on sends".into(),
            ));
        }
        let Some((key, fingerprint)) = &request.idempotency else {
            return Ok(Admission::Lead(None));
        };
        let scope = request.principal.label();
        let deadline = Instant::now() + self.send_settings.idempotency_wait;
        loop {
            if let Some(replay) = self.finished(&scope, key, fingerprint, &request.chat_id)? {
                series::idempotency(IdempotencyResult::Replay);
                return Ok(Admission::Replay(replay));
            }
            match self.inflight.join(&scope, key.as_str()) {
                Turn::Lead(guard) => return Ok(Admission::Lead(Some(guard))),
                Turn::Follow(finished) => {
                    if tokio::time::timeout_at(deadline, finished.wait())
                        .await
                        .is_err()
                    {
                        series::idempotency(IdempotencyResult::InProgress);
                        return Err(ServiceError::IdempotencyInProgress {
                            retry_after: IN_PROGRESS_RETRY_AFTER,
                        });
                    }
                }
            }
        }
    }

    /// The fast path: the stored answer when the same request already finished, read without
    /// the writer — from the records completed in this process, else from a read transaction.
    /// `None` when the key is free or still in progress.
    fn finished(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        chat_id: &str,
    ) -> Result<Option<SendResponse>, ServiceError> {
        let now_ms = self.clock.now_ms();
        let record = match self.store.published().completed(scope, key, now_ms) {
            Some(kept) => kept,
            None => match self.store.idempotency_record(scope, key)? {
                Some(stored) => Arc::new(stored),
                None => return Ok(None),
            },
        };
        match decide(Some(&record), fingerprint, now_ms) {
            NextAction::Replay { status, body } => {
                let limits = &self.send_settings.limits;
                let quota = self.store.rate_standing(limits, chat_id, scope, now_ms)?;
                Ok(Some(SendResponse {
                    status,
                    body,
                    replayed: true,
                    degraded: false,
                    quota,
                }))
            }
            NextAction::Mismatch => {
                series::idempotency(IdempotencyResult::Mismatch);
                Err(ServiceError::IdempotencyMismatch)
            }
            NextAction::Claim | NextAction::Resume { .. } => Ok(None),
        }
    }

    /// Runs the send to completion in its own task, holding `guard` (if any) until it is done.
    async fn lead(
        self: &Arc<Self>,
        request: SendRequest,
        guard: Option<LeaderGuard>,
    ) -> Result<SendResponse, ServiceError> {
        let console = self.clone();
        // In the request's span: the task's log lines carry its id and caller.
        tokio::spawn(
            async move {
                let response = console.run(request).await;
                drop(guard);
                count(&response);
                response
            }
            .in_current_span(),
        )
        .await
        .map_err(|e| {
            series::send(SendOutcome::Failed);
            ServiceError::Internal(format!("send task failed: {e}"))
        })?
    }

    async fn run(&self, request: SendRequest) -> Result<SendResponse, ServiceError> {
        let now_ms = self.clock.now_ms();
        let scope = request.principal.label();
        let claim = request.idempotency.map(|(key, fingerprint)| Claim {
            scope: scope.clone(),
            key,
            fingerprint,
            expires_ms: now_ms + self.send_settings.idempotency_ttl.as_millis() as u64,
        });
        let completes = claim.as_ref().map(|c| (c.scope.clone(), c.key.clone()));
        let begin = BeginSend {
            chat_id: request.chat_id.clone(),
            auto_create_chat: self.send_settings.auto_create_chats,
            message_id: ulid::Ulid::generate().to_string(),
            author: scope,
            text: request.text,
            metadata: request.metadata,
            now_ms,
            claim,
            limits: self.send_settings.limits,
            audit: request.audit.clone(),
        };
        // With no agent to call, the answer is known now and the send is one transaction.
        let (begun, finished) = if self.agents.is_configured() {
            (self.store.begin_send(begin).await?, None)
        } else {
            let answer = Answer::Degraded(DegradedReason::LlmUnconfigured);
            let answer_id = ulid::Ulid::generate().to_string();
            self.store.send_answered(begin, answer, answer_id).await?
        };
        let took_over = matches!(begun, Begun::TakenOver { .. });
        let (operator, quota) = match begun {
            Begun::Stored { message, quota } => {
                if completes.is_some() {
                    series::idempotency(IdempotencyResult::New);
                }
                (message, quota)
            }
            Begun::TakenOver { message, quota } => {
                series::idempotency(IdempotencyResult::Takeover);
                tracing::info!(event = "idempotency_takeover", chat_id = %request.chat_id, message_id = %message.id, "finishing a send abandoned by a previous process");
                (message, quota)
            }
            Begun::Replay {
                status,
                body,
                quota,
            } => {
                series::idempotency(IdempotencyResult::Replay);
                return Ok(SendResponse {
                    status,
                    body,
                    replayed: true,
                    degraded: false,
                    quota,
                });
            }
            Begun::Mismatch => {
                series::idempotency(IdempotencyResult::Mismatch);
                return Err(ServiceError::IdempotencyMismatch);
            }
            Begun::ChatNotFound => return Err(ServiceError::NotFound("chat")),
            Begun::RateLimited {
                scope,
                retry_after_ms,
                quota,
            } => {
                series::rate_limited(scope);
                tracing::info!(event = "rate_limited", scope = scope.as_str(), chat_id = %request.chat_id, retry_after_ms, "send refused by the rate limit");
                return Err(ServiceError::RateLimited {
                    scope,
                    retry_after_ms,
                    quota,
                });
            }
        };
        let (body, degraded) = match finished {
            Some(finished) => {
                series::degraded(DegradedReason::LlmUnconfigured);
                (finished.body, true)
            }
            None => {
                self.reply(
                    request.chat_id,
                    operator,
                    completes,
                    took_over,
                    request.audit,
                )
                .await?
            }
        };
        Ok(SendResponse {
            status: 200,
            body,
            replayed: false,
            degraded,
            quota,
        })
    }

    /// The agent step and the second transaction: ask the agent, store its answer (or why there
    /// is none) and complete the key, then announce the new message. The body, and whether the
    /// answer is degraded.
    async fn reply(
        &self,
        chat_id: String,
        operator: Message,
        completes: Option<(String, IdempotencyKey)>,
        took_over: bool,
        audit: Context,
    ) -> Result<(Vec<u8>, bool), ServiceError> {
        let (pinned, history) = self
            .store
            .agent_context(chat_id.clone(), self.agents.context_messages())?;
        let answer = self.agents.answer(pinned.as_deref(), &history).await;
        let degraded = matches!(answer, Answer::Degraded(_));
        if let Answer::Degraded(reason) = &answer {
            series::degraded(*reason);
            tracing::info!(event = "degraded", chat_id = %chat_id, reason_code = reason.code(), "send answered without a reply");
        }
        let finished = self
            .store
            .finish_send(FinishSend {
                chat_id: chat_id.clone(),
                operator,
                answer,
                message_id: ulid::Ulid::generate().to_string(),
                now_ms: self.clock.now_ms(),
                completes,
                took_over,
                audit,
            })
            .await?;
        Ok((finished.body, degraded))
    }
}

fn count(response: &Result<SendResponse, ServiceError>) {
    series::send(match response {
        Ok(answered) if answered.replayed => SendOutcome::Replayed,
        Ok(answered) if answered.degraded => SendOutcome::Degraded,
        Ok(_) => SendOutcome::Ok,
        Err(error) => failure_outcome(error),
    });
}

/// How a refused or failed send counts: refused for what the client sent or asked too soon,
/// failed for what the service could not do.
fn failure_outcome(error: &ServiceError) -> SendOutcome {
    match error {
        ServiceError::Storage(_) | ServiceError::Unavailable | ServiceError::Internal(_) => {
            SendOutcome::Failed
        }
        _ => SendOutcome::Rejected,
    }
}
