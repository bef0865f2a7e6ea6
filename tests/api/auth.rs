//! Authentication and roles. Each test starts its own server and presents at most four failing
//! credentials, so the per-address lockout (five failures) never interferes.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_error, expect_json, messages_path, send, spawn_app, spawn_app_with};

const ADMIN_TOKEN: &str = "env-admin-token-7f3c9a1e5b2d4f6a8c0e";

fn hello() -> Value {
    json!({ "text": "hello" })
}

/// `sk_<12-char id>_<32 random bytes as unpadded base64url>`.
fn assert_api_key_format(key: &str) {
    let is_base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    assert_eq!(key.len(), 3 + 12 + 1 + 43, "unexpected key length: {key}");
    assert!(key.starts_with("sk_"), "{key}");
    assert_eq!(&key[15..16], "_", "{key}");
    assert!(key[3..15].chars().all(is_base64url), "{key}");
    assert!(key[16..].chars().all(is_base64url), "{key}");
}

#[tokio::test]
async fn api_routes_without_credentials_are_rejected_even_from_localhost() {
    let app = spawn_app().await;

    for (method, path) in [
        (Method::GET, "/api/chats"),
        (Method::GET, "/api/chats/anon/messages"),
        (Method::GET, "/api/admin/keys"),
        (Method::GET, "/api/audit"),
    ] {
        let response = send(app.request(method, path)).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn anonymous_send_is_rejected_and_creates_nothing() {
    let app = spawn_app().await;

    let anonymous_send = send(
        app.request(Method::POST, "/api/chats/anon/send")
            .json(&hello()),
    )
    .await;
    assert_error(anonymous_send, StatusCode::UNAUTHORIZED, "unauthorized").await;

    assert_error(
        app.get("/api/chats/anon", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn unknown_and_tampered_keys_are_rejected() {
    let app = spawn_app().await;
    let mut tampered = app.admin_key.clone();
    let last = tampered.pop().expect("non-empty key");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let unknown = format!("sk_AAAAAAAAAAAA_{}", "A".repeat(43));

    for bad_key in [tampered.as_str(), unknown.as_str(), "not-a-key"] {
        assert_error(
            app.get("/api/chats", bad_key).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let bad_header = send(
        app.request(Method::GET, "/api/chats")
            .header("X-API-Key", &tampered),
    )
    .await;
    assert_error(bad_header, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn bearer_and_x_api_key_headers_are_both_accepted() {
    let app = spawn_app().await;

    let bearer = app.get("/api/chats", &app.admin_key).await;
    let api_key_header = send(
        app.request(Method::GET, "/api/chats")
            .header("X-API-Key", &app.admin_key),
    )
    .await;

    expect_json(bearer, StatusCode::OK).await;
    expect_json(api_key_header, StatusCode::OK).await;
}

#[tokio::test]
async fn operator_can_work_with_chats_but_not_manage_keys() {
    let app = spawn_app().await;
    let operator = app.create_api_key("operator").await;

    expect_json(
        app.create_chat(&operator.secret, &json!({ "id": "ops-1" }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(
        app.post_send("ops-1", &operator.secret, None, &hello())
            .await,
        StatusCode::OK,
    )
    .await;

    assert_error(
        app.get("/api/admin/keys", &operator.secret).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let escalation = json!({ "name": "mine", "role": "admin" });
    assert_error(
        app.post_json("/api/admin/keys", &operator.secret, &escalation)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn viewer_can_read_chats_but_not_change_them() {
    let app = spawn_app().await;
    let viewer = app.create_api_key("viewer").await;
    expect_json(
        app.create_chat(&app.admin_key, &json!({ "id": "watched" }))
            .await,
        StatusCode::CREATED,
    )
    .await;

    expect_json(app.get("/api/chats", &viewer.secret).await, StatusCode::OK).await;
    expect_json(
        app.get("/api/chats/watched", &viewer.secret).await,
        StatusCode::OK,
    )
    .await;
    expect_json(
        app.get(&messages_path("watched"), &viewer.secret).await,
        StatusCode::OK,
    )
    .await;

    assert_error(
        app.post_send("watched", &viewer.secret, None, &hello())
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.create_chat(&viewer.secret, &json!({ "id": "viewer-chat" }))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.patch_json(
            "/api/chats/watched",
            &viewer.secret,
            &json!({ "title": "mine" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(app.history("watched").await.is_empty());
}

#[tokio::test]
async fn auditor_cannot_read_chats() {
    let app = spawn_app().await;
    let auditor = app.create_api_key("auditor").await;

    assert_error(
        app.get("/api/chats", &auditor.secret).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn created_key_secret_is_shown_once_and_never_listed() {
    let app = spawn_app().await;
    let request = json!({ "name": "ops", "role": "operator", "expires_in_days": 30 });

    let created = expect_json(
        app.post_json("/api/admin/keys", &app.admin_key, &request)
            .await,
        StatusCode::CREATED,
    )
    .await;
    let secret = created["key"]
        .as_str()
        .expect("secret in the create response");
    assert_api_key_format(secret);
    assert_eq!(created["name"], "ops");
    assert_eq!(created["role"], "operator");
    let created_ms = created["created_ms"].as_u64().expect("created_ms");
    let expires_ms = created["expires_ms"].as_u64().expect("expires_ms");
    let thirty_days_ms = 30 * 24 * 60 * 60 * 1000;
    assert!(
        expires_ms.abs_diff(created_ms + thirty_days_ms) < 1000,
        "{created}"
    );

    let listing = app.get("/api/admin/keys", &app.admin_key).await;
    let listing = expect_json(listing, StatusCode::OK).await;
    assert!(
        !listing.to_string().contains(secret),
        "listing leaks a secret"
    );
    assert!(listing["next_cursor"].is_null(), "{listing}");
    let record = listing["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == created["id"])
        .expect("created key is listed");
    for field in [
        "id",
        "name",
        "role",
        "created_ms",
        "expires_ms",
        "revoked_ms",
        "last_used_ms",
    ] {
        assert!(record.get(field).is_some(), "{field} missing: {record}");
    }
    assert!(record.get("key").is_none(), "{record}");
    assert!(record["revoked_ms"].is_null(), "{record}");
}

#[tokio::test]
async fn key_with_an_unknown_role_is_rejected() {
    let app = spawn_app().await;

    let request = json!({ "name": "root", "role": "superuser" });

    assert_error(
        app.post_json("/api/admin/keys", &app.admin_key, &request)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn revoked_key_is_rejected_everywhere() {
    let app = spawn_app().await;
    let operator = app.create_api_key("operator").await;
    expect_json(
        app.get("/api/chats", &operator.secret).await,
        StatusCode::OK,
    )
    .await;

    let revoked = expect_json(
        app.delete(&format!("/api/admin/keys/{}", operator.id), &app.admin_key)
            .await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(revoked["id"], operator.id.as_str());
    assert!(revoked["revoked_ms"].is_u64(), "{revoked}");
    assert_error(
        app.get("/api/chats", &operator.secret).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_error(
        app.post_send("after-revoke", &operator.secret, None, &hello())
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_error(
        app.get("/api/chats/after-revoke", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn admin_token_from_the_environment_is_an_admin_credential() {
    let app = spawn_app_with(&[("SOFIIA_ADMIN_TOKEN", ADMIN_TOKEN)]).await;

    expect_json(
        app.get("/api/admin/keys", ADMIN_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    let via_header = send(
        app.request(Method::GET, "/api/admin/keys")
            .header("X-API-Key", ADMIN_TOKEN),
    )
    .await;
    expect_json(via_header, StatusCode::OK).await;
    let operator = app.create_api_key("operator").await;
    assert_api_key_format(&operator.secret);

    let almost = format!("{ADMIN_TOKEN}x");
    assert_error(
        app.get("/api/admin/keys", &almost).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(
        !app.logs().contains(ADMIN_TOKEN),
        "the admin token was logged"
    );
}

#[tokio::test]
async fn bootstrap_admin_key_is_private_and_never_logged() {
    let app = spawn_app().await;
    let key_file = app.data_dir().join("admin.key");

    let mode = std::fs::metadata(&key_file)
        .expect("admin.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin.key mode is {:o}", mode & 0o777);
    let data_dir_mode = std::fs::metadata(app.data_dir())
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(
        data_dir_mode & 0o777,
        0o700,
        "data dir mode is {:o}",
        data_dir_mode & 0o777
    );
    let contents = std::fs::read_to_string(&key_file).expect("admin.key");
    assert_eq!(contents, format!("{}\n", app.admin_key));
    assert_api_key_format(&app.admin_key);

    expect_json(
        app.get("/api/admin/keys", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    let logs = app.logs();
    assert!(
        logs.contains("admin.key"),
        "the log does not say where the key is:\n{logs}"
    );
    assert!(!logs.contains(&app.admin_key), "the admin key was logged");
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
}
