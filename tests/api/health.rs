use reqwest::{Method, StatusCode};

use crate::helpers::{REQUEST_ID, assert_error, expect_json, request_id, send, spawn_app};

/// A well-formed ULID, the shape of request ids the server generates itself.
const CLIENT_REQUEST_ID: &str = "01HZX3J5Q8V6T2K9M4N7P0R1S2";

#[tokio::test]
async fn livez_answers_without_credentials() {
    let app = spawn_app().await;

    let response = app.get_anonymous("/livez").await;

    assert_eq!(response.status(), StatusCode::OK);
    request_id(&response);
}

#[tokio::test]
async fn health_reports_version_and_checks_without_credentials() {
    let app = spawn_app().await;

    let body = expect_json(app.get_anonymous("/api/health").await, StatusCode::OK).await;

    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(
        body["git_sha"].as_str().is_some_and(|sha| !sha.is_empty()),
        "{body}"
    );
    assert!(body["uptime_s"].is_u64(), "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok", "{body}");
    for check in ["disk", "agents"] {
        assert!(
            body["checks"][check]["status"].is_string(),
            "{check}: {body}"
        );
    }
    assert!(
        !body.to_string().contains(&app.admin_key),
        "health leaks the admin key"
    );
}

#[tokio::test]
async fn every_response_gets_a_fresh_request_id() {
    let app = spawn_app().await;

    let first = request_id(&app.get_anonymous("/livez").await);
    let second = request_id(&app.get_anonymous("/api/health").await);

    assert_ne!(first, second);
}

#[tokio::test]
async fn a_valid_incoming_request_id_is_echoed() {
    let app = spawn_app().await;

    let ok = send(
        app.request(Method::GET, "/api/health")
            .header(REQUEST_ID, CLIENT_REQUEST_ID),
    )
    .await;
    assert_eq!(request_id(&ok), CLIENT_REQUEST_ID);

    let rejected = send(
        app.request(Method::GET, "/api/chats")
            .header(REQUEST_ID, CLIENT_REQUEST_ID),
    )
    .await;
    assert_eq!(request_id(&rejected), CLIENT_REQUEST_ID);
    assert_error(rejected, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
