//! Availability under hostile clients (SPEC §5): slow bodies, oversized bodies, clients that
//! never read their responses, stalled exports. Each holds at most what it brought — a
//! connection — and never the service's slots, threads or memory.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, non_reading_client, spawn_app, spawn_app_with};

/// A service that drops a stalled response, or an idle connection, after 1.5 s.
async fn spawn_with_short_deadlines() -> TestApp {
    spawn_app_with(&[
        ("SOFIIA_HTTP__WRITE_TIMEOUT_MS", "1500"),
        ("SOFIIA_HTTP__IDLE_TIMEOUT_MS", "1500"),
    ])
    .await
}

/// `count` clients that send `GET path` as the admin and never read the answer.
async fn stalled_readers(app: &TestApp, path: &str, count: usize) -> Vec<TcpStream> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        app.admin_key
    );
    let mut stalled = Vec::with_capacity(count);
    for _ in 0..count {
        let mut client = non_reading_client(app).await;
        client.write_all(request.as_bytes()).await.expect("write");
        stalled.push(client);
    }
    stalled
}

/// Reads until the server closes the connection (EOF or reset), at most `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut received = Vec::new();
    let reading = async {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(within, reading).await {
        Ok(()) => Ok(received),
        Err(_) => Err(received),
    }
}

/// `/livez`, `/api/health` and an authenticated read all answer 200.
async fn assert_served(app: &TestApp) {
    assert_eq!(app.get_anonymous("livez").await.status(), StatusCode::OK);
    assert_eq!(
        app.get_anonymous("api/health").await.status(),
        StatusCode::OK
    );
    let chats = app.get("api/chats", &app.admin_key).await;
    assert_eq!(chats.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_thousand_slow_bodies_do_not_starve_the_service() {
    let app = spawn_app().await;
    let mut slow = Vec::new();
    // More than `http.max_concurrent_requests` (1024): each would hold a slot if a body still
    // arriving held one.
    let head = "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"key\":";
    for _ in 0..1100 {
        let mut stream = TcpStream::connect(app.socket_addr())
            .await
            .expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_served(&app).await;
    drop(slow);
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_at_the_body_deadline() {
    let app = spawn_app_with(&[("SOFIIA_HTTP__BODY_TIMEOUT_MS", "600")]).await;
    let mut stream = TcpStream::connect(app.socket_addr())
        .await
        .expect("connect");
    let head = "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let started = Instant::now();
    let trickle = async {
        // A byte at a time, never finishing: each byte is progress, none completes the body.
        while stream.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut peek = [0u8; 1];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut peek)).await
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("the server answered a body that never completes");
    let answer = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("the connection is closed after the refusal");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "cut off before the deadline"
    );
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_at_once_without_reading_the_body() {
    let app = spawn_app().await;
    for path in ["/livez", "/api/auth/login", "/api/chats/ops/send"] {
        let mut stream = TcpStream::connect(app.socket_addr())
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        // Not one byte of the body is sent: the answer must not wait for it.
        let answer = closed_within(&mut stream, Duration::from_secs(2))
            .await
            .unwrap_or_else(|partial| {
                panic!(
                    "{path}: no answer and close within 2 s: {}",
                    String::from_utf8_lossy(&partial)
                )
            });
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("\"payload_too_large\""), "{path}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
}

/// Sends `count` messages of about 60 KB of JSON each (control characters escape to six bytes).
async fn fill_chat_with_large_messages(app: &TestApp, chat: &str, count: usize) {
    let text = "\u{1}".repeat(10_000);
    for _ in 0..count {
        let response = app
            .post_send(chat, &app.admin_key, None, &json!({ "text": text }))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn clients_that_never_read_cannot_pin_memory() {
    let app = spawn_with_short_deadlines().await;
    // About 6 MB of message JSON: 300 unread copies would be 1.8 GB.
    fill_chat_with_large_messages(&app, "large", 100).await;
    let rss_before = app.process_status("VmRSS");

    let mut stalled = stalled_readers(&app, "/api/chats/large/messages?limit=200", 300).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_stalled = app.process_status("VmRSS");
    assert_served(&app).await;
    assert!(
        rss_stalled < rss_before + 256 * 1024,
        "resident memory went from {rss_before} kB to {rss_stalled} kB with 300 clients not reading"
    );

    // Past the write deadline (and the keep-alive idle limit for those refused), every one of
    // them has been cut off.
    for client in &mut stalled {
        closed_within(client, Duration::from_secs(10))
            .await
            .unwrap_or_else(|_| panic!("a client that never reads was still connected"));
    }
    assert_served(&app).await;
}

#[tokio::test]
async fn a_page_of_large_messages_ends_early_and_pages_on() {
    let app = spawn_app().await;
    fill_chat_with_large_messages(&app, "large", 40).await;
    let first = app
        .page("/api/chats/large/messages", &[("limit", "200")])
        .await;
    assert!(
        (1..40).contains(&first.items.len()),
        "a page of 40 messages of 60 KB each ends before its limit, holding {}",
        first.items.len()
    );
    assert!(first.next_cursor.is_some());
    let all = app.history("large").await;
    assert_eq!(all.len(), 80, "every operator message and its notice");
}

#[tokio::test]
async fn stalled_audit_exports_hold_no_threads() {
    let app = spawn_with_short_deadlines().await;
    // Enough events that an export outgrows the socket buffers of a client that never reads.
    for n in 0..300 {
        app.send_text(&format!("chat-{}", n % 30), "hello").await;
    }
    let threads_before = app.process_status("Threads");
    let mut stalled = stalled_readers(&app, "/api/audit/export", 50).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let threads_stalled = app.process_status("Threads");
    assert!(
        threads_stalled <= threads_before + 4,
        "threads went from {threads_before} to {threads_stalled} with 50 stalled exports"
    );
    assert_served(&app).await;
    for client in &mut stalled {
        closed_within(client, Duration::from_secs(10))
            .await
            .unwrap_or_else(|_| panic!("a stalled export was still connected"));
    }
}
