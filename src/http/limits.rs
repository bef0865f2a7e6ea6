//! Per-request limits: how long a body may take to arrive, how many requests run at once, how
//! long each may run, and how many response bytes may wait for slow readers.
//!
//! Every refusal is fast and final (`413`, `408`, `503` with `Retry-After`) rather than a queue:
//! under overload an honest refusal serves clients better than a backlog that times out anyway.
//! The order matters. A body is read in full, under its own short deadline, *before* the request
//! takes a concurrency slot — a client trickling its body therefore holds a connection, never a
//! slot. The liveness and health probes take no slot at all, so a busy service is never
//! restarted for being busy. Requests without a credential may hold only a quarter of the slots,
//! so anonymous clients cannot crowd out authenticated work.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::MAX_BODY_BYTES;
use super::auth::carries_credential;
use super::error::ApiError;

/// Paths that are never refused for want of a slot: the probes a service manager or load
/// balancer acts on.
const PROBES: [&str; 2] = ["/livez", "/api/health"];
/// Requests without a credential may hold at most this share of the slots (one in four).
const ANONYMOUS_SHARE_DIVISOR: usize = 4;
/// A buffered response is handed to the connection in slices of this size, so the bytes it
/// holds are counted until the last slice leaves (see `Budgeted`).
const RESPONSE_SLICE_BYTES: usize = 64 * 1024;

pub struct RequestLimits {
    slots: Semaphore,
    anonymous_slots: Semaphore,
    response_bytes: Arc<Semaphore>,
    timeout: Duration,
    body_timeout: Duration,
}

/// The settings `RequestLimits` enforces.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub max_concurrent: usize,
    pub timeout: Duration,
    pub body_timeout: Duration,
    pub max_buffered_response_bytes: usize,
}

impl RequestLimits {
    pub fn new(settings: LimitSettings) -> Self {
        let anonymous = settings.max_concurrent.div_ceil(ANONYMOUS_SHARE_DIVISOR);
        Self {
            slots: Semaphore::new(settings.max_concurrent),
            anonymous_slots: Semaphore::new(anonymous),
            response_bytes: Arc::new(Semaphore::new(settings.max_buffered_response_bytes)),
            timeout: settings.timeout,
            body_timeout: settings.body_timeout,
        }
    }
}

/// Reads the request body in full before anything else sees the request, within
/// `body_timeout`: a body declared over `MAX_BODY_BYTES` is refused at once (`413`), one that
/// turns out larger (chunked) as soon as it does, one that does not arrive in time with `408`.
/// Each refusal closes the connection: what the client is still sending is never read.
pub async fn read_body(
    State(limits): State<Arc<RequestLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if declared_length(request.headers()).is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return closing(too_large());
    }
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    let body = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(bytes)) => Body::from(bytes),
        Ok(Err(error)) if is_length_limit(&error) => return closing(too_large()),
        Ok(Err(_)) => {
            return closing(ApiError::invalid_request(
                "the request body could not be read",
            ));
        }
        Err(_) => {
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            ));
        }
    };
    next.run(Request::from_parts(parts, body)).await
}

/// Runs the request in a concurrency slot and under the request deadline, then holds its
/// response bytes against the shared budget until they have left.
pub async fn enforce(
    State(limits): State<Arc<RequestLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if PROBES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let anonymous = !carries_credential(request.headers());
    let anonymous_slot = match anonymous.then(|| limits.anonymous_slots.try_acquire()) {
        Some(Err(_)) => return busy("the service is at its limit for unauthenticated requests"),
        other => other,
    };
    let Ok(_slot) = limits.slots.try_acquire() else {
        return busy("the service is at its concurrency limit; retry shortly");
    };
    let response = match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the request ran past its deadline and may still be in progress; a send retried with \
             the same Idempotency-Key returns its result once it completes",
        )
        .with_retry_after(Duration::from_secs(1))
        .into_response(),
    };
    drop(anonymous_slot);
    budgeted(&limits.response_bytes, response)
}

/// Charges a buffered response's bytes to `budget` until the connection has taken the last of
/// them; refuses it (`503`) when the budget cannot cover it. Streamed bodies (exports, event
/// streams) are bounded by their producers instead.
fn budgeted(budget: &Arc<Semaphore>, response: Response) -> Response {
    let Some(length) = response.body().size_hint().exact() else {
        return response;
    };
    if length == 0 {
        return response;
    }
    let permit = u32::try_from(length)
        .ok()
        .and_then(|n| budget.clone().try_acquire_many_owned(n).ok());
    let Some(permit) = permit else {
        return busy("the service is holding too many unsent responses; retry shortly");
    };
    let (parts, body) = response.into_parts();
    let budgeted = Budgeted {
        body,
        pending: None,
        _permit: permit,
    };
    Response::from_parts(parts, Body::new(budgeted))
}

/// A response body that keeps its share of the response budget until it is dropped: after its
/// last slice was taken, or when the connection is cut. It hands its bytes over in slices so
/// that the connection (which buffers at most `serve::MAX_BUFFER_BYTES`) cannot take them all
/// at once and leave the budget while still holding them.
struct Budgeted {
    body: Body,
    pending: Option<Bytes>,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Budgeted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = Some(data),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let slice = pending.split_to(pending.len().min(RESPONSE_SLICE_BYTES));
        if pending.is_empty() {
            this.pending = None;
        }
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.body.size_hint();
        if let Some(pending) = &self.pending {
            let pending = pending.len() as u64;
            hint.set_lower(hint.lower() + pending);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + pending);
            }
        }
        hint
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than 64 KiB",
    )
}

/// The refusal, with the connection closed after it: the rest of the request is never read.
pub fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn busy(message: &'static str) -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        .with_retry_after(Duration::from_secs(1))
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    use super::*;

    fn limits(max_concurrent: usize, response_bytes: usize) -> Arc<RequestLimits> {
        Arc::new(RequestLimits::new(LimitSettings {
            max_concurrent,
            timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(1),
            max_buffered_response_bytes: response_bytes,
        }))
    }

    /// A router whose `/work` announces each request on `entered` and then waits for `release`.
    fn parking_router(
        limits: Arc<RequestLimits>,
        entered: mpsc::UnboundedSender<()>,
        release: Arc<Semaphore>,
    ) -> Router {
        let work = move || {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                let _ = entered.send(());
                let _ = release.acquire().await;
                "done"
            }
        };
        Router::new()
            .route("/work", get(work))
            .route("/livez", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limits, enforce))
    }

    fn request(path: &str, credential: bool) -> Request {
        let mut builder = axum::http::Request::get(path);
        if credential {
            builder = builder.header(header::AUTHORIZATION, "Bearer sk_anything");
        }
        builder.body(Body::empty()).expect("a request")
    }

    #[tokio::test]
    async fn anonymous_requests_hold_at_most_a_quarter_of_the_slots() {
        let (entered, mut entries) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        let router = parking_router(limits(8, 1 << 20), entered, release.clone());
        let mut parked = Vec::new();
        for _ in 0..2 {
            parked.push(tokio::spawn(
                router.clone().oneshot(request("/work", false)),
            ));
            entries.recv().await.expect("an anonymous request entered");
        }

        let third = router
            .clone()
            .oneshot(request("/work", false))
            .await
            .unwrap();
        assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
        for _ in 0..6 {
            parked.push(tokio::spawn(router.clone().oneshot(request("/work", true))));
            entries
                .recv()
                .await
                .expect("an authenticated request entered");
        }
        let over = router
            .clone()
            .oneshot(request("/work", true))
            .await
            .unwrap();
        assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
        let probe = router
            .clone()
            .oneshot(request("/livez", false))
            .await
            .unwrap();
        assert_eq!(probe.status(), StatusCode::OK, "probes take no slot");

        release.add_permits(parked.len());
        for request in parked {
            let response = request.await.unwrap().unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn responses_beyond_the_byte_budget_are_refused_until_bytes_leave() {
        let router = Router::new()
            .route("/big", get(|| async { vec![b'x'; 600] }))
            .layer(axum::middleware::from_fn_with_state(
                limits(8, 1000),
                enforce,
            ));
        let held = router.clone().oneshot(request("/big", true)).await.unwrap();
        assert_eq!(held.status(), StatusCode::OK);

        let refused = router.clone().oneshot(request("/big", true)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

        let body = axum::body::to_bytes(held.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body.len(), 600, "sliced, but whole");
        let again = router.oneshot(request("/big", true)).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "the budget is given back");
    }
}
