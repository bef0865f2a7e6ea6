//! `/api/admin/keys`: list, create (the secret is shown once), revoke.

use std::sync::Arc;

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::domain::api_key::ApiKey;
use crate::domain::role::{Permission, Role};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{Json, Path};
use crate::http::page::Page;
use crate::service::Console;

/// A key as shown: never its secret or hash.
#[derive(Debug, Serialize)]
pub struct KeyView {
    id: String,
    name: String,
    role: Role,
    created_ms: u64,
    expires_ms: Option<u64>,
    revoked_ms: Option<u64>,
    last_used_ms: Option<u64>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            role: key.role,
            created_ms: key.created_ms,
            expires_ms: key.expires_ms,
            revoked_ms: key.revoked_ms,
            last_used_ms: key.last_used_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct CreatedView {
    #[serde(flatten)]
    view: KeyView,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    role: Role,
    expires_in_days: Option<u32>,
}

pub async fn list(
    State(console): State<Arc<Console>>,
    caller: Caller,
) -> Result<JsonResponse<Page<KeyView>>, ApiError> {
    caller.may(Permission::ManageKeys)?;
    let items = console.keys.list().into_iter().map(KeyView::from).collect();
    Ok(JsonResponse(Page {
        items,
        next_cursor: None,
    }))
}

pub async fn create(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Json(new): Json<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    caller.may(Permission::ManageKeys)?;
    let created = console
        .keys
        .create(&caller.audit, new.name, new.role, new.expires_in_days)
        .await?;
    let body = CreatedView {
        view: created.key.into(),
        key: created.secret,
    };
    Ok((StatusCode::CREATED, JsonResponse(body)))
}

pub async fn revoke(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<JsonResponse<KeyView>, ApiError> {
    caller.may(Permission::ManageKeys)?;
    Ok(JsonResponse(
        console.keys.revoke(&caller.audit, &id).await?.into(),
    ))
}
