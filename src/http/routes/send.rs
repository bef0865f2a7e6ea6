//! `POST /api/chats/{id}/send`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::idempotency::{self, IdempotencyKey};
use crate::domain::rate::{Quota, SendLimits};
use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{JsonObject, Path};
use crate::http::input;
use crate::http::middleware::LogEvent;
use crate::service::send::{SendRequest, SendResponse};
use crate::service::{Console, ServiceError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    text: String,
    metadata: Option<Map<String, Value>>,
}

/// `POST /api/chats/{id}/send`. Every response carries `RateLimit-Policy`; those that metered
/// the sender (admitted, refused, replayed) also carry `RateLimit`.
pub async fn send(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(chat_id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Response {
    let limits = console.send_settings.limits;
    let mut response = match caller.may(Permission::WriteChats) {
        Err(denied) => denied.into_response(),
        Ok(_) => match input::from_json::<SendBody>(&body) {
            Err(invalid) => ApiError::from(invalid).into_response(),
            Ok(typed) => {
                let logged = chat_id.clone();
                respond(
                    accept(&console, caller, chat_id, &headers, &body, typed).await,
                    logged,
                )
            }
        },
    };
    if let Ok(policy) = HeaderValue::from_str(&policy_header(&limits)) {
        response.headers_mut().insert("ratelimit-policy", policy);
    }
    response
}

fn respond(result: Result<SendResponse, ServiceError>, chat_id: String) -> Response {
    match result {
        Ok(reply) => {
            let quota = reply.quota;
            let event = if reply.replayed { "replay" } else { "send" };
            let mut response = with_quota(sent(reply), &quota);
            response
                .extensions_mut()
                .insert(LogEvent { event, chat_id });
            response
        }
        Err(refused @ ServiceError::RateLimited { quota, .. }) => {
            with_quota(ApiError::from(refused).into_response(), &quota)
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn accept(
    console: &Arc<Console>,
    caller: Caller,
    chat_id: String,
    headers: &HeaderMap,
    body: &Value,
    SendBody { text, metadata }: SendBody,
) -> Result<SendResponse, ServiceError> {
    let principal = caller.principal.clone();
    let key = idempotency_key(headers)?;
    // The fingerprint covers the body exactly as parsed, before it was typed.
    let idempotency = key.map(|key| {
        let path = format!("/api/chats/{chat_id}/send");
        (key, idempotency::fingerprint("POST", &path, body))
    });
    let metadata = metadata.map(|m| Value::Object(m).to_string());
    console
        .send(SendRequest {
            chat_id,
            principal,
            text,
            metadata,
            idempotency,
            audit: caller.audit,
        })
        .await
}

fn sent(reply: SendResponse) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if reply.replayed {
        headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `RateLimit-Policy: "chat";q=10;w=20, "operator";q=30;w=15` — quota units are requests, the
/// window is the time an emptied bucket takes to refill.
fn policy_header(limits: &SendLimits) -> String {
    format!(
        "\"chat\";q={};w={}, \"operator\";q={};w={}",
        limits.chat.burst,
        limits.chat.window_s(),
        limits.operator.burst,
        limits.operator.window_s()
    )
}

/// `RateLimit: "chat";r=9;t=2, "operator";r=29;t=1` — remaining requests and seconds until the
/// bucket is full again.
fn with_quota(mut response: Response, quota: &Quota) -> Response {
    let text = format!(
        "\"chat\";r={};t={}, \"operator\";r={};t={}",
        quota.chat.remaining,
        quota.chat.reset_ms.div_ceil(1000),
        quota.operator.remaining,
        quota.operator.reset_ms.div_ceil(1000)
    );
    if let Ok(value) = HeaderValue::from_str(&text) {
        response.headers_mut().insert("ratelimit", value);
    }
    response
}

/// `Idempotency-Key`, or its alias `X-Idempotency-Key`; present but malformed is an error.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ServiceError> {
    let Some(raw) = headers
        .get("idempotency-key")
        .or_else(|| headers.get("x-idempotency-key"))
    else {
        return Ok(None);
    };
    IdempotencyKey::parse(raw.as_bytes())
        .map(Some)
        .map_err(|e| ServiceError::IdempotencyKey(e.to_string()))
}
