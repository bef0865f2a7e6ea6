//! `POST /api/chats/{id}/send`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::idempotency::{self, IdempotencyKey};
use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{Json, Path};
use crate::service::Console;
use crate::service::send::SendRequest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    text: String,
    metadata: Option<Map<String, Value>>,
}

pub async fn send(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(chat_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let principal = caller.may(Permission::WriteChats)?.clone();
    let key = idempotency_key(&headers)?;
    // The fingerprint covers the body exactly as parsed, before it is typed.
    let idempotency = key.map(|key| {
        let path = format!("/api/chats/{chat_id}/send");
        (key, idempotency::fingerprint("POST", &path, &body))
    });
    let SendBody { text, metadata } = serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("body: {e}"),
        )
    })?;
    let metadata = metadata.map(|m| Value::Object(m).to_string());
    let reply = console
        .send(SendRequest {
            chat_id,
            principal,
            text,
            metadata,
            idempotency,
            audit: caller.audit,
        })
        .await?;
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
    Ok(response)
}

/// `Idempotency-Key`, or its alias `X-Idempotency-Key`; present but malformed is an error.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers
        .get("idempotency-key")
        .or_else(|| headers.get("x-idempotency-key"))
    else {
        return Ok(None);
    };
    IdempotencyKey::parse(raw.as_bytes())
        .map(Some)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                e.to_string(),
            )
        })
}
