//! `POST /api/admin/backup` and `GET /api/admin/backups` (admin).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::service::Console;
use crate::service::backup::Created;

/// Takes a backup now, while the service keeps serving; answers when it is complete.
pub async fn create(
    State(console): State<Arc<Console>>,
    caller: Caller,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    caller.may(Permission::ManageBackups)?;
    let created = console.create_backup(&caller.audit).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list(
    State(console): State<Arc<Console>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.may(Permission::ManageBackups)?;
    Ok(Json(json!({ "items": console.backups() })))
}
