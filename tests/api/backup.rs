//! Online backups: taken while sends go on, a backup holds every send acknowledged before it was
//! asked for, its audit chain verifies, and only the last `backup.keep` are kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::file_layout::{audit_events, unpartition_audit};
use crate::helpers::{
    StoppedApp, TestApp, expect_json, run_binary, spawn_app, spawn_app_on_database, spawn_app_with,
};

const RESTORED_ADMIN: &str = "restored-admin-token-0123456789";

/// A service started on a copy of the backup `file`, whose audit chain verifies.
async fn restored_and_verified(file: &std::path::Path) -> TestApp {
    let restored = spawn_app_on_database(file, &[("SOFIIA_ADMIN_TOKEN", RESTORED_ADMIN)]).await;
    let verified = expect_json(
        restored.get("/api/audit/verify", RESTORED_ADMIN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    restored
}

async fn backup(app: &TestApp) -> Value {
    expect_json(
        app.post_json("/api/admin/backup", &app.admin_key, &json!({}))
            .await,
        StatusCode::CREATED,
    )
    .await
}

/// Every message id in `chat`, paging through its history.
async fn message_ids(app: &TestApp, chat: &str, key: &str) -> Vec<String> {
    let path = format!("/api/chats/{chat}/messages");
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "200".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = expect_json(app.get_with_query(&path, key, &query).await, StatusCode::OK).await;
        for item in page["items"].as_array().expect("items") {
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_send_load_holds_every_acknowledged_send_and_verifies() {
    let app = Arc::new(spawn_app().await);
    let sending = Arc::new(AtomicBool::new(true));
    let senders: Vec<_> = (0..4)
        .map(|task| {
            let (app, sending) = (app.clone(), sending.clone());
            tokio::spawn(async move {
                // (message id, acknowledged before the backup was asked for)
                let mut acknowledged = Vec::new();
                let mut n = 0;
                while sending.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("backup-{task}-{n}");
                    let body = json!({ "text": format!("message {n}") });
                    let response = app
                        .post_send(&format!("load-{task}"), &app.admin_key, Some(&key), &body)
                        .await;
                    assert_eq!(response.status(), StatusCode::OK);
                    let sent: Value = response.json().await.expect("JSON");
                    acknowledged.push(sent["message"]["id"].as_str().expect("id").to_owned());
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = stored_sends(&app).await;
    let created = backup(&app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sending.store(false, Ordering::Relaxed);
    let mut before_backup = Vec::new();
    for (task, sender) in senders.into_iter().enumerate() {
        let acknowledged = sender.await.expect("sender");
        assert!(
            acknowledged.len() > counts[task],
            "sends went on during the backup"
        );
        before_backup.push(acknowledged[..counts[task]].to_vec());
    }

    let file = app
        .data_dir()
        .join("backups")
        .join(created["file"].as_str().expect("file"));
    assert_eq!(
        std::fs::metadata(&file).expect("the backup file").len(),
        created["bytes"].as_u64().expect("bytes")
    );
    let listed = expect_json(
        app.get("/api/admin/backups", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["items"][0]["file"], created["file"], "{listed}");
    let recorded = app.page("/api/audit", &[("action", "backup.create")]).await;
    assert_eq!(recorded.items.len(), 1);

    let restored = restored_and_verified(&file).await;
    for (task, acknowledged) in before_backup.iter().enumerate() {
        let kept = message_ids(&restored, &format!("load-{task}"), RESTORED_ADMIN).await;
        for id in acknowledged {
            assert!(
                kept.contains(id),
                "acknowledged send {id} is not in the backup"
            );
        }
    }
}

/// How many sends of each sender are stored now, read from the chats themselves (each stored
/// send is two messages: the operator's and the degraded reply). A sender sends one at a time, so
/// its first that many acknowledged sends were committed before this read.
async fn stored_sends(app: &TestApp) -> Vec<usize> {
    let mut counts = Vec::new();
    for task in 0..4 {
        let ids = message_ids(app, &format!("load-{task}"), &app.admin_key).await;
        counts.push(ids.len() / 2);
    }
    counts
}

#[tokio::test]
async fn only_the_last_backups_are_kept() {
    let app = spawn_app_with(&[("SOFIIA_BACKUP__KEEP", "2")]).await;
    let first = backup(&app).await;
    let _second = backup(&app).await;
    let third = backup(&app).await;
    assert_eq!(third["deleted"], json!([first["file"]]), "{third}");
    let listed = expect_json(
        app.get("/api/admin/backups", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        listed["items"].as_array().expect("items").len(),
        2,
        "{listed}"
    );
    assert_eq!(listed["items"][0]["file"], third["file"]);
    let operator = app.create_api_key("operator").await;
    let refused = app
        .post_json("/api/admin/backup", &operator.secret, &json!({}))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

fn stdout_json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn the_cli_takes_backups_through_the_service_or_on_the_stopped_file() {
    let app = spawn_app().await;
    let url = app.address.to_string();
    let through = app.run_cli(&["backup", "create", "--url", &url]).await;
    assert!(String::from_utf8_lossy(&through.stderr).contains("through the running service"));
    let through = stdout_json(&through);
    let stopped = app.stop().await;

    let direct = stopped.run_cli(&["backup", "create"]).await;
    assert!(String::from_utf8_lossy(&direct.stderr).contains("directly on"));
    let direct = stdout_json(&direct);
    assert!(direct["rows"]["audit"].as_u64() > Some(0), "{direct}");
    let listed = stdout_json(&stopped.run_cli(&["backup", "list"]).await);
    let files: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|b| b["file"].as_str().expect("file"))
        .collect();
    let newest_first = [
        direct["file"].as_str().expect("file"),
        through["file"].as_str().expect("file"),
    ];
    assert_eq!(files, newest_first, "{listed}");

    let file = stopped.data_dir().join("backups").join(newest_first[0]);
    restored_and_verified(&file).await;
}

/// The backup file `created` names, in `data_dir`'s backup directory.
fn backup_file(data_dir: &std::path::Path, created: &Value) -> std::path::PathBuf {
    data_dir
        .join("backups")
        .join(created["file"].as_str().expect("file"))
}

/// A stopped service whose chat `chat` holds `text`, and the backup it took of that.
async fn stopped_with_backup(chat: &str, text: &str) -> (StoppedApp, std::path::PathBuf) {
    let app = spawn_app().await;
    app.send_text(chat, text).await;
    let created = backup(&app).await;
    let stopped = app.stop().await;
    let file = backup_file(&stopped.data_dir(), &created);
    (stopped, file)
}

/// Changes the backup `file` in one write transaction, as someone with redb could.
fn change_backup(file: &std::path::Path, change: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(file).expect("open the backup");
    let write = db.begin_write().expect("write transaction");
    change(&write);
    write.commit().expect("commit");
}

fn texts(history: &[Value]) -> Vec<&str> {
    history.iter().filter_map(|m| m["text"].as_str()).collect()
}

#[tokio::test]
async fn a_restore_puts_the_checked_backup_in_place_keeps_the_old_file_and_is_audited() {
    let app = spawn_app().await;
    app.send_text("restore-chat", "sent before the backup")
        .await;
    let created = backup(&app).await;
    app.send_text("restore-chat", "sent after the backup").await;
    let stopped = app.stop().await;
    let file = backup_file(&stopped.data_dir(), &created);

    let verified =
        stdout_json(&run_binary(&["backup", "verify", file.to_str().expect("path")]).await);
    assert_eq!(verified["audit"]["valid"], true, "{verified}");
    assert_eq!(verified["rows"]["messages"], 2, "{verified}");

    let restored = stdout_json(
        &stopped
            .run_cli(&["backup", "restore", file.to_str().expect("path")])
            .await,
    );
    let previous = std::path::PathBuf::from(restored["previous"].as_str().expect("previous"));
    assert!(previous.starts_with(stopped.data_dir()), "{restored}");
    let kept =
        stdout_json(&run_binary(&["backup", "verify", previous.to_str().expect("path")]).await);
    assert_eq!(
        kept["rows"]["messages"], 4,
        "the old file is kept whole: {kept}"
    );

    let app = stopped.start(&[]).await;
    let history = app.history("restore-chat").await;
    let texts = texts(&history);
    assert!(texts.contains(&"sent before the backup"), "{texts:?}");
    assert!(!texts.contains(&"sent after the backup"), "{texts:?}");
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    let recorded = app
        .page("/api/audit", &[("action", "backup.restore")])
        .await;
    assert_eq!(recorded.items.len(), 1);
    assert_eq!(
        recorded.items[0]["details"]["previous"],
        restored["previous"]
    );
}

#[tokio::test]
async fn a_restore_refuses_while_the_service_runs() {
    let app = spawn_app().await;
    let created = backup(&app).await;
    let file = backup_file(&app.data_dir(), &created);
    let refused = app
        .run_cli(&["backup", "restore", file.to_str().expect("path")])
        .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in use by the running service"), "{stderr}");
    app.send_text("still-serving", "the service is untouched")
        .await;
    let files: Vec<_> = std::fs::read_dir(app.data_dir())
        .expect("data dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .filter(|name| name.contains("restor"))
        .collect();
    assert_eq!(files, Vec::<String>::new(), "nothing was swapped");
}

#[tokio::test]
async fn a_damaged_backup_fails_its_check_and_is_never_restored() {
    let (stopped, file) = stopped_with_backup("damaged", "a marker the damage will hit").await;
    let mut bytes = std::fs::read(&file).expect("the backup");
    let marker = b"a marker the damage will hit";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the message is in the backup");
    bytes[at] ^= 0x20;
    std::fs::write(&file, bytes).expect("damage the backup");

    let checked = run_binary(&["backup", "verify", file.to_str().expect("path")]).await;
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("is damaged"), "{stderr}");

    let refused = stopped
        .run_cli(&["backup", "restore", file.to_str().expect("path")])
        .await;
    assert!(!refused.status.success());
    let app = stopped.start(&[]).await;
    let history = app.history("damaged").await;
    assert!(texts(&history).contains(&"a marker the damage will hit"));
}

#[tokio::test]
async fn a_backup_whose_chain_was_cut_fails_its_check_and_is_never_restored() {
    let (stopped, file) = stopped_with_backup("cut", "one").await;
    change_backup(&file, |write| {
        write
            .open_table(redb::TableDefinition::<u64, &[u8]>::new(&audit_events(2)))
            .expect("audit table")
            .remove(2)
            .expect("remove an event");
    });

    let checked = run_binary(&["backup", "verify", file.to_str().expect("path")]).await;
    assert!(!checked.status.success());
    let report: Value = serde_json::from_slice(&checked.stdout).expect("a JSON report");
    assert_eq!(report["audit"]["valid"], false, "{report}");
    assert_eq!(report["audit"]["first_invalid_seq"], 2, "{report}");
    let refused = stopped
        .run_cli(&["backup", "restore", file.to_str().expect("path")])
        .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("does not verify"), "{stderr}");
}

/// A backup taken by a release of schema 5 (the audit trail in one table) is checked as the
/// service will read it — migrated, in memory, the file untouched — and restored; the service
/// then migrates it and its chain verifies.
#[tokio::test]
async fn a_backup_of_an_older_schema_verifies_and_restores() {
    let (stopped, file) = stopped_with_backup("older", "sent before the backup").await;
    change_backup(&file, |write| {
        write
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .expect("meta")
            .insert("schema_version", 5u32.to_le_bytes().as_slice())
            .expect("stamp schema 5");
        unpartition_audit(write);
    });
    let before = std::fs::read(&file).expect("the backup");

    let verified =
        stdout_json(&run_binary(&["backup", "verify", file.to_str().expect("path")]).await);

    assert_eq!(verified["schema_version"], 5, "{verified}");
    assert_eq!(verified["audit"]["valid"], true, "{verified}");
    assert!(
        std::fs::read(&file).expect("the backup") == before,
        "checking changed the file"
    );
    stdout_json(
        &stopped
            .run_cli(&["backup", "restore", file.to_str().expect("path")])
            .await,
    );
    let app = stopped.start(&[]).await;
    let history = app.history("older").await;
    assert!(texts(&history).contains(&"sent before the backup"));
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
}
