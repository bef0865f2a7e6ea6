//! `/api/chats`: create, list, read, update, and page through messages.

use std::sync::Arc;

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::domain::chat::{Chat, ChatPatch, NewChat};
use crate::domain::cursor::{self, Order};
use crate::domain::role::Permission;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{Json, Path, Query};
use crate::http::middleware::LogEvent;
use crate::http::page::{self, Page};
use crate::service::Console;

/// About what one message takes in a page's JSON, to size its buffer.
const MESSAGE_JSON_BYTES: usize = 256;

pub async fn create(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Json(new): Json<NewChat>,
) -> Result<impl IntoResponse, ApiError> {
    caller.may(Permission::WriteChats)?;
    let chat = console.create_chat(&caller.audit, new).await?;
    Ok((StatusCode::CREATED, JsonResponse(chat)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    archived: Option<bool>,
}

pub async fn list(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<JsonResponse<Page<Chat>>, ApiError> {
    caller.may(Permission::ReadChats)?;
    let limit = page::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(cursor::decode_chat)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let page = console.list_chats(after, query.archived, limit)?;
    Ok(JsonResponse(Page {
        items: page.items,
        next_cursor: page.next.as_ref().map(cursor::encode_chat),
    }))
}

pub async fn read(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<JsonResponse<Chat>, ApiError> {
    caller.may(Permission::ReadChats)?;
    Ok(JsonResponse(console.chat(&id)?))
}

pub async fn update(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<ChatPatch>,
) -> Result<JsonResponse<Chat>, ApiError> {
    caller.may(Permission::WriteChats)?;
    Ok(JsonResponse(
        console.update_chat(&caller.audit, &id, patch).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    #[serde(default)]
    order: Order,
}

pub async fn messages(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<MessagesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.may(Permission::ReadChats)?;
    let limit = page::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(cursor::decode_message)
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let slice = console.messages(&id, query.order, after, limit)?;
    let page = Page::from_slice(slice, |m| cursor::encode_message(m.position));
    let mut response = page.render(MESSAGE_JSON_BYTES).into_response();
    response.extensions_mut().insert(LogEvent {
        event: "paginate",
        chat_id: id,
    });
    Ok(response)
}
