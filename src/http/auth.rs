//! Authentication: the `Caller` extractor. No peer address ever grants anything.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, header};

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

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let presented = presented_credential(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let principal = console
            .keys
            .authenticate(presented)
            .ok_or_else(ApiError::unauthorized)?;
        let audit = Context {
            actor: Actor::of(&principal),
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            client_ip: client_ip(&parts.extensions),
        };
        Ok(Caller { principal, audit })
    }
}

/// The peer's address, as recorded in the audit trail (never used to grant anything).
pub fn client_ip(extensions: &Extensions) -> Option<String> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, credential) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credential.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}
