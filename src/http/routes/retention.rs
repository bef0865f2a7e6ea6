//! `/api/admin/retention`: run now (or preview), and the job log. Admin keys only.

use std::sync::Arc;

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::domain::cursor;
use crate::domain::retention::{RunView, Trigger};
use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{Json, Path, Query};
use crate::http::page::{self, Page};
use crate::service::Console;
use crate::service::retention::RunRequest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    dry_run: bool,
    compact: Option<bool>,
}

/// `POST /api/admin/retention/run`: a dry run answers `200` with its finished entry; a real run
/// answers `202` with its entry `running`, which `GET .../runs/{id}` then follows.
pub async fn run(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Json(body): Json<RunBody>,
) -> Result<Response, ApiError> {
    caller.may(Permission::ManageRetention)?;
    let request = RunRequest {
        trigger: Trigger::Api,
        dry_run: body.dry_run,
        compact: body.compact,
    };
    let run = console.start_retention(&caller.audit, request).await?;
    if run.dry_run {
        return Ok(JsonResponse(RunView::from(run)).into_response());
    }
    let location = format!("/api/admin/retention/runs/{}", run.id);
    let mut response = (StatusCode::ACCEPTED, JsonResponse(RunView::from(run))).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/admin/retention/runs`: the job log, newest first.
pub async fn runs(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Query(query): Query<RunsQuery>,
) -> Result<JsonResponse<Page<RunView>>, ApiError> {
    caller.may(Permission::ManageRetention)?;
    let limit = page::limit(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(cursor::decode_run)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let runs = console.retention_runs(before, limit + 1)?;
    let page = Page::from_rows(runs, limit, |run| cursor::encode_run(run.id));
    Ok(JsonResponse(Page {
        items: page.items.into_iter().map(RunView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /api/admin/retention/runs/{id}`.
pub async fn run_entry(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<JsonResponse<RunView>, ApiError> {
    caller.may(Permission::ManageRetention)?;
    Ok(JsonResponse(console.retention_run(id)?.into()))
}
