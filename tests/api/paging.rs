use std::collections::HashSet;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::helpers::{TestApp, assert_error, ids, messages_path, spawn_app, spawn_app_with};

const CHAT: &str = "ops-paging";
/// Every message gets this timestamp, so only the `seq` tie-breaker orders them.
const FROZEN_MS: u64 = 1_700_000_000_000;
const SENDS: usize = 1000;
const WORKERS: usize = 16;
/// Each send stores the operator's message and the system message of the degraded outcome.
const MESSAGES_PER_SEND: usize = 2;

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|message| message["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_sends_with_one_timestamp_page_without_loss_or_repeat() {
    let frozen = FROZEN_MS.to_string();
    let app = Arc::new(spawn_app_with(&[("SOFIIA_FROZEN_CLOCK_MS", &frozen)]).await);
    let mut workers = JoinSet::new();
    for worker in 0..WORKERS {
        let app = Arc::clone(&app);
        workers.spawn(async move {
            for i in (worker..SENDS).step_by(WORKERS) {
                app.send_text(CHAT, &format!("message {i}")).await;
            }
        });
    }
    workers.join_all().await;
    let path = messages_path(CHAT);

    let ascending = app.all_pages(&path, &[("order", "asc")], 7).await;

    assert_eq!(ascending.len(), SENDS * MESSAGES_PER_SEND);
    assert!(
        ascending
            .iter()
            .all(|message| message["ts_ms"] == FROZEN_MS)
    );
    assert!(
        seqs(&ascending).windows(2).all(|pair| pair[0] < pair[1]),
        "ascending pages are not strictly ordered by seq"
    );
    let unique: HashSet<&str> = ids(&ascending).into_iter().collect();
    assert_eq!(unique.len(), ascending.len(), "a message was repeated");
    let sent: HashSet<String> = (0..SENDS).map(|i| format!("message {i}")).collect();
    let operator_texts: HashSet<String> = ascending
        .iter()
        .filter(|message| message["role"] == "operator")
        .map(|message| message["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(operator_texts, sent, "an operator message was lost");

    let descending = app.all_pages(&path, &[("order", "desc")], 7).await;

    assert!(
        seqs(&descending).windows(2).all(|pair| pair[0] > pair[1]),
        "descending pages are not strictly ordered by seq"
    );
    let mut reversed = ids(&ascending);
    reversed.reverse();
    assert_eq!(ids(&descending), reversed);

    let default_page = app.page(&path, &[]).await;
    assert_eq!(default_page.items.len(), 50);
    assert!(default_page.next_cursor.is_some());
    let largest_page = app.page(&path, &[("limit", "200")]).await;
    assert_eq!(largest_page.items.len(), 200);
}

#[tokio::test]
async fn malformed_paging_parameters_are_rejected() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.send_text(CHAT, &format!("message {i}")).await;
    }
    let path = messages_path(CHAT);
    let cursor = app
        .page(&path, &[("limit", "2")])
        .await
        .next_cursor
        .expect("a cursor to the rest of the history");
    assert!(cursor.len() > 8, "implausibly short cursor {cursor:?}");
    let longer = format!("{cursor}AAAA");
    let shorter = &cursor[..cursor.len() - 4];
    let long_garbage = "A".repeat(2000);

    for bad_cursor in ["!!!", " ", "=", "aGVsbG8", &longer, shorter, &long_garbage] {
        let response = app
            .get_with_query(&path, &app.admin_key, &[("cursor", bad_cursor)])
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    for bad_limit in ["0", "201", "-1", "ten"] {
        let response = app
            .get_with_query(&path, &app.admin_key, &[("limit", bad_limit)])
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let sideways = app
        .get_with_query(&path, &app.admin_key, &[("order", "sideways")])
        .await;
    assert_error(sideways, StatusCode::BAD_REQUEST, "invalid_request").await;

    let rest = app
        .page(&path, &[("limit", "2"), ("cursor", &cursor)])
        .await;
    assert_eq!(rest.items.len(), 2);
}

/// Pages through the chat 5 messages at a time in `order`, sending a new message after each page.
async fn page_while_sending(app: &TestApp, order: &str) -> Vec<Value> {
    const MAX_ARRIVALS: usize = 100;
    let path = messages_path(CHAT);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for arrival in 0..MAX_ARRIVALS {
        let mut query = vec![("order", order), ("limit", "5")];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let page = app.page(&path, &query).await;
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
        app.send_text(CHAT, &format!("arrived during {order} paging {arrival}"))
            .await;
    }
    panic!("paging {order} while sending did not end after {MAX_ARRIVALS} arrivals");
}

#[tokio::test]
async fn paging_while_messages_arrive_never_skips_or_repeats() {
    let frozen = FROZEN_MS.to_string();
    let app = spawn_app_with(&[("SOFIIA_FROZEN_CLOCK_MS", &frozen)]).await;
    for i in 0..12 {
        app.send_text(CHAT, &format!("message {i}")).await;
    }

    // Arrivals sort after the cursor, so ascending paging reaches every one of them.
    let ascending = page_while_sending(&app, "asc").await;
    let history = app.history(CHAT).await;
    assert_eq!(ids(&ascending), ids(&history));

    // Arrivals sort before the first page, so descending paging sees exactly the snapshot.
    let descending = page_while_sending(&app, "desc").await;
    let mut snapshot = ids(&history);
    snapshot.reverse();
    assert_eq!(ids(&descending), snapshot);
}
