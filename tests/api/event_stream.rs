//! The admin event stream (`GET /api/admin/events/stream`): topics, exactly the missed events on
//! a reconnect with `Last-Event-ID`, and a subscriber that never reads dropped and counted while
//! sends go on.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::fake_node::{Behaviour, FakeNode, node};
use crate::helpers::{
    TestApp, eventually, non_reading_client, send, spawn_app, spawn_app_with, spawn_app_with_config,
};

const STREAM: &str = "api/admin/events/stream";

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    id: u64,
    name: String,
    data: Value,
}

/// Reads a `text/event-stream` body event by event (heartbeat comments skipped).
struct SseReader {
    response: Response,
    buffer: String,
}

impl SseReader {
    /// The admin stream with `query`.
    async fn open(app: &TestApp, query: &str, last_event_id: Option<u64>) -> SseReader {
        Self::open_at(app, &format!("{STREAM}{query}"), last_event_id).await
    }

    /// The stream at `path`, as the admin, resuming after `last_event_id` when given.
    async fn open_at(app: &TestApp, path: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = app.request(Method::GET, path).bearer_auth(&app.admin_key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", HeaderValue::from(id));
        }
        let response = send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("ASCII")
                .starts_with("text/event-stream")
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, waiting at most 5 s.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&frame) {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("an event within 5 s")
                .expect("the stream reads")
                .expect("the stream is open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Asserts that the stream opens with a `reset` event (it has no id, so `next` skips it).
    async fn expect_reset(mut self) {
        let frame = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
            .await
            .expect("the reset arrives")
            .expect("reads")
            .expect("open");
        assert!(
            String::from_utf8_lossy(&frame).contains("event: reset"),
            "{frame:?}"
        );
    }

    /// The next `count` events.
    async fn take(&mut self, count: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }
}

fn parse(frame: &str) -> Option<SseEvent> {
    let field = |name: &str| {
        frame
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
    };
    Some(SseEvent {
        id: field("id")?.parse().expect("a numeric id"),
        name: field("event")?.to_owned(),
        data: serde_json::from_str(field("data")?).expect("JSON data"),
    })
}

/// Sends `text` to `chat`; with no agent configured a send creates two messages (the
/// operator's and the degraded reply), so two `message.created` events.
async fn send_text(app: &TestApp, chat: &str, text: &str) {
    let sent = app
        .post_send(chat, &app.admin_key, None, &json!({ "text": text }))
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
}

fn ids(events: &[SseEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_receives_exactly_the_events_it_missed() {
    let app = spawn_app().await;
    // A witness that stays connected sees every event of the topic.
    let mut witness = SseReader::open(&app, "?topics=chats", None).await;
    let mut watching = SseReader::open(&app, "?topics=chats", None).await;
    send_text(&app, "ops", "one").await;
    send_text(&app, "ops", "two").await;
    let seen = watching.take(4).await;
    assert!(seen.iter().all(|e| e.name == "message.created"), "{seen:?}");
    assert_eq!(seen[0].data["text"], "one");
    let last = seen[3].id;
    drop(watching);

    send_text(&app, "ops", "three").await;
    send_text(&app, "other", "four").await;
    let mut again = SseReader::open(&app, "?topics=chats", Some(last)).await;
    let missed = again.take(4).await;
    let everything = witness.take(8).await;
    assert_eq!(ids(&everything[..4]), ids(&seen));
    assert_eq!(ids(&missed), ids(&everything[4..]), "{missed:?}");
    assert_eq!(missed[0].data["text"], "three");
    assert_eq!(missed[2].data["text"], "four");
    // Then live, with nothing replayed twice.
    send_text(&app, "ops", "five").await;
    let live = again.next().await;
    assert_eq!(live.id, witness.next().await.id);
    assert_eq!(live.data["text"], "five");

    // An id the service no longer keeps (or never gave) is a gap: the stream says so first.
    let stale = SseReader::open(&app, "?topics=chats", Some(last + 1_000)).await;
    stale.expect_reset().await;
}

#[tokio::test]
async fn the_stream_carries_only_its_topics_audit_and_retention_among_them() {
    let app = spawn_app().await;
    let mut watching = SseReader::open(&app, "?topics=audit,retention", None).await;
    // A send: its audit event comes, its messages (topic `chats`) do not.
    send_text(&app, "ops", "not on this stream").await;
    let started = app
        .post_json(
            "/api/admin/retention/run",
            &app.admin_key,
            &json!({ "dry_run": false }),
        )
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let mut names = Vec::new();
    let mut recorded = None;
    let mut sent = None;
    while !names.contains(&"retention.finished".to_owned()) || recorded.is_none() {
        let event = watching.next().await;
        if event.name == "audit.appended" && event.data["action"] == "retention.run" {
            recorded = Some(event.data.clone());
        }
        if event.name == "audit.appended" && event.data["action"] == "chat.send" {
            sent = Some(event.data.clone());
        }
        names.push(event.name);
    }
    assert!(names.contains(&"retention.started".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| n != "message.created"), "{names:?}");
    assert!(sent.is_some(), "the send's audit event: {names:?}");
    let recorded = recorded.expect("the run's audit event");
    assert!(recorded["seq"].as_u64() > Some(0), "{recorded}");
    assert!(recorded["hash"].is_string(), "{recorded}");

    let unknown = app
        .get(&format!("/{STREAM}?topics=chats,weather"), &app.admin_key)
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let operator = app.create_api_key("operator").await;
    let refused = app.get(&format!("/{STREAM}"), &operator.secret).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_dropped_and_counted_while_sends_go_on() {
    let app = spawn_app_with(&[("SOFIIA_EVENTS__SUBSCRIBER_QUEUE", "8")]).await;
    let mut stalled = non_reading_client(&app).await;
    let request = format!(
        "GET /{STREAM}?topics=chats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        app.admin_key
    );
    stalled
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    eventually("the stream to be open", async || {
        let health = app.get("/api/admin/system/health", &app.admin_key).await;
        let health: Value = health.json().await.ok()?;
        (health["cards"]["sse"]["figures"]["subscribers"] == 1).then_some(())
    })
    .await;

    // Large messages fill the socket's buffers, then the subscriber's queue of 8.
    let text = "x".repeat(16_000);
    for n in 0..500 {
        send_text(&app, &format!("bulk-{}", n % 4), &text).await;
    }
    let metrics = eventually("the drop to be counted", async || {
        let metrics = app.metrics().await;
        (!metrics.contains("sofiia_sse_dropped_total 0")).then_some(metrics)
    })
    .await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "sofiia_sse_dropped_total 1"),
        "{metrics}"
    );
    let health = app.get("/api/admin/system/health", &app.admin_key).await;
    let health: Value = health.json().await.expect("JSON");
    assert_eq!(
        health["cards"]["sse"]["figures"]["subscribers"], 0,
        "{health}"
    );
    assert_eq!(health["cards"]["sse"]["status"], "degraded", "{health}");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opening_is_an_agents_event_and_its_card_change_a_health_event() {
    let failing = FakeNode::start(Behaviour::Status(500)).await;
    let healthy = FakeNode::start(Behaviour::Reply("hello")).await;
    let config = format!(
        "[agents]\nbreaker_failures = 1\nbreaker_open_seconds = 600\n{}{}",
        node("a", &failing.url, "timeout_ms = 2000"),
        node("b", &healthy.url, "timeout_ms = 2000")
    );
    let app = spawn_app_with_config(&config, &[]).await;
    let mut watching = SseReader::open(&app, "?topics=agents,health", None).await;
    // The watcher takes its first look before the circuit opens.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send_text(&app, "ops", "status?").await;

    let circuit = watching.next().await;
    assert_eq!(circuit.name, "agent.circuit", "{circuit:?}");
    assert_eq!(circuit.data["node"], "a");
    assert_eq!(circuit.data["circuit"], "open");
    assert_eq!(circuit.data["last_error"], "error_status");
    let changed = watching.next().await;
    assert_eq!(changed.name, "health.changed", "{changed:?}");
    assert_eq!(changed.data["cards"]["agents"], "degraded", "{changed:?}");
    assert!(changed.id > circuit.id);
}

/// Opens `GET /api/chats/{chat}/events`, resuming after `last_seq` when given.
async fn chat_stream(app: &TestApp, chat: &str, last_seq: Option<u64>) -> SseReader {
    SseReader::open_at(app, &format!("api/chats/{chat}/events"), last_seq).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chat_stream_delivers_in_commit_order_and_resumes_by_seq() {
    let app = Arc::new(spawn_app().await);
    send_text(&app, "busy", "first").await;
    let mut watching = chat_stream(&app, "busy", None).await;
    let senders: Vec<_> = (0..20)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { send_text(&app, "busy", &format!("concurrent {n}")).await })
        })
        .collect();
    for sender in senders {
        sender.await.expect("sender");
    }
    let seqs = ids(&watching.take(40).await);
    assert_eq!(
        seqs,
        (3..=42).collect::<Vec<u64>>(),
        "every message, in seq order"
    );
    drop(watching);

    send_text(&app, "busy", "while away").await;
    let mut again = chat_stream(&app, "busy", Some(42)).await;
    assert_eq!(ids(&again.take(2).await), [43, 44]);

    // Messages from before anything was kept (the first two) cannot be replayed: say so.
    chat_stream(&app, "busy", Some(0))
        .await
        .expect_reset()
        .await;
}
