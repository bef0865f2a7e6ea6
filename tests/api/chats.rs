use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{assert_error, expect_json, ids, spawn_app, spawn_app_with};

const T1_MS: u64 = 1_700_000_000_000;
const T2_MS: u64 = T1_MS + 60_000;

fn is_slug(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[tokio::test]
async fn chat_can_be_created_read_and_updated() {
    let app = spawn_app().await;
    let request = json!({ "id": "ops-1", "title": "Night shift", "agent": "sofiia" });

    let created = expect_json(
        app.create_chat(&app.admin_key, &request).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["id"], "ops-1");
    assert_eq!(created["title"], "Night shift");
    assert_eq!(created["agent"], "sofiia");
    assert_eq!(created["archived"], false);
    assert!(created["created_ms"].is_u64(), "{created}");
    assert!(created["activity_ms"].is_u64(), "{created}");
    let read = expect_json(
        app.get("/api/chats/ops-1", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read, created);

    let patch = json!({ "title": "Day shift", "archived": true });
    let patched = expect_json(
        app.patch_json("/api/chats/ops-1", &app.admin_key, &patch)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["id"], "ops-1");
    assert_eq!(patched["title"], "Day shift");
    assert_eq!(patched["archived"], true);
    assert_eq!(patched["agent"], "sofiia");
    assert_eq!(patched["created_ms"], created["created_ms"]);
    let reread = expect_json(
        app.get("/api/chats/ops-1", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(reread, patched);

    let archived = app.page("/api/chats", &[("archived", "true")]).await;
    assert_eq!(ids(&archived.items), ["ops-1"]);
    let active = app.page("/api/chats", &[("archived", "false")]).await;
    assert!(active.items.is_empty(), "archived chat listed as active");
}

#[tokio::test]
async fn chat_without_an_id_gets_a_generated_slug() {
    let app = spawn_app().await;

    let created = expect_json(
        app.create_chat(&app.admin_key, &json!({ "title": "anonymous" }))
            .await,
        StatusCode::CREATED,
    )
    .await;

    let id = created["id"].as_str().expect("generated id");
    assert_eq!(id.len(), 26, "expected a ULID, got {id}");
    assert!(is_slug(id), "{id}");
    expect_json(
        app.get(&format!("/api/chats/{id}"), &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn duplicate_chat_id_is_a_conflict() {
    let app = spawn_app().await;
    expect_json(
        app.create_chat(&app.admin_key, &json!({ "id": "dup", "title": "first" }))
            .await,
        StatusCode::CREATED,
    )
    .await;

    assert_error(
        app.create_chat(&app.admin_key, &json!({ "id": "dup", "title": "second" }))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let chat = expect_json(
        app.get("/api/chats/dup", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(chat["title"], "first");
}

#[tokio::test]
async fn chat_ids_must_be_slugs() {
    let app = spawn_app().await;
    let too_long = "a".repeat(65);

    for bad_id in [
        "",
        "has space",
        "dot.ted",
        "slash/ed",
        "ünï",
        too_long.as_str(),
    ] {
        assert_error(
            app.create_chat(&app.admin_key, &json!({ "id": bad_id }))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    assert!(app.page("/api/chats", &[]).await.items.is_empty());

    let longest = "a".repeat(64);
    let created = expect_json(
        app.create_chat(&app.admin_key, &json!({ "id": longest }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["id"], longest.as_str());
}

#[tokio::test]
async fn unknown_chat_is_not_found() {
    let app = spawn_app().await;

    assert_error(
        app.get("/api/chats/nowhere", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.patch_json(
            "/api/chats/nowhere",
            &app.admin_key,
            &json!({ "title": "x" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The failed update did not create the chat.
    assert_error(
        app.get("/api/chats/nowhere", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// Ties in activity are broken by id; a chat that saw activity later comes first.
#[tokio::test]
async fn chats_are_listed_by_latest_activity_then_id() {
    let t1 = T1_MS.to_string();
    let app = spawn_app_with(&[("SOFIIA_FROZEN_CLOCK_MS", &t1)]).await;
    for id in ["delta", "bravo", "alpha", "charlie"] {
        expect_json(
            app.create_chat(&app.admin_key, &json!({ "id": id })).await,
            StatusCode::CREATED,
        )
        .await;
    }
    let tied = app.page("/api/chats", &[]).await;
    assert_eq!(ids(&tied.items), ["alpha", "bravo", "charlie", "delta"]);

    let t2 = T2_MS.to_string();
    let app = app
        .restart_after_kill(&[("SOFIIA_FROZEN_CLOCK_MS", &t2)])
        .await;
    app.send_text("charlie", "wake up").await;
    expect_json(
        app.create_chat(&app.admin_key, &json!({ "id": "echo" }))
            .await,
        StatusCode::CREATED,
    )
    .await;

    let listed = app.page("/api/chats", &[]).await.items;
    assert_eq!(ids(&listed), ["charlie", "echo", "alpha", "bravo", "delta"]);
    let activity: Vec<_> = listed
        .iter()
        .map(|chat| chat["activity_ms"].clone())
        .collect();
    assert_eq!(activity, [T2_MS, T2_MS, T1_MS, T1_MS, T1_MS]);
}

#[tokio::test]
async fn chat_list_paging_visits_every_chat_exactly_once() {
    let frozen = T1_MS.to_string();
    let app = spawn_app_with(&[("SOFIIA_FROZEN_CLOCK_MS", &frozen)]).await;
    // Created out of id order, all with the same activity timestamp.
    let mut expected: Vec<String> = (0..25).map(|i| format!("chat-{:02}", i * 7 % 25)).collect();
    for id in &expected {
        expect_json(
            app.create_chat(&app.admin_key, &json!({ "id": id })).await,
            StatusCode::CREATED,
        )
        .await;
    }
    expected.sort();

    let paged = app.all_pages("/api/chats", &[], 4).await;

    assert_eq!(ids(&paged), expected);
}

/// Concurrent sends land in shared write batches, where a chat's record and its place in the
/// activity index are written once for several messages: the list must still hold every chat
/// exactly once, newest activity first, each agreeing with its own history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_leave_one_index_entry_per_chat() {
    const CHATS: usize = 6;
    const SENDS_PER_CHAT: usize = 15;
    let app = Arc::new(spawn_app().await);
    let mut sends = JoinSet::new();
    for i in 0..CHATS * SENDS_PER_CHAT {
        let app = Arc::clone(&app);
        sends.spawn(async move { app.send_text(&format!("busy-{}", i % CHATS), "hello").await });
    }
    sends.join_all().await;

    let listed = app.page("/api/chats", &[("limit", "100")]).await.items;

    let mut listed_ids: Vec<&str> = ids(&listed);
    listed_ids.sort_unstable();
    let expected: Vec<String> = (0..CHATS).map(|i| format!("busy-{i}")).collect();
    assert_eq!(listed_ids, expected);
    let activity: Vec<u64> = listed
        .iter()
        .map(|chat| chat["activity_ms"].as_u64().expect("activity_ms"))
        .collect();
    assert!(activity.is_sorted_by(|a, b| a >= b), "{activity:?}");
    for chat in &listed {
        let id = chat["id"].as_str().expect("id");
        let history = app.history(id).await;
        let newest = history.last().expect("messages");
        assert_eq!(history.len(), SENDS_PER_CHAT * 2, "{id}");
        assert_eq!(chat["activity_ms"], newest["ts_ms"], "{id}");
        let read = expect_json(
            app.get(&format!("/api/chats/{id}"), &app.admin_key).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(read, *chat);
    }
}

/// A filter that matches little must not turn one page into a walk of the whole index: a page
/// looks at a bounded number of chats and hands out a cursor where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_filter_pages_in_bounded_steps_and_finds_every_match() {
    let app = Arc::new(spawn_app().await);
    let archived = json!({ "archived": true });
    // The oldest chat is the only archived one; 1 500 newer ones stand before it in the index.
    expect_json(
        app.create_chat(&app.admin_key, &json!({ "id": "old-archived" }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(
        app.patch_json("/api/chats/old-archived", &app.admin_key, &archived)
            .await,
        StatusCode::OK,
    )
    .await;
    let mut creates = JoinSet::new();
    for worker in 0..8 {
        let app = Arc::clone(&app);
        creates.spawn(async move {
            for n in (worker..1_500).step_by(8) {
                let body = json!({ "id": format!("active-{n}") });
                let created = app.create_chat(&app.admin_key, &body).await;
                assert_eq!(created.status(), StatusCode::CREATED);
            }
        });
    }
    creates.join_all().await;

    let first = app.page("/api/chats", &[("archived", "true")]).await;
    assert!(
        first.items.is_empty() && first.next_cursor.is_some(),
        "the first page stops before scanning the whole index, with a cursor to go on from"
    );
    let all = app
        .all_pages("/api/chats", &[("archived", "true")], 50)
        .await;
    assert_eq!(ids(&all), ["old-archived"]);
}
