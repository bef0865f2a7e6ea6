//! The log: one JSON object per line with the fields operators' pipelines read, never a secret
//! or a message's text; with `log.dir`, daily files of which at most `log.max_files` are kept.

use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    IDEMPOTENCY_KEY, TestApp, eventually, messages_path, send, spawn_app, spawn_app_with_config,
};

const TEXT: &str = "the reactor code is 7 4 1 1";

fn lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn with_event<'l>(lines: &'l [Value], event: &str) -> Vec<&'l Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

/// Logs in with `key`; the `name=value` of the session cookie.
async fn session_cookie(app: &TestApp, key: &str) -> String {
    let response = send(
        app.request(Method::POST, "api/auth/login")
            .json(&json!({ "key": key })),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[SET_COOKIE].to_str().expect("ASCII");
    set_cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn log_lines_are_json_with_their_fields_and_never_a_secret_or_a_text() {
    let app = spawn_app().await;
    let operator = app.create_api_key("operator").await;
    let sent = app
        .post_send(
            "ops",
            &operator.secret,
            Some("log-key-1"),
            &json!({ "text": TEXT }),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
    let replayed = app
        .post_send(
            "ops",
            &operator.secret,
            Some("log-key-1"),
            &json!({ "text": TEXT }),
        )
        .await;
    assert_eq!(replayed.status(), StatusCode::OK);
    let cookie = session_cookie(&app, &operator.secret).await;
    let page = send(
        app.request(Method::GET, &messages_path("ops"))
            .header(COOKIE, &cookie),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let by_session = send(
        app.request(Method::POST, "api/chats/ops/send")
            .json(&json!({ "text": TEXT }))
            .header(IDEMPOTENCY_KEY, "log-key-2")
            .header(COOKIE, &cookie)
            .header("X-Requested-With", "sofiia-console"),
    )
    .await;
    assert_eq!(by_session.status(), StatusCode::OK);
    let wrong = app.get("/api/chats", "not-a-key-at-all-0000").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // The refused request is the last: once its line is in, every earlier one is.
    let logs = eventually("the last request to be logged", async || {
        let logs = app.logs();
        logs.contains(r#""status":401"#).then_some(logs)
    })
    .await;
    let lines = lines(&logs);
    for line in &lines {
        for field in ["ts", "level", "msg"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    let principal = format!("key:{}", operator.id);
    // One line per request, saying what it did.
    let served: Vec<&Value> = lines
        .iter()
        .filter(|l| l["route"] == "/api/chats/{id}/send")
        .collect();
    assert_eq!(served.len(), 3, "{logs}");
    for line in &served {
        assert_eq!(line["method"], "POST", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert!(line["latency_ms"].is_number(), "{line}");
        assert!(line["request_id"].is_string(), "{line}");
        assert_eq!(line["principal"], principal.as_str(), "{line}");
    }
    let stored = with_event(&lines, "send");
    assert_eq!(stored.len(), 2, "{logs}");
    let replays = with_event(&lines, "replay");
    assert_eq!(replays.len(), 1, "{logs}");
    let paged = with_event(&lines, "paginate");
    assert_eq!(paged.len(), 1, "{logs}");
    for line in stored.iter().chain(&replays).chain(&paged) {
        assert_eq!(line["chat_id"], "ops", "{line}");
        assert_eq!(line["principal"], principal.as_str(), "{line}");
        assert!(line["request_id"].is_string(), "{line}");
    }
    let token = cookie.split_once('=').expect("name=value").1;
    for secret in [
        operator.secret.as_str(),
        app.admin_key.as_str(),
        token,
        TEXT,
        "not-a-key-at-all-0000",
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the log:\n{logs}");
    }
}

#[tokio::test]
async fn with_a_log_dir_a_daily_file_appears_and_at_most_max_files_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("log dir");
    let old = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"];
    for day in old {
        std::fs::write(logs.join(format!("sofiia-console.{day}.log")), "{}\n").expect("old file");
        // Kept files are chosen by creation time.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = format!(
        "[log]\ndir = {:?}\nmax_files = 3\n",
        logs.display().to_string()
    );
    let app = spawn_app_with_config(&config, &[]).await;
    let sent = app
        .post_send("ops", &app.admin_key, None, &json!({ "text": TEXT }))
        .await;
    assert_eq!(sent.status(), StatusCode::OK);

    let today = format!(
        "sofiia-console.{}.log",
        humantime::format_rfc3339(std::time::SystemTime::now())
            .to_string()
            .get(..10)
            .expect("a date")
    );
    let written = eventually("the send to reach the file", async || {
        let text = std::fs::read_to_string(logs.join(&today)).ok()?;
        text.contains(r#""event":"send""#).then_some(text)
    })
    .await;
    for line in lines(&written) {
        assert!(line["ts"].is_string(), "{line}");
    }
    assert!(!written.contains(TEXT), "{written}");
    let mut kept: Vec<String> = std::fs::read_dir(&logs)
        .expect("log dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            "sofiia-console.2026-01-03.log".to_owned(),
            "sofiia-console.2026-01-04.log".to_owned(),
            today
        ],
        "the two newest old files and today's"
    );
}
