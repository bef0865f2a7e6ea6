//! `GET /metrics`: the Prometheus text exposition, behind a bearer token when
//! `metrics.token_file` is set.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, response::IntoResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::error::ApiError;
use crate::monitoring;
use crate::service::Console;

/// What a scrape needs: the recorder's handle and the token it must present, if any.
pub struct Exporter {
    pub handle: PrometheusHandle,
    pub token: Option<Secret>,
}

pub async fn scrape(
    State(console): State<Arc<Console>>,
    Extension(exporter): Extension<Arc<Exporter>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = &exporter.token
        && !presents(&headers, token)
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the metrics token is required (Authorization: Bearer)",
        ));
    }
    console.publish_gauges();
    Ok(monitoring::render(&exporter.handle))
}

/// Whether `Authorization: Bearer` carries `token`, compared in constant time.
fn presents(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())))
}
