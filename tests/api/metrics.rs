//! `/metrics` after a known sequence of requests: every counter at exactly the value the sequence
//! implies, the writer's and the disk's figures present, and the optional scrape token.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_node::{Behaviour, FakeNode, node};
use crate::helpers::{TestApp, spawn_app_with_config};

/// The value of the series `series` (name and labels exactly as exposed); a missing series
/// fails the test.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a sample value"))
        .unwrap_or_else(|| panic!("no series {series} in\n{metrics}"))
}

fn assert_series(metrics: &str, expected: &[(&str, f64)]) {
    for (series, want) in expected {
        assert_eq!(value(metrics, series), *want, "{series} in\n{metrics}");
    }
}

async fn send_with_key(app: &TestApp, chat: &str, key: Option<&str>, text: &str) -> StatusCode {
    app.post_send(chat, &app.admin_key, key, &json!({ "text": text }))
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_sequence_of_requests_exactly() {
    // A node that answers after 800 ms: long enough for a duplicate to find its key in progress.
    let agent = FakeNode::start(Behaviour::Slow(Duration::from_millis(800))).await;
    let config = format!(
        "[idempotency]\nwait_ms = 100\n{}",
        node("n", &agent.url, "timeout_ms = 5000")
    );
    // A burst of three sends per chat, and one a minute after it.
    let chat_limit = [
        ("SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE", "1"),
        ("SOFIIA_RATE_LIMIT__CHAT__BURST", "3"),
    ];
    let app = spawn_app_with_config(&config, &chat_limit).await;

    assert_eq!(
        send_with_key(&app, "m-1", Some("k-1"), "a").await,
        StatusCode::OK
    );
    // The same request again is replayed; another one with its key is a mismatch.
    assert_eq!(
        send_with_key(&app, "m-1", Some("k-1"), "a").await,
        StatusCode::OK
    );
    assert_eq!(
        send_with_key(&app, "m-1", Some("k-1"), "b").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A duplicate while its key's first request waits for the agent.
    let waiting = json!({ "text": "c" });
    let first = app.post_send("m-1", &app.admin_key, Some("k-2"), &waiting);
    let duplicate = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send_with_key(&app, "m-1", Some("k-2"), "c").await
    };
    let (first, duplicate) = tokio::join!(first, duplicate);
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(duplicate, StatusCode::CONFLICT);
    assert_eq!(send_with_key(&app, "m-1", None, "d").await, StatusCode::OK);
    // The chat's burst of three is spent.
    assert_eq!(
        send_with_key(&app, "m-1", None, "e").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send_with_key(&app, "m-2", None, "").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    agent.behave(Behaviour::Status(500));
    assert_eq!(send_with_key(&app, "m-2", None, "f").await, StatusCode::OK);

    let metrics = app.metrics().await;
    assert_series(
        &metrics,
        &[
            (r#"sofiia_sends_total{outcome="ok"}"#, 3.0),
            (r#"sofiia_sends_total{outcome="degraded"}"#, 1.0),
            (r#"sofiia_sends_total{outcome="replayed"}"#, 1.0),
            (r#"sofiia_sends_total{outcome="rejected"}"#, 4.0),
            (r#"sofiia_sends_total{outcome="failed"}"#, 0.0),
            (r#"sofiia_idempotency_total{result="new"}"#, 2.0),
            (r#"sofiia_idempotency_total{result="replay"}"#, 1.0),
            (r#"sofiia_idempotency_total{result="mismatch"}"#, 1.0),
            (r#"sofiia_idempotency_total{result="in_progress"}"#, 1.0),
            (r#"sofiia_idempotency_total{result="takeover"}"#, 0.0),
            (r#"sofiia_rate_limited_total{scope="chat"}"#, 1.0),
            (r#"sofiia_rate_limited_total{scope="operator"}"#, 0.0),
            (r#"sofiia_degraded_total{reason_code="llm_error"}"#, 1.0),
            (r#"sofiia_degraded_total{reason_code="llm_timeout"}"#, 0.0),
            (
                r#"http_requests_total{method="POST",route="/api/chats/{id}/send",status="200"}"#,
                5.0,
            ),
            (r#"sofiia_db_writer_queue_capacity"#, 4096.0),
        ],
    );
    let commits = value(&metrics, "sofiia_db_commit_duration_seconds_count");
    assert!(commits >= 2.0, "{metrics}");
    assert_eq!(value(&metrics, "sofiia_db_batch_size_count"), commits);
    let file = std::fs::metadata(app.data_dir().join("sofiia.redb")).expect("the database file");
    assert_eq!(value(&metrics, "sofiia_db_size_bytes"), file.len() as f64);
    let (free, size) = (
        value(&metrics, "sofiia_disk_free_bytes"),
        value(&metrics, "sofiia_disk_size_bytes"),
    );
    assert!(free > 0.0 && free <= size, "{metrics}");

    // Every committed audit event is counted under its action: the trail itself says how many.
    let export = app.get("/api/audit/export", &app.admin_key).await;
    assert_eq!(export.status(), StatusCode::OK);
    let mut recorded: BTreeMap<String, f64> = BTreeMap::new();
    for line in export.text().await.expect("export").lines() {
        let event: Value = serde_json::from_str(line).expect("JSON line");
        if let Some(action) = event["action"].as_str() {
            *recorded.entry(action.to_owned()).or_default() += 1.0;
        }
    }
    assert!(recorded["chat.send"] >= 3.0, "{recorded:?}");
    let metrics = app.metrics().await;
    let counted: BTreeMap<String, f64> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("sofiia_audit_events_total{action=\""))
        .filter_map(|rest| {
            let (action, count) = rest.split_once("\"} ")?;
            let count: f64 = count.trim().parse().ok()?;
            (count > 0.0).then(|| (action.to_owned(), count))
        })
        .collect();
    assert_eq!(counted, recorded, "{metrics}");
}

#[tokio::test]
async fn a_verification_is_counted_by_its_result() {
    let app = spawn_app_with_config("", &[]).await;
    let verified = app.get("/api/audit/verify", &app.admin_key).await;
    assert_eq!(verified.status(), StatusCode::OK);
    let metrics = app.metrics().await;
    assert_series(
        &metrics,
        &[
            (r#"sofiia_audit_verifications_total{result="valid"}"#, 1.0),
            (r#"sofiia_audit_verifications_total{result="invalid"}"#, 0.0),
        ],
    );
}

#[tokio::test]
async fn with_a_token_file_the_scrape_needs_the_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "scrape-token-0123456789";
    let path = dir.path().join("metrics.token");
    std::fs::write(&path, format!("{token}\n")).expect("token file");
    let config = format!("[metrics]\ntoken_file = {:?}\n", path.display().to_string());
    let app = spawn_app_with_config(&config, &[]).await;

    let anonymous = app.get_anonymous("metrics").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.get("/metrics", "scrape-token-0123456780").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body = wrong.text().await.expect("body");
    assert!(!body.contains("sofiia_"), "{body}");
    // An API key is not the scrape token.
    let admin = app.get("/metrics", &app.admin_key).await;
    assert_eq!(admin.status(), StatusCode::UNAUTHORIZED);
    let scraped = app.get("/metrics", token).await;
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.expect("metrics");
    assert!(text.contains("sofiia_build_info"), "{text}");
}
