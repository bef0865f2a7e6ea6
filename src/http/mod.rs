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
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{MethodFilter, on};
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
    let Served(routes) = api(Served(Router::new()));
    let routes = routes
        .layer(Extension(Arc::new(exporter)))
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

/// Every API route: one list, from which both the router (`Served`) and its table
/// (`route_table`) are built, so the OpenAPI document can be held to the routes really served.
fn api<R: Routes>(routes: R) -> R {
    use routes::{audit, auth, backup, chats, events, health, keys, metrics, openapi};
    use routes::{retention, send};
    routes
        .get("/livez", health::livez)
        .get("/api/health", health::health)
        .get("/metrics", metrics::scrape)
        .get("/api/openapi.json", openapi::document)
        .post("/api/auth/login", auth::login)
        .post("/api/auth/logout", auth::logout)
        .get("/api/auth/me", auth::me)
        .get("/api/chats", chats::list)
        .post("/api/chats", chats::create)
        .get("/api/chats/{id}", chats::read)
        .patch("/api/chats/{id}", chats::update)
        .get("/api/chats/{id}/messages", chats::messages)
        .post("/api/chats/{id}/send", send::send)
        .get("/api/chats/{id}/events", events::chat_stream)
        .get("/api/admin/events/stream", events::admin_stream)
        .get("/api/admin/keys", keys::list)
        .post("/api/admin/keys", keys::create)
        .delete("/api/admin/keys/{id}", keys::revoke)
        .get("/api/admin/system/health", health::system)
        .post("/api/admin/backup", backup::create)
        .get("/api/admin/backups", backup::list)
        .post("/api/admin/retention/run", retention::run)
        .get("/api/admin/retention/runs", retention::runs)
        .get("/api/admin/retention/runs/{id}", retention::run_entry)
        .get("/api/audit", audit::list)
        .get("/api/audit/verify", audit::verify)
        .get("/api/audit/export", audit::export)
}

/// The method and path of every API route, as `api` lists them.
pub fn route_table() -> Vec<(Method, &'static str)> {
    api(Table(Vec::new())).0
}

/// What `api` builds: each route is given once, with its method both as a `Method` (for the
/// table) and as a `MethodFilter` (for the router), so neither is derived from the other.
trait Routes: Sized {
    fn on<H, T>(self, method: Method, filter: MethodFilter, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Console>>,
        T: 'static;

    fn get<H: Handler<T, Arc<Console>>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::GET, MethodFilter::GET, path, h)
    }

    fn post<H: Handler<T, Arc<Console>>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::POST, MethodFilter::POST, path, h)
    }

    fn patch<H: Handler<T, Arc<Console>>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::PATCH, MethodFilter::PATCH, path, h)
    }

    fn delete<H: Handler<T, Arc<Console>>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.on(Method::DELETE, MethodFilter::DELETE, path, h)
    }
}

/// The routes as served. axum merges the methods given for one path into one route.
struct Served(Router<Arc<Console>>);

impl Routes for Served {
    fn on<H, T>(self, _: Method, filter: MethodFilter, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Console>>,
        T: 'static,
    {
        Served(self.0.route(path, on(filter, handler)))
    }
}

/// The routes as a table.
struct Table(Vec<(Method, &'static str)>);

impl Routes for Table {
    fn on<H, T>(mut self, method: Method, _: MethodFilter, path: &'static str, _: H) -> Self
    where
        H: Handler<T, Arc<Console>>,
        T: 'static,
    {
        self.0.push((method, path));
        self
    }
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
