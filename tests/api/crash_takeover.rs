use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fake_node::{Behaviour, FakeNode, node};
use crate::helpers::{
    IDEMPOTENCY_KEY, assert_degraded_send, assert_history_is_one_exchange, expect_json, is_replay,
    messages_path, spawn_app_with_config,
};

const CHAT: &str = "ops-crash";
const KEY: &str = "crash-1";
const TEXT: &str = "fail over to the standby";
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_interrupted_between_its_transactions_is_taken_over_after_restart() {
    // An agent that never answers in time holds every send between its two transactions: the
    // claim and the operator's message are committed, the reply is not.
    let stalled = FakeNode::start(Behaviour::Slow(Duration::from_secs(60))).await;
    let config = node("stalled", &stalled.url, "timeout_ms = 50000");
    let app = spawn_app_with_config(&config, &[]).await;
    let body = json!({ "text": TEXT });
    let stuck = tokio::spawn(
        app.send_request(CHAT, &app.admin_key, &body)
            .header(IDEMPOTENCY_KEY, KEY)
            .send(),
    );

    // The claim is durable: the operator's message becomes visible while the send is paused.
    let acknowledged: Value = tokio::time::timeout(VISIBLE_TIMEOUT, async {
        loop {
            let response = app.get(&messages_path(CHAT), &app.admin_key).await;
            // Until the claim commits, the auto-created chat does not exist.
            if response.status() != StatusCode::NOT_FOUND {
                let page = expect_json(response, StatusCode::OK).await;
                if let Some(message) = page["items"].as_array().and_then(|items| items.first()) {
                    return message.clone();
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
    .expect("the operator's message never became visible");
    assert_eq!(acknowledged["role"], "operator");
    assert!(!stuck.is_finished(), "the paused send answered");

    // The restarted service has no agent, so the takeover's answer is `llm_unconfigured`.
    app.remove_config();
    let app = app.restart_after_kill(&[]).await;
    assert!(
        stuck.await.expect("send task").is_err(),
        "the killed server answered the paused send"
    );

    let takeover = app.post_send(CHAT, &app.admin_key, Some(KEY), &body).await;
    assert_eq!(takeover.status(), StatusCode::OK);
    let takeover = takeover.bytes().await.expect("body");
    let answer: Value = serde_json::from_slice(&takeover).expect("JSON body");
    assert_degraded_send(&answer, CHAT, TEXT);
    assert_eq!(
        answer["message"]["id"], acknowledged["id"],
        "the stored message was not reused"
    );
    assert_history_is_one_exchange(&app, CHAT, &answer).await;
    assert!(
        app.metrics()
            .await
            .contains(r#"sofiia_idempotency_total{result="takeover"} 1"#),
        "the takeover is counted"
    );

    let replay = app.post_send(CHAT, &app.admin_key, Some(KEY), &body).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert!(is_replay(&replay));
    assert_eq!(replay.bytes().await.expect("body"), takeover);
    assert_history_is_one_exchange(&app, CHAT, &answer).await;
}
