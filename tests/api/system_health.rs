//! `GET /api/admin/system/health`: a card per part of the appliance, each with a status and the
//! figures behind it, following what happens to the service.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_node::{Behaviour, FakeNode, node};
use crate::helpers::{TestApp, expect_json, spawn_app, spawn_app_with_config};

async fn cards(app: &TestApp, key: &str) -> Value {
    expect_json(
        app.get("/api/admin/system/health", key).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn each_card_reports_its_part_with_the_figures_behind_it() {
    let app = spawn_app().await;
    let viewer = app.create_api_key("viewer").await;

    let fresh = cards(&app, &viewer.secret).await;
    assert_eq!(fresh["status"], "ok", "{fresh}");
    let card = &fresh["cards"];
    assert_eq!(card["database"]["status"], "ok", "{fresh}");
    assert_eq!(card["database"]["figures"]["writer_queue_capacity"], 4096);
    assert!(card["database"]["figures"]["size_bytes"].as_u64() > Some(0));
    assert_eq!(card["disk"]["status"], "ok", "{fresh}");
    assert!(card["disk"]["figures"]["free_bytes"].as_u64() > Some(0));
    assert_eq!(card["agents"]["status"], "ok", "{fresh}");
    assert_eq!(card["agents"]["figures"]["nodes"], json!([]));
    assert_eq!(card["retention"]["status"], "unknown", "{fresh}");
    assert_eq!(card["retention"]["figures"]["last_run_id"], Value::Null);
    assert_eq!(card["audit"]["status"], "unknown", "{fresh}");
    assert_eq!(card["sse"]["figures"]["subscribers"], 0);

    for n in 0..2 {
        let key = format!("health-{n}");
        let sent = app
            .post_send(
                "ops",
                &app.admin_key,
                Some(&key),
                &json!({ "text": "hello" }),
            )
            .await;
        assert_eq!(sent.status(), StatusCode::OK);
    }
    let verified = app.get("/api/audit/verify", &app.admin_key).await;
    assert_eq!(verified.status(), StatusCode::OK);
    let run = app
        .post_json(
            "/api/admin/retention/run",
            &app.admin_key,
            &json!({ "dry_run": false }),
        )
        .await;
    assert_eq!(run.status(), StatusCode::ACCEPTED);
    let run_id = expect_json(run, StatusCode::ACCEPTED).await["id"].clone();
    let _stream = app.chat_events("ops", &app.admin_key).await;

    let after = crate::helpers::eventually("the retention run to be on its card", async || {
        let after = cards(&app, &app.admin_key).await;
        (after["cards"]["retention"]["figures"]["last_run_status"] == "ok").then_some(after)
    })
    .await;
    let card = &after["cards"];
    assert!(
        card["database"]["figures"]["commit_p95_ms"].as_f64() > Some(0.0),
        "{after}"
    );
    assert_eq!(card["idempotency"]["status"], "ok", "{after}");
    assert_eq!(card["idempotency"]["figures"]["records"], 2);
    assert_eq!(card["idempotency"]["figures"]["in_progress"], 0);
    assert_eq!(card["rate_limits"]["figures"]["sends"], 2, "{after}");
    assert_eq!(card["rate_limits"]["figures"]["rejected_chat"], 0);
    assert_eq!(
        card["agents"]["figures"]["degraded_last_hour"], 2,
        "{after}"
    );
    assert_eq!(card["retention"]["status"], "ok", "{after}");
    assert_eq!(card["retention"]["figures"]["last_run_id"], run_id);
    assert_eq!(card["retention"]["figures"]["consecutive_failures"], 0);
    assert_eq!(card["audit"]["status"], "ok", "{after}");
    assert_eq!(card["audit"]["figures"]["last_verification_valid"], true);
    let head = card["audit"]["figures"]["head_seq"].as_u64().expect("head");
    let verified_head = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await["head_seq"]
        .as_u64()
        .expect("head");
    assert!(head > 0 && head <= verified_head, "{after}");
    assert_eq!(card["sse"]["figures"]["subscribers"], 1, "{after}");

    let health = expect_json(app.get_anonymous("api/health").await, StatusCode::OK).await;
    assert_eq!(health["checks"]["retention"]["status"], "ok", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_card_turns_degraded_when_a_circuit_opens_and_ok_when_it_closes() {
    let failing = FakeNode::start(Behaviour::Status(500)).await;
    let healthy = FakeNode::start(Behaviour::Reply("hello")).await;
    let config = format!(
        "[agents]\nbreaker_failures = 1\nbreaker_open_seconds = 1\n{}{}",
        node("a", &failing.url, "timeout_ms = 2000"),
        node("b", &healthy.url, "timeout_ms = 2000")
    );
    let app = spawn_app_with_config(&config, &[]).await;
    let before = cards(&app, &app.admin_key).await;
    assert_eq!(before["cards"]["agents"]["status"], "ok", "{before}");

    // Node a fails, its circuit opens, node b answers.
    let body = json!({ "text": "status?" });
    let sent = app.post_send("ops", &app.admin_key, None, &body).await;
    assert_eq!(sent.status(), StatusCode::OK);
    let open = cards(&app, &app.admin_key).await;
    let agents = &open["cards"]["agents"];
    assert_eq!(agents["status"], "degraded", "{open}");
    assert_eq!(open["status"], "degraded", "{open}");
    let nodes = agents["figures"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes[0]["name"], "a");
    assert_eq!(nodes[0]["circuit"], "open", "{open}");
    assert_eq!(nodes[0]["last_error"], "error_status");
    assert_eq!(nodes[0]["errors_last_hour"], 1);
    assert_eq!(nodes[1]["circuit"], "closed", "{open}");
    assert!(nodes[1]["last_success_at"].is_string(), "{open}");

    // Node a recovers; after the open period one probe goes to it and closes the circuit.
    failing.behave(Behaviour::Reply("back"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sent = app.post_send("ops", &app.admin_key, None, &body).await;
    assert_eq!(sent.status(), StatusCode::OK);
    let closed = cards(&app, &app.admin_key).await;
    assert_eq!(closed["cards"]["agents"]["status"], "ok", "{closed}");
    let nodes = closed["cards"]["agents"]["figures"]["nodes"]
        .as_array()
        .expect("nodes");
    assert_eq!(nodes[0]["circuit"], "closed", "{closed}");
    assert!(nodes[0]["last_success_at"].is_string(), "{closed}");
}
