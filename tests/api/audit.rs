//! The audit trail (SPEC §9, `docs/audit-format.md`): who may read it, that every action leaves
//! its event in the action's own transaction, that denials are aggregated, that the hash chain
//! detects tampering (API, CLI and the independent Python verifier), and that filters page
//! exactly. Each test presents at most four failing credentials, so the per-address lockout (five
//! failures) never interferes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::file_layout::{audit_events, audit_index};
use crate::helpers::{
    StoppedApp, TestApp, assert_error, eventually, expect_json, is_replay, python_verdict,
    python_verdict_with, request_id, spawn_app, spawn_app_with,
};

const AUDIT: &str = "/api/audit";
const VERIFY: &str = "/api/audit/verify";
const EXPORT: &str = "/api/audit/export";
const NDJSON: &str = "application/x-ndjson";
const ADMIN_TOKEN: &str = "audit-admin-token-3e8b1f6d2c9a4e7b";
const SERVICE: &str = "service:sofiia-console";
const ANONYMOUS: &str = "anonymous:-";
const LOCALHOST: &str = "127.0.0.1";

// ---- reading the trail ----

/// Asserts a 200 NDJSON export and returns its text.
async fn ndjson(response: Response) -> String {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let text = response.text().await.expect("failed to read the export");
    assert_eq!(status, StatusCode::OK, "export failed: {text}");
    assert!(
        content_type.starts_with(NDJSON),
        "export content type was {content_type:?}"
    );
    text
}

fn parse_events(ndjson: &str) -> Vec<Value> {
    ndjson
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {line}"))
        })
        .collect()
}

/// The whole trail, oldest first, exported with the admin credential.
async fn trail(app: &TestApp) -> Vec<Value> {
    parse_events(&ndjson(app.get(EXPORT, &app.admin_key).await).await)
}

async fn verify(app: &TestApp) -> Value {
    expect_json(app.get(VERIFY, &app.admin_key).await, StatusCode::OK).await
}

/// Every event `/api/audit` selects with `query`, newest first, 200 a page.
async fn selected(app: &TestApp, query: &[(&str, &str)]) -> Vec<Value> {
    app.all_pages(AUDIT, query, 200).await
}

async fn denials_of(app: &TestApp, actor: &str) -> Vec<Value> {
    selected(app, &[("action", "auth.denied"), ("actor", actor)]).await
}

// ---- looking at events ----

/// The id part of an `sk_<12-char id>_<secret>` key.
fn key_id(key: &str) -> &str {
    assert!(key.starts_with("sk_") && key.len() > 16, "not an API key");
    &key[3..15]
}

fn key_actor(id: &str, role: &str) -> Value {
    json!({ "kind": "key", "id": id, "role": role })
}

/// `kind:id` of an event's `actor` or `target`, the form the filters take.
fn label(party: &Value) -> String {
    let kind = party["kind"].as_str().expect("kind is a string");
    let id = party["id"].as_str().expect("id is a string");
    format!("{kind}:{id}")
}

fn seq(event: &Value) -> u64 {
    event["seq"].as_u64().expect("seq is an integer")
}

fn ts_ms(event: &Value) -> u64 {
    event["ts_ms"].as_u64().expect("ts_ms is an integer")
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["action"].as_str().expect("action is a string"))
        .collect()
}

/// The events of `action` on `target` (`kind:id`), in trail order.
fn events_of<'e>(events: &'e [Value], action: &str, target: &str) -> Vec<&'e Value> {
    events
        .iter()
        .filter(|event| event["action"] == action && label(&event["target"]) == target)
        .collect()
}

/// The one event of `action` on `target`.
fn only_event<'e>(events: &'e [Value], action: &str, target: &str) -> &'e Value {
    let found = events_of(events, action, target);
    assert_eq!(
        found.len(),
        1,
        "expected one {action} on {target}: {found:#?}"
    );
    found[0]
}

/// The one event recording the request `request_id`, of `action`.
fn event_of_request<'e>(events: &'e [Value], action: &str, request_id: &str) -> &'e Value {
    let found: Vec<&Value> = events
        .iter()
        .filter(|event| event["action"] == action && event["request_id"] == request_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {action} of {request_id}: {found:#?}"
    );
    found[0]
}

/// Asserts that `event` records a successful request `request_id` made by `actor` over loopback.
fn assert_made_by(event: &Value, actor: &Value, request_id: &str) {
    assert_eq!(event["actor"], *actor, "{event}");
    assert_eq!(event["outcome"], "ok", "{event}");
    assert_eq!(event["request_id"], request_id, "{event}");
    assert_eq!(event["client_ip"], LOCALHOST, "{event}");
}

fn assert_valid(report: &Value) {
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["first_invalid_seq"].is_null(), "{report}");
}

fn assert_invalid_at(report: &Value, seq: u64) {
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_invalid_seq"], seq, "{report}");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|reason| !reason.is_empty()),
        "{report}"
    );
}

// ---- who may read the trail ----

#[tokio::test]
async fn audit_routes_need_an_admin_or_auditor_key_even_from_localhost() {
    let app = spawn_app().await;
    assert_eq!(app.address.host_str(), Some(LOCALHOST));
    let operator = app.create_api_key("operator").await;
    let viewer = app.create_api_key("viewer").await;
    let auditor = app.create_api_key("auditor").await;

    for path in [AUDIT, VERIFY, EXPORT] {
        assert_error(
            app.get_anonymous(path).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        for key in [&operator, &viewer] {
            assert_error(
                app.get(path, &key.secret).await,
                StatusCode::FORBIDDEN,
                "forbidden",
            )
            .await;
        }
        for key in [&auditor.secret, &app.admin_key] {
            assert_allowed(&app, path, key).await;
        }
    }
}

/// Asserts that `key` may use the audit route `path`: a 200 with that route's body.
async fn assert_allowed(app: &TestApp, path: &str, key: &str) {
    let response = app.get(path, key).await;
    match path {
        EXPORT => assert!(!parse_events(&ndjson(response).await).is_empty()),
        VERIFY => assert_valid(&expect_json(response, StatusCode::OK).await),
        _ => {
            let page = expect_json(response, StatusCode::OK).await;
            assert!(
                page["items"]
                    .as_array()
                    .is_some_and(|items| !items.is_empty()),
                "{page}"
            );
        }
    }
}

// ---- an action and its record commit together or not at all ----

const FAILED_CHAT: &str = "atomic-created";
const FAILED_SEND_CHAT: &str = "atomic-sent";

#[tokio::test]
async fn failing_audit_append_leaves_neither_the_action_nor_its_record() {
    assert_failed_actions_leave_no_trace("audit.append=error").await;
}

#[tokio::test]
async fn failing_commit_leaves_neither_the_action_nor_its_record() {
    assert_failed_actions_leave_no_trace("store.commit=error").await;
}

/// With `failpoint` active every action fails; restarted without it, none of them is found,
/// neither as data nor in the trail — and the same actions then succeed and are recorded.
async fn assert_failed_actions_leave_no_trace(failpoint: &str) {
    let token = ("SOFIIA_ADMIN_TOKEN", ADMIN_TOKEN);
    let failing = spawn_app_with(&[token, ("SOFIIA_FAILPOINTS", failpoint)]).await;
    let text = json!({ "text": "never stored" });
    let new_key = json!({ "name": "atomic-key", "role": "operator" });

    let attempts = [
        failing
            .create_chat(ADMIN_TOKEN, &json!({ "id": FAILED_CHAT }))
            .await,
        failing
            .post_send(FAILED_SEND_CHAT, ADMIN_TOKEN, None, &text)
            .await,
        failing
            .post_json("/api/admin/keys", ADMIN_TOKEN, &new_key)
            .await,
        // Reading the trail is an action too: it fails rather than go unrecorded.
        failing.get(AUDIT, ADMIN_TOKEN).await,
        failing.get(VERIFY, ADMIN_TOKEN).await,
        failing.get(EXPORT, ADMIN_TOKEN).await,
    ];
    for attempt in attempts {
        assert_error(attempt, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    }

    let app = failing.restart(&[token]).await;
    for chat in [FAILED_CHAT, FAILED_SEND_CHAT] {
        assert_error(
            app.get(&format!("/api/chats/{chat}"), ADMIN_TOKEN).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    let keys = expect_json(
        app.get("/api/admin/keys", ADMIN_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(keys["items"], json!([]), "{keys}");
    // The failed run committed nothing at all: the trail starts with this run's start.
    let events = trail(&app).await;
    assert_eq!(
        actions(&events),
        ["service.start", "audit.export"],
        "{events:#?}"
    );
    assert_eq!(seq(&events[0]), 1);
    assert_valid(&verify(&app).await);

    // The same actions succeed now, and each leaves its record.
    expect_json(
        app.create_chat(ADMIN_TOKEN, &json!({ "id": FAILED_CHAT }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(
        app.post_send(FAILED_SEND_CHAT, ADMIN_TOKEN, None, &text)
            .await,
        StatusCode::OK,
    )
    .await;
    let key = app.create_api_key("operator").await;
    let events = trail(&app).await;
    assert_eq!(
        actions(&events),
        [
            "service.start",
            "audit.export",
            "audit.verify",
            "chat.create",
            "chat.create",
            "chat.send",
            "chat.reply",
            "key.create",
            "audit.export"
        ],
        "{events:#?}"
    );
    only_event(&events, "chat.create", &format!("chat:{FAILED_CHAT}"));
    only_event(&events, "chat.send", &format!("chat:{FAILED_SEND_CHAT}"));
    only_event(&events, "key.create", &format!("key:{}", key.id));
}

// ---- every action leaves its event ----

#[tokio::test]
async fn chat_and_key_actions_each_leave_one_event() {
    const TEXT: &str = "drain node three";
    let app = spawn_app().await;
    let admin_id = key_id(&app.admin_key).to_owned();
    let admin = key_actor(&admin_id, "admin");
    let operator = app.create_api_key("operator").await;
    let revoked = app.create_api_key("viewer").await;
    let by_operator = key_actor(&operator.id, "operator");
    let body = json!({ "text": TEXT });

    let created = app
        .create_chat(
            &operator.secret,
            &json!({ "id": "trail-created", "title": "Night shift" }),
        )
        .await;
    let create_request = request_id(&created);
    expect_json(created, StatusCode::CREATED).await;
    let patched = app
        .patch_json(
            "/api/chats/trail-created",
            &operator.secret,
            &json!({ "title": "Day shift" }),
        )
        .await;
    let patch_request = request_id(&patched);
    expect_json(patched, StatusCode::OK).await;
    let sent = app
        .post_send("trail-implicit", &operator.secret, None, &body)
        .await;
    let send_request = request_id(&sent);
    let sent = expect_json(sent, StatusCode::OK).await;
    let keyed = app
        .post_send("trail-created", &operator.secret, Some("trail-1"), &body)
        .await;
    let keyed_request = request_id(&keyed);
    let keyed = expect_json(keyed, StatusCode::OK).await;
    let replay = app
        .post_send("trail-created", &operator.secret, Some("trail-1"), &body)
        .await;
    assert!(is_replay(&replay));
    expect_json(replay, StatusCode::OK).await;
    let revoke = app
        .delete(&format!("/api/admin/keys/{}", revoked.id), &app.admin_key)
        .await;
    let revoke_request = request_id(&revoke);
    expect_json(revoke, StatusCode::OK).await;

    let events = trail(&app).await;

    let start = only_event(&events, "service.start", SERVICE);
    assert_eq!(start["actor"]["kind"], "system", "{start}");
    let bootstrap = only_event(&events, "key.create", &format!("key:{admin_id}"));
    assert_eq!(bootstrap["actor"]["kind"], "system", "{bootstrap}");
    let operator_created = only_event(&events, "key.create", &format!("key:{}", operator.id));
    assert_eq!(operator_created["actor"], admin, "{operator_created}");
    assert_eq!(
        operator_created["client_ip"], LOCALHOST,
        "{operator_created}"
    );
    assert_eq!(operator_created["details"]["role"], "operator");
    let revocation = only_event(&events, "key.revoke", &format!("key:{}", revoked.id));
    assert_made_by(revocation, &admin, &revoke_request);

    let create = only_event(&events, "chat.create", "chat:trail-created");
    assert_made_by(create, &by_operator, &create_request);
    assert_ne!(create["details"]["implicit"], true, "{create}");
    let update = only_event(&events, "chat.update", "chat:trail-created");
    assert_made_by(update, &by_operator, &patch_request);

    // A send to a new chat: the implicit create, the send and the (degraded) reply.
    let implicit = only_event(&events, "chat.create", "chat:trail-implicit");
    assert_made_by(implicit, &by_operator, &send_request);
    assert_eq!(implicit["details"]["implicit"], true, "{implicit}");
    let send = only_event(&events, "chat.send", "chat:trail-implicit");
    assert_made_by(send, &by_operator, &send_request);
    let details = &send["details"];
    assert_eq!(details["message_id"], sent["message"]["id"], "{send}");
    assert_eq!(details["seq"], sent["message"]["seq"], "{send}");
    assert_eq!(details["text_chars"], TEXT.chars().count(), "{send}");
    assert_eq!(details["idempotency"], "none", "{send}");
    let reply = only_event(&events, "chat.reply", "chat:trail-implicit");
    assert_made_by(reply, &by_operator, &send_request);
    let details = &reply["details"];
    assert_eq!(
        details["message_id"], sent["degraded"]["message_id"],
        "{reply}"
    );
    assert_eq!(details["reply_to"], sent["message"]["id"], "{reply}");
    assert_eq!(details["degraded"], "llm_unconfigured", "{reply}");
    assert_eq!(details["took_over"], false, "{reply}");
    assert!(seq(implicit) < seq(send) && seq(send) < seq(reply));

    // The idempotent send is recorded once; its replay is not recorded.
    let keyed_send = only_event(&events, "chat.send", "chat:trail-created");
    assert_made_by(keyed_send, &by_operator, &keyed_request);
    assert_eq!(keyed_send["details"]["idempotency"], "new", "{keyed_send}");
    assert_eq!(keyed_send["details"]["message_id"], keyed["message"]["id"]);
    only_event(&events, "chat.reply", "chat:trail-created");
}

#[tokio::test]
async fn reading_verifying_and_exporting_the_trail_are_recorded() {
    let app = spawn_app().await;
    let auditor = app.create_api_key("auditor").await;
    let by_auditor = key_actor(&auditor.id, "auditor");
    app.send_text("trail-read", "status?").await;

    let first = app.get(AUDIT, &auditor.secret).await;
    let first_request = request_id(&first);
    let first = expect_json(first, StatusCode::OK).await;
    let second = app.get(AUDIT, &auditor.secret).await;
    let second_request = request_id(&second);
    let second = expect_json(second, StatusCode::OK).await;

    // A page never holds its own read; the next page holds the previous one.
    for (page, own_request) in [(&first, &first_request), (&second, &second_request)] {
        let items = page["items"].as_array().expect("items");
        assert!(
            items
                .iter()
                .all(|event| event["request_id"] != own_request.as_str()),
            "a page holds its own read: {page}"
        );
    }
    let items = second["items"].as_array().expect("items");
    let read = event_of_request(items, "audit.read", &first_request);
    assert_made_by(read, &by_auditor, &first_request);
    let returned = first["items"].as_array().expect("items").len();
    assert_eq!(read["details"]["returned"], returned, "{read}");

    let verified = app.get(VERIFY, &auditor.secret).await;
    let verify_request = request_id(&verified);
    let report = expect_json(verified, StatusCode::OK).await;
    assert_valid(&report);

    // The export is recorded before it is read, so it ends with its own record.
    let exported = app.get(EXPORT, &auditor.secret).await;
    let export_request = request_id(&exported);
    let events = parse_events(&ndjson(exported).await);
    let verification = event_of_request(&events, "audit.verify", &verify_request);
    assert_made_by(verification, &by_auditor, &verify_request);
    assert_eq!(verification["details"]["valid"], true, "{verification}");
    assert_eq!(verification["details"]["head_seq"], report["head_seq"]);
    event_of_request(&events, "audit.read", &second_request);
    let export = events.last().expect("a non-empty export");
    assert_eq!(export["action"], "audit.export", "{export}");
    assert_made_by(export, &by_auditor, &export_request);
}

#[tokio::test]
async fn service_start_and_graceful_stop_are_recorded() {
    let app = spawn_app().await;

    let app = app.restart(&[]).await;

    let events = trail(&app).await;
    let starts = events_of(&events, "service.start", SERVICE);
    assert_eq!(starts.len(), 2, "{events:#?}");
    let stop = only_event(&events, "service.stop", SERVICE);
    for event in [starts[0], stop, starts[1]] {
        assert_eq!(event["actor"]["kind"], "system", "{event}");
        assert_eq!(event["outcome"], "ok", "{event}");
    }
    assert!(seq(starts[0]) < seq(stop), "{events:#?}");
    assert_eq!(
        seq(starts[1]),
        seq(stop) + 1,
        "the second start does not follow the stop: {events:#?}"
    );
}

#[tokio::test]
async fn denials_are_recorded_at_once_and_summarised_at_shutdown() {
    const FORBIDDEN_REQUESTS: u64 = 20;
    /// Failed authentications: below the lockout threshold of five.
    const UNAUTHORIZED_REQUESTS: u64 = 4;
    let app = spawn_app().await;
    let viewer = app.create_api_key("viewer").await;
    let viewer_label = format!("key:{}", viewer.id);
    let unknown_key = format!("sk_AAAAAAAAAAAA_{}", "A".repeat(43));

    for _ in 0..FORBIDDEN_REQUESTS {
        let response = app.get(AUDIT, &viewer.secret).await;
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    for _ in 0..UNAUTHORIZED_REQUESTS {
        let response = app.get("/api/chats", &unknown_key).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    // The first denial of each address and actor is written at once (off the request path).
    let (forbidden, unauthorized) = eventually("the first denials are recorded", async || {
        let forbidden = denials_of(&app, &viewer_label).await;
        let unauthorized = denials_of(&app, ANONYMOUS).await;
        (!forbidden.is_empty() && !unauthorized.is_empty()).then_some((forbidden, unauthorized))
    })
    .await;
    let viewer_actor = key_actor(&viewer.id, "viewer");
    let anonymous = json!({ "kind": "anonymous", "id": "-", "role": null });
    assert_eq!(forbidden.len(), 1, "{forbidden:#?}");
    assert_denial(&forbidden[0], &viewer_actor, AUDIT, 1);
    assert!(forbidden[0]["details"]["aggregated"].is_null());
    assert_eq!(unauthorized.len(), 1, "{unauthorized:#?}");
    assert_denial(&unauthorized[0], &anonymous, "/api/chats", 1);

    // The rest of the window is summed into one event when it closes: here at shutdown.
    let app = app.restart(&[]).await;

    let forbidden = denials_of(&app, &viewer_label).await;
    assert_eq!(forbidden.len(), 2, "{forbidden:#?}");
    assert_denial(&forbidden[0], &viewer_actor, AUDIT, FORBIDDEN_REQUESTS - 1);
    assert_eq!(forbidden[0]["details"]["aggregated"], true);
    let unauthorized = denials_of(&app, ANONYMOUS).await;
    assert_eq!(unauthorized.len(), 2, "{unauthorized:#?}");
    assert_denial(
        &unauthorized[0],
        &anonymous,
        "/api/chats",
        UNAUTHORIZED_REQUESTS - 1,
    );
    assert_eq!(unauthorized[0]["details"]["aggregated"], true);
}

fn assert_denial(event: &Value, actor: &Value, route: &str, count: u64) {
    assert_eq!(event["actor"], *actor, "{event}");
    assert_eq!(event["outcome"], "denied", "{event}");
    assert_eq!(event["target"], json!({ "kind": "route", "id": route }));
    assert_eq!(event["client_ip"], LOCALHOST, "{event}");
    assert_eq!(event["details"]["count"], count, "{event}");
}

// ---- the chain ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_ten_thousand_events_verifies() {
    const SENDS: usize = 5_000;
    const WORKERS: usize = 16;
    let app = Arc::new(spawn_app().await);
    let mut workers = JoinSet::new();
    for worker in 0..WORKERS {
        let app = Arc::clone(&app);
        workers.spawn(async move {
            let chat = format!("bulk-{worker}");
            for i in (worker..SENDS).step_by(WORKERS) {
                app.send_text(&chat, &format!("message {i}")).await;
            }
        });
    }
    workers.join_all().await;

    let report = verify(&app).await;

    assert_valid(&report);
    // The bootstrap key, the start, one implicit chat.create per worker, then a chat.send and a
    // chat.reply per send.
    let expected = 2 + WORKERS + 2 * SENDS;
    assert_eq!(report["total_entries"], expected, "{report}");
    assert_eq!(report["head_seq"], report["total_entries"], "{report}");
    assert_eq!(report["checked_from_seq"], 1, "{report}");
    let events = trail(&app).await;
    let last = &events[expected - 1];
    assert_eq!(report["head_hash"], last["hash"], "{report}");
}

/// A stopped server with a few dozen events whose chain the CLI verifies; returns it with the
/// seq of an event in the middle of the chain.
async fn stopped_app_with_history() -> (StoppedApp, u64) {
    let app = spawn_app().await;
    for i in 0..10 {
        app.send_text("tampered", &format!("message {i}")).await;
    }
    let head = verify(&app).await["head_seq"].as_u64().expect("head_seq");
    let stopped = app.stop().await;
    let output = stopped.run_cli(&["audit", "verify"]).await;
    assert!(
        output.status.success(),
        "the untouched chain did not verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_valid(&cli_report(&output.stdout));
    (stopped, head / 2)
}

fn cli_report(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "audit verify printed no JSON report ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// The events of the first audit partition: every chain in these tests fits in it.
fn first_partition() -> String {
    audit_events(1)
}

/// Changes the stored events of the stopped server's database in one transaction.
fn change_audit_table(data_dir: &Path, change: impl FnOnce(&mut Table<'_, u64, &'static [u8]>)) {
    let db = Database::open(data_dir.join("sofiia.redb")).expect("open the stopped database");
    let write = db.begin_write().expect("write transaction");
    {
        let name = first_partition();
        let definition: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
        let mut table = write.open_table(definition).expect("audit table");
        change(&mut table);
    }
    write.commit().expect("commit the change");
}

/// Asserts that both the CLI on the stopped file and the API after a restart report the chain
/// invalid first at `seq`.
async fn assert_broken_at(stopped: StoppedApp, seq: u64) {
    let output = stopped.run_cli(&["audit", "verify"]).await;
    assert!(
        !output.status.success(),
        "the CLI accepted a tampered chain: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_invalid_at(&cli_report(&output.stdout), seq);

    let app = stopped.start(&[]).await;
    assert_invalid_at(&verify(&app).await, seq);
}

/// Changes the action index of the first audit partition of the stopped server's database:
/// entries are `(action, seq)`.
fn change_action_index(data_dir: &Path, change: impl FnOnce(&mut Table<'_, (&str, u64), ()>)) {
    let db = Database::open(data_dir.join("sofiia.redb")).expect("open the stopped database");
    let write = db.begin_write().expect("write transaction");
    {
        let name = audit_index("action", 1);
        let definition: TableDefinition<(&str, u64), ()> = TableDefinition::new(&name);
        let mut table = write.open_table(definition).expect("action index");
        change(&mut table);
    }
    write.commit().expect("commit the change");
}

#[tokio::test]
async fn an_event_without_its_index_entry_is_reported_at_its_seq() {
    let (stopped, middle) = stopped_app_with_history().await;
    let action = trail_action_at(&stopped, middle).await;
    change_action_index(&stopped.data_dir(), |index| {
        let removed = index
            .remove((action.as_str(), middle))
            .expect("remove the entry");
        assert!(removed.is_some(), "the entry was there");
    });
    assert_broken_at(stopped, middle).await;
}

#[tokio::test]
async fn an_index_entry_without_its_event_is_reported_at_its_seq() {
    let (stopped, middle) = stopped_app_with_history().await;
    let action = trail_action_at(&stopped, middle).await;
    let other = if action == "chat.send" {
        "chat.reply"
    } else {
        "chat.send"
    };
    change_action_index(&stopped.data_dir(), |index| {
        index.insert((other, middle), ()).expect("add an entry");
    });
    assert_broken_at(stopped, middle).await;
}

#[tokio::test]
async fn an_index_entry_beyond_the_head_is_reported_at_its_seq() {
    let (stopped, _) = stopped_app_with_history().await;
    let (_, last) = stored_head(&stopped.data_dir());
    let beyond = last + 5;
    change_action_index(&stopped.data_dir(), |index| {
        index
            .insert(("chat.send", beyond), ())
            .expect("add an entry");
    });
    assert_broken_at(stopped, beyond).await;
}

/// The action of event `seq`, read from an export of the stopped server's trail.
async fn trail_action_at(stopped: &StoppedApp, seq: u64) -> String {
    let output = stopped.run_cli(&["audit", "export"]).await;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("an NDJSON line"))
        .find(|event| event["seq"] == seq)
        .and_then(|event| event["action"].as_str().map(str::to_owned))
        .expect("the event is in the export")
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_event_is_reported_at_its_seq() {
    let (stopped, middle) = stopped_app_with_history().await;

    change_audit_table(&stopped.data_dir(), |table| {
        let mut stored = table
            .remove(middle)
            .expect("read the event")
            .expect("the event is stored")
            .value()
            .to_vec();
        *stored.last_mut().expect("a non-empty record") ^= 0x01;
        table
            .insert(middle, stored.as_slice())
            .expect("store the changed event");
    });

    assert_broken_at(stopped, middle).await;
}

#[tokio::test]
async fn an_event_removed_from_the_middle_is_reported_at_its_seq() {
    let (stopped, middle) = stopped_app_with_history().await;

    change_audit_table(&stopped.data_dir(), |table| {
        let removed = table.remove(middle).expect("remove the event");
        assert!(removed.is_some(), "no event {middle} to remove");
    });

    assert_broken_at(stopped, middle).await;
}

#[tokio::test]
async fn the_exported_chain_is_gapless_linked_ordered_and_free_of_text_and_secrets() {
    const MARKER: &str = "pelican-quasar-4417";
    let app = spawn_app().await;
    let operator = app.create_api_key("operator").await;
    let text = json!({ "text": format!("{MARKER}: rotate the vault credentials") });
    expect_json(
        app.post_send("facts", &operator.secret, Some("facts-1"), &text)
            .await,
        StatusCode::OK,
    )
    .await;
    expect_json(
        app.post_send("facts", &operator.secret, None, &text).await,
        StatusCode::OK,
    )
    .await;
    // A real key id with a wrong secret: the presented secret must not be recorded either.
    let wrong_secret = "B".repeat(43);
    let wrong_key = format!("sk_{}_{wrong_secret}", key_id(&app.admin_key));
    assert_error(
        app.get("/api/chats", &wrong_key).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    eventually("the denial is recorded", async || {
        (!denials_of(&app, ANONYMOUS).await.is_empty()).then_some(())
    })
    .await;

    let export = ndjson(app.get(EXPORT, &app.admin_key).await).await;

    let events = parse_events(&export);
    let genesis = "0".repeat(64);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(seq(event), i as u64 + 1, "seq gap before {event}");
        let previous = match i {
            0 => genesis.as_str(),
            _ => events[i - 1]["hash"].as_str().expect("hash"),
        };
        assert_eq!(event["prev_hash"], previous, "broken link at {event}");
        assert_eq!(event["hash"], recomputed_hash(event), "{event}");
        assert_small_details(event);
    }
    assert!(
        events
            .windows(2)
            .all(|pair| ts_ms(&pair[0]) <= ts_ms(&pair[1])),
        "ts_ms decreases along the chain"
    );
    assert!(actions(&events).contains(&"chat.send"));
    assert!(!export.contains(MARKER), "message text in the trail");
    for secret in [&app.admin_key, &operator.secret, &wrong_key] {
        assert!(!export.contains(&secret[16..]), "a key secret in the trail");
    }
    assert!(
        !export.contains(&wrong_secret),
        "a presented secret in the trail"
    );
}

/// SHA-256(prev_hash bytes ‖ the event without `hash`, keys sorted, compact) in lowercase hex.
fn recomputed_hash(event: &Value) -> String {
    let mut body = event.clone();
    body.as_object_mut()
        .expect("an event is an object")
        .remove("hash");
    let prev = event["prev_hash"].as_str().expect("prev_hash is a string");
    let prev = hex::decode(prev).expect("prev_hash is hex");
    let canonical = serde_json::to_vec(&body).expect("serialise the event");
    hex::encode(
        Sha256::new()
            .chain_update(prev)
            .chain_update(canonical)
            .finalize(),
    )
}

/// `details` holds only strings, non-negative integers and booleans.
fn assert_small_details(event: &Value) {
    let details = event["details"].as_object().expect("details is an object");
    for (name, value) in details {
        assert!(
            value.is_string() || value.is_u64() || value.is_boolean(),
            "detail {name} is {value}: {event}"
        );
    }
}

// ---- filters and paging ----

/// Whether an exported event matches the `/api/audit` query, as `docs/audit-format.md` defines
/// the filters.
fn matches(event: &Value, query: &[(&str, String)]) -> bool {
    query.iter().all(|(name, value)| match *name {
        "actor" | "target" => label(&event[*name]) == *value,
        "action" | "outcome" => event[*name] == value.as_str(),
        "since" => ts_ms(event) >= instant_ms(value),
        "until" => ts_ms(event) < instant_ms(value),
        other => panic!("no filter {other}"),
    })
}

/// Unix milliseconds or an RFC 3339 time, as a filter value.
fn instant_ms(text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| {
        let time = humantime::parse_rfc3339(text).expect("an RFC 3339 time");
        let since_epoch = time.duration_since(UNIX_EPOCH).expect("after 1970");
        u64::try_from(since_epoch.as_millis()).expect("milliseconds fit in u64")
    })
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[tokio::test]
async fn filtered_pages_hold_exactly_the_matching_events_once_each() {
    const PAGE: usize = 3;
    let app = spawn_app().await;
    let alice = app.create_api_key("operator").await;
    let bob = app.create_api_key("operator").await;
    let viewer = app.create_api_key("viewer").await;
    for (key, chat) in [(&alice, "f-1"), (&alice, "f-2"), (&bob, "f-3")] {
        let created = app.create_chat(&key.secret, &json!({ "id": chat })).await;
        expect_json(created, StatusCode::CREATED).await;
    }
    for (i, (key, chat)) in [
        (&alice, "f-1"),
        (&alice, "f-2"),
        (&bob, "f-1"),
        (&alice, "f-1"),
        (&bob, "f-3"),
        (&bob, "f-4"),
        (&alice, "f-1"),
        (&bob, "f-3"),
        (&bob, "f-1"),
    ]
    .into_iter()
    .enumerate()
    {
        let text = json!({ "text": format!("message {i}") });
        let sent = app.post_send(chat, &key.secret, None, &text).await;
        expect_json(sent, StatusCode::OK).await;
    }
    for (key, chat, title) in [
        (&alice, "f-1", "first"),
        (&bob, "f-2", "second"),
        (&alice, "f-3", "third"),
        (&bob, "f-1", "fourth"),
    ] {
        let path = format!("/api/chats/{chat}");
        let patched = app
            .patch_json(&path, &key.secret, &json!({ "title": title }))
            .await;
        expect_json(patched, StatusCode::OK).await;
    }
    // One denial from each of four actors, each the first of its window.
    for key in [&alice, &bob, &viewer] {
        let response = app.get(AUDIT, &key.secret).await;
        assert_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let response = app.get_anonymous(AUDIT).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    eventually("the four denials are recorded", async || {
        let denials = selected(&app, &[("action", "auth.denied")]).await;
        (denials.len() == 4).then_some(())
    })
    .await;

    let events = trail(&app).await;

    let third = events.len() / 3;
    let window = (ts_ms(&events[third]), ts_ms(&events[2 * third]) + 1);
    let replies: Vec<u64> = events
        .iter()
        .filter(|event| event["action"] == "chat.reply")
        .map(ts_ms)
        .collect();
    let reply_window = (replies[1], replies[replies.len() - 1]);
    let queries: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("action", "chat.send".into()),
            ("target", "chat:f-1".into()),
        ],
        vec![
            ("actor", format!("key:{}", bob.id)),
            ("action", "chat.send".into()),
        ],
        vec![("actor", format!("key:{}", alice.id))],
        vec![("target", "chat:f-2".into())],
        vec![("outcome", "denied".into())],
        vec![("action", "chat.update".into()), ("outcome", "ok".into())],
        vec![
            ("since", window.0.to_string()),
            ("until", window.1.to_string()),
        ],
        vec![
            ("action", "chat.reply".into()),
            ("since", rfc3339(reply_window.0)),
            ("until", rfc3339(reply_window.1)),
        ],
    ];
    for query in &queries {
        let expected: Vec<&Value> = events
            .iter()
            .rev()
            .filter(|event| matches(event, query))
            .collect();
        assert!(
            expected.len() > PAGE && expected.len() < events.len(),
            "{query:?} selects {} of {} events; pick a query spanning pages",
            expected.len(),
            events.len()
        );
        let params: Vec<(&str, &str)> = query
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();

        let paged = app.all_pages(AUDIT, &params, PAGE).await;

        let seqs: Vec<u64> = paged.iter().map(seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] > pair[1]),
            "{query:?}: seq not strictly decreasing: {seqs:?}"
        );
        assert_eq!(paged.iter().collect::<Vec<_>>(), expected, "{query:?}");
    }

    for (name, bad) in [
        ("cursor", "!!!"),
        ("action", "chat.explode"),
        ("outcome", "maybe"),
        ("since", "yesterday"),
        ("until", "2024-13-45T00:00:00Z"),
        ("limit", "0"),
        ("limit", "201"),
    ] {
        let response = app
            .get_with_query(AUDIT, &app.admin_key, &[(name, bad)])
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

// ---- the independent verifier ----

#[tokio::test]
async fn python_verifier_accepts_exports_and_rejects_tampered_ones() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.send_text("verified", &format!("message {i}")).await;
    }
    let api_export = ndjson(app.get(EXPORT, &app.admin_key).await).await;
    let stopped = app.stop().await;
    let output = stopped.run_cli(&["audit", "export"]).await;
    assert!(
        output.status.success(),
        "audit export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cli_export = String::from_utf8(output.stdout).expect("a UTF-8 export");
    // The offline export continues the same chain: stop, then its own export record.
    let continued = cli_export
        .strip_prefix(api_export.as_str())
        .expect("the CLI export does not start with the API export");
    assert_eq!(
        actions(&parse_events(continued)),
        ["service.stop", "audit.export"]
    );
    let dir = tempfile::tempdir().expect("a temporary directory");

    for (name, export) in [("api.ndjson", &api_export), ("cli.ndjson", &cli_export)] {
        let (code, verdict) = python_verdict(dir.path(), name, export).await;
        assert_eq!(code, 0, "{name}: {verdict}");
        assert_eq!(verdict["valid"], true, "{name}: {verdict}");
        assert_eq!(
            verdict["events"],
            export.lines().count(),
            "{name}: {verdict}"
        );
    }

    let lines: Vec<&str> = cli_export.lines().collect();
    let middle = lines.len() / 2;
    let mut changed: Value = serde_json::from_str(lines[middle]).expect("JSON line");
    let middle_seq = seq(&changed);
    assert_eq!(changed["outcome"], "ok", "{changed}");
    changed["outcome"] = json!("error");
    let changed_line = changed.to_string();
    let mut with_change = lines.clone();
    with_change[middle] = &changed_line;
    let mut without_line = lines.clone();
    without_line.remove(middle);

    for (name, tampered) in [
        ("changed.ndjson", with_change),
        ("removed.ndjson", without_line),
    ] {
        let export = tampered.join("\n") + "\n";
        let (code, verdict) = python_verdict(dir.path(), name, &export).await;
        assert_eq!(code, 1, "{name}: {verdict}");
        assert_eq!(verdict["valid"], false, "{name}: {verdict}");
        assert_eq!(verdict["seq"], middle_seq, "{name}: {verdict}");
    }
}

#[tokio::test]
async fn a_damaged_chain_head_is_reported_not_a_failure() {
    const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let (stopped, _) = stopped_app_with_history().await;
    {
        let db = Database::open(stopped.data_dir().join("sofiia.redb")).expect("open the database");
        let write = db.begin_write().expect("write transaction");
        write
            .open_table(META_TABLE)
            .expect("meta table")
            .insert("audit_head", b"\x01garbage".as_slice())
            .expect("damage the head");
        write.commit().expect("commit the damage");
    }
    let output = stopped.run_cli(&["audit", "verify"]).await;
    assert!(
        !output.status.success(),
        "a damaged head must fail the check"
    );
    let report = cli_report(&output.stdout);
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(
        report["first_invalid_seq"], report["total_entries"],
        "{report}"
    );
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("head")),
        "{report}"
    );
}

/// `head_seq:head_hash` of a verification report: the anchor an operator records.
fn anchor_of(report: &Value) -> String {
    format!(
        "{}:{}",
        report["head_seq"],
        report["head_hash"].as_str().expect("head_hash")
    )
}

/// Removes every event after `keep` and its index entries, and puts back the chain head as it
/// was when `keep` was the head: a cut with nothing a chain walk could notice.
fn cut_tail(data_dir: &Path, keep: u64, head_then: &[u8]) {
    let db = Database::open(data_dir.join("sofiia.redb")).expect("open the stopped database");
    let write = db.begin_write().expect("write transaction");
    {
        let name = first_partition();
        let definition: TableDefinition<u64, &[u8]> = TableDefinition::new(&name);
        let mut events = write.open_table(definition).expect("audit table");
        events.retain(|seq, _| seq <= keep).expect("cut the events");
        for kind in ["actor", "action", "target", "outcome"] {
            let name = audit_index(kind, 1);
            let definition: TableDefinition<(&str, u64), ()> = TableDefinition::new(&name);
            let mut index = write.open_table(definition).expect("index");
            index
                .retain(|(_, seq), ()| seq <= keep)
                .expect("cut the entries");
        }
        let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
        write
            .open_table(meta)
            .expect("meta")
            .insert("audit_head", head_then)
            .expect("re-link the head");
    }
    write.commit().expect("commit the cut");
}

/// The stored chain head of a stopped server, as bytes, and the last event's seq (the head's).
fn stored_head(data_dir: &Path) -> (Vec<u8>, u64) {
    let db = Database::open(data_dir.join("sofiia.redb")).expect("open the stopped database");
    let read = db.begin_read().expect("read transaction");
    let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    let head = read
        .open_table(meta)
        .expect("meta")
        .get("audit_head")
        .expect("read the head")
        .expect("a head")
        .value()
        .to_vec();
    let name = first_partition();
    let last = read
        .open_table(TableDefinition::<u64, &[u8]>::new(&name))
        .expect("audit table")
        .last()
        .expect("read the last event")
        .expect("an event")
        .0
        .value();
    (head, last)
}

#[tokio::test]
async fn a_cut_tail_passes_the_chain_walk_but_not_an_expected_head() {
    let (stopped, _) = stopped_app_with_history().await;
    let (cut_point, keep) = stored_head(&stopped.data_dir());
    let app = stopped.start(&[]).await;
    for i in 0..5 {
        app.send_text("after-the-anchor", &format!("later {i}"))
            .await;
    }
    let recorded = verify(&app).await;
    let expected = anchor_of(&recorded);
    let still_there = expect_json(
        app.get(&format!("{VERIFY}?expect={expected}"), &app.admin_key)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_valid(&still_there);
    assert_eq!(
        still_there["expected"]["verdict"], "in_chain",
        "{still_there}"
    );
    let stopped = app.stop().await;

    cut_tail(&stopped.data_dir(), keep, &cut_point);
    let walked = stopped.run_cli(&["audit", "verify"]).await;
    assert!(
        walked.status.success(),
        "a clean cut is invisible to the chain alone: {}",
        String::from_utf8_lossy(&walked.stdout)
    );

    let anchored = stopped
        .run_cli(&["audit", "verify", "--expect", &expected])
        .await;
    assert!(!anchored.status.success());
    let report = cli_report(&anchored.stdout);
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["expected"]["verdict"], "beyond_head", "{report}");

    let app = stopped.start(&[]).await;
    let report = expect_json(
        app.get(&format!("{VERIFY}?expect={expected}"), &app.admin_key)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["expected"]["verdict"], "beyond_head", "{report}");
    let replaced = format!("{}:{}", keep, "ab".repeat(32));
    let report = expect_json(
        app.get(&format!("{VERIFY}?expect={replaced}"), &app.admin_key)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["expected"]["verdict"], "hash_differs", "{report}");
    assert_error(
        app.get(&format!("{VERIFY}?expect=12:nothex"), &app.admin_key)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let export = ndjson(app.get(EXPORT, &app.admin_key).await).await;
    let (code, verdict) =
        python_verdict_with(dir.path(), "cut.ndjson", &export, &["--expect", &expected]).await;
    assert_eq!(code, 1, "{verdict}");
    let kept = parse_events(&export)
        .into_iter()
        .find(|event| event["seq"] == keep)
        .expect("the last kept event is exported");
    let kept = format!("{keep}:{}", kept["hash"].as_str().expect("hash"));
    let (code, verdict) =
        python_verdict_with(dir.path(), "kept.ndjson", &export, &["--expect", &kept]).await;
    assert_eq!(code, 0, "{verdict}");
}

/// The `audit_head` log lines of `logs` with `moment`, as `seq:hash`.
fn logged_heads(logs: &str, moment: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["event"] == "audit_head" && line["moment"] == moment)
        .map(|line| {
            format!(
                "{}:{}",
                line["seq"],
                line["hash"].as_str().expect("a logged hash")
            )
        })
        .collect()
}

#[tokio::test]
async fn the_head_is_logged_at_start_and_stop_exported_as_a_gauge_and_holds_the_chain_later() {
    let mut app = spawn_app().await;
    app.send_text("anchored", "one").await;
    let report = verify(&app).await;
    let after_verify = report["head_seq"].as_u64().expect("head_seq") + 1;
    let metrics = app.metrics().await;
    let gauge = metrics
        .lines()
        .find_map(|line| line.strip_prefix("sofiia_audit_head_seq "))
        .expect("the head gauge");
    assert_eq!(gauge.trim().parse::<u64>().expect("a number"), after_verify);
    assert_eq!(
        logged_heads(&app.logs(), "periodic").len(),
        1,
        "logged at start"
    );

    assert!(app.terminate().await.success());
    let at_stop = logged_heads(&app.logs(), "stop");
    assert_eq!(at_stop.len(), 1, "{}", app.logs());
    let app = app.restart_after_kill(&[]).await;
    let report = expect_json(
        app.get(&format!("{VERIFY}?expect={}", at_stop[0]), &app.admin_key)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_valid(&report);
    assert_eq!(report["expected"]["verdict"], "in_chain", "{report}");
}
