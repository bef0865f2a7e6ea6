//! `/api/audit`: filtered pages, chain verification, NDJSON export. Admin and auditor keys only.

use std::sync::Arc;

use axum::Json as JsonResponse;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tokio_stream::StreamExt;

use crate::domain::audit::{Action, Anchor, Filter, Outcome};
use crate::domain::cursor;
use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Query;
use crate::http::page::{self, Page};
use crate::service::Console;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<JsonResponse<Page<Value>>, ApiError> {
    caller.may(Permission::ReadAudit)?;
    let limit = page::limit(query.limit)?;
    let (since_ms, until_ms) = time_bounds(query.since.as_deref(), query.until.as_deref())?;
    let before = query
        .cursor
        .as_deref()
        .map(cursor::decode_audit)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let filter = Filter {
        action: query
            .action
            .as_deref()
            .map(|a| Action::parse(a).ok_or_else(|| invalid("action", a)))
            .transpose()?,
        outcome: query
            .outcome
            .as_deref()
            .map(|o| Outcome::parse(o).ok_or_else(|| invalid("outcome", o)))
            .transpose()?,
        actor: query.actor,
        target: query.target,
        since_ms,
        until_ms,
    };
    let events = console
        .audit_page(&caller.audit, filter, before, limit + 1)
        .await?;
    let page = Page::from_rows(events, limit, |e| cursor::encode_audit(e.seq));
    Ok(JsonResponse(Page {
        items: page.items.iter().map(|e| e.to_json()).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    /// `SEQ:HASH`: an event the chain must still hold.
    expect: Option<String>,
}

pub async fn verify(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Query(query): Query<VerifyQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.may(Permission::ReadAudit)?;
    let expected = query
        .expect
        .map(|text| text.parse::<Anchor>())
        .transpose()
        .map_err(|e| ApiError::invalid_request(format!("expect: {e}")))?;
    Ok(JsonResponse(
        console.verify_audit(&caller.audit, expected).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    since: Option<String>,
    until: Option<String>,
}

pub async fn export(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    caller.may(Permission::ReadAudit)?;
    let (since, until) = time_bounds(query.since.as_deref(), query.until.as_deref())?;
    let chunks = console.export_audit(&caller.audit, since, until).await?;
    // A storage failure mid-stream ends the body early; the log has the cause. A client sees a
    // truncated export, which the verifier reports.
    let body = chunks.map(|chunk| {
        chunk.map_err(|error| {
            tracing::error!(event = "error", %error, "audit export failed");
            std::io::Error::other("audit export failed")
        })
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

fn invalid(name: &str, value: &str) -> ApiError {
    ApiError::invalid_request(format!("unknown {name} {value:?}"))
}

/// The `since` and `until` filters, each Unix milliseconds or RFC 3339.
fn time_bounds(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<u64>, Option<u64>), ApiError> {
    Ok((
        since.map(|t| instant("since", t)).transpose()?,
        until.map(|t| instant("until", t)).transpose()?,
    ))
}

/// A time filter: Unix milliseconds or RFC 3339.
fn instant(name: &str, text: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "{name} must be Unix milliseconds or an RFC 3339 time"
            ))
        })
}
