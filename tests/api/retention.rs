//! Retention and compaction (SPEC §10, the audit checkpoint of §9). Data is aged with the
//! injected clock: written at `T0`, judged at `T1`, a hundred days later.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    IDEMPOTENCY_REPLAYED, StoppedApp, TestApp, assert_error, eventually, expect_json,
    python_verdict, send, spawn_app_with,
};

const DAY: u64 = 24 * 60 * 60 * 1000;
/// 2027-01-15T10:00:00Z.
const T0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % DAY + 10 * 60 * 60 * 1000;
const T1: u64 = T0 + 100 * DAY;
const AUDIT_CUTOFF: u64 = T1 - 90 * DAY;
const RUN: &str = "/api/admin/retention/run";

fn frozen_at(ms: u64) -> Vec<(&'static str, String)> {
    vec![("SOFIIA_FROZEN_CLOCK_MS", ms.to_string())]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What the old phase left that the test checks afterwards.
struct Aged {
    operator: String,
    session_cookie: String,
}

/// At `T0`: an operator sends three idempotent messages to chat `old` (so three completed
/// records, two rate windows, six messages), the admin opens a session, and a stranger is locked
/// out. Returns the app stopped.
async fn age_data(extra: &[(&'static str, String)]) -> (StoppedApp, Aged) {
    let mut env = frozen_at(T0);
    env.extend_from_slice(extra);
    let app = spawn_app_with(&refs(&env)).await;
    let operator = app.create_api_key("operator").await.secret;
    for n in 0..3 {
        let response = app
            .post_send(
                "old",
                &operator,
                Some(&format!("old-{n}")),
                &json!({"text": format!("old {n}")}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let login = send(
        app.request(Method::POST, "api/auth/login")
            .json(&json!({ "key": app.admin_key })),
    )
    .await;
    assert_eq!(login.status(), StatusCode::OK);
    let session_cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ASCII")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    for _ in 0..6 {
        let refused = app.get("/api/chats", "not-a-key").await;
        assert!(refused.status().is_client_error());
    }
    let aged = Aged {
        operator,
        session_cookie,
    };
    (app.stop().await, aged)
}

/// Restarts at `T1` and sends one fresh idempotent message to chat `new` with the same operator.
async fn at_t1(stopped: StoppedApp, aged: &Aged, extra: &[(&'static str, String)]) -> TestApp {
    let mut env = frozen_at(T1);
    env.extend_from_slice(extra);
    let app = stopped.start(&refs(&env)).await;
    let response = app
        .post_send(
            "new",
            &aged.operator,
            Some("fresh"),
            &json!({"text": "fresh"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app
}

async fn export(app: &TestApp) -> String {
    let response = app.get("/api/audit/export", &app.admin_key).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("the export")
}

fn events(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
        .filter(|value| value.get("seq").is_some())
        .collect()
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// `deleted` per class of a job log entry.
fn deleted(run: &Value) -> BTreeMap<String, u64> {
    run["per_class"]
        .as_object()
        .expect("per_class")
        .iter()
        .map(|(class, tally)| (class.clone(), tally["deleted"].as_u64().expect("count")))
        .collect()
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = [
        "audit",
        "idempotency",
        "messages",
        "sessions",
        "rate_windows",
        "lockouts",
        "retention_runs",
    ]
    .into_iter()
    .map(|class| (class.to_owned(), 0))
    .collect();
    for (class, n) in pairs {
        all.insert((*class).to_owned(), *n);
    }
    all
}

async fn dry_run(app: &TestApp) -> Value {
    expect_json(
        app.post_json(RUN, &app.admin_key, &json!({"dry_run": true}))
            .await,
        StatusCode::OK,
    )
    .await
}

/// Starts a real run and waits for it to end.
async fn real_run(app: &TestApp, body: Value) -> Value {
    let started = expect_json(
        app.post_json(RUN, &app.admin_key, &body).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(started["status"], "running");
    finished(app, started["id"].as_u64().expect("id")).await
}

async fn finished(app: &TestApp, id: u64) -> Value {
    let path = format!("/api/admin/retention/runs/{id}");
    eventually("the retention run to end", async || {
        let run = expect_json(app.get(&path, &app.admin_key).await, StatusCode::OK).await;
        (run["status"] != "running").then_some(run)
    })
    .await
}

/// Rows per table, from `db stats` on the stopped service.
async fn table_rows(stopped: &StoppedApp) -> BTreeMap<String, u64> {
    let output = stopped.run_cli(&["db", "stats"]).await;
    assert!(
        output.status.success(),
        "db stats: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: Value = serde_json::from_slice(&output.stdout).expect("db stats prints JSON");
    serde_json::from_value(stats["rows"].clone()).expect("rows per table")
}

#[tokio::test]
async fn dry_run_reports_exact_counts_per_class_and_deletes_nothing() {
    let (stopped, aged) = age_data(&[]).await;
    let app = at_t1(stopped, &aged, &[]).await;
    let trail = events(&export(&app).await);
    let old: Vec<&Value> = trail
        .iter()
        .filter(|e| e["ts_ms"].as_u64().expect("ts") < AUDIT_CUTOFF)
        .collect();
    assert!(
        old.len() >= 8,
        "the old phase left its events: {}",
        old.len()
    );
    let stopped = app.stop().await;
    let before = table_rows(&stopped).await;
    let app = stopped.start(&refs(&frozen_at(T1))).await;

    let preview = dry_run(&app).await;

    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["status"], "ok");
    assert_eq!(
        deleted(&preview),
        expected(&[
            ("audit", old.len() as u64),
            ("idempotency", 3),
            ("sessions", 1),
            ("rate_windows", 1),
            ("lockouts", 1),
        ]),
        "{preview}"
    );
    let audit = &preview["per_class"]["audit"];
    assert_eq!(audit["oldest_at"], rfc3339(T0));
    assert_eq!(audit["newest_at"], rfc3339(T0));
    let records = &preview["per_class"]["idempotency"];
    assert_eq!(
        records["oldest_at"],
        rfc3339(T0 + DAY),
        "records expire a day on"
    );
    assert_eq!(records["remaining"], 1, "the fresh record stays");
    let again = dry_run(&app).await;
    assert_eq!(
        deleted(&again),
        deleted(&preview),
        "a dry run deleted something"
    );
    let dry_runs = app
        .page("/api/audit", &[("action", "retention.dry_run")])
        .await;
    assert_eq!(dry_runs.items.len(), 2, "each dry run is audited");
    assert_eq!(
        dry_runs.items[0]["details"]["deleted_audit"],
        old.len() as u64
    );

    let after = table_rows(&app.stop().await).await;
    for (table, rows) in &before {
        match table.as_str() {
            // Appended since: service.start, two dry runs, one audit read, service.stop.
            "audit" => assert_eq!(after[table], rows + 5, "audit rows"),
            "audit_actor_index" | "audit_action_index" | "audit_target_index" => {
                assert_eq!(after[table], rows + 5, "{table}")
            }
            "retention_runs" => assert_eq!(after[table], rows + 2),
            _ => assert_eq!(after[table], *rows, "{table} changed"),
        }
    }
}

#[tokio::test]
async fn a_run_deletes_exactly_the_aged_rows_and_the_chain_still_proves_itself() {
    let (stopped, aged) = age_data(&[]).await;
    let app = at_t1(stopped, &aged, &[]).await;
    let trail = events(&export(&app).await);
    let (old, young): (Vec<&Value>, Vec<&Value>) = trail
        .iter()
        .partition(|e| e["ts_ms"].as_u64().expect("ts") < AUDIT_CUTOFF);
    let last_old = old.last().expect("old events")["seq"]
        .as_u64()
        .expect("seq");

    let run = real_run(&app, json!({"dry_run": false, "compact": false})).await;

    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(
        deleted(&run),
        expected(&[
            ("audit", old.len() as u64),
            ("idempotency", 3),
            ("sessions", 1),
            ("rate_windows", 1),
            ("lockouts", 1),
        ]),
        "{run}"
    );
    let kept = events(&export(&app).await);
    assert!(
        kept.iter()
            .all(|e| e["ts_ms"].as_u64().expect("ts") >= AUDIT_CUTOFF)
    );
    for event in &young {
        assert!(kept.contains(event), "a young event went: {event}");
    }
    let recorded = app.page("/api/audit", &[("action", "retention.run")]).await;
    let details = &recorded.items[0]["details"];
    assert_eq!(details["deleted_audit"], old.len() as u64);
    assert_eq!(details["checkpoint_seq"], last_old);
    assert_eq!(details["status"], "ok");

    // The chain verifies from its checkpoint, through the API and on its own.
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["checked_from_seq"], last_old + 1);
    let exported = export(&app).await;
    let first_line: Value =
        serde_json::from_str(exported.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first_line["checkpoint"]["seq"], last_old, "{first_line}");
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, verdict) = python_verdict(dir.path(), "export.ndjson", &exported).await;
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["checked_from_seq"], last_old + 1);
    let tampered = exported.replacen("\"chat.send\"", "\"chat.update\"", 1);
    assert_ne!(tampered, exported);
    let (code, verdict) = python_verdict(dir.path(), "export.ndjson", &tampered).await;
    assert_eq!(code, 1, "a tampered export passed: {verdict}");
    let cut = exported.lines().skip(2).collect::<Vec<_>>().join("\n");
    let with_checkpoint = format!("{}\n{cut}", exported.lines().next().expect("checkpoint"));
    let (code, _) = python_verdict(dir.path(), "export.ndjson", &with_checkpoint).await;
    assert_eq!(
        code, 1,
        "an export missing the event after its checkpoint passed"
    );

    // A key past its TTL is a new request now; the fresh one still replays.
    let fresh = app
        .post_send(
            "new",
            &aged.operator,
            Some("fresh"),
            &json!({"text": "fresh"}),
        )
        .await;
    assert_eq!(fresh.headers()[IDEMPOTENCY_REPLAYED], "true");
    let reused = app
        .post_send(
            "old",
            &aged.operator,
            Some("old-0"),
            &json!({"text": "old 0"}),
        )
        .await;
    assert_eq!(reused.status(), StatusCode::OK);
    assert!(
        reused.headers().get(IDEMPOTENCY_REPLAYED).is_none(),
        "an expired key replayed"
    );
    assert_eq!(
        app.history("old").await.len(),
        8,
        "the reused key stored anew"
    );

    // The aged session is gone for good; messages are kept (messages_days = 0).
    let with_session = send(
        app.request(Method::GET, "api/auth/me")
            .header("cookie", &aged.session_cookie),
    )
    .await;
    assert_eq!(with_session.status(), StatusCode::UNAUTHORIZED);
    let runs = app.page("/api/admin/retention/runs", &[]).await;
    assert_eq!(runs.items.len(), 1);
    assert_eq!(runs.items[0]["trigger"], "api");
    let metrics = app.metrics().await;
    for line in [
        "sofiia_retention_runs_total{status=\"ok\"} 1".to_owned(),
        format!(
            "sofiia_retention_deleted_total{{class=\"audit\"}} {}",
            old.len()
        ),
        "sofiia_retention_deleted_total{class=\"idempotency\"} 3".to_owned(),
        format!(
            "sofiia_retention_last_success_timestamp_seconds {}",
            T1 / 1000
        ),
    ] {
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn messages_age_out_only_when_configured_and_their_chats_stay() {
    let keep_a_day = [("SOFIIA_RETENTION__MESSAGES_DAYS", "1".to_owned())];
    let (stopped, aged) = age_data(&keep_a_day).await;
    let app = at_t1(stopped, &aged, &keep_a_day).await;

    let preview = dry_run(&app).await;
    assert_eq!(deleted(&preview)["messages"], 6, "{preview}");
    let run = real_run(&app, json!({"dry_run": false})).await;

    assert_eq!(deleted(&run)["messages"], 6, "{run}");
    assert_eq!(run["per_class"]["messages"]["remaining"], 2);
    assert!(app.history("old").await.is_empty());
    assert_eq!(app.history("new").await.len(), 2);
    let chat = expect_json(
        app.get("/api/chats/old", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(chat["last_seq"], 6, "the chat keeps its numbering");
    let sent = app
        .post_send("old", &aged.operator, None, &json!({"text": "again"}))
        .await;
    let sent = expect_json(sent, StatusCode::OK).await;
    assert_eq!(sent["message"]["seq"], 7, "{sent}");
}

#[tokio::test]
async fn the_schedule_fires_at_its_time_and_a_missed_run_is_made_up_once() {
    // Two seconds before 03:15 UTC on T1's day.
    let slot = T1 - T1 % DAY + (3 * 60 + 15) * 60 * 1000;
    let env = [
        ("SOFIIA_CLOCK_START_MS", (slot - 2_000).to_string()),
        ("SOFIIA_RETENTION__SCHEDULE", "03:15".to_owned()),
    ];
    let app = spawn_app_with(&refs(&env)).await;
    assert!(
        app.page("/api/admin/retention/runs", &[])
            .await
            .items
            .is_empty()
    );

    let run = eventually("the scheduled run", async || {
        let runs = app.page("/api/admin/retention/runs", &[]).await;
        runs.items
            .first()
            .filter(|run| run["status"] == "ok")
            .cloned()
    })
    .await;
    assert_eq!(run["trigger"], "schedule");
    assert!(
        run["started_at"].as_str().expect("time") >= rfc3339(slot).as_str(),
        "{run}"
    );

    // Down over the next day's slot: one run right after the start, and no more.
    let later = [
        (
            "SOFIIA_CLOCK_START_MS",
            (slot + 2 * DAY + 3_600_000).to_string(),
        ),
        ("SOFIIA_RETENTION__SCHEDULE", "03:15".to_owned()),
    ];
    let app = app.restart(&refs(&later)).await;
    let made_up = eventually("the missed run", async || {
        let runs = app.page("/api/admin/retention/runs", &[]).await;
        (runs.items.len() == 2 && runs.items[0]["status"] == "ok").then(|| runs.items[0].clone())
    })
    .await;
    assert_eq!(made_up["trigger"], "schedule");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        app.page("/api/admin/retention/runs", &[]).await.items.len(),
        2
    );
}

/// Many aged audit events: `GET /api/audit` records one `audit.read` each.
async fn age_audit_reads(reads: usize) -> StoppedApp {
    let app = spawn_app_with(&refs(&frozen_at(T0))).await;
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..reads {
        let request = app
            .request(Method::GET, "api/audit?limit=1")
            .bearer_auth(&app.admin_key);
        pending.spawn(async move { request.send().await.map(|r| r.status()) });
        if pending.len() >= 32 {
            let status = pending.join_next().await.expect("a task").expect("joined");
            assert_eq!(status.expect("answered"), StatusCode::OK);
        }
    }
    while let Some(status) = pending.join_next().await {
        assert_eq!(status.expect("joined").expect("answered"), StatusCode::OK);
    }
    app.stop().await
}

/// `reads` aged audit events, judged at `T1` by a run of 50-row batches paced at 500 rows a
/// second, started through the API; returns once it has deleted `at_least` of them, with the
/// path of its job log entry.
async fn slow_run_under_way(reads: usize, at_least: u64) -> (TestApp, String) {
    let stopped = age_audit_reads(reads).await;
    let slow = [
        ("SOFIIA_FROZEN_CLOCK_MS", T1.to_string()),
        ("SOFIIA_RETENTION__BATCH_SIZE", "50".to_owned()),
        ("SOFIIA_RETENTION__MAX_ROWS_PER_SECOND", "500".to_owned()),
    ];
    let app = stopped.start(&refs(&slow)).await;
    let started = expect_json(
        app.post_json(RUN, &app.admin_key, &json!({"dry_run": false}))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let path = format!("/api/admin/retention/runs/{}", started["id"]);
    eventually("batches to commit", async || {
        let run = expect_json(app.get(&path, &app.admin_key).await, StatusCode::OK).await;
        (run["per_class"]["audit"]["deleted"].as_u64() >= Some(at_least)).then_some(())
    })
    .await;
    (app, path)
}

#[tokio::test]
async fn a_prune_killed_midway_leaves_consistent_data_and_the_next_run_finishes_it() {
    // More than one audit index bucket (16 384 events), so the runs cross a bucket boundary.
    const READS: usize = 17_000;
    let (app, path) = slow_run_under_way(READS, 500).await;

    let app = app.restart_after_kill(&refs(&frozen_at(T1))).await;

    let interrupted = expect_json(app.get(&path, &app.admin_key).await, StatusCode::OK).await;
    assert_eq!(interrupted["status"], "interrupted", "{interrupted}");
    let first_part = interrupted["per_class"]["audit"]["deleted"]
        .as_u64()
        .expect("count");
    assert!(first_part > 0 && first_part < READS as u64, "{interrupted}");
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["checked_from_seq"], first_part + 1);
    let app = indexes_match_events(app).await;

    let rest = real_run(&app, json!({"dry_run": false})).await;

    assert_eq!(rest["status"], "ok", "{rest}");
    let second_part = rest["per_class"]["audit"]["deleted"]
        .as_u64()
        .expect("count");
    let aged_events = events(&export(&app).await);
    assert!(
        aged_events
            .iter()
            .all(|e| e["ts_ms"].as_u64().expect("ts") >= AUDIT_CUTOFF)
    );
    let recorded = app.page("/api/audit", &[("action", "retention.run")]).await;
    assert_eq!(
        recorded.items.len(),
        2,
        "the interrupted run is recorded too"
    );
    assert_eq!(recorded.items[1]["outcome"], "error");
    assert_eq!(recorded.items[1]["details"]["deleted_audit"], first_part);
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["checked_from_seq"], first_part + second_part + 1);
    indexes_match_events(app).await;
}

/// Asserts that every audit index holds exactly one entry per event it covers — none left
/// behind by a deleted event, none missing — by the rows of each table on the stopped service;
/// then starts it again.
async fn indexes_match_events(app: TestApp) -> TestApp {
    let not_ok = events(&export(&app).await)
        .iter()
        .filter(|e| e["outcome"] != "ok")
        .count() as u64;
    let stopped = app.stop().await;
    let rows = table_rows(&stopped).await;
    let events = rows["audit"];
    for index in [
        "audit_actor_index",
        "audit_action_index",
        "audit_target_index",
    ] {
        assert_eq!(rows[index], events, "{index}: {rows:?}");
    }
    // Only `denied` and `error` events are indexed by outcome; stopping adds an `ok` one.
    assert_eq!(rows["audit_outcome_index"], not_ok, "{rows:?}");
    stopped.start(&refs(&frozen_at(T1))).await
}

#[tokio::test]
async fn compaction_after_a_large_prune_shrinks_the_file_while_sends_go_on() {
    // Six megabytes of aged messages.
    let keep_a_day = [("SOFIIA_RETENTION__MESSAGES_DAYS", "1".to_owned())];
    let mut env = frozen_at(T0);
    env.extend_from_slice(&keep_a_day);
    let app = spawn_app_with(&refs(&env)).await;
    let text = "x".repeat(15_000);
    for n in 0..400 {
        let response = app
            .post_send(
                &format!("bulk-{}", n % 8),
                &app.admin_key,
                None,
                &json!({"text": text}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let stopped = app.stop().await;
    let mut env = frozen_at(T1);
    env.extend_from_slice(&keep_a_day);
    env.push((
        "SOFIIA_RETENTION__COMPACT_MIN_RECLAIMABLE_MIB",
        "1".to_owned(),
    ));
    let app = stopped.start(&refs(&env)).await;
    let file = app.data_dir().join("sofiia.redb");
    let size_before = std::fs::metadata(&file).expect("the file").len();

    let sender = {
        let request = app.send_request("busy", &app.admin_key, &json!({"text": "still here"}));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..400 {
                let response = request.try_clone().expect("cloneable").send().await;
                statuses.push(response.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        })
    };
    let run = real_run(&app, json!({"dry_run": false, "compact": true})).await;
    let statuses = sender.await.expect("the sender");

    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(deleted(&run)["messages"], 800);
    assert_eq!(run["compacted"], true, "{run}");
    let after = run["db_bytes_after"].as_u64().expect("bytes");
    assert!(
        after < run["db_bytes_before"].as_u64().expect("bytes") / 2,
        "{run}"
    );
    assert!(std::fs::metadata(&file).expect("the file").len() < size_before / 2);
    assert!(run["pause_ms"].is_u64(), "{run}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "failed sends: {statuses:?}"
    );
    let busy = app.history("busy").await;
    assert_eq!(busy.len(), 800, "every send during the run stored its pair");
    let logs = app.logs();
    assert!(
        logs.contains("\"event\":\"compacted\""),
        "the pause is logged"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("sofiia_db_compaction_pause_seconds_count 1"),
        "{metrics}"
    );
}

fn stdout_json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the command prints JSON")
}

#[tokio::test]
async fn the_cli_runs_retention_through_the_service_or_on_the_stopped_file() {
    let (stopped, aged) = age_data(&[]).await;
    let app = at_t1(stopped, &aged, &[]).await;

    let url = app.address.to_string();
    let preview = app
        .run_cli(&["retention", "run", "--dry-run", "--url", &url])
        .await;
    assert!(String::from_utf8_lossy(&preview.stderr).contains("through the running service"));
    let preview = stdout_json(&preview);
    assert_eq!(preview["dry_run"], true);
    assert_eq!(deleted(&preview)["idempotency"], 3);
    let refused = app.run_cli(&["db", "stats"]).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let run = stdout_json(&app.run_cli(&["retention", "run", "--url", &url]).await);
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(deleted(&run)["idempotency"], 3);
    let stopped = app.stop().await;

    let direct = stopped.run_cli(&["retention", "run", "--compact"]).await;
    assert!(String::from_utf8_lossy(&direct.stderr).contains("directly on"));
    let direct = stdout_json(&direct);
    assert_eq!(direct["trigger"], "cli");
    assert_eq!(direct["status"], "ok");
    let listed = stopped
        .run_cli(&["retention", "runs", "--limit", "2"])
        .await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let ids: Vec<u64> = listed
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("JSON")["id"]
                .as_u64()
                .expect("id")
        })
        .collect();
    assert_eq!(ids, [3, 2], "newest first");
    let compacted = stdout_json(&stopped.run_cli(&["db", "compact"]).await);
    assert!(compacted["file_bytes_after"].as_u64() <= compacted["file_bytes_before"].as_u64());
    let stats = stdout_json(&stopped.run_cli(&["db", "stats"]).await);
    assert_eq!(stats["rows"]["retention_runs"], 3);
    assert!(stats["file_bytes"].as_u64().expect("size") > 0);
    assert!(stats["reclaimable_bytes"].is_u64());
}

#[tokio::test]
async fn one_run_at_a_time_and_a_shutdown_stops_it_between_batches() {
    let (app, path) = slow_run_under_way(2_000, 1).await;
    let second = app
        .post_json(RUN, &app.admin_key, &json!({"dry_run": false}))
        .await;
    assert_error(second, StatusCode::CONFLICT, "conflict").await;

    let app = app.restart(&refs(&frozen_at(T1))).await;

    let cancelled = expect_json(app.get(&path, &app.admin_key).await, StatusCode::OK).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let deleted = cancelled["per_class"]["audit"]["deleted"]
        .as_u64()
        .expect("count");
    assert!(deleted > 0 && deleted < 2_000, "{cancelled}");
    assert_eq!(deleted % 50, 0, "whole batches only: {cancelled}");
    let verified = expect_json(
        app.get("/api/audit/verify", &app.admin_key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["checked_from_seq"], deleted + 1);
}

#[tokio::test]
async fn bad_retention_requests_get_clear_errors() {
    let app = spawn_app_with(&[]).await;
    let key = app.admin_key.clone();
    for (body, status, code) in [
        (
            json!({"dry_run": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"dry_run": true, "purge": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!([true]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ] {
        assert_error(app.post_json(RUN, &key, &body).await, status, code).await;
    }
    let garbage = app
        .get_with_query("/api/admin/retention/runs", &key, &[("cursor", "nonsense")])
        .await;
    assert_error(garbage, StatusCode::BAD_REQUEST, "invalid_request").await;
    let too_many = app
        .get_with_query("/api/admin/retention/runs", &key, &[("limit", "500")])
        .await;
    assert_error(too_many, StatusCode::BAD_REQUEST, "invalid_request").await;
    let missing = app.get("/api/admin/retention/runs/77", &key).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    let not_a_number = app.get("/api/admin/retention/runs/seven", &key).await;
    assert_error(not_a_number, StatusCode::NOT_FOUND, "not_found").await;
    let operator = app.create_api_key("operator").await;
    let refused = app
        .post_json(RUN, &operator.secret, &json!({"dry_run": true}))
        .await;
    assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
}
