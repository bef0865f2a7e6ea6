//! `/api/auth`: sessions for the admin page.

use std::sync::Arc;

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::audit::Actor;
use crate::domain::role::Role;
use crate::http::auth::{Anonymous, Caller, SESSION_COOKIE, session_cookie};
use crate::http::error::ApiError;
use crate::http::extract::Json;
use crate::service::Console;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    key: String,
}

#[derive(Debug, Serialize)]
pub struct Me {
    kind: &'static str,
    id: String,
    role: Role,
    session_ends_ms: Option<u64>,
}

/// `POST /api/auth/login {"key": "..."}` → the session cookie.
pub async fn login(
    State(console): State<Arc<Console>>,
    Anonymous(ctx): Anonymous,
    Json(login): Json<Login>,
) -> Result<Response, ApiError> {
    console.check_lockout(ctx.client_ip.as_deref())?;
    let opened = console.login(&ctx, login.key.trim()).await?;
    let actor = Actor::of(&opened.principal);
    let body = Me {
        kind: actor.kind.as_str(),
        id: actor.id,
        role: opened.principal.role,
        session_ends_ms: Some(opened.ends_ms),
    };
    let policy = console.session_policy();
    let max_age = policy.max.as_secs();
    let secure = if policy.cookie_secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        opened.token
    );
    let mut response = JsonResponse(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /api/auth/logout`: ends the session and clears the cookie.
pub async fn logout(
    State(console): State<Arc<Console>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        console.logout(&caller.audit, token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let cleared = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /api/auth/me`: who the credential stands for.
pub async fn me(
    State(console): State<Arc<Console>>,
    caller: Caller,
    headers: HeaderMap,
) -> JsonResponse<Me> {
    let session_ends_ms = caller
        .principal
        .via_session
        .then(|| session_cookie(&headers).and_then(|t| console.session_ends_ms(t)))
        .flatten();
    JsonResponse(Me {
        kind: caller.audit.actor.kind.as_str(),
        id: caller.audit.actor.id,
        role: caller.principal.role,
        session_ends_ms,
    })
}
