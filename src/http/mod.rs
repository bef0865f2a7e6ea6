//! The HTTP API: routes, authentication, extractors, the error model and request middleware.
//!
//! Handlers are thin: they authenticate, check the route's permission, translate input into
//! service calls and service results into responses. Nothing here touches storage.

pub mod admin_page;
pub mod auth;
pub mod connection;
pub mod error;
pub mod extract;
pub mod framing;
pub mod input;
pub mod limits;
pub mod middleware;
pub mod page;
pub mod routes;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::service::Console;
use error::ApiError;
use limits::{LimitSettings, RequestLimits};
use routes::metrics::Exporter;

/// Largest request body accepted (SPEC §5).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the HTTP layer protects itself, from the configuration.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub cors_origins: Vec<String>,
    pub limits: LimitSettings,
}

pub fn router(console: Arc<Console>, policy: &HttpPolicy, exporter: Exporter) -> Router {
    use routes::{audit, auth, backup, chats, events, health, keys, metrics, retention, send};
    let routes = Router::new()
        .route("/livez", get(health::livez))
        .route("/api/health", get(health::health))
        .route(
            "/metrics",
            get(metrics::scrape).layer(Extension(Arc::new(exporter))),
        )
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/me", get(auth::me))
        .route("/api/chats", get(chats::list).post(chats::create))
        .route("/api/chats/{id}", get(chats::read).patch(chats::update))
        .route("/api/chats/{id}/messages", get(chats::messages))
        .route("/api/chats/{id}/send", post(send::send))
        .route("/api/chats/{id}/events", get(events::chat_stream))
        .route("/api/admin/events/stream", get(events::admin_stream))
        .route("/api/admin/keys", get(keys::list).post(keys::create))
        .route("/api/admin/keys/{id}", delete(keys::revoke))
        .route("/api/admin/system/health", get(health::system))
        .route("/api/admin/backup", post(backup::create))
        .route("/api/admin/backups", get(backup::list))
        .route("/api/admin/retention/run", post(retention::run))
        .route("/api/admin/retention/runs", get(retention::runs))
        .route("/api/admin/retention/runs/{id}", get(retention::run_entry))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/verify", get(audit::verify))
        .route("/api/audit/export", get(audit::export))
        .merge(admin_page::routes())
        .fallback(|| async { ApiError::not_found("no such resource") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let routes = match cors(&policy.cors_origins) {
        Some(layer) => routes.layer(layer),
        None => routes,
    };
    let limits = Arc::new(RequestLimits::new(policy.limits));
    routes
        .layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            limits::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            limits::read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            middleware::observe,
        ))
        .with_state(console)
}

/// Cross-origin access for the allow-listed origins only; with none listed there is no CORS
/// layer at all, so browsers refuse every cross-origin call.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotency-replayed"),
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}
