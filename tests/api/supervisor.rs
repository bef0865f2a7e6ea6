//! The service manager's protocol (`sd_notify`) on a test `NOTIFY_SOCKET`: more start time
//! while the database opens, `READY=1` once serving, `WATCHDOG=1` pings while the writer makes progress (and none while it is stuck),
//! `STOPPING=1` at a stop.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::net::UnixDatagram;

use crate::helpers::spawn_app_with;

/// Messages that arrive on `socket` within `within`, with when each arrived.
async fn messages(socket: &UnixDatagram, within: Duration) -> Vec<(Instant, String)> {
    let until = Instant::now() + within;
    let mut received = Vec::new();
    let mut buffer = [0u8; 512];
    while let Ok(Ok(n)) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        socket.recv(&mut buffer),
    )
    .await
    {
        received.push((
            Instant::now(),
            String::from_utf8_lossy(&buffer[..n]).into_owned(),
        ));
    }
    received
}

fn env(path: &Path, watchdog_usec: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NOTIFY_SOCKET", path.display().to_string()),
        ("WATCHDOG_USEC", watchdog_usec.to_owned()),
    ]
}

#[tokio::test]
async fn ready_then_watchdog_pings_then_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("a notify socket");
    let env = env(&path, "400000");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&env).await;

    let heard = messages(&socket, Duration::from_millis(1200)).await;
    let texts: Vec<&str> = heard
        .iter()
        .map(|(_, text)| text.trim())
        .filter(|text| !text.starts_with("EXTEND_TIMEOUT_USEC="))
        .collect();
    assert_eq!(texts.first(), Some(&"READY=1"), "{texts:?}");
    let pings = texts.iter().filter(|t| **t == "WATCHDOG=1").count();
    assert!(pings >= 3, "a ping every 200 ms: {texts:?}");

    let stopped = app.stop().await;
    let heard = messages(&socket, Duration::from_millis(500)).await;
    assert!(
        heard.iter().any(|(_, text)| text.trim() == "STOPPING=1"),
        "{heard:?}"
    );
    drop(stopped);
}

#[tokio::test]
async fn a_stuck_writer_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("a notify socket");
    let mut env = env(&path, "200000");
    // Every commit takes 1.5 s: the writer is as good as stuck while one runs.
    env.push(("SOFIIA_FAILPOINTS", "store.commit=sleep:1500".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&env).await;
    let idle = messages(&socket, Duration::from_millis(600)).await;
    assert!(
        idle.iter()
            .filter(|(_, t)| t.trim() == "WATCHDOG=1")
            .count()
            >= 3,
        "{idle:?}"
    );

    let body = json!({ "text": "slow" });
    let sending = app.post_send("ops", &app.admin_key, None, &body);
    let (sent, during) = tokio::join!(sending, messages(&socket, Duration::from_millis(1200)));
    assert_eq!(sent.status(), StatusCode::OK);
    let pings: Vec<Instant> = during
        .iter()
        .filter(|(_, t)| t.trim() == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    let longest_gap = pings
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or(Duration::from_millis(1200));
    assert!(
        longest_gap >= Duration::from_millis(800),
        "pings went on while the writer was stuck: {during:?}"
    );
}

/// Opening the database (which may migrate it for minutes) asks for more start time before
/// anything else: the unit's start timeout bounds a hung start, not a long upgrade.
#[tokio::test]
async fn opening_the_database_asks_the_service_manager_for_more_start_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("a notify socket");
    let notify_socket = path.display().to_string();
    let _app = spawn_app_with(&[("NOTIFY_SOCKET", notify_socket.as_str())]).await;

    let heard = messages(&socket, Duration::from_millis(300)).await;
    let texts: Vec<&str> = heard.iter().map(|(_, text)| text.trim()).collect();
    assert_eq!(
        texts.first(),
        Some(&"EXTEND_TIMEOUT_USEC=30000000"),
        "{texts:?}"
    );
    let ready = texts.iter().position(|t| *t == "READY=1");
    assert!(ready.is_some_and(|at| at > 0), "{texts:?}");
}
