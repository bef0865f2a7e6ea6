//! Send rate limits (SPEC §7): exact under concurrency, durable across a crash, honest
//! `Retry-After`, replays free, headers on every send response.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, expect_json, send, spawn_app_with};

/// One request per minute after the burst: nothing refills while a test runs.
fn chat_limit(burst: &str) -> [(&'static str, String); 2] {
    [
        ("SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE", "1".to_owned()),
        ("SOFIIA_RATE_LIMIT__CHAT__BURST", burst.to_owned()),
    ]
}

async fn spawn_with(env: &[(&'static str, String)]) -> TestApp {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&env).await
}

fn text(n: usize) -> Value {
    json!({ "text": format!("message {n}") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_hundred_simultaneous_sends_admit_exactly_the_limit() {
    let app = spawn_with(&chat_limit("10")).await;
    let sends = (0..100).map(|n| {
        let request = app.send_request("busy", &app.admin_key, &text(n));
        tokio::spawn(send(request))
    });
    let mut admitted = 0;
    let mut refused = 0;
    for handle in sends.collect::<Vec<_>>() {
        let response = handle.await.expect("send task panicked");
        match response.status() {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let body = expect_json(response, StatusCode::TOO_MANY_REQUESTS).await;
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                assert_eq!(body["error"]["scope"], "chat", "{body}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((admitted, refused), (10, 90));
    let operator_messages = app
        .history("busy")
        .await
        .into_iter()
        .filter(|m| m["role"] == "operator")
        .count();
    assert_eq!(operator_messages, 10, "refused sends must store nothing");
}

#[tokio::test]
async fn limits_survive_a_crash_and_restart() {
    let env = chat_limit("3");
    let app = spawn_with(&env).await;
    for n in 0..3 {
        let response = app.post_send("ops", &app.admin_key, None, &text(n)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = app.post_send("ops", &app.admin_key, None, &text(3)).await;
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart_after_kill(&env).await;
    let after_restart = app.post_send("ops", &app.admin_key, None, &text(4)).await;
    assert_error(after_restart, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let other_chat = app.post_send("other", &app.admin_key, None, &text(5)).await;
    assert_eq!(other_chat.status(), StatusCode::OK, "limits are per chat");
}

#[tokio::test]
async fn retry_after_is_the_wait_the_limiter_really_imposes() {
    // 600 per minute with no burst: one send every 100 ms.
    let app = spawn_with(&[
        ("SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE", "600".to_owned()),
        ("SOFIIA_RATE_LIMIT__CHAT__BURST", "1".to_owned()),
    ])
    .await;
    let first = app.post_send("paced", &app.admin_key, None, &text(0)).await;
    assert_eq!(first.status(), StatusCode::OK);
    let refused = app.post_send("paced", &app.admin_key, None, &text(1)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
        Some(b"1".as_slice()),
        "Retry-After is whole seconds, rounded up"
    );
    let body = expect_json(refused, StatusCode::TOO_MANY_REQUESTS).await;
    let wait = body["error"]["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms is a number");
    assert!((1..=100).contains(&wait), "{body}");

    tokio::time::sleep(Duration::from_millis(wait)).await;
    let retried = app.post_send("paced", &app.admin_key, None, &text(1)).await;
    assert_eq!(
        retried.status(),
        StatusCode::OK,
        "a retry after retry_after_ms is admitted"
    );
}

#[tokio::test]
async fn the_operator_limit_spans_chats() {
    let app = spawn_app_with(&[
        ("SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE", "1"),
        ("SOFIIA_RATE_LIMIT__OPERATOR__BURST", "2"),
    ])
    .await;
    let operator = app.create_api_key("operator").await;
    for chat in ["a", "b"] {
        let response = app.post_send(chat, &operator.secret, None, &text(0)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = app.post_send("c", &operator.secret, None, &text(0)).await;
    let body = expect_json(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["error"]["scope"], "operator", "{body}");
    let admin = app.post_send("c", &app.admin_key, None, &text(0)).await;
    assert_eq!(
        admin.status(),
        StatusCode::OK,
        "another principal has its own limit"
    );
}

#[tokio::test]
async fn replays_are_not_charged() {
    let app = spawn_with(&chat_limit("2")).await;
    let body = text(0);
    let first = app
        .post_send("ops", &app.admin_key, Some("k-1"), &body)
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    for _ in 0..5 {
        let replay = app
            .post_send("ops", &app.admin_key, Some("k-1"), &body)
            .await;
        assert_eq!(replay.status(), StatusCode::OK, "replays are served");
    }
    let second = app
        .post_send("ops", &app.admin_key, Some("k-2"), &text(1))
        .await;
    assert_eq!(second.status(), StatusCode::OK, "the replays cost nothing");
    let third = app
        .post_send("ops", &app.admin_key, Some("k-3"), &text(2))
        .await;
    assert_error(third, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let refused_key_again = app
        .post_send("ops", &app.admin_key, Some("k-3"), &text(2))
        .await;
    assert_eq!(
        refused_key_again.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a refused send is not stored, so its key is not replayed"
    );
}

/// A replay spends nothing, but reports the sender's standing as it is now: after later sends,
/// and after a restart.
#[tokio::test]
async fn a_replay_reports_the_current_standing() {
    let env = chat_limit("3");
    let app = spawn_with(&env).await;
    let first = text(0);
    let sent = app
        .post_send("ops", &app.admin_key, Some("k-1"), &first)
        .await;
    assert!(header(&sent, "ratelimit").starts_with(r#""chat";r=2;"#));
    let replayed = app
        .post_send("ops", &app.admin_key, Some("k-1"), &first)
        .await;
    assert!(header(&replayed, "ratelimit").starts_with(r#""chat";r=2;"#));

    app.post_send("ops", &app.admin_key, Some("k-2"), &text(1))
        .await;
    let after_another = app
        .post_send("ops", &app.admin_key, Some("k-1"), &first)
        .await;
    assert_eq!(after_another.status(), StatusCode::OK);
    assert!(header(&after_another, "ratelimit").starts_with(r#""chat";r=1;"#));

    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart_after_kill(&env).await;
    let after_restart = app
        .post_send("ops", &app.admin_key, Some("k-1"), &first)
        .await;
    assert_eq!(after_restart.status(), StatusCode::OK);
    assert!(header(&after_restart, "ratelimit").starts_with(r#""chat";r=1;"#));
}

#[tokio::test]
async fn every_send_response_carries_the_rate_limit_headers() {
    let app = spawn_with(&chat_limit("2")).await;
    let admitted = app.post_send("ops", &app.admin_key, None, &text(0)).await;
    assert_eq!(
        header(&admitted, "ratelimit-policy"),
        r#""chat";q=2;w=120, "operator";q=1000000;w=1000"#
    );
    assert_eq!(
        header(&admitted, "ratelimit"),
        r#""chat";r=1;t=60, "operator";r=999999;t=1"#
    );

    let invalid = app
        .post_send("ops", &app.admin_key, None, &json!({ "text": "" }))
        .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!header(&invalid, "ratelimit-policy").is_empty());

    app.post_send("ops", &app.admin_key, None, &text(1)).await;
    let refused = app.post_send("ops", &app.admin_key, None, &text(2)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&refused, "ratelimit").starts_with(r#""chat";r=0;"#));
    assert!(!header(&refused, "ratelimit-policy").is_empty());
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_wall_clock_stepped_back_does_not_block_senders_for_the_step() {
    const NOW: u64 = 1_800_000_000_000;
    const STEP_BACK: u64 = 3_600_000;
    // 60 per minute, burst 2: one send a second once the burst is spent.
    let limits = [
        ("SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE", "60".to_owned()),
        ("SOFIIA_RATE_LIMIT__CHAT__BURST", "2".to_owned()),
    ];
    let at = |ms: u64| {
        let mut env = limits.to_vec();
        env.push(("SOFIIA_FROZEN_CLOCK_MS", ms.to_string()));
        env
    };
    let app = spawn_with(&at(NOW)).await;
    for n in 0..2 {
        let response = app.post_send("clock", &app.admin_key, None, &text(n)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    // The clock goes back an hour (an NTP correction, a VM restored from a snapshot).
    let env = at(NOW - STEP_BACK);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart(&env).await;
    let refused = app.post_send("clock", &app.admin_key, None, &text(2)).await;
    let body = expect_json(refused, StatusCode::TOO_MANY_REQUESTS).await;
    let wait = body["error"]["retry_after_ms"].as_u64().expect("a wait");
    assert!(
        wait <= 1_000,
        "a spent bucket refills in one interval, not in the step: waited {wait} ms"
    );

    let env = at(NOW - STEP_BACK + wait);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = app.restart(&env).await;
    let admitted = app.post_send("clock", &app.admin_key, None, &text(3)).await;
    assert_eq!(admitted.status(), StatusCode::OK);
}
