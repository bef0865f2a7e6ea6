//! Process lifecycle: start-up guards (schema version, configuration) and graceful shutdown.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition, TableHandle, WriteTransaction};
use reqwest::StatusCode;

use crate::file_layout::unpartition_audit;
use crate::helpers::{StoppedApp, expect_json, serve_until_exit, spawn_app};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SCHEMA_VERSION: &str = "schema_version";
const CURRENT_SCHEMA_VERSION: u32 = 6;

fn stored_schema_version(db: &Database) -> u32 {
    let read = db.begin_read().expect("read transaction");
    let meta = read.open_table(META).expect("meta table");
    let version = meta
        .get(SCHEMA_VERSION)
        .expect("read schema_version")
        .expect("schema_version is stored");
    u32::from_le_bytes(version.value().try_into().expect("a 4-byte u32"))
}

fn store_schema_version(db: &Database, version: u32) {
    let write = db.begin_write().expect("write transaction");
    write
        .open_table(META)
        .expect("meta table")
        .insert(SCHEMA_VERSION, version.to_le_bytes().as_slice())
        .expect("write schema_version");
    write.commit().expect("commit");
}

/// SIGTERM as soon as the server reports it is listening: it must already shut down gracefully.
#[tokio::test]
async fn sigterm_stops_the_server_with_exit_code_zero() {
    let mut app = spawn_app().await;

    let status = app.terminate().await;

    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[tokio::test]
async fn database_written_by_a_newer_version_is_refused() {
    let mut app = spawn_app().await;
    expect_json(app.get_anonymous("/api/health").await, StatusCode::OK).await;
    let status = app.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let db_path = app.data_dir().join("sofiia.redb");
    let newer = CURRENT_SCHEMA_VERSION + 1;
    {
        let db = Database::open(&db_path).expect("open the stopped server's database");
        assert_eq!(stored_schema_version(&db), CURRENT_SCHEMA_VERSION);
        store_schema_version(&db, newer);
    }

    let output = serve_until_exit(&app.data_dir(), &["--listen", "127.0.0.1:0"], &[]).await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started on a newer schema; stderr: {stderr}"
    );
    assert!(stderr.contains("newer"), "stderr: {stderr}");
    assert!(stderr.contains(&newer.to_string()), "stderr: {stderr}");
    let db = Database::open(&db_path).expect("reopen the database");
    assert_eq!(
        stored_schema_version(&db),
        newer,
        "the refused start rewrote the version"
    );
}

/// Asserts that the migrated trail answers filtered queries from rebuilt indexes, verifies,
/// and that the tables of the old layout are gone.
async fn assert_audit_migrated(app: &crate::helpers::TestApp, events_before: usize) {
    let found = app.page("/api/audit", &[("target", "chat:kept")]).await;
    assert_eq!(
        found.items.len(),
        1,
        "the rebuilt index finds the chat's event"
    );
    assert_eq!(found.items[0]["action"], "chat.create");
    let by_action = app.page("/api/audit", &[("action", "service.start")]).await;
    assert_eq!(
        by_action.items.len(),
        2,
        "both starts, the first from the rebuilt index"
    );
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert!(
        verified["total_entries"].as_u64() > Some(events_before as u64),
        "{verified}"
    );
}

/// The tables of schemas 1 to 5 are gone from the migrated file.
fn assert_old_layout_dropped(db_path: &Path) {
    let db = Database::open(db_path).expect("reopen the database");
    assert_eq!(stored_schema_version(&db), CURRENT_SCHEMA_VERSION);
    let txn = db.begin_read().expect("read");
    let names: Vec<String> = txn
        .list_tables()
        .expect("tables")
        .map(|t| t.name().to_owned())
        .collect();
    for old in [
        "audit",
        "audit_by_target",
        "audit_actor_index",
        "audit_action_index",
        "audit_target_index",
        "audit_outcome_index",
    ] {
        assert!(
            !names.iter().any(|n| n == old),
            "{old} is still there: {names:?}"
        );
    }
}

/// A stopped server's file holding the chat `kept`, rewritten as schema `version` kept it: the
/// version stamped, the audit trail in one table, and whatever else `change` does. Also returns
/// the admin key and how many events there were.
async fn written_by_schema(
    version: u32,
    change: impl FnOnce(&WriteTransaction),
) -> (StoppedApp, PathBuf, String, usize) {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let body = serde_json::json!({"id": "kept"});
    expect_json(app.create_chat(&key, &body).await, StatusCode::CREATED).await;
    let stopped = app.stop().await;
    let db_path = stopped.data_dir().join("sofiia.redb");
    let db = Database::open(&db_path).expect("open the stopped server's database");
    store_schema_version(&db, version);
    let txn = db.begin_write().expect("write");
    let events = unpartition_audit(&txn);
    change(&txn);
    txn.commit().expect("commit");
    (stopped, db_path, key, events)
}

/// A file of the first schema (no retention job log, all events in one table, audit indexes
/// keyed `(value, seq)`) is brought forward at start-up, its data kept and its audit trail moved
/// into partitions with indexes built from the events.
#[tokio::test]
async fn database_of_the_first_schema_is_migrated_forward() {
    let (stopped, db_path, key, events_before) = written_by_schema(1, |txn| {
        let runs: TableDefinition<u64, &[u8]> = TableDefinition::new("retention_runs");
        assert!(txn.delete_table(runs).expect("delete"), "the table existed");
        // The first schema's index, holding what the version-1 binary wrote for the events.
        let legacy: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_target");
        txn.open_table(legacy)
            .expect("legacy table")
            .insert(("chat:kept", 2), ())
            .expect("insert");
    })
    .await;

    let app = stopped.start(&[]).await;

    expect_json(app.get("/api/chats/kept", &key).await, StatusCode::OK).await;
    let runs = expect_json(
        app.get("/api/admin/retention/runs", &key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(runs["items"], serde_json::json!([]));
    assert_audit_migrated(&app, events_before).await;
    let stopped = app.stop().await;
    assert_old_layout_dropped(&db_path);
    drop(stopped);
}

/// A file of schema 5 (all events in one table, indexes keyed `(seq >> 14, value, seq)`) has
/// its audit trail moved into partitions at start-up.
#[tokio::test]
async fn database_of_schema_five_has_its_audit_trail_partitioned() {
    let (stopped, db_path, _, events_before) = written_by_schema(5, |txn| {
        // Schema 5's bucketed index, with an entry the migration must not carry over.
        let bucketed: TableDefinition<(u64, &str, u64), ()> =
            TableDefinition::new("audit_action_index");
        txn.open_table(bucketed)
            .expect("bucketed table")
            .insert((0, "service.start", 3), ())
            .expect("insert");
    })
    .await;

    let app = stopped.start(&[]).await;

    assert_audit_migrated(&app, events_before).await;
    let stopped = app.stop().await;
    assert_old_layout_dropped(&db_path);
    drop(stopped);
}

/// Runs `serve` with `env` and, when given, a config file holding `toml`; asserts that it refused
/// to start and returns its stderr in lower case.
async fn refused_start(env: &[(&str, &str)], toml: Option<&str>, listen_flag: bool) -> String {
    let root = tempfile::tempdir().expect("failed to create a temporary directory");
    let config_path = root.path().join("config.toml");
    let mut args = Vec::new();
    if listen_flag {
        args.extend(["--listen", "127.0.0.1:0"]);
    }
    if let Some(toml) = toml {
        std::fs::write(&config_path, toml).expect("write config.toml");
        args.extend(["--config", config_path.to_str().expect("UTF-8 temp path")]);
    }

    let output = serve_until_exit(&root.path().join("data"), &args, env).await;

    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(
        !output.status.success(),
        "serve accepted the configuration; stderr: {stderr}"
    );
    stderr
}

#[tokio::test]
async fn invalid_listen_address_from_the_environment_is_refused() {
    let stderr = refused_start(&[("SOFIIA_LISTEN", "notanaddress")], None, false).await;

    assert!(stderr.contains("listen"), "stderr: {stderr}");
}

#[tokio::test]
async fn unknown_environment_setting_is_refused() {
    let stderr = refused_start(&[("SOFIIA_NOT_A_SETTING", "1")], None, true).await;

    assert!(stderr.contains("not_a_setting"), "stderr: {stderr}");
}

#[tokio::test]
async fn invalid_environment_value_is_refused() {
    let stderr = refused_start(&[("SOFIIA_IDEMPOTENCY__TTL_HOURS", "soon")], None, true).await;

    assert!(stderr.contains("ttl_hours"), "stderr: {stderr}");
}

#[tokio::test]
async fn unknown_config_file_key_is_refused() {
    let stderr = refused_start(&[], Some("bogus_key = true\n"), true).await;

    assert!(stderr.contains("bogus_key"), "stderr: {stderr}");
}

#[tokio::test]
async fn invalid_config_file_value_is_refused() {
    let toml = "[idempotency]\nwait_ms = \"long\"\n";

    let stderr = refused_start(&[], Some(toml), true).await;

    assert!(stderr.contains("wait_ms"), "stderr: {stderr}");
}

#[tokio::test]
async fn a_short_or_empty_admin_token_is_refused() {
    for token in ["", "short"] {
        let stderr = refused_start(&[("SOFIIA_ADMIN_TOKEN", token)], None, true).await;
        assert!(stderr.contains("admin_token"), "stderr: {stderr}");
        assert!(
            token.is_empty() || !stderr.contains(token),
            "the token is not echoed: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_value_refused_after_merging_names_the_variable_that_set_it() {
    for (name, value) in [
        ("SOFIIA_ADMIN_TOKEN", "short"),
        ("SOFIIA_HTTP__WRITE_TIMEOUT_MS", "5"),
    ] {
        let stderr = refused_start(&[(name, value)], None, true).await;
        let source = format!("set by environment variable {}", name.to_lowercase());
        assert!(stderr.contains(&source), "stderr: {stderr}");
        assert!(!stderr.contains("set by configuration"), "stderr: {stderr}");
    }
}

/// `cargo run` and `cargo test` export the build script's variables to the binary they run; none
/// of them may be mistaken for configuration (the README's `cargo run --release -- serve`).
#[tokio::test]
async fn serve_starts_in_the_environment_cargo_gives_it() {
    use tokio::io::AsyncBufReadExt;
    let root = tempfile::tempdir().expect("a temporary directory");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sofiia-console"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/dev/null",
            "--data-dir",
        ])
        .arg(root.path().join("data"))
        .env("BUILD_GIT_SHA", "exported-by-cargo")
        .env("BUILD_TIMESTAMP", "exported-by-cargo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sofiia-console");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listening = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"msg\":\"listening\"") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !listening {
        let output = child.wait_with_output().await.expect("wait");
        panic!(
            "serve did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
