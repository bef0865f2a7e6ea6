//! Authentication: the `Caller` extractor. No peer address ever grants anything.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::error::ApiError;
use crate::domain::principal::Principal;
use crate::domain::role::Permission;
use crate::service::Console;

/// The authenticated principal of a request. Extracting it fails with `401` when no valid
/// credential is presented.
pub struct Caller(pub Principal);

impl Caller {
    /// The principal, if its role grants `permission`; otherwise `403`.
    pub fn may(&self, permission: Permission) -> Result<&Principal, ApiError> {
        if self.0.role.allows(permission) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden())
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
        console
            .keys
            .authenticate(presented)
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
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
