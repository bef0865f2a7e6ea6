//! What happens around every request: its id, its error body, its log line.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::auth::client_ip;
use super::error::{ApiError, DeniedActor, ErrorPayload, payload_for_status};
use super::framing::Refusal;
use super::limits::closing;
use crate::domain::audit::{Action, Actor, Context, Outcome, Target};
use crate::monitoring;
use crate::service::Console;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request being served, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Assigns the request id (echoing a well-formed incoming one), runs the request inside a span
/// carrying it, renders error bodies, audits denials, and logs one line per request. A request
/// standing in for a head the connection refused (`connection`) is answered with that refusal
/// and goes no further.
pub async fn observe(
    State(console): State<Arc<Console>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = incoming_id(&request).unwrap_or_else(|| ulid::Ulid::generate().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let refused = request.extensions_mut().remove::<Refusal>();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = match (&refused, &matched) {
        (Some(_), _) => "refused",
        (None, Some(path)) => path.as_str(),
        (None, None) => "unmatched",
    };
    let client_ip = client_ip(request.extensions());
    let is_api = request.uri().path().starts_with("/api");
    // `principal` is filled in once the request is authenticated (`auth::Caller`).
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        principal = tracing::field::Empty
    );

    let mut response = match refused {
        Some(refusal) => closing(ApiError::from(refusal)),
        None => next.run(request).instrument(span.clone()).await,
    };

    let status = response.status();
    // A failed login is recorded as `auth.login_failed` by the login itself.
    let is_login = route == "/api/auth/login";
    if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN) && !is_login {
        let actor = response
            .extensions()
            .get::<DeniedActor>()
            .map_or_else(Actor::anonymous, |d| d.0.clone());
        let audit = Context {
            actor,
            request_id: Some(id.clone()),
            client_ip,
        };
        let denial = audit
            .draft(
                console.clock.now_ms(),
                Action::AuthDenied,
                Target::new("route", route),
                Outcome::Denied,
            )
            .detail("method", method.as_str())
            .detail("status", u64::from(status.as_u16()));
        console.record_denial(denial);
    }
    if status.is_client_error() || status.is_server_error() {
        response = render_error(response, &id);
    }
    declare_charset(response.headers_mut());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    secure(response.headers_mut(), is_api);
    let latency = started.elapsed();
    let status_code = response.status().as_u16();
    monitoring::http::record(method_label(&method), route, status_code, latency);
    let logged = response.extensions_mut().remove::<LogEvent>();
    span.in_scope(|| {
        tracing::info!(
            event = logged.as_ref().map_or("request", |l| l.event),
            chat_id = logged.as_ref().map(|l| l.chat_id.as_str()),
            method = %method,
            route = %route,
            status = status_code,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request served"
        );
    });
    response
}

/// What a request did, for its log line (`send`, `replay`, `paginate`), set by its handler as a
/// response extension: one line per request says it all.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub event: &'static str,
    pub chat_id: String,
}

/// The method as a metric label: a fixed set, so clients cannot mint new series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Security headers on every response (SPEC §5); API responses are never cached.
fn secure(headers: &mut HeaderMap, is_api: bool) {
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A client's id is echoed only when it is short visible ASCII, so it is safe in logs and headers.
fn incoming_id(request: &Request) -> Option<String> {
    let value = request.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let well_formed = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    well_formed.then(|| value.to_owned())
}

fn render_error(response: Response, request_id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let payload = match parts.extensions.remove::<ErrorPayload>() {
        Some(payload) => payload,
        // Already one of ours in JSON (e.g. a replayed error): leave it.
        None if is_json(&parts.headers) => return Response::from_parts(parts, body),
        None => payload_for_status(parts.status),
    };
    let mut error = serde_json::Map::new();
    error.insert("code".into(), payload.code.into());
    error.insert("message".into(), payload.message.into());
    error.insert("request_id".into(), request_id.into());
    for (name, value) in payload.fields {
        error.insert(name.into(), value);
    }
    let body = serde_json::json!({ "error": error });
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Every JSON body is UTF-8, and says so (SPEC §5): axum's `Json` leaves the charset out.
fn declare_charset(headers: &mut HeaderMap) {
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json")
    {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
