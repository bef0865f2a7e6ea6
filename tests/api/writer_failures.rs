//! How the group-commit writer fails (SPEC §3): one operation's data error fails that operation
//! alone, never its batch-mates; a failing disk stops the service so its manager restarts it.

use std::sync::Arc;
use std::time::Duration;

use redb::{Database, TableDefinition};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{assert_error, send, spawn_app, spawn_app_with};

const CHATS_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("chats");
const ADMIN_TOKEN: &str = "writer-failures-admin-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_decode_fails_only_the_operation_reading_it() {
    let app = spawn_app().await;
    let created = app
        .create_chat(&app.admin_key, &json!({ "id": "damaged" }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let stopped = app.stop().await;
    {
        let db = Database::open(stopped.data_dir().join("sofiia.redb")).expect("open the file");
        let write = db.begin_write().expect("a write transaction");
        write
            .open_table(CHATS_TABLE)
            .expect("the chats table")
            .insert("damaged", [0xff_u8, 0xff, 0xff].as_slice())
            .expect("damage the record");
        write.commit().expect("commit the damage");
    }
    let app = Arc::new(stopped.start(&[]).await);

    // Updates of the damaged chat race sends to healthy ones, so they share batches.
    let mut requests = JoinSet::new();
    for n in 0..200 {
        let app = Arc::clone(&app);
        requests.spawn(async move {
            if n % 10 == 0 {
                let patch = app
                    .request(Method::PATCH, "/api/chats/damaged")
                    .bearer_auth(&app.admin_key)
                    .json(&json!({ "title": "never" }));
                ("patch", send(patch).await.status())
            } else {
                let body = json!({ "text": format!("message {n}") });
                let chat = format!("healthy-{}", n % 7);
                (
                    "send",
                    app.post_send(&chat, &app.admin_key, None, &body)
                        .await
                        .status(),
                )
            }
        });
    }
    let outcomes = requests.join_all().await;

    for (kind, status) in &outcomes {
        match *kind {
            "send" => assert_eq!(
                *status,
                StatusCode::OK,
                "a send failed with a damaged batch-mate"
            ),
            _ => assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
    let mut stored = 0;
    for chat in 0..7 {
        stored += app.history(&format!("healthy-{chat}")).await.len();
    }
    assert_eq!(stored, 180 * 2, "every send and its notice are stored");
    let patch = send(
        app.request(Method::PATCH, "/api/chats/damaged")
            .bearer_auth(&app.admin_key)
            .json(&json!({ "title": "never" })),
    )
    .await;
    assert_error(patch, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
}

#[tokio::test]
async fn a_storage_failure_is_refused_503_and_the_service_exits_non_zero() {
    // Two commits pass: the start-up record and one send; the next commit fails as a failing
    // disk would.
    let mut app = spawn_app_with(&[
        ("SOFIIA_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SOFIIA_FAILPOINTS", "store.io=after:2"),
    ])
    .await;
    let body = json!({ "text": "before" });
    let first = app.post_send("disk", ADMIN_TOKEN, None, &body).await;
    assert_eq!(first.status(), StatusCode::OK);

    let failed = app.post_send("disk", ADMIN_TOKEN, None, &body).await;
    assert_error(failed, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    let status = app.wait_for_exit(Duration::from_secs(10)).await;
    assert!(
        !status.success(),
        "exit status after a storage failure: {status}"
    );
    assert!(
        app.logs().contains("\"event\":\"storage_failed\""),
        "the log says why: {}",
        app.logs()
    );
}
