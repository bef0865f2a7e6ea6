//! The HTTP API: routes, authentication, extractors, the error model and request middleware.
//!
//! Handlers are thin: they authenticate, check the route's permission, translate input into
//! service calls and service results into responses. Nothing here touches storage.

pub mod auth;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod page;
pub mod routes;
pub mod serve;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::service::Console;
use error::ApiError;

/// Largest request body accepted (SPEC §5).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(console: Arc<Console>) -> Router {
    use routes::{audit, chats, health, keys, send};
    Router::new()
        .route("/livez", get(health::livez))
        .route("/api/health", get(health::health))
        .route("/api/chats", get(chats::list).post(chats::create))
        .route("/api/chats/{id}", get(chats::read).patch(chats::update))
        .route("/api/chats/{id}/messages", get(chats::messages))
        .route("/api/chats/{id}/send", post(send::send))
        .route("/api/admin/keys", get(keys::list).post(keys::create))
        .route("/api/admin/keys/{id}", delete(keys::revoke))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/verify", get(audit::verify))
        .route("/api/audit/export", get(audit::export))
        .fallback(|| async { ApiError::not_found("no such resource") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            middleware::observe,
        ))
        .with_state(console)
}
