//! Pagination parameters and the page envelope shared by every listing (SPEC §5).

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Serialize;

use super::error::ApiError;
use crate::domain::cursor::Slice;

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

/// Items that are JSON already.
impl<T: AsRef<[u8]>> Page<T> {
    /// The page as a JSON response of the same shape as a serialised `Page`, with each item's
    /// JSON copied in as it is. The buffer is sized up front from `bytes_per_item`: growing a
    /// small buffer to a page of several KiB copies it over and over.
    pub fn render(self, bytes_per_item: usize) -> Response {
        let mut body = Vec::with_capacity(64 + self.items.len() * bytes_per_item);
        body.extend_from_slice(b"{\"items\":[");
        for (n, item) in self.items.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item.as_ref());
        }
        body.extend_from_slice(b"],\"next_cursor\":");
        let cursor = serde_json::Value::from(self.next_cursor.as_deref());
        body.extend_from_slice(cursor.to_string().as_bytes());
        body.push(b'}');
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl<T> Page<T> {
    /// Builds a page from a slice of rows: a cursor after the last when more follow.
    pub fn from_slice(slice: Slice<T>, cursor_of: impl Fn(&T) -> String) -> Self {
        let next_cursor = slice
            .more
            .then(|| slice.items.last().map(cursor_of))
            .flatten();
        Page {
            items: slice.items,
            next_cursor,
        }
    }

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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    async fn rendered(page: Page<Vec<u8>>) -> Value {
        let body = axum::body::to_bytes(page.render(16).into_body(), usize::MAX)
            .await
            .expect("body");
        serde_json::from_slice(&body).expect("rendered page is JSON")
    }

    #[tokio::test]
    async fn rendered_page_has_the_shape_of_a_serialised_one() {
        let items = vec![br#"{"a":1}"#.to_vec(), br#"{"b":"x\"y"}"#.to_vec()];
        let page = Page::from_rows(items, 1, |item| format!("after \"{}\"", item.len()));

        let expected = json!({ "items": [{ "a": 1 }], "next_cursor": "after \"7\"" });
        assert_eq!(rendered(page).await, expected);

        let last = Page::from_rows(vec![], 5, |item: &Vec<u8>| item.len().to_string());
        assert_eq!(
            rendered(last).await,
            json!({ "items": [], "next_cursor": null })
        );
    }
}
