//! Agent nodes (SPEC §8) against real HTTP servers started by the tests: failover, pinning,
//! timeouts, errors, circuit breaking, rate limiting, the request's context, replays, takeover,
//! live events and nodes behind HTTPS with a private CA.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_node::{Behaviour, FakeNode, dead_url, node};
use crate::helpers::{
    TestApp, eventually, expect_json, send, serve_until_exit, spawn_app, spawn_app_with_config,
};

/// Nodes keep their default 30 s timeouts, so the request deadline is set to outlast them all.
async fn spawn_with_nodes(agents: &str, nodes: &[String]) -> TestApp {
    let config = format!("[agents]\n{agents}\n\n{}", nodes.concat());
    spawn_app_with_config(&config, &[LONG_REQUEST_DEADLINE]).await
}

const LONG_REQUEST_DEADLINE: (&str, &str) = ("SOFIIA_HTTP__REQUEST_TIMEOUT_MS", "600000");

async fn send_ok(app: &TestApp, chat: &str, text: &str, key: Option<&str>) -> Value {
    let response = app
        .post_send(chat, &app.admin_key, key, &json!({ "text": text }))
        .await;
    expect_json(response, StatusCode::OK).await
}

fn reason(body: &Value) -> &str {
    body["degraded"]["reason_code"].as_str().unwrap_or("none")
}

#[tokio::test]
async fn the_second_node_answers_when_the_first_is_down() {
    let second = FakeNode::start(Behaviour::Reply("from the second")).await;
    let app = spawn_with_nodes(
        "",
        &[
            node("first", &dead_url().await, ""),
            node("second", &second.url, ""),
        ],
    )
    .await;
    let body = send_ok(&app, "ops", "status?", None).await;
    assert_eq!(body["degraded"], Value::Null, "{body}");
    assert_eq!(body["reply"]["node"], "second");
    assert_eq!(body["reply"]["model"], "fake-model-1");
    assert_eq!(body["reply"]["role"], "agent");
    assert_eq!(body["reply"]["text"], "from the second");
    let history = app.history("ops").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["text"], "from the second");
    assert_eq!(history[1]["node"], "second");
}

#[tokio::test]
async fn a_pinned_chat_uses_its_node() {
    let a = FakeNode::start(Behaviour::Reply("from a")).await;
    let b = FakeNode::start(Behaviour::Reply("from b")).await;
    let app = spawn_with_nodes("", &[node("a", &a.url, ""), node("b", &b.url, "")]).await;
    let created = app
        .post_json(
            "/api/chats",
            &app.admin_key,
            &json!({ "id": "pinned", "node": "b" }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body = send_ok(&app, "pinned", "hello", None).await;
    assert_eq!(body["reply"]["node"], "b");
    assert_eq!((a.calls(), b.calls()), (0, 1));
}

#[tokio::test]
async fn a_node_slower_than_its_timeout_is_llm_timeout() {
    let slow = FakeNode::start(Behaviour::Slow(Duration::from_secs(3))).await;
    let app = spawn_with_nodes("", &[node("slow", &slow.url, "timeout_ms = 300")]).await;
    let body = send_ok(&app, "ops", "hello", None).await;
    assert_eq!(reason(&body), "llm_timeout", "{body}");
    assert_eq!(body["reply"], Value::Null);
    let history = app.history("ops").await;
    assert_eq!(history[1]["role"], "system");
    assert_eq!(history[1]["reason_code"], "llm_timeout");
    assert_eq!(history[1]["id"], body["degraded"]["message_id"]);
}

#[tokio::test]
async fn server_errors_open_the_circuit_which_closes_after_its_period() {
    let flaky = FakeNode::start(Behaviour::Status(500)).await;
    let app = spawn_with_nodes(
        "breaker_failures = 2\nbreaker_open_seconds = 1",
        &[node("flaky", &flaky.url, "")],
    )
    .await;
    for n in 0..2 {
        let body = send_ok(&app, "ops", &format!("try {n}"), None).await;
        assert_eq!(reason(&body), "llm_error", "{body}");
    }
    assert_eq!(flaky.calls(), 2);
    let body = send_ok(&app, "ops", "while open", None).await;
    assert_eq!(reason(&body), "llm_unavailable", "{body}");
    assert_eq!(flaky.calls(), 2, "an open circuit is not called");

    flaky.behave(Behaviour::Reply("recovered"));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let body = send_ok(&app, "ops", "after the period", None).await;
    assert_eq!(body["reply"]["text"], "recovered", "{body}");
    let body = send_ok(&app, "ops", "closed again", None).await;
    assert_eq!(body["reply"]["text"], "recovered", "{body}");
    assert_eq!(flaky.calls(), 4);
}

#[tokio::test]
async fn a_busy_node_is_llm_rate_limit_and_nonsense_is_llm_error() {
    let busy = FakeNode::start(Behaviour::Status(429)).await;
    let app = spawn_with_nodes("", &[node("busy", &busy.url, "")]).await;
    let body = send_ok(&app, "ops", "hello", None).await;
    assert_eq!(reason(&body), "llm_rate_limit", "{body}");

    busy.behave(Behaviour::Malformed);
    let body = send_ok(&app, "ops", "again", None).await;
    assert_eq!(reason(&body), "llm_error", "{body}");
}

#[tokio::test]
async fn without_nodes_the_send_is_llm_unconfigured() {
    let app = spawn_app().await;
    let body = send_ok(&app, "ops", "hello", None).await;
    assert_eq!(reason(&body), "llm_unconfigured", "{body}");
}

#[tokio::test]
async fn the_request_carries_the_system_prompt_and_the_last_messages_in_order() {
    let echo = FakeNode::start(Behaviour::Reply("noted")).await;
    let app = spawn_with_nodes(
        "context_messages = 3\nsystem_prompt = \"You are Sofiia.\"",
        &[node("echo", &echo.url, "")],
    )
    .await;
    for text in ["first", "second", "third"] {
        send_ok(&app, "ops", text, None).await;
    }
    let request = echo.last_request();
    assert_eq!(request["model"], "m-echo");
    assert_eq!(request["stream"], false);
    assert_eq!(
        request["messages"],
        json!([
            { "role": "system", "content": "You are Sofiia." },
            { "role": "user", "content": "second" },
            { "role": "assistant", "content": "noted" },
            { "role": "user", "content": "third" },
        ])
    );
}

#[tokio::test]
async fn a_retry_after_a_degraded_outcome_replays_it_without_calling_again() {
    let broken = FakeNode::start(Behaviour::Status(503)).await;
    let app = spawn_with_nodes("", &[node("broken", &broken.url, "")]).await;
    let first = app
        .post_send(
            "ops",
            &app.admin_key,
            Some("retry-1"),
            &json!({ "text": "hi" }),
        )
        .await;
    let first_bytes = first.bytes().await.expect("body");
    broken.behave(Behaviour::Reply("now I work"));
    let retry = app
        .post_send(
            "ops",
            &app.admin_key,
            Some("retry-1"),
            &json!({ "text": "hi" }),
        )
        .await;
    assert_eq!(retry.headers()["idempotency-replayed"], "true");
    assert_eq!(retry.bytes().await.expect("body"), first_bytes);
    assert_eq!(broken.calls(), 1);
}

#[tokio::test]
async fn a_takeover_calls_the_agent_for_the_stored_message() {
    let agent = FakeNode::start(Behaviour::Slow(Duration::from_secs(60))).await;
    let app = spawn_with_nodes("", &[node("agent", &agent.url, "timeout_ms = 50000")]).await;
    let body = json!({ "text": "survive this" });
    let parked = tokio::spawn(send(
        app.send_request("ops", &app.admin_key, &body)
            .header("idempotency-key", "crash-1"),
    ));
    // The agent call is in flight: the claim and the operator message are committed.
    eventually("the agent is being asked", async || {
        (agent.calls() == 1).then_some(())
    })
    .await;
    let app = app.restart_after_kill(&[]).await;
    parked.abort();
    agent.behave(Behaviour::Reply("answered after the crash"));
    let retried = app
        .post_send("ops", &app.admin_key, Some("crash-1"), &body)
        .await;
    let retried = expect_json(retried, StatusCode::OK).await;
    assert_eq!(retried["reply"]["text"], "answered after the crash");
    assert_eq!(agent.calls(), 2, "the takeover asked the agent again");
    let history = app.history("ops").await;
    let roles: Vec<&str> = history
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        roles,
        ["operator", "agent"],
        "one operator message, one reply"
    );
    assert_eq!(retried["message"]["id"], history[0]["id"]);
    assert_eq!(
        agent.last_request()["messages"][0]["content"],
        "survive this"
    );
}

#[tokio::test]
async fn chat_events_stream_each_new_message() {
    let agent = FakeNode::start(Behaviour::Reply("live reply")).await;
    let app = spawn_with_nodes("", &[node("agent", &agent.url, "")]).await;
    let created = app
        .post_json("/api/chats", &app.admin_key, &json!({ "id": "live" }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let mut events = app.chat_events("live", &app.admin_key).await;
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    send_ok(&app, "live", "watch this", None).await;
    let mut text = String::new();
    while text.matches("event: message.created").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
            .await
            .expect("events arrive")
            .expect("stream ok")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"text\":\"watch this\""), "{text}");
    assert!(text.contains("\"text\":\"live reply\""), "{text}");
    assert!(text.contains("id: 1") && text.contains("id: 2"), "{text}");

    let unknown = app.get("api/chats/nowhere/events", &app.admin_key).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn agent_calls_and_degraded_outcomes_are_measured() {
    let good = FakeNode::start(Behaviour::Reply("fine")).await;
    let bad = FakeNode::start(Behaviour::Status(500)).await;
    let app = spawn_with_nodes(
        "",
        &[node("bad", &bad.url, ""), node("good", &good.url, "")],
    )
    .await;
    send_ok(&app, "ops", "hello", None).await;
    bad.behave(Behaviour::Status(429));
    send_ok(&app, "ops", "again", None).await;

    let text = app.metrics().await;
    for line in [
        r#"sofiia_agent_requests_total{node="bad",outcome="error_status"} 1"#,
        r#"sofiia_agent_requests_total{node="good",outcome="ok"} 1"#,
        r#"sofiia_agent_requests_total{node="bad",outcome="rate_limited"} 1"#,
        r#"sofiia_degraded_total{reason_code="llm_rate_limit"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(text.contains("sofiia_agent_request_duration_seconds_bucket{node=\"good\""));
    assert!(text.contains("sofiia_build_info{"), "{text}");
    assert!(
        text.contains(
            r#"http_requests_total{method="POST",route="/api/chats/{id}/send",status="200"} 2"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_refused_and_local_pacing_does_not_open_the_circuit() {
    let node_server = FakeNode::start(Behaviour::Huge(2 * 1024 * 1024)).await;
    let app = spawn_with_nodes(
        "breaker_failures = 1",
        &[node("n", &node_server.url, "max_rps = 1\ntimeout_ms = 300")],
    )
    .await;
    // 2 MiB of text is not an answer this service keeps.
    let body = send_ok(&app, "ops", "talk a lot", None).await;
    assert_eq!(reason(&body), "llm_error", "{body}");

    // Wait out the circuit that failure opened, then use the one call slot per second twice:
    // the second send finds no slot before its timeout. That is our pacing, not the node failing.
    node_server.behave(Behaviour::Reply("ok"));
    let app = app.restart(&[]).await;
    let first = send_ok(&app, "ops", "one", None).await;
    assert_eq!(first["reply"]["text"], "ok", "{first}");
    let paced = send_ok(&app, "ops", "two", None).await;
    assert_eq!(reason(&paced), "llm_timeout", "{paced}");
    let health = expect_json(app.get_anonymous("api/health").await, StatusCode::OK).await;
    assert_eq!(health["checks"]["agents"]["status"], "ok", "{health}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"sofiia_agent_requests_total{node="n",outcome="paced"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn live_events_end_at_shutdown_and_when_the_key_is_revoked() {
    let app = spawn_app().await;
    let viewer = app.create_api_key("viewer").await;
    let created = app
        .post_json("/api/chats", &app.admin_key, &json!({ "id": "watched" }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let mut watching = app.chat_events("watched", &viewer.secret).await;
    let revoked = app
        .delete(&format!("/api/admin/keys/{}", viewer.id), &app.admin_key)
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    send_ok(&app, "watched", "not for revoked eyes", None).await;
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = watching.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the revoked key's stream stayed open");
    assert!(!seen.contains("not for revoked eyes"), "{seen}");

    // An open stream does not hold up a graceful stop (which must end within its timeout).
    let mut open = app.chat_events("watched", &app.admin_key).await;
    let started = std::time::Instant::now();
    let stopped = app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream held the stop up"
    );
    assert!(matches!(open.chunk().await, Ok(None) | Err(_)));
    drop(stopped);
}

/// The `ca_file` line of a node table.
fn ca_file(path: &Path) -> String {
    format!("ca_file = {:?}", path.to_str().expect("a UTF-8 path"))
}

#[tokio::test]
async fn an_https_node_signed_by_its_ca_file_answers() {
    let (secure, ca_pem) = FakeNode::start_https(Behaviour::Reply("over TLS")).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_path = dir.path().join("node-ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("write the CA certificate");
    assert!(secure.url.starts_with("https://"), "{}", secure.url);
    let app = spawn_with_nodes("", &[node("secure", &secure.url, &ca_file(&ca_path))]).await;
    let body = send_ok(&app, "ops", "hello", None).await;
    assert_eq!(body["degraded"], Value::Null, "{body}");
    assert_eq!(body["reply"]["text"], "over TLS", "{body}");
    assert_eq!(body["reply"]["node"], "secure");
    assert_eq!(secure.calls(), 1);
}

#[tokio::test]
async fn an_https_node_with_a_certificate_nobody_trusts_is_llm_error() {
    let (untrusted, _) = FakeNode::start_https(Behaviour::Reply("unverified")).await;
    let app = spawn_with_nodes("", &[node("untrusted", &untrusted.url, "")]).await;
    let body = send_ok(&app, "ops", "hello", None).await;
    assert_eq!(reason(&body), "llm_error", "{body}");
    assert_eq!(body["reply"], Value::Null, "{body}");
    assert_eq!(untrusted.calls(), 0, "a request went past the handshake");
    eventually("the log names the certificate as the cause", async || {
        app.logs()
            .contains("invalid peer certificate")
            .then_some(())
    })
    .await;
}

/// Runs `serve` with `toml` as its configuration and `env`; asserts that start-up was refused and
/// returns stderr.
async fn refused_start(toml: &str, env: &[(&str, &str)]) -> String {
    let root = tempfile::tempdir().expect("a temporary directory");
    let config = root.path().join("config.toml");
    std::fs::write(&config, toml).expect("write config.toml");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().expect("a UTF-8 path"),
    ];
    let output = serve_until_exit(&root.path().join("data"), &args, env).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "started anyway; stderr: {stderr}");
    stderr
}

#[tokio::test]
async fn a_ca_file_that_is_missing_or_holds_no_certificate_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "a private CA was meant to be here\n").expect("write the file");
    for (path, problem) in [(missing, "cannot be read"), (not_pem, "no PEM certificate")] {
        let toml = node("secure", "https://127.0.0.1:9/v1", &ca_file(&path));
        let stderr = refused_start(&toml, &[]).await;
        assert!(stderr.contains("agents.nodes[0].ca_file"), "{stderr}");
        assert!(stderr.contains(path.to_str().expect("UTF-8")), "{stderr}");
        assert!(stderr.contains(problem), "{stderr}");
    }
}

#[tokio::test]
async fn without_a_platform_ca_store_only_https_nodes_lacking_a_ca_file_are_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let no_roots = dir.path().join("no-roots.pem");
    std::fs::write(&no_roots, "").expect("write the empty store");
    let no_root_dir = dir.path().join("no-roots.d");
    std::fs::create_dir(&no_root_dir).expect("create the empty store");
    let no_store = [
        ("SSL_CERT_FILE", no_roots.to_str().expect("UTF-8")),
        ("SSL_CERT_DIR", no_root_dir.to_str().expect("UTF-8")),
        LONG_REQUEST_DEADLINE,
    ];

    let (secure, ca_pem) = FakeNode::start_https(Behaviour::Reply("over TLS")).await;
    let stderr = refused_start(&node("secure", &secure.url, ""), &no_store).await;
    assert!(stderr.contains("agents.nodes[0].url"), "{stderr}");
    assert!(stderr.contains("ca_file"), "{stderr}");

    let ca_path = dir.path().join("node-ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("write the CA certificate");
    let plain = FakeNode::start(Behaviour::Reply("over HTTP")).await;
    let config = [
        node("plain", &plain.url, ""),
        node("secure", &secure.url, &ca_file(&ca_path)),
    ]
    .concat();
    let app = spawn_app_with_config(&config, &no_store).await;
    let body = send_ok(&app, "ops", "hello", None).await;
    assert_eq!(body["reply"]["text"], "over HTTP", "{body}");
    let pinned = app
        .post_json(
            "/api/chats",
            &app.admin_key,
            &json!({ "id": "pinned", "node": "secure" }),
        )
        .await;
    assert_eq!(pinned.status(), StatusCode::CREATED);
    let body = send_ok(&app, "pinned", "hello", None).await;
    assert_eq!(body["reply"]["text"], "over TLS", "{body}");
}
