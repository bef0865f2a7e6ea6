use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::helpers::{
    IDEMPOTENCY_KEY, assert_degraded_send, assert_error, assert_history_is_one_exchange,
    expect_json, is_replay, send, spawn_app, spawn_app_with,
};

const TEXT: &str = "restart the ingest worker";

fn restart() -> Value {
    json!({ "text": TEXT })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_sends_store_one_message_and_get_one_answer() {
    const CONCURRENCY: usize = 50;
    let app = Arc::new(spawn_app().await);
    let barrier = Arc::new(Barrier::new(CONCURRENCY));
    let mut sends = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (app, barrier) = (Arc::clone(&app), Arc::clone(&barrier));
        sends.spawn(async move {
            barrier.wait().await;
            let response = app
                .post_send("ops-dup", &app.admin_key, Some("dup-1"), &restart())
                .await;
            let (status, replayed) = (response.status(), is_replay(&response));
            (status, replayed, response.bytes().await.expect("body"))
        });
    }

    let results = sends.join_all().await;

    for (status, _, body) in &results {
        assert_eq!(*status, StatusCode::OK, "{}", String::from_utf8_lossy(body));
    }
    let first = &results[0].2;
    assert!(
        results.iter().all(|(_, _, body)| body == first),
        "the duplicates got different answers"
    );
    let replays = results.iter().filter(|(_, replayed, _)| *replayed).count();
    assert_eq!(replays, CONCURRENCY - 1, "exactly one send must have run");
    let body: Value = serde_json::from_slice(first).expect("JSON body");
    assert_degraded_send(&body, "ops-dup", TEXT);
    assert_history_is_one_exchange(&app, "ops-dup", &body).await;
}

#[tokio::test]
async fn completed_key_is_replayed_byte_for_byte() {
    let app = spawn_app().await;
    let original = app
        .post_send("ops-replay", &app.admin_key, Some("replay-1"), &restart())
        .await;
    assert_eq!(original.status(), StatusCode::OK);
    assert!(!is_replay(&original));
    let original = original.bytes().await.expect("body");

    let retry = app
        .post_send("ops-replay", &app.admin_key, Some("replay-1"), &restart())
        .await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert!(is_replay(&retry));
    assert_eq!(retry.bytes().await.expect("body"), original);

    // The alias header and the other credential header name the same key of the same principal.
    let alias = send(
        app.request(Method::POST, "/api/chats/ops-replay/send")
            .header("X-API-Key", &app.admin_key)
            .header("X-Idempotency-Key", "replay-1")
            .json(&restart()),
    )
    .await;
    assert_eq!(alias.status(), StatusCode::OK);
    assert!(is_replay(&alias));
    assert_eq!(alias.bytes().await.expect("body"), original);

    let body: Value = serde_json::from_slice(&original).expect("JSON body");
    assert_degraded_send(&body, "ops-replay", TEXT);
    assert_history_is_one_exchange(&app, "ops-replay", &body).await;
}

#[tokio::test]
async fn reused_key_with_a_different_request_is_rejected_and_stores_nothing() {
    let app = spawn_app().await;
    let original = app
        .post_send("ops-mm", &app.admin_key, Some("mm-1"), &restart())
        .await;
    assert_eq!(original.status(), StatusCode::OK);
    let original = original.bytes().await.expect("body");

    for (chat_id, body) in [
        ("ops-mm", json!({ "text": "stop the ingest worker" })),
        (
            "ops-mm",
            json!({ "text": TEXT, "metadata": { "ticket": 7 } }),
        ),
        ("ops-other", restart()),
    ] {
        assert_error(
            app.post_send(chat_id, &app.admin_key, Some("mm-1"), &body)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_mismatch",
        )
        .await;
    }

    assert_error(
        app.get("/api/chats/ops-other", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let body: Value = serde_json::from_slice(&original).expect("JSON body");
    assert_history_is_one_exchange(&app, "ops-mm", &body).await;
    let retry = app
        .post_send("ops-mm", &app.admin_key, Some("mm-1"), &restart())
        .await;
    assert!(is_replay(&retry));
    assert_eq!(retry.bytes().await.expect("body"), original);
}

/// The fingerprint is over the canonical body: key order and whitespace do not make a new request.
#[tokio::test]
async fn equivalent_json_bodies_are_the_same_request() {
    let app = spawn_app().await;
    let raw_send = |raw: &'static str| {
        send(
            app.request(Method::POST, "/api/chats/ops-canon/send")
                .bearer_auth(&app.admin_key)
                .header(CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_KEY, "canon-1")
                .body(raw),
        )
    };

    let compact = raw_send(r#"{"text":"restart","metadata":{"ticket":7,"shift":"night"}}"#).await;
    assert_eq!(compact.status(), StatusCode::OK);
    let compact = compact.bytes().await.expect("body");
    let reordered =
        raw_send(r#"{ "metadata": { "shift": "night", "ticket": 7 }, "text": "restart" }"#).await;

    assert_eq!(reordered.status(), StatusCode::OK);
    assert!(is_replay(&reordered));
    assert_eq!(reordered.bytes().await.expect("body"), compact);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_rejected_before_anything_is_stored() {
    let app = spawn_app().await;
    let too_long = "k".repeat(256);

    for key in ["", "two words", "tab\there", too_long.as_str()] {
        assert_error(
            app.post_send("ops-keys", &app.admin_key, Some(key), &restart())
                .await,
            StatusCode::BAD_REQUEST,
            "idempotency_key_invalid",
        )
        .await;
    }
    let non_ascii = HeaderValue::from_bytes("ключ".as_bytes()).expect("obs-text header value");
    let non_ascii = send(
        app.send_request("ops-keys", &app.admin_key, &restart())
            .header(IDEMPOTENCY_KEY, non_ascii),
    )
    .await;
    assert_error(
        non_ascii,
        StatusCode::BAD_REQUEST,
        "idempotency_key_invalid",
    )
    .await;
    assert_error(
        app.get("/api/chats/ops-keys", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let longest = "k".repeat(255);
    let punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    for key in [longest.as_str(), punctuation] {
        expect_json(
            app.post_send("ops-keys", &app.admin_key, Some(key), &restart())
                .await,
            StatusCode::OK,
        )
        .await;
    }
    assert_eq!(app.history("ops-keys").await.len(), 4);
}

#[tokio::test]
async fn sends_without_a_key_are_never_deduplicated() {
    let app = spawn_app().await;

    let first = app
        .post_send("ops-nokey", &app.admin_key, None, &restart())
        .await;
    assert!(!is_replay(&first));
    let first = expect_json(first, StatusCode::OK).await;
    let second = app
        .post_send("ops-nokey", &app.admin_key, None, &restart())
        .await;
    assert!(!is_replay(&second));
    let second = expect_json(second, StatusCode::OK).await;

    assert_ne!(first["message"]["id"], second["message"]["id"]);
    let history = app.history("ops-nokey").await;
    let operator_messages = history.iter().filter(|m| m["role"] == "operator").count();
    assert_eq!(history.len(), 4, "{history:#?}");
    assert_eq!(operator_messages, 2, "{history:#?}");
}

#[tokio::test]
async fn required_idempotency_key_is_enforced() {
    let app = spawn_app_with(&[("SOFIIA_REQUIRE_IDEMPOTENCY_KEY", "true")]).await;

    assert_error(
        app.post_send("ops-req", &app.admin_key, None, &restart())
            .await,
        StatusCode::BAD_REQUEST,
        "idempotency_key_invalid",
    )
    .await;
    assert_error(
        app.get("/api/chats/ops-req", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let keyed = app
        .post_send("ops-req", &app.admin_key, Some("req-1"), &restart())
        .await;
    let body = expect_json(keyed, StatusCode::OK).await;
    assert_history_is_one_exchange(&app, "ops-req", &body).await;
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_principal() {
    let app = spawn_app().await;
    let alice = app.create_api_key("operator").await;
    let bob = app.create_api_key("operator").await;

    let from_alice = app
        .post_send("ops-shared", &alice.secret, Some("shared-1"), &restart())
        .await;
    assert!(!is_replay(&from_alice));
    let from_alice = expect_json(from_alice, StatusCode::OK).await;
    let from_bob = app
        .post_send("ops-shared", &bob.secret, Some("shared-1"), &restart())
        .await;
    assert!(!is_replay(&from_bob));
    let from_bob = expect_json(from_bob, StatusCode::OK).await;

    assert_ne!(from_alice["message"]["id"], from_bob["message"]["id"]);
    assert_ne!(
        from_alice["message"]["author"],
        from_bob["message"]["author"]
    );
    let history = app.history("ops-shared").await;
    let operator_messages = history.iter().filter(|m| m["role"] == "operator").count();
    assert_eq!(operator_messages, 2, "{history:#?}");
}

#[tokio::test]
async fn send_to_an_unknown_chat_is_not_found_without_auto_create() {
    let app = spawn_app_with(&[("SOFIIA_AUTO_CREATE_CHATS", "false")]).await;

    assert_error(
        app.post_send("ghost", &app.admin_key, Some("ghost-1"), &restart())
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/api/chats/ghost", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    expect_json(
        app.create_chat(&app.admin_key, &json!({ "id": "ghost" }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let sent = app
        .post_send("ghost", &app.admin_key, Some("ghost-1"), &restart())
        .await;
    assert!(!is_replay(&sent), "the 404 must not have been stored");
    let body = expect_json(sent, StatusCode::OK).await;
    assert_history_is_one_exchange(&app, "ghost", &body).await;
}

#[tokio::test]
async fn invalid_text_is_rejected_and_not_stored() {
    let app = spawn_app().await;
    let too_long = "a".repeat(16_001);

    for text in ["", too_long.as_str()] {
        assert_error(
            app.post_send(
                "ops-text",
                &app.admin_key,
                Some("text-1"),
                &json!({ "text": text }),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    assert_error(
        app.get("/api/chats/ops-text", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // The rejected attempts did not claim the key, and the limit counts characters, not bytes.
    let longest = "é".repeat(16_000);
    let accepted = app
        .post_send(
            "ops-text",
            &app.admin_key,
            Some("text-1"),
            &json!({ "text": longest }),
        )
        .await;
    assert!(!is_replay(&accepted));
    let body = expect_json(accepted, StatusCode::OK).await;
    assert_degraded_send(&body, "ops-text", &longest);
    assert_history_is_one_exchange(&app, "ops-text", &body).await;
}
