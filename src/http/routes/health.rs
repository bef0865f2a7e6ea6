//! Liveness and health.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::build_info;
use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::service::Console;
use crate::service::health::{Check, Status};
use crate::service::system_health::SystemHealth;

/// `GET /livez`: no I/O at all; also the benchmark's ceiling.
pub async fn livez() -> &'static str {
    "ok"
}

#[derive(Serialize)]
struct Health {
    status: Status,
    version: &'static str,
    git_sha: &'static str,
    uptime_s: u64,
    checks: Checks,
}

#[derive(Serialize)]
struct Checks {
    database: Check,
    disk: Check,
    agents: Check,
    retention: Check,
}

/// `GET /api/health`: `503` when any check is in error.
pub async fn health(State(console): State<Arc<Console>>) -> impl IntoResponse {
    let checks = Checks {
        database: console.database_check(),
        disk: console.disk_check(),
        agents: console.agents_check(),
        retention: console.retention_check(),
    };
    let status = [
        &checks.database,
        &checks.disk,
        &checks.agents,
        &checks.retention,
    ]
    .into_iter()
    .map(|c| c.status)
    .max()
    .unwrap_or(Status::Ok);
    let code = if status == Status::Error {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status,
        version: build_info::VERSION,
        git_sha: build_info::GIT_SHA,
        uptime_s: console.uptime().as_secs(),
        checks,
    };
    (code, Json(body))
}

/// `GET /api/admin/system/health`: the system-health cards (admin, viewer).
pub async fn system(
    State(console): State<Arc<Console>>,
    caller: Caller,
) -> Result<Json<SystemHealth>, ApiError> {
    caller.may(Permission::ReadSystemHealth)?;
    Ok(Json(console.system_health()))
}
