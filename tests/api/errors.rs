//! Transport-level failures answer with the JSON error shape and a request id.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, send, spawn_app};

/// Just over the 64 KiB request body limit.
const OVERSIZED_BODY_BYTES: usize = 64 * 1024 + 1024;

#[tokio::test]
async fn unknown_route_is_a_json_not_found() {
    let app = spawn_app().await;

    let response = app.get("/api/does-not-exist", &app.admin_key).await;

    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn send_with_a_non_json_content_type_is_unsupported() {
    let app = spawn_app().await;

    let response = send(
        app.request(Method::POST, "/api/chats/ops-415/send")
            .bearer_auth(&app.admin_key)
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"text":"hello"}"#),
    )
    .await;

    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_error(
        app.get("/api/chats/ops-415", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_an_invalid_request() {
    let app = spawn_app().await;

    for path in ["/api/chats/ops-400/send", "/api/chats"] {
        let response = send(
            app.request(Method::POST, path)
                .bearer_auth(&app.admin_key)
                .header(CONTENT_TYPE, "application/json")
                .body("{not json}"),
        )
        .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert!(app.page("/api/chats", &[]).await.items.is_empty());
}

#[tokio::test]
async fn body_over_64_kib_is_too_large() {
    let app = spawn_app().await;
    let body = json!({ "text": "a".repeat(OVERSIZED_BODY_BYTES) });

    let response = app.post_send("ops-413", &app.admin_key, None, &body).await;

    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_error(
        app.get("/api/chats/ops-413", &app.admin_key).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// Words that belong to Rust, serde or axum, never to an API message.
const FOREIGN_WORDS: [&str; 8] = [
    "struct ",
    "enum ",
    "line ",
    "column ",
    "::",
    "Failed to deserialize",
    "u32",
    "usize",
];

/// Asserts a spec-shaped error and returns its message, checked for foreign words.
async fn error_message(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    let body = crate::helpers::expect_json(response, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a message: {body}"))
        .to_owned();
    for word in FOREIGN_WORDS {
        assert!(!message.contains(word), "{message:?} contains {word:?}");
    }
    message
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused_in_plain_words() {
    let app = spawn_app().await;
    for (path, body) in [
        ("/api/chats/ops/send", json!(["hello", {}])),
        ("/api/chats/ops/send", json!("hello")),
        ("/api/chats", json!([])),
        ("/api/admin/keys", json!(null)),
    ] {
        let response = app.post_json(path, &app.admin_key, &body).await;
        let message = error_message(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(message, "the body must be a JSON object", "{path} {body}");
    }
    assert!(app.page("/api/chats", &[]).await.items.is_empty());
}

#[tokio::test]
async fn field_errors_name_the_field_and_what_is_allowed() {
    let app = spawn_app().await;
    let chat = expect_created(
        app.create_chat(&app.admin_key, &json!({ "id": "ops" }))
            .await,
    )
    .await;
    assert_eq!(chat["id"], "ops");
    let cases = [
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({ "text": 5 }),
            "text: expected a string",
        ),
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({ "text": "hi", "metadata": [1] }),
            "metadata: expected an object",
        ),
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({ "text": "hi", "foo": 1 }),
            "unknown field `foo`; allowed: text, metadata",
        ),
        (
            Method::POST,
            "/api/chats/ops/send",
            json!({}),
            "missing field `text`",
        ),
        (
            Method::POST,
            "/api/chats",
            json!({ "title": 5 }),
            "title: expected a string",
        ),
        (
            Method::PATCH,
            "/api/chats/ops",
            json!({ "archived": "yes" }),
            "archived: expected true or false",
        ),
        (
            Method::POST,
            "/api/admin/keys",
            json!({ "name": "k", "role": "root" }),
            "role: must be one of admin, operator, viewer, auditor",
        ),
        (
            Method::POST,
            "/api/admin/keys",
            json!({ "name": "k", "role": "viewer", "expires_in_days": "soon" }),
            "expires_in_days: expected a whole number",
        ),
        (
            Method::POST,
            "/api/auth/login",
            json!({ "key": 7 }),
            "key: expected a string",
        ),
    ];
    for (method, path, body, expected) in cases {
        let response = send(
            app.request(method.clone(), path)
                .bearer_auth(&app.admin_key)
                .json(&body),
        )
        .await;
        let message = error_message(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(message, expected, "{method} {path} {body}");
    }
    assert!(app.history("ops").await.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn query_errors_name_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        (
            "/api/chats?limit=5&limit=6",
            "query parameter limit: given more than once",
        ),
        (
            "/api/chats?limit=ten",
            "query parameter limit: expected a whole number",
        ),
        (
            "/api/chats?archived=maybe",
            "query parameter archived: expected true or false",
        ),
        (
            "/api/chats/ops/messages?order=sideways",
            "query parameter order: must be one of asc, desc",
        ),
        (
            "/api/audit?limit=-1",
            "query parameter limit: expected a whole number",
        ),
    ];
    for (path, expected) in cases {
        let response = app.get(path, &app.admin_key).await;
        let message = error_message(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(message, expected, "{path}");
    }
}

async fn expect_created(response: reqwest::Response) -> serde_json::Value {
    crate::helpers::expect_json(response, StatusCode::CREATED).await
}

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Writes `pieces` on a fresh connection, pausing between them, and reads responses until the
/// server closes the connection; `closed` says whether it did within a few seconds.
async fn raw_exchange(app: &crate::helpers::TestApp, pieces: &[&[u8]]) -> (Vec<RawResponse>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.socket_addr())
        .await
        .expect("connect");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The server may close as soon as it has refused a head; later pieces may not land.
        if stream.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut received = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    (parse_responses(&received), closed)
}

fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        let head = match response.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!(
                "not a response ({other:?}): {:?}",
                String::from_utf8_lossy(bytes)
            ),
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = response.code.expect("a status");
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().expect("a length"))
            .expect("responses here carry a Content-Length");
        let body = bytes[head..head + length].to_vec();
        bytes = &bytes[head + length..];
        responses.push(RawResponse {
            status,
            headers,
            body,
        });
    }
    responses
}

/// Asserts a refusal made below the router: status, the JSON error with the request id of the
/// `X-Request-Id` header, the security headers, the JSON content type and `Connection: close`.
fn assert_refused(response: &RawResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{response:?}");
    let request_id = response.header("x-request-id").expect("an X-Request-Id");
    assert!(!request_id.is_empty());
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["request_id"], request_id, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(!message.is_empty(), "{body}");
    for word in FOREIGN_WORDS {
        assert!(!message.contains(word), "{message:?} contains {word:?}");
    }
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let csp = response
        .header("content-security-policy")
        .unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "CSP: {csp:?}");
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test]
async fn malformed_request_heads_get_the_json_error_and_the_connection_closes() {
    let app = spawn_app().await;
    let padding = "a".repeat(20 * 1024);
    let too_large = format!("GET /livez HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n");
    let cases: [(&str, &[u8], u16, &str); 6] = [
        (
            "a head over 16 KiB",
            too_large.as_bytes(),
            431,
            "request_header_fields_too_large",
        ),
        (
            "a control byte in a header value",
            b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            "a bare CR",
            b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            "an obs-folded header line",
            b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            "two different Content-Lengths",
            b"POST /api/chats HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            400,
            "invalid_request",
        ),
        (
            "a Transfer-Encoding other than chunked",
            b"POST /api/chats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "invalid_request",
        ),
    ];
    for (case, bytes, status, code) in cases {
        let (responses, closed) = raw_exchange(&app, &[bytes]).await;
        assert_eq!(responses.len(), 1, "{case}: {responses:?}");
        assert_refused(&responses[0], status, code);
        assert!(closed, "{case}: the connection was left open");
    }
    assert_eq!(app.get_anonymous("livez").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn pipelined_requests_before_a_malformed_head_are_answered_in_order() {
    let app = spawn_app().await;
    let body = r#"{"text":"pipelined"}"#;
    let pipeline = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /api/chats/ops/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{body}\
         GET /livez HTTP/1.1\r\nHost: x\r\nX-Bad: \x01\r\n\r\n\
         GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        key = app.admin_key,
        length = body.len(),
    );

    let (responses, closed) = raw_exchange(&app, &[pipeline.as_bytes()]).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 400], "{responses:?}");
    assert_eq!(responses[0].body, b"ok");
    assert_eq!(responses[1].json()["message"]["text"], "pipelined");
    assert_refused(&responses[2], 400, "invalid_request");
    assert!(closed, "the connection was left open after the refusal");
    assert_eq!(
        app.history("ops").await.len(),
        2,
        "the send was served once"
    );
}

#[tokio::test]
async fn a_head_arriving_in_pieces_is_checked_whole() {
    let app = spawn_app().await;
    let (responses, _) = raw_exchange(
        &app,
        &[
            b"GET /li",
            b"vez HTTP/1.1\r\nHo",
            b"st: x\r\n",
            b"\r\nGET /livez HTTP/1.1\r\nConnection: close\r\n\r\n",
        ],
    )
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "{responses:?}");

    let (responses, closed) = raw_exchange(
        &app,
        &[
            b"GET /livez HTTP/1.1\r\nHost: x\r\n",
            b"X-Bad: \x01\r\n\r\n",
        ],
    )
    .await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_refused(&responses[0], 400, "invalid_request");
    assert!(closed);
}

#[tokio::test]
async fn a_chunked_body_is_read_and_the_connection_kept() {
    let app = spawn_app().await;
    let request = format!(
        "POST /api/chats/ops/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         A\r\n{{\"text\": \"\r\n9;note=split\r\nin chunks\r\n2\r\n\"}}\r\n0\r\n\r\n",
        app.admin_key
    );
    let (responses, _) = raw_exchange(
        &app,
        &[
            request.as_bytes(),
            b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ],
    )
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "{responses:?}");
    assert_eq!(responses[0].json()["message"]["text"], "in chunks");
}

#[tokio::test]
async fn every_json_response_declares_utf_8() {
    let app = spawn_app().await;
    let created = app
        .create_chat(&app.admin_key, &json!({ "id": "ops" }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for (what, response) in [
        ("a page", app.get("/api/chats", &app.admin_key).await),
        ("an object", app.get("/api/chats/ops", &app.admin_key).await),
        ("an error", app.get("/api/chats/nope", &app.admin_key).await),
        ("health", app.get_anonymous("api/health").await),
    ] {
        assert_eq!(
            response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json; charset=utf-8"),
            "{what}"
        );
    }
    let (refused, _) = raw_exchange(&app, &[b"GET /livez HTTP/1.1\r\nX: \x01\r\n\r\n"]).await;
    assert_eq!(
        refused[0].header("content-type"),
        Some("application/json; charset=utf-8"),
        "an error raised below the router"
    );
}
