//! The crash suite: clients send with idempotency keys and retry every failure with the same
//! key, while the server is SIGKILLed at random moments and restarted, again and again. Then
//! every acknowledged send is stored exactly once, every key replays the message it acknowledged
//! (its record completed, or taken over by a retry), and the audit chain verifies.
//!
//! The summary line is printed and also written to `crash-suite.txt` in the test's temp target
//! directory, where CI prints it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Client, StatusCode, Url};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{IDEMPOTENCY_KEY, expect_json, is_replay, spawn_app};

const CLIENTS: usize = 6;
const RESTARTS: usize = 20;
/// Each kill comes this long after the server is up, at random within the range.
const UP_MS: std::ops::Range<u64> = 150..600;
const RETRY_PAUSE: Duration = Duration::from_millis(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client retrying longer than this means the service never came back.
const GIVE_UP: Duration = Duration::from_secs(60);

/// One acknowledged send.
struct Acknowledged {
    key: String,
    chat: String,
    text: String,
    message_id: String,
    /// Attempts before it was acknowledged.
    attempts: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sends_survive_repeated_kills_exactly_once() {
    let mut app = spawn_app().await;
    let admin_key = app.admin_key.clone();
    let (address_tx, address_rx) = watch::channel(app.address.clone());
    let sending = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (address, sending, key) = (address_rx.clone(), sending.clone(), admin_key.clone());
            tokio::spawn(run_client(client, address, key, sending))
        })
        .collect();

    let mut random = Xorshift::seeded();
    for _ in 0..RESTARTS {
        tokio::time::sleep(Duration::from_millis(random.within(UP_MS))).await;
        app = app.restart_after_kill(&[]).await;
        address_tx.send_replace(app.address.clone());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sending.store(false, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.expect("client task"));
    }

    let mut stored: HashMap<String, usize> = HashMap::new();
    for client in 0..CLIENTS {
        for message in app.history(&chat_of(client)).await {
            if message["role"] == "operator" {
                let text = message["text"].as_str().expect("text").to_owned();
                *stored.entry(text).or_default() += 1;
            }
        }
    }
    let duplicates = stored.values().filter(|count| **count > 1).count();
    let lost = acknowledged
        .iter()
        .filter(|sent| !stored.contains_key(&sent.text))
        .count();
    let retried = acknowledged.iter().filter(|sent| sent.attempts > 1).count();
    let summary = format!(
        "crash suite: {RESTARTS} kills, {} acknowledged, {} stored, {retried} retried, {duplicates} duplicates, {lost} lost (seed {})",
        acknowledged.len(),
        stored.values().sum::<usize>(),
        random.seed,
    );
    println!("{summary}");
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash-suite.txt"),
        format!("{summary}\n"),
    );
    assert!(retried > 0, "no send was caught by a kill: {summary}");
    assert_eq!((duplicates, lost), (0, 0), "{summary}");
    assert_eq!(
        stored.values().sum::<usize>(),
        acknowledged.len(),
        "only acknowledged sends are stored: {summary}"
    );

    // Every key's record is complete: sending it again replays the message it acknowledged.
    for sent in &acknowledged {
        let again = app
            .post_send(
                &sent.chat,
                &admin_key,
                Some(&sent.key),
                &json!({ "text": sent.text }),
            )
            .await;
        assert!(is_replay(&again), "{} was not replayed", sent.key);
        let body: Value = again.json().await.expect("JSON");
        assert_eq!(
            body["message"]["id"],
            sent.message_id.as_str(),
            "{}",
            sent.key
        );
    }
    let verified = expect_json(
        app.get("/api/audit/verify", &admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
}

fn chat_of(client: usize) -> String {
    format!("crash-{client}")
}

/// Sends one message after another, each retried with its key until acknowledged.
async fn run_client(
    client: usize,
    address: watch::Receiver<Url>,
    admin_key: String,
    sending: Arc<AtomicBool>,
) -> Vec<Acknowledged> {
    let http = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let chat = chat_of(client);
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while sending.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("crash-{client}-{n}");
        let text = format!("client {client} message {n}");
        let (message_id, attempts) =
            send_until_acknowledged(&http, &address, &admin_key, &chat, &key, &text).await;
        acknowledged.push(Acknowledged {
            key,
            chat: chat.clone(),
            text,
            message_id,
            attempts,
        });
    }
    acknowledged
}

/// The acknowledged message id and the attempts it took.
async fn send_until_acknowledged(
    http: &Client,
    address: &watch::Receiver<Url>,
    admin_key: &str,
    chat: &str,
    key: &str,
    text: &str,
) -> (String, u32) {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let url = address
            .borrow()
            .join(&format!("/api/chats/{chat}/send"))
            .expect("send URL");
        let answer = http
            .post(url)
            .bearer_auth(admin_key)
            .header(IDEMPOTENCY_KEY, key)
            .json(&json!({ "text": text }))
            .send()
            .await;
        if let Ok(response) = answer
            && response.status() == StatusCode::OK
            && let Ok(body) = response.json::<Value>().await
            && let Some(id) = body["message"]["id"].as_str()
        {
            return (id.to_owned(), attempts);
        }
        assert!(
            started.elapsed() < GIVE_UP,
            "{key} was not acknowledged within {GIVE_UP:?}"
        );
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A small xorshift generator: kill moments vary from run to run, and the seed is printed so a
/// failing run can be told apart.
struct Xorshift {
    seed: u64,
    state: u64,
}

impl Xorshift {
    fn seeded() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Self { seed, state: seed }
    }

    fn within(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        range.start + self.state % (range.end - range.start)
    }
}
