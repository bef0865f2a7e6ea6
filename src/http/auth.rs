//! Authentication: the `Caller` extractor. No peer address ever grants anything.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method, header};

use super::error::ApiError;
use super::middleware::RequestId;
use crate::domain::audit::{Actor, Context};
use crate::domain::principal::Principal;
use crate::domain::role::Permission;
use crate::service::Console;

/// The authenticated principal of a request and the audit context of what it does. Extracting
/// it fails with `401` when no valid credential is presented.
pub struct Caller {
    pub principal: Principal,
    pub audit: Context,
}

impl Caller {
    /// The principal, if its role grants `permission`; otherwise `403`.
    pub fn may(&self, permission: Permission) -> Result<&Principal, ApiError> {
        if self.principal.role.allows(permission) {
            Ok(&self.principal)
        } else {
            Err(ApiError::forbidden(self.audit.actor.clone()))
        }
    }
}

impl FromRequestParts<Arc<Console>> for Caller {
    type Rejection = ApiError;

    /// A header credential (`Authorization: Bearer` or `X-API-Key`) or, failing that, the
    /// session cookie; a locked-out address is refused before either is looked at, and a wrong
    /// credential counts toward its lockout.
    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let mut audit = anonymous_context(parts);
        console.check_lockout(audit.client_ip.as_deref())?;
        if let Some(presented) = presented_credential(&parts.headers) {
            let Some(principal) = console.keys.authenticate(presented) else {
                console.authentication_failed(&audit).await;
                return Err(ApiError::unauthorized());
            };
            audit.actor = Actor::of(&principal);
            record_principal(&principal);
            return Ok(Caller { principal, audit });
        }
        // A session cookie that no longer opens a session (idle, logged out) is not a guess at a
        // credential — its token is 256 random bits — so it does not count toward the lockout.
        let principal = session_cookie(&parts.headers)
            .and_then(|token| console.authenticate_session(token))
            .ok_or_else(ApiError::unauthorized)?;
        audit.actor = Actor::of(&principal);
        record_principal(&principal);
        if !is_safe(&parts.method) && !has_csrf_header(&parts.headers) {
            return Err(ApiError::forbidden(audit.actor).with_message(
                "requests made with the session cookie must carry X-Requested-With: sofiia-console",
            ));
        }
        Ok(Caller { principal, audit })
    }
}

/// Names the caller on the request's span, so that every log line of the request carries it.
fn record_principal(principal: &Principal) {
    tracing::Span::current().record("principal", principal.label());
}

/// The audit context of a request not (yet) authenticated: its id and address.
pub struct Anonymous(pub Context);

impl<S: Send + Sync> FromRequestParts<S> for Anonymous {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Anonymous(anonymous_context(parts)))
    }
}

fn anonymous_context(parts: &Parts) -> Context {
    Context {
        actor: Actor::anonymous(),
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        client_ip: client_ip(&parts.extensions),
    }
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sofiia_session";
const CSRF_HEADER: &str = "x-requested-with";
const CSRF_VALUE: &str = "sofiia-console";

/// Whether the request presents a credential at all (a header or the session cookie), valid or
/// not: what sets authenticated work apart before it is authenticated.
pub fn carries_credential(headers: &HeaderMap) -> bool {
    presented_credential(headers).is_some() || session_cookie(headers).is_some()
}

/// The session token from the `Cookie` header, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn has_csrf_header(headers: &HeaderMap) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| v.as_bytes() == CSRF_VALUE.as_bytes())
}

/// The peer's address, as recorded in the audit trail (never used to grant anything).
pub fn client_ip(extensions: &Extensions) -> Option<String> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// `Authorization: Bearer <key>` or `X-API-Key: <key>`; an empty credential is no credential.
fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    let credential = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let (scheme, credential) = value.to_str().ok()?.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(credential)?
        }
        None => headers.get("x-api-key")?.to_str().ok()?,
    };
    Some(credential.trim()).filter(|c| !c.is_empty())
}
