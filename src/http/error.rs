//! The error model (SPEC §5): every failure is a status, a stable `code` and a safe message.
//!
//! Handlers return `ApiError`; it becomes an empty response carrying an `ErrorPayload`
//! extension, and the request middleware renders the JSON body once the request id is known.
//! Errors produced outside our handlers (an unknown method, a body over the limit) arrive without
//! a payload and are rendered from their status, so every error body has the same shape.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::framing::Refusal;
use crate::domain::audit::Actor;
use crate::service::ServiceError;

/// A refused or failed request. Boxed: errors travel through every handler's `Result`, and the
/// common `Ok` path should not pay for their size.
#[derive(Debug)]
pub struct ApiError(Box<Parts>);

#[derive(Debug)]
struct Parts {
    status: StatusCode,
    payload: ErrorPayload,
    retry_after: Option<Duration>,
    denied: Option<Actor>,
}

/// Marks a `403` response with the authenticated actor that was refused, for the audit trail.
#[derive(Debug, Clone)]
pub struct DeniedActor(pub Actor);

/// What the middleware needs to render an error body.
#[derive(Debug, Clone)]
pub struct ErrorPayload {
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Machine-readable facts beside `code` (e.g. `scope`, `retry_after_ms`).
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self(Box::new(Parts {
            status,
            payload: ErrorPayload {
                code,
                message: message.into(),
                fields: Vec::new(),
            },
            retry_after: None,
            denied: None,
        }))
    }

    /// Adds a field to the error object beside `code` and `message`.
    pub fn with_field(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.0.payload.fields.push((name, value.into()));
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer or X-API-Key)",
        )
    }

    /// `403` for `actor`, whose role does not allow the action.
    pub fn forbidden(actor: Actor) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this key's role does not allow this action",
        );
        error.0.denied = Some(actor);
        error
    }

    /// Replaces the message (the code and status stay).
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.0.payload.message = message.into();
        self
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.0.retry_after = Some(after);
        self
    }
}

/// The payload for an error response that was produced without one.
pub fn payload_for_status(status: StatusCode) -> ErrorPayload {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this resource")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "request_header_fields_too_large",
            "the request headers are too large",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "expected application/json")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            ("unavailable", "the service is unavailable; retry later")
        }
        s if s.is_client_error() => ("invalid_request", "the request is not valid"),
        _ => (
            "internal",
            "internal error; quote the request id when reporting it",
        ),
    };
    ErrorPayload {
        code,
        message: Cow::Borrowed(message),
        fields: Vec::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            payload,
            retry_after,
            denied,
        } = *self.0;
        let mut response = status.into_response();
        if let Some(after) = retry_after {
            let seconds = after.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response.extensions_mut().insert(payload);
        if let Some(actor) = denied {
            response.extensions_mut().insert(DeniedActor(actor));
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        Self::new(refusal.status(), refusal.code(), refusal.message())
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Validation { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                error.to_string(),
            ),
            ServiceError::NotFound(_) => Self::not_found(error.to_string()),
            ServiceError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::IdempotencyMismatch => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_mismatch",
                error.to_string(),
            ),
            ServiceError::IdempotencyInProgress { retry_after } => Self::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                error.to_string(),
            )
            .with_retry_after(retry_after),
            ServiceError::RateLimited {
                scope,
                retry_after_ms,
                ..
            } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many sends for this {}; retry after {retry_after_ms} ms",
                    scope.as_str()
                ),
            )
            .with_field("scope", scope.as_str())
            .with_field("retry_after_ms", retry_after_ms)
            .with_retry_after(Duration::from_millis(retry_after_ms)),
            ServiceError::Unauthenticated => Self::unauthorized(),
            ServiceError::Locked { retry_after } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "auth_locked",
                "too many failed authentications from this address; retry later",
            )
            .with_field("retry_after_ms", retry_after.as_millis() as u64)
            .with_retry_after(retry_after),
            ServiceError::IdempotencyKey(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                error.to_string(),
            ),
            ServiceError::Unavailable => {
                tracing::error!(event = "error", %error, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is shutting down or its storage is unavailable; retry later",
                )
            }
            ServiceError::Storage(_) | ServiceError::Internal(_) => {
                tracing::error!(event = "error", %error, "request failed");
                let payload = payload_for_status(StatusCode::INTERNAL_SERVER_ERROR);
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    payload.code,
                    payload.message,
                )
            }
        }
    }
}
