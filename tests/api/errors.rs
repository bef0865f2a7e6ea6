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

/// Words that belong to Rust, serde or axum, never to an API message.
const FOREIGN_WORDS: [&str; 8] = [
    "struct ",
    "enum ",
    "line ",
    "column ",
    "::",
    "Failed to deserialize",
    "u32",
    "usize",
];

/// Asserts a spec-shaped error and returns its message, checked for foreign words.
async fn error_message(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    let body = crate::helpers::expect_json(response, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a message: {body}"))
        .to_owned();
    for word in FOREIGN_WORDS {
        assert!(!message.contains(word), "{message:?} contains {word:?}");
    }
    message
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused_in_plain_words() {
    let app = spawn_app().await;
    for (path, body) in [
        ("/api/chats/ops/send", json!(["hello", {}])),
        ("/api/chats/ops/send", json!("hello")),
        ("/api/chats", json!([])),
        ("/api/admin/keys", json!(null)),
    ] {
        let response = app.post_json(path, &app.admin_key, &body).await;
        let message = error_message(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(message, "the body must be a JSON object", "{path} {body}");
    }
    assert!(app.page("/api/chats", &[]).await.items.is_empty());
}

#[tokio::test]
async fn field_errors_name_the_field_and_what_is_allowed() {
    let app = spawn_app().await;
    let chat = expect_created(
        app.create_chat(&app.admin_key, &json!({ "id": "ops" }))
            .await,
    )
    .await;
    assert_eq!(chat["id"], "ops");
    let cases = [
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({ "text": 5 }),
            "text: expected a string",
        ),
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({ "text": "hi", "metadata": [1] }),
            "metadata: expected an object",
        ),
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({ "text": "hi", "foo": 1 }),
            "unknown field `foo`; allowed: text, metadata",
        ),
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({}),
            "missing field `text`",
        ),
        (
            Method::POST,
            "/api/chats",
            json!({ "title": 5 }),
            "title: expected a string",
        ),
        (
            Method::PATCH,
            "/api/chats/ops",
            json!({ "archived": "yes" }),
            "archived: expected true or false",
        ),
        (
            Method::POST,
            "/api/admin/keys",
            json!({ "name": "k", "role": "root" }),
            "role: must be one of admin, operator, viewer, auditor",
        ),
        (
            Method::POST,
            "/api/admin/keys",
            json!({ "name": "k", "role": "viewer", "expires_in_days": "soon" }),
            "expires_in_days: expected a whole number",
        ),
        (
            Method::POST,
            "/api/auth/login",
            json!({ "key": 7 }),
            "key: expected a string",
        ),
    ];
    for (method, path, body, expected) in cases {
        let response = send(
            app.request(method.clone(), path)
                .bearer_auth(&app.admin_key)
                .json(&body),
        )
        .await;
        let message = error_message(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(message, expected, "{method} {path} {body}");
    }
    assert!(app.history("ops").await.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn query_errors_name_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        (
            "/api/chats?limit=5&limit=6",
            "query parameter limit: given more than once",
        ),
        (
            "/api/chats?limit=ten",
            "query parameter limit: expected a whole number",
        ),
        (
            "/api/chats?archived=maybe",
            "query parameter archived: expected true or false",
        ),
        (
            "/api/chats/ops/messages?order=sideways",
            "query parameter order: must be one of asc, desc",
        ),
        (
            "/api/audit?limit=-1",
            "query parameter limit: expected a whole number",
        ),
    ];
    for (path, expected) in cases {
        let response = app.get(path, &app.admin_key).await;
        let message = error_message(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(message, expected, "{path}");
    }
}

async fn expect_created(response: reqwest::Response) -> serde_json::Value {
    crate::helpers::expect_json(response, StatusCode::CREATED).await
}
