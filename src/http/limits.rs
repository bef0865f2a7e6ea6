//! Per-request limits: a cap on requests served at once and a deadline for each.
//!
//! Both refuse with `503 unavailable` rather than queue: under overload a fast, honest refusal
//! (with `Retry-After`) serves clients better than a growing backlog of requests that will time
//! out anyway.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use super::error::ApiError;

pub struct RequestLimits {
    in_flight: Semaphore,
    timeout: Duration,
}

impl RequestLimits {
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            in_flight: Semaphore::new(max_concurrent),
            timeout,
        }
    }
}

/// Bodies declared larger than this are refused without reading them: a client sending that
/// much is not owed a readable answer.
const MAX_DRAINED_BYTES: u64 = 8 * 1024 * 1024;

/// Refuses a body declared larger than `MAX_BODY_BYTES` with `413` — after reading and
/// discarding it, up to `MAX_DRAINED_BYTES`. Closing on a client that is still sending makes its
/// kernel reset the connection and lose the answer; draining first lets it read the error.
pub async fn refuse_oversized(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > super::MAX_BODY_BYTES as u64 => {
            if length <= MAX_DRAINED_BYTES {
                let mut body = request.into_body().into_data_stream();
                while let Some(Ok(_)) = body.next().await {}
            }
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than 64 KiB",
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

pub async fn enforce(
    State(limits): State<Arc<RequestLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = limits.in_flight.try_acquire() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is at its concurrency limit; retry shortly",
        )
        .with_retry_after(Duration::from_secs(1))
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the request took too long and was abandoned; retry later",
        )
        .with_retry_after(Duration::from_secs(1))
        .into_response(),
    }
}
