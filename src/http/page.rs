//! Pagination parameters and the page envelope shared by every listing (SPEC §5).

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use crate::service::ServiceError;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

/// `?limit=` checked against its bounds: 1..=200, default 50.
pub fn limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: Serialize> Page<T> {
    /// The page as a JSON response, written into a buffer sized up front from
    /// `bytes_per_item`: a page of messages is several KiB, and growing a small buffer to that
    /// size copies it over and over.
    pub fn into_response_sized(self, bytes_per_item: usize) -> Response {
        let mut body = Vec::with_capacity(64 + self.items.len() * bytes_per_item);
        match serde_json::to_writer(&mut body, &self) {
            Ok(()) => {
                let mut response = Response::new(Body::from(body));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(e) => ApiError::from(ServiceError::Internal(format!("rendering a page: {e}")))
                .into_response(),
        }
    }
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says that more exist, so
    /// the last page never hands out a cursor to an empty one.
    pub fn from_rows(mut rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = more.then(|| rows.last().map(cursor_of)).flatten();
        Page {
            items: rows,
            next_cursor,
        }
    }
}
