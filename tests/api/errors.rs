//! Transport-level failures answer with the JSON error shape and a request id.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, send, spawn_app};

/// Just over the 64 KiB request body limit.
const OVERSIZED_BODY_BYTES: usize = 64 * 1024 + 1024;

#[tokio::test]
async fn unknown_route_is_a_json_not_found() {
    let app = spawn_app().await;

    let response = app.get("/api/does-not-exist", &app.admin_key).await;

    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn send_with_a_non_json_content_type_is_unsupported() {
    let app = spawn_app().await;

    let response = send(
        app.request(Method::POST, "/api/chats/ops-415/send")
            .bearer_auth(&app.admin_key)
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"text":"hello"}"#),
    )
    .await;

    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_error(
        app.get("/api/chats/ops-415", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_an_invalid_request() {
    let app = spawn_app().await;

    for path in ["/api/chats/ops-400/send", "/api/chats"] {
        let response = send(
            app.request(Method::POST, path)
                .bearer_auth(&app.admin_key)
                .header(CONTENT_TYPE, "application/json")
                .body("{not json}"),
        )
        .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert!(app.page("/api/chats", &[]).await.items.is_empty());
}

#[tokio::test]
async fn body_over_64_kib_is_too_large() {
    let app = spawn_app().await;
    let body = json!({ "text": "a".repeat(OVERSIZED_BODY_BYTES) });

    let response = app.post_send("ops-413", &app.admin_key, None, &body).await;

    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_error(
        app.get("/api/chats/ops-413", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}
