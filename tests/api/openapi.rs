//! The OpenAPI document served at `GET /api/openapi.json`, held against the real server.
//!
//! Every documented operation is driven through its success and its usual refusals, and every
//! response must be one the document lists for that operation: a documented status, the headers
//! it marks required, a documented content type, and a body that validates against the schema
//! given for that status. A test ends by asserting that it drove every documented operation to
//! a success, so an operation added to the document without a case here fails it too.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use jsonschema::{Draft, Validator};
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::fake_node::{Behaviour, FakeNode, node};
use crate::helpers::{IDEMPOTENCY_KEY, TestApp, spawn_app_with, spawn_app_with_config};

/// The document, and what was checked against it.
struct Contract {
    document: Value,
    /// `(METHOD, path template)` of the operations that answered with a success.
    succeeded: RefCell<BTreeSet<(String, String)>>,
}

/// A checked response: its status, headers and body.
struct Checked {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Contract {
    /// Fetches the document the way a client does, and checks that answer against it too.
    async fn load(app: &TestApp) -> Contract {
        let response = app.get_anonymous("/api/openapi.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.expect("the document");
        let contract = Contract {
            document: serde_json::from_str(&text).expect("the document is JSON"),
            succeeded: RefCell::new(BTreeSet::new()),
        };
        let request = app.request(Method::GET, "/api/openapi.json");
        contract
            .check(Method::GET, "/api/openapi.json", request)
            .await;
        contract
    }

    /// Sends `request`, an instance of the operation `method template`, and checks its answer.
    async fn check(&self, method: Method, template: &str, request: RequestBuilder) -> Checked {
        let response = request.send().await.expect("failed to execute request");
        let status = response.status();
        let headers = response.headers().clone();
        let label = format!("{method} {template} → {status}");
        let operation = &self.document["paths"][template][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let documented = self.resolve(&operation["responses"][status.as_str()]);
        assert!(
            documented.is_object(),
            "{label}: status not documented; body: {}",
            response.text().await.unwrap_or_default()
        );
        self.check_headers(&label, documented, &headers);
        let content_type = headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().expect("an ASCII content type").to_owned());
        let body = match (content_type, documented.get("content")) {
            (None, None) => {
                let text = response.text().await.expect("the body");
                assert!(text.is_empty(), "{label}: a body where none is documented");
                Value::Null
            }
            (Some(content_type), Some(content)) => {
                let essence = content_type.split(';').next().unwrap_or_default().trim();
                let media = &content[essence];
                assert!(
                    media.is_object(),
                    "{label}: content type {content_type} not documented"
                );
                self.check_body(&label, essence, &media["schema"], response)
                    .await
            }
            (found, documented) => panic!(
                "{label}: content type {found:?}, documented content {:?}",
                documented.map(|c| c.as_object().map(|m| m.keys().collect::<Vec<_>>()))
            ),
        };
        if status.is_success() {
            self.succeeded
                .borrow_mut()
                .insert((method.to_string(), template.to_owned()));
        }
        Checked {
            status,
            headers,
            body,
        }
    }

    /// Every header the response object marks required is present, and every documented
    /// header present validates against its schema.
    fn check_headers(&self, label: &str, documented: &Value, headers: &reqwest::header::HeaderMap) {
        let Some(documented) = documented["headers"].as_object() else {
            panic!("{label}: no headers documented; X-Request-Id is on every response");
        };
        assert!(
            documented.contains_key("X-Request-Id"),
            "{label}: X-Request-Id is not documented"
        );
        for (name, header) in documented {
            let header = self.resolve(header);
            match headers.get(name.as_str()) {
                None => assert!(
                    header["required"] != true,
                    "{label}: required header {name} missing"
                ),
                Some(value) => {
                    let value = Value::from(value.to_str().expect("an ASCII header"));
                    self.validate(
                        &format!("{label}, header {name}"),
                        &header["schema"],
                        &value,
                    );
                }
            }
        }
    }

    async fn check_body(
        &self,
        label: &str,
        essence: &str,
        schema: &Value,
        response: reqwest::Response,
    ) -> Value {
        match essence {
            // Endless: its status and headers are what can be checked.
            "text/event-stream" => Value::Null,
            "application/json" => {
                let text = response.text().await.expect("the body");
                let body: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{label}: body is not JSON ({e}): {text}"));
                self.validate(label, schema, &body);
                body
            }
            // Each line is an audit event, as the operation's description says.
            "application/x-ndjson" => {
                let text = response.text().await.expect("the body");
                let event = json!({ "$ref": "#/components/schemas/AuditEvent" });
                let lines: Vec<Value> = text
                    .lines()
                    .map(|line| serde_json::from_str(line).expect("an NDJSON line"))
                    .collect();
                for line in &lines {
                    self.validate(label, &event, line);
                }
                Value::Array(lines)
            }
            _ => {
                let text = response.text().await.expect("the body");
                self.validate(label, schema, &Value::from(text.clone()));
                Value::from(text)
            }
        }
    }

    /// Validates `instance` against `schema`, whose references point into the document.
    fn validate(&self, label: &str, schema: &Value, instance: &Value) {
        let root = json!({
            "allOf": [schema],
            "components": { "schemas": self.document["components"]["schemas"] },
        });
        let validator: Validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{label}: the document's schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{label}: does not validate: {errors:#?}\n{instance}"
        );
    }

    /// Follows a `$ref` to a reusable object of the document (a response, a header).
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(target) => {
                let pointer = target.strip_prefix('#').expect("a local reference");
                self.document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling reference {target}"))
            }
            None => value,
        }
    }

    /// Every documented operation answered a success at least once.
    fn assert_every_operation_succeeded(&self) {
        let paths = self.document["paths"].as_object().expect("paths");
        let documented: BTreeSet<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("a path item");
                methods
                    .keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let succeeded = self.succeeded.borrow();
        let missing: Vec<_> = documented.difference(&succeeded).collect();
        assert!(missing.is_empty(), "never driven to a success: {missing:?}");
    }
}

fn error_code(checked: &Checked) -> &str {
    checked.body["error"]["code"].as_str().unwrap_or_default()
}

fn assert_answer(checked: &Checked, status: StatusCode, code: Option<&str>) {
    assert_eq!(checked.status, status, "{}", checked.body);
    if let Some(code) = code {
        assert_eq!(error_code(checked), code, "{}", checked.body);
    }
}

#[tokio::test]
async fn every_operation_answers_as_documented() {
    let env = [
        // A third send to one chat within the minute is refused: a cheap 429.
        ("SOFIIA_RATE_LIMIT__CHAT__BURST", "2"),
        ("SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE", "1"),
        // The last steps lock this address out with a few wrong keys.
        ("SOFIIA_AUTH__LOCKOUT_FAILURES", "3"),
    ];
    let app = spawn_app_with(&env).await;
    let admin = app.admin_key.clone();
    let contract = Contract::load(&app).await;
    let c = &contract;
    let get = |path: &str| app.request(Method::GET, path);
    let get_as = |path: &str, key: &str| app.request(Method::GET, path).bearer_auth(key);
    let post_as = |path: &str, key: &str, body: &Value| {
        app.request(Method::POST, path).bearer_auth(key).json(body)
    };
    let ok = StatusCode::OK;

    // Probes and metadata, open to anyone.
    let livez = c.check(Method::GET, "/livez", get("/livez")).await;
    assert_answer(&livez, ok, None);
    let health = c
        .check(Method::GET, "/api/health", get("/api/health"))
        .await;
    assert_answer(&health, ok, None);
    let metrics = c.check(Method::GET, "/metrics", get("/metrics")).await;
    assert_answer(&metrics, ok, None);

    // Keys.
    let keys = "/api/admin/keys";
    let new_key = async |role: &str| {
        let body = json!({ "name": format!("{role} key"), "role": role });
        let created = c
            .check(Method::POST, keys, post_as(keys, &admin, &body))
            .await;
        assert_answer(&created, StatusCode::CREATED, None);
        let field = |name: &str| created.body[name].as_str().expect("a string").to_owned();
        (field("id"), field("key"))
    };
    let (_, operator) = new_key("operator").await;
    let (viewer_id, viewer) = new_key("viewer").await;
    let (_, auditor) = new_key("auditor").await;
    let wrong_role = json!({ "name": "x", "role": "superuser" });
    let refused = c
        .check(Method::POST, keys, post_as(keys, &admin, &wrong_role))
        .await;
    assert_answer(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let listed = c.check(Method::GET, keys, get_as(keys, &admin)).await;
    assert_answer(&listed, ok, None);
    let listed = c.check(Method::GET, keys, get_as(keys, &operator)).await;
    assert_answer(&listed, StatusCode::FORBIDDEN, Some("forbidden"));

    // Chats: create, and the refusals of a JSON body.
    let chats = "/api/chats";
    let body = json!({ "id": "contract", "title": "the contract" });
    let created = c
        .check(Method::POST, chats, post_as(chats, &operator, &body))
        .await;
    assert_answer(&created, StatusCode::CREATED, None);
    let again = c
        .check(Method::POST, chats, post_as(chats, &operator, &body))
        .await;
    assert_answer(&again, StatusCode::CONFLICT, Some("conflict"));
    let bad_id = json!({ "id": "not a slug" });
    let refused = c
        .check(Method::POST, chats, post_as(chats, &operator, &bad_id))
        .await;
    assert_answer(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let as_text = app
        .request(Method::POST, chats)
        .bearer_auth(&operator)
        .header(CONTENT_TYPE, "text/plain")
        .body("{}");
    let refused = c.check(Method::POST, chats, as_text).await;
    assert_answer(
        &refused,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Some("unsupported_media_type"),
    );
    let not_json = app
        .request(Method::POST, chats)
        .bearer_auth(&operator)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"id\":");
    let refused = c.check(Method::POST, chats, not_json).await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let huge = json!({ "title": "x".repeat(70 * 1024) });
    let refused = c
        .check(Method::POST, chats, post_as(chats, &operator, &huge))
        .await;
    assert_answer(
        &refused,
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("payload_too_large"),
    );
    let anonymous = app.request(Method::POST, chats).json(&body);
    let refused = c.check(Method::POST, chats, anonymous).await;
    assert_answer(&refused, StatusCode::UNAUTHORIZED, Some("unauthorized"));
    let refused = c
        .check(Method::POST, chats, post_as(chats, &viewer, &body))
        .await;
    assert_answer(&refused, StatusCode::FORBIDDEN, Some("forbidden"));

    // Chats: list, read, update.
    let listed = c.check(Method::GET, chats, get_as(chats, &viewer)).await;
    assert_answer(&listed, ok, None);
    let garbage = "/api/chats?cursor=not-a-cursor";
    let refused = c.check(Method::GET, chats, get_as(garbage, &viewer)).await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let chat = "/api/chats/{id}";
    let read = c
        .check(Method::GET, chat, get_as("/api/chats/contract", &viewer))
        .await;
    assert_answer(&read, ok, None);
    let missing = c
        .check(Method::GET, chat, get_as("/api/chats/nowhere", &viewer))
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));
    let patch = |path: &str, body: Value| {
        app.request(Method::PATCH, path)
            .bearer_auth(&operator)
            .json(&body)
    };
    let updated = c
        .check(
            Method::PATCH,
            chat,
            patch("/api/chats/contract", json!({ "title": "renamed" })),
        )
        .await;
    assert_answer(&updated, ok, None);
    let refused = c
        .check(
            Method::PATCH,
            chat,
            patch("/api/chats/contract", json!({ "archived": "yes" })),
        )
        .await;
    assert_answer(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let missing = c
        .check(
            Method::PATCH,
            chat,
            patch("/api/chats/nowhere", json!({ "title": "x" })),
        )
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));

    // Send, with its idempotency and rate-limit headers.
    let send = "/api/chats/{id}/send";
    let send_to = |chat: &str, key: Option<&str>, body: Value| {
        let request = post_as(&format!("/api/chats/{chat}/send"), &operator, &body);
        match key {
            Some(key) => request.header(IDEMPOTENCY_KEY, key),
            None => request,
        }
    };
    let text = json!({ "text": "hello", "metadata": { "ticket": 7 } });
    let sent = c
        .check(
            Method::POST,
            send,
            send_to("contract", Some("k-1"), text.clone()),
        )
        .await;
    assert_answer(&sent, ok, None);
    let replayed = c
        .check(Method::POST, send, send_to("contract", Some("k-1"), text))
        .await;
    assert_answer(&replayed, ok, None);
    assert_eq!(replayed.headers["idempotency-replayed"], "true");
    assert_eq!(replayed.body, sent.body);
    let other = json!({ "text": "another" });
    let mismatch = c
        .check(Method::POST, send, send_to("contract", Some("k-1"), other))
        .await;
    assert_answer(
        &mismatch,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("idempotency_key_mismatch"),
    );
    let bad_key =
        send_to("contract", None, json!({ "text": "x" })).header("X-Idempotency-Key", "a b");
    let refused = c.check(Method::POST, send, bad_key).await;
    assert_answer(
        &refused,
        StatusCode::BAD_REQUEST,
        Some("idempotency_key_invalid"),
    );
    let blank = c
        .check(
            Method::POST,
            send,
            send_to("contract", None, json!({ "text": " " })),
        )
        .await;
    assert_answer(
        &blank,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let viewer_send = post_as("/api/chats/contract/send", &viewer, &json!({ "text": "x" }));
    let refused = c.check(Method::POST, send, viewer_send).await;
    assert_answer(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    let mut limited = None;
    for n in 0..3 {
        let sent = c
            .check(
                Method::POST,
                send,
                send_to("limited", None, json!({ "text": n.to_string() })),
            )
            .await;
        limited = Some(sent);
    }
    let limited = limited.expect("three sends");
    assert_answer(
        &limited,
        StatusCode::TOO_MANY_REQUESTS,
        Some("rate_limited"),
    );
    assert_eq!(limited.body["error"]["scope"], "chat");

    // Messages.
    let messages = "/api/chats/{id}/messages";
    let first = c
        .check(
            Method::GET,
            messages,
            get_as("/api/chats/contract/messages?limit=1", &viewer),
        )
        .await;
    assert_answer(&first, ok, None);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("more than one message");
    let path = format!("/api/chats/contract/messages?limit=1&cursor={cursor}");
    let next = c.check(Method::GET, messages, get_as(&path, &viewer)).await;
    assert_answer(&next, ok, None);
    let garbage = "/api/chats/contract/messages?cursor=%2F%2F";
    let refused = c
        .check(Method::GET, messages, get_as(garbage, &viewer))
        .await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let missing = c
        .check(
            Method::GET,
            messages,
            get_as("/api/chats/nowhere/messages", &viewer),
        )
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));

    // Event streams: their status and headers; the body never ends.
    let events = "/api/chats/{id}/events";
    let stream = c
        .check(
            Method::GET,
            events,
            get_as("/api/chats/contract/events", &viewer),
        )
        .await;
    assert_answer(&stream, ok, None);
    let missing = c
        .check(
            Method::GET,
            events,
            get_as("/api/chats/nowhere/events", &viewer),
        )
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));
    let bad_id = get_as("/api/chats/contract/events", &viewer).header("Last-Event-ID", "x");
    let refused = c.check(Method::GET, events, bad_id).await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let admin_events = "/api/admin/events/stream";
    let stream = c
        .check(
            Method::GET,
            admin_events,
            get_as("/api/admin/events/stream?topics=chats,audit", &admin),
        )
        .await;
    assert_answer(&stream, ok, None);
    let refused = c
        .check(
            Method::GET,
            admin_events,
            get_as("/api/admin/events/stream?topics=weather", &admin),
        )
        .await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let refused = c
        .check(Method::GET, admin_events, get_as(admin_events, &viewer))
        .await;
    assert_answer(&refused, StatusCode::FORBIDDEN, Some("forbidden"));

    // System health, backups, retention.
    let system = "/api/admin/system/health";
    assert_answer(
        &c.check(Method::GET, system, get_as(system, &viewer)).await,
        ok,
        None,
    );
    let refused = c.check(Method::GET, system, get_as(system, &auditor)).await;
    assert_answer(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    let backup = "/api/admin/backup";
    let made = c
        .check(
            Method::POST,
            backup,
            app.request(Method::POST, backup).bearer_auth(&admin),
        )
        .await;
    assert_answer(&made, StatusCode::CREATED, None);
    let backups = "/api/admin/backups";
    assert_answer(
        &c.check(Method::GET, backups, get_as(backups, &admin)).await,
        ok,
        None,
    );
    let run = "/api/admin/retention/run";
    let dry = c
        .check(
            Method::POST,
            run,
            post_as(run, &admin, &json!({ "dry_run": true })),
        )
        .await;
    assert_answer(&dry, ok, None);
    let started = c
        .check(Method::POST, run, post_as(run, &admin, &json!({})))
        .await;
    assert_answer(&started, StatusCode::ACCEPTED, None);
    let refused = c
        .check(
            Method::POST,
            run,
            post_as(run, &admin, &json!({ "dry": true })),
        )
        .await;
    assert_answer(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let runs = "/api/admin/retention/runs";
    assert_answer(
        &c.check(Method::GET, runs, get_as(runs, &admin)).await,
        ok,
        None,
    );
    let refused = c
        .check(
            Method::GET,
            runs,
            get_as("/api/admin/retention/runs?limit=500", &admin),
        )
        .await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let entry = "/api/admin/retention/runs/{id}";
    let path = format!("/api/admin/retention/runs/{}", dry.body["id"]);
    assert_answer(
        &c.check(Method::GET, entry, get_as(&path, &admin)).await,
        ok,
        None,
    );
    let missing = c
        .check(
            Method::GET,
            entry,
            get_as("/api/admin/retention/runs/999", &admin),
        )
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));
    let missing = c
        .check(
            Method::GET,
            entry,
            get_as("/api/admin/retention/runs/first", &admin),
        )
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));

    // Audit.
    let audit = "/api/audit";
    let page = c
        .check(Method::GET, audit, get_as("/api/audit?limit=2", &auditor))
        .await;
    assert_answer(&page, ok, None);
    assert!(page.body["next_cursor"].is_string(), "{}", page.body);
    let refused = c
        .check(
            Method::GET,
            audit,
            get_as("/api/audit?action=chat.delete", &auditor),
        )
        .await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let refused = c.check(Method::GET, audit, get_as(audit, &operator)).await;
    assert_answer(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    let verify = "/api/audit/verify";
    let verdict = c.check(Method::GET, verify, get_as(verify, &auditor)).await;
    assert_answer(&verdict, ok, None);
    let anchor = format!("/api/audit/verify?expect=1:{}", "0".repeat(64));
    let verdict = c
        .check(Method::GET, verify, get_as(&anchor, &auditor))
        .await;
    assert_answer(&verdict, ok, None);
    assert_eq!(verdict.body["expected"]["verdict"], "hash_differs");
    let refused = c
        .check(
            Method::GET,
            verify,
            get_as("/api/audit/verify?expect=1", &auditor),
        )
        .await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));
    let export = "/api/audit/export";
    let exported = c.check(Method::GET, export, get_as(export, &auditor)).await;
    assert_answer(&exported, ok, None);
    assert!(
        exported
            .body
            .as_array()
            .is_some_and(|lines| !lines.is_empty())
    );
    let refused = c
        .check(
            Method::GET,
            export,
            get_as("/api/audit/export?since=yesterday", &auditor),
        )
        .await;
    assert_answer(&refused, StatusCode::BAD_REQUEST, Some("invalid_request"));

    // Revocation.
    let key = "/api/admin/keys/{id}";
    let delete = |path: &str| app.request(Method::DELETE, path).bearer_auth(&admin);
    let revoked = c
        .check(
            Method::DELETE,
            key,
            delete(&format!("/api/admin/keys/{viewer_id}")),
        )
        .await;
    assert_answer(&revoked, ok, None);
    let missing = c
        .check(Method::DELETE, key, delete("/api/admin/keys/nothing"))
        .await;
    assert_answer(&missing, StatusCode::NOT_FOUND, Some("not_found"));
    let refused = c
        .check(Method::GET, "/api/auth/me", get_as("/api/auth/me", &viewer))
        .await;
    assert_answer(&refused, StatusCode::UNAUTHORIZED, Some("unauthorized"));

    // Sessions.
    let login = "/api/auth/login";
    let open = app
        .request(Method::POST, login)
        .json(&json!({ "key": operator }));
    let opened = c.check(Method::POST, login, open).await;
    assert_answer(&opened, ok, None);
    let cookie = opened.headers[SET_COOKIE].to_str().expect("a cookie");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    let me = "/api/auth/me";
    let with_cookie =
        |method: Method, path: &str| app.request(method, path).header(COOKIE, &cookie);
    let who = c.check(Method::GET, me, with_cookie(Method::GET, me)).await;
    assert_answer(&who, ok, None);
    assert_eq!(who.body["kind"], "session");
    let logout = "/api/auth/logout";
    let refused = c
        .check(Method::POST, logout, with_cookie(Method::POST, logout))
        .await;
    assert_answer(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    let closing = with_cookie(Method::POST, logout).header("X-Requested-With", "sofiia-console");
    let closed = c.check(Method::POST, logout, closing).await;
    assert_answer(&closed, StatusCode::NO_CONTENT, None);
    let refused = c.check(Method::GET, me, with_cookie(Method::GET, me)).await;
    assert_answer(&refused, StatusCode::UNAUTHORIZED, Some("unauthorized"));
    let refused = c
        .check(
            Method::POST,
            login,
            app.request(Method::POST, login)
                .json(&json!({ "secret": "x" })),
        )
        .await;
    assert_answer(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );

    // Last, as it locks this address out: wrong keys until the lockout, which then refuses
    // every authenticated request too. (The revoked key above was one failure already.)
    let wrong = || {
        app.request(Method::POST, login)
            .json(&json!({ "key": "not-a-key" }))
    };
    let mut locked = None;
    for _ in 0..5 {
        let answer = c.check(Method::POST, login, wrong()).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            locked = Some(answer);
            break;
        }
        assert_answer(&answer, StatusCode::UNAUTHORIZED, Some("unauthorized"));
    }
    let locked = locked.expect("locked out after three failures");
    assert_answer(&locked, StatusCode::TOO_MANY_REQUESTS, Some("auth_locked"));
    let locked = c.check(Method::GET, chats, get_as(chats, &admin)).await;
    assert_answer(&locked, StatusCode::TOO_MANY_REQUESTS, Some("auth_locked"));

    contract.assert_every_operation_succeeded();
}

/// A send the agent answers, and a retry that finds its key still in progress: the answers
/// that need an agent node, which the walk above runs without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_with_an_agent_answer_as_documented() {
    // Slow enough for a retry to find the first request waiting for the agent, and for the
    // retry's own wait to run out.
    let agent = FakeNode::start(Behaviour::Slow(Duration::from_millis(800))).await;
    let config = format!(
        "[idempotency]\nwait_ms = 100\n{}",
        node("n", &agent.url, "timeout_ms = 5000")
    );
    let app = spawn_app_with_config(&config, &[]).await;
    let contract = Contract::load(&app).await;
    let send = "/api/chats/{id}/send";
    let request = || {
        app.request(Method::POST, "/api/chats/answered/send")
            .bearer_auth(&app.admin_key)
            .header(IDEMPOTENCY_KEY, "k-1")
            .json(&json!({ "text": "hello" }))
    };

    let retry = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        contract.check(Method::POST, send, request()).await
    };
    let (answered, retried) = tokio::join!(contract.check(Method::POST, send, request()), retry);

    assert_answer(&answered, StatusCode::OK, None);
    assert_eq!(answered.body["reply"]["node"], "n", "{}", answered.body);
    assert_answer(
        &retried,
        StatusCode::CONFLICT,
        Some("idempotency_in_progress"),
    );
}
