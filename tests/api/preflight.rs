//! `sofiia-console preflight`: a healthy stopped installation passes every check, and each
//! broken condition fails with a line that names it; `--strict` fails on a warning; `--json`
//! is one parseable document; a running service is checked through its API.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use redb::{Database, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::file_layout::audit_events;
use crate::helpers::{StoppedApp, spawn_app};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHECKS: [&str; 13] = [
    "config",
    "data-dir",
    "disk",
    "admin-credential",
    "key-files",
    "listen",
    "database",
    "schema",
    "audit-chain",
    "retention",
    "agent-nodes",
    "cors",
    "metrics",
];

/// A loopback address nothing listens on (a port just released).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").to_string()
}

/// A stopped service that recorded a few sends.
async fn stopped() -> StoppedApp {
    let app = spawn_app().await;
    for i in 0..4 {
        app.send_text("preflight", &format!("message {i}")).await;
    }
    app.stop().await
}

/// Runs preflight on the stopped service's data dir, listening (as far as it knows) on a free
/// address, with `env` on top.
async fn preflight(app: &StoppedApp, flags: &[&str], env: &[(&str, &str)]) -> Output {
    let listen = free_address();
    let mut all = vec![("SOFIIA_LISTEN", listen.as_str())];
    all.extend_from_slice(env);
    let mut args = vec!["preflight"];
    args.extend_from_slice(flags);
    app.run_cli_with(&args, &all).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The line of check `name`, which must exist.
fn line<'o>(output: &'o str, name: &str) -> &'o str {
    output
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{output}"))
}

/// Asserts the run failed and the check `name` failed with a detail holding each of `words`.
fn assert_fails(output: &Output, name: &str, words: &[&str]) {
    let text = stdout(output);
    assert!(!output.status.success(), "preflight passed:\n{text}");
    let found = line(&text, name);
    assert!(found.starts_with("FAIL  "), "{found}\n{text}");
    for word in words {
        assert!(found.contains(word), "{word:?} not in {found:?}");
    }
}

#[tokio::test]
async fn a_healthy_stopped_installation_passes_every_check_even_strictly() {
    let app = stopped().await;

    let output = preflight(&app, &["--strict"], &[]).await;

    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in CHECKS {
        assert!(line(&text, name).starts_with("PASS  "), "{text}");
    }
    assert_eq!(text.lines().count(), CHECKS.len(), "{text}");
}

#[tokio::test]
async fn preflight_changes_nothing_in_the_database_file() {
    let app = stopped().await;
    let file = app.data_dir().join("sofiia.redb");
    let before = std::fs::read(&file).expect("the database");

    let output = preflight(&app, &[], &[]).await;

    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        std::fs::read(&file).expect("the database") == before,
        "the file changed"
    );
}

#[tokio::test]
async fn a_group_or_world_readable_key_file_fails() {
    let app = stopped().await;
    let key = app.data_dir().join("admin.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let output = preflight(&app, &[], &[]).await;

    assert_fails(&output, "key-files", &["admin.key", "0644", "chmod 0600"]);
}

#[tokio::test]
async fn a_data_dir_its_owner_cannot_write_fails() {
    let app = stopped().await;
    let dir = app.data_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).expect("chmod");

    let output = preflight(&app, &[], &[]).await;

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod back");
    assert_fails(&output, "data-dir", &["0500", "not writable"]);
}

#[tokio::test]
async fn a_data_dir_open_to_others_fails() {
    let app = stopped().await;
    let dir = app.data_dir();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let output = preflight(&app, &[], &[]).await;

    assert_fails(&output, "data-dir", &["0755", "chmod 0700"]);
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_fails() {
    let app = stopped().await;
    {
        let db = Database::open(app.data_dir().join("sofiia.redb")).expect("the database");
        let write = db.begin_write().expect("a write transaction");
        write
            .open_table(META)
            .expect("meta")
            .insert("schema_version", 99u32.to_le_bytes().as_slice())
            .expect("a newer version");
        write.commit().expect("commit");
    }

    let output = preflight(&app, &[], &[]).await;

    assert_fails(&output, "schema", &["version 99", "newer"]);
}

#[tokio::test]
async fn a_tampered_audit_chain_fails_at_the_changed_event() {
    let app = stopped().await;
    change_event(&app.data_dir(), 3);

    let output = preflight(&app, &[], &[]).await;

    assert_fails(&output, "audit-chain", &["NOT valid at seq 3"]);
    assert!(line(&stdout(&output), "database").starts_with("PASS  "));
}

/// Flips a bit of the stored event `seq`, as someone editing the file with redb would.
fn change_event(data_dir: &Path, seq: u64) {
    let db = Database::open(data_dir.join("sofiia.redb")).expect("the database");
    let write = db.begin_write().expect("a write transaction");
    {
        let name = audit_events(seq);
        let definition: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
        let mut table = write.open_table(definition).expect("audit");
        let mut stored = table
            .get(seq)
            .expect("read the event")
            .expect("the event is stored")
            .value()
            .to_vec();
        *stored.last_mut().expect("a non-empty record") ^= 0x01;
        table.insert(seq, stored.as_slice()).expect("store it");
    }
    write.commit().expect("commit");
}

/// The configuration refuses a wildcard origin, and the CORS check names it too: both lines
/// fail, and the other checks still run on the values given.
#[tokio::test]
async fn a_wildcard_cors_origin_fails() {
    let app = stopped().await;

    let output = preflight(&app, &[], &[("SOFIIA_CORS_ORIGINS", r#"["*"]"#)]).await;

    assert_fails(&output, "config", &["cors_origins"]);
    assert_fails(&output, "cors", &["wildcard", "\"*\""]);
    assert!(line(&stdout(&output), "audit-chain").starts_with("PASS  "));
}

#[tokio::test]
async fn an_unreachable_agent_node_warns_and_fails_only_strictly() {
    let app = stopped().await;
    let nodes = format!(
        r#"[{{ name = "noda1", url = "http://{}/v1", model = "m" }}]"#,
        free_address()
    );
    let env = [("SOFIIA_AGENTS__NODES", nodes.as_str())];

    let lenient = preflight(&app, &[], &env).await;
    let strict = preflight(&app, &["--strict"], &env).await;

    let text = stdout(&lenient);
    assert!(lenient.status.success(), "{text}");
    let found = line(&text, "agent-nodes");
    assert!(
        found.starts_with("WARN  ") && found.contains("noda1"),
        "{found}"
    );
    assert!(!strict.status.success(), "{}", stdout(&strict));
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("--strict"),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
}

#[tokio::test]
async fn json_output_is_one_document_with_every_check() {
    let app = stopped().await;
    let key = app.data_dir().join("admin.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    let output = preflight(&app, &["--json"], &[]).await;

    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&output)));
    assert_eq!(report["result"], "FAIL", "{report}");
    let checks = report["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, CHECKS, "{report}");
    for check in checks {
        assert!(check["detail"].is_string(), "{check}");
    }
    let key_files = checks
        .iter()
        .find(|c| c["name"] == "key-files")
        .expect("key-files");
    assert_eq!(key_files["status"], "FAIL", "{report}");
}

/// The file is the running service's: its database, schema and chain are answered through its
/// API, and the address it holds is only a warning.
#[tokio::test]
async fn a_running_service_is_checked_through_its_api() {
    let app = spawn_app().await;
    app.send_text("preflight", "hello").await;

    let listen = app.socket_addr();
    let output = app
        .run_cli_with(&["preflight"], &[("SOFIIA_LISTEN", listen.as_str())])
        .await;

    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(line(&text, "listen").starts_with("WARN  "), "{text}");
    let database = line(&text, "database");
    assert!(
        database.starts_with("WARN  ") && database.contains("running service"),
        "{text}"
    );
    assert!(line(&text, "schema").starts_with("PASS  "), "{text}");
    let chain = line(&text, "audit-chain");
    assert!(
        chain.starts_with("PASS  ") && chain.contains("valid:"),
        "{text}"
    );
}

/// `ops/preflight.sh` runs the binary named by `SOFIIA_BIN` (a variable the binary must not
/// mistake for a setting) and adds `--strict` under `STRICT=1`.
#[tokio::test]
async fn the_wrapper_script_fails_on_a_warning_only_under_strict() {
    let app = stopped().await;
    let nodes = format!(
        r#"[{{ name = "noda1", url = "http://{}/v1", model = "m" }}]"#,
        free_address()
    );
    let listen = free_address();
    let data_dir = app.data_dir();
    let run = |strict: &'static str| {
        tokio::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/preflight.sh"))
            .args(["--config", "/dev/null", "--data-dir"])
            .arg(&data_dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SOFIIA_BIN", env!("CARGO_BIN_EXE_sofiia-console"))
            .env("SOFIIA_LISTEN", &listen)
            .env("SOFIIA_AGENTS__NODES", &nodes)
            .env("STRICT", strict)
            .output()
    };

    let lenient = run("0").await.expect("the script ran");
    let strict = run("1").await.expect("the script ran");

    let text = stdout(&lenient);
    assert!(lenient.status.success(), "{text}");
    assert!(line(&text, "agent-nodes").starts_with("WARN  "), "{text}");
    assert!(line(&text, "config").starts_with("PASS  "), "{text}");
    assert!(!strict.status.success(), "{}", stdout(&strict));
}
