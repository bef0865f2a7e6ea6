//! Starts the real `sofiia-console` binary on a free port with a temporary data dir and talks
//! HTTP to it. Nothing here knows about the server's internals.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::oneshot;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Guards every paging loop against a server that never stops handing out cursors.
const MAX_PAGES: usize = 10_000;
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const IDEMPOTENCY_REPLAYED: &str = "Idempotency-Replayed";
pub const REQUEST_ID: &str = "X-Request-Id";

/// A running server. The process is killed when this is dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT/`
    pub address: Url,
    /// The bootstrap admin key from `<data-dir>/admin.key`, or `SOFIIA_ADMIN_TOKEN` when set.
    pub admin_key: String,
    pub api_client: Client,
    root: TempDir,
    server: Child,
    log: Arc<Mutex<String>>,
}

/// A server that was stopped gracefully; its data dir is kept until this is dropped.
pub struct StoppedApp {
    root: TempDir,
}

impl StoppedApp {
    pub fn data_dir(&self) -> PathBuf {
        data_dir_in(self.root.path())
    }

    /// Starts a new server on the same data dir.
    pub async fn start(self, env: &[(&str, &str)]) -> TestApp {
        TestApp::start(self.root, env).await
    }

    /// Runs the data command `ARGS --data-dir DATA_DIR --config /dev/null` directly on the
    /// stopped server's database file and returns its output.
    pub async fn run_cli(&self, args: &[&str]) -> Output {
        run_cli(self.root.path(), args).await
    }

    /// `run_cli` with extra `SOFIIA_*` environment variables.
    pub async fn run_cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_cli_with(self.root.path(), args, env).await
    }
}

/// An API key created through `POST /api/admin/keys`.
pub struct ApiKey {
    pub id: String,
    pub secret: String,
}

/// One page of a paginated listing.
pub struct Page {
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the server with extra `SOFIIA_*` environment variables.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let root = tempfile::tempdir().expect("failed to create a temporary directory");
    TestApp::start(root, env).await
}

/// Starts the server with a configuration file (kept for restarts) and extra environment.
pub async fn spawn_app_with_config(toml: &str, env: &[(&str, &str)]) -> TestApp {
    let root = tempfile::tempdir().expect("failed to create a temporary directory");
    std::fs::write(root.path().join(CONFIG_FILE), toml).expect("failed to write the config");
    TestApp::start(root, env).await
}

/// The configuration file a test may place beside the data dir; `serve` is given it when present.
const CONFIG_FILE: &str = "config.toml";

/// Runs `serve --data-dir DATA_DIR ARGS` when start-up is expected to fail, and returns its
/// output. Panics if the process is still running after a few seconds.
pub async fn serve_until_exit(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let cwd = data_dir.parent().expect("the data dir has a parent");
    let mut command = server_command(cwd, env);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    tokio::time::timeout(EXIT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("sofiia-console was still running after {EXIT_TIMEOUT:?}"))
        .expect("failed to run sofiia-console")
}

impl TestApp {
    async fn start(root: TempDir, env: &[(&str, &str)]) -> TestApp {
        let mut command = server_command(root.path(), env);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir_in(root.path()));
        let config = root.path().join(CONFIG_FILE);
        if config.exists() {
            command.arg("--config").arg(config);
        }
        let mut server = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start sofiia-console");
        let stdout = server.stdout.take().expect("stdout is piped");
        let stderr = tokio::spawn(read_all(server.stderr.take().expect("stderr is piped")));
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = oneshot::channel();
        tokio::spawn(drain_stdout(stdout, Arc::clone(&log), addr_tx));

        let addr = match tokio::time::timeout(STARTUP_TIMEOUT, addr_rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                let status = server.wait().await;
                let stderr = stderr.await.unwrap_or_default();
                panic!("sofiia-console exited before listening ({status:?}); stderr:\n{stderr}");
            }
            Err(_) => panic!("sofiia-console did not log \"listening\" within {STARTUP_TIMEOUT:?}"),
        };
        let admin_key = match env.iter().find(|(name, _)| *name == "SOFIIA_ADMIN_TOKEN") {
            Some((_, token)) => (*token).to_owned(),
            None => read_admin_key(root.path()),
        };
        TestApp {
            address: Url::parse(&format!("http://{addr}/")).expect("listening addr is host:port"),
            admin_key,
            api_client: Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("failed to build the HTTP client"),
            root,
            server,
            log,
        }
    }

    /// Runs the command `ARGS --data-dir DATA_DIR --config /dev/null` beside this running server
    /// (a data command reaches it with `--url`, `self.address`) and returns its output.
    pub async fn run_cli(&self, args: &[&str]) -> Output {
        run_cli(self.root.path(), args).await
    }

    /// `run_cli` with extra `SOFIIA_*` environment variables.
    pub async fn run_cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_cli_with(self.root.path(), args, env).await
    }

    /// Deletes the configuration file, so the next restart runs on the defaults.
    pub fn remove_config(&self) {
        std::fs::remove_file(self.root.path().join(CONFIG_FILE)).expect("a config file to remove");
    }

    /// SIGKILLs the server (no graceful shutdown) and starts a new one on the same data dir.
    pub async fn restart_after_kill(mut self, env: &[(&str, &str)]) -> TestApp {
        self.server.kill().await.expect("failed to kill the server");
        TestApp::start(self.root, env).await
    }

    /// Stops the server gracefully (SIGTERM), asserts a clean exit and keeps its data dir.
    pub async fn stop(mut self) -> StoppedApp {
        let status = self.terminate().await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
        StoppedApp { root: self.root }
    }

    /// Stops the server gracefully and starts a new one on the same data dir.
    pub async fn restart(self, env: &[(&str, &str)]) -> TestApp {
        self.stop().await.start(env).await
    }

    /// Waits, at most `within`, for the server to exit on its own.
    pub async fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.server.wait())
            .await
            .unwrap_or_else(|_| panic!("the server was still running after {within:?}"))
            .expect("failed to wait for the server")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.server.id().expect("the server has already exited");
        let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        kill(pid, Signal::SIGTERM).expect("failed to send SIGTERM");
        tokio::time::timeout(EXIT_TIMEOUT, self.server.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM")
            })
            .expect("failed to wait for the server")
    }

    pub fn data_dir(&self) -> PathBuf {
        data_dir_in(self.root.path())
    }

    /// `host:port` of the server, for raw TCP clients.
    pub fn socket_addr(&self) -> String {
        let host = self.address.host_str().expect("host");
        let port = self.address.port().expect("port");
        format!("{host}:{port}")
    }

    /// A line of the server process's `/proc/PID/status`, such as `VmRSS` or `Threads`, as the
    /// number it starts with (kB for sizes).
    pub fn process_status(&self, field: &str) -> u64 {
        let pid = self.server.id().expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// Everything the server has written to stdout so far.
    pub fn logs(&self) -> String {
        self.log.lock().expect("log lock poisoned").clone()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self.address.join(path).expect("a valid request path");
        self.api_client.request(method, url)
    }

    pub async fn get_anonymous(&self, path: &str) -> Response {
        send(self.request(Method::GET, path)).await
    }

    /// The Prometheus text of `GET /metrics` (which needs no credential).
    pub async fn metrics(&self) -> String {
        let response = self.get_anonymous("metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("the metrics text")
    }

    /// Opens `GET /api/chats/{chat}/events` with `key` and asserts it is streaming.
    pub async fn chat_events(&self, chat: &str, key: &str) -> Response {
        let events = send(
            self.request(Method::GET, &format!("api/chats/{chat}/events"))
                .bearer_auth(key),
        )
        .await;
        assert_eq!(events.status(), StatusCode::OK);
        events
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.get_with_query(path, key, &[]).await
    }

    pub async fn get_with_query(&self, path: &str, key: &str, query: &[(&str, &str)]) -> Response {
        let mut url = self.address.join(path).expect("a valid request path");
        url.query_pairs_mut().extend_pairs(query);
        send(self.api_client.get(url).bearer_auth(key)).await
    }

    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> Response {
        send(self.request(Method::POST, path).bearer_auth(key).json(body)).await
    }

    pub async fn patch_json(&self, path: &str, key: &str, body: &Value) -> Response {
        send(
            self.request(Method::PATCH, path)
                .bearer_auth(key)
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Response {
        send(self.request(Method::DELETE, path).bearer_auth(key)).await
    }

    /// Creates an API key with the admin credential.
    pub async fn create_api_key(&self, role: &str) -> ApiKey {
        let body = serde_json::json!({ "name": format!("{role}-key"), "role": role });
        let created = expect_json(
            self.post_json("/api/admin/keys", &self.admin_key, &body)
                .await,
            StatusCode::CREATED,
        )
        .await;
        ApiKey {
            id: created["id"].as_str().expect("key id").to_owned(),
            secret: created["key"].as_str().expect("key secret").to_owned(),
        }
    }

    pub async fn create_chat(&self, key: &str, body: &Value) -> Response {
        self.post_json("/api/chats", key, body).await
    }

    /// A send request without an idempotency key, for tests that add their own headers.
    pub fn send_request(&self, chat_id: &str, key: &str, body: &Value) -> RequestBuilder {
        self.request(Method::POST, &format!("/api/chats/{chat_id}/send"))
            .bearer_auth(key)
            .json(body)
    }

    pub async fn post_send(
        &self,
        chat_id: &str,
        key: &str,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> Response {
        let mut request = self.send_request(chat_id, key, body);
        if let Some(idempotency_key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, idempotency_key);
        }
        send(request).await
    }

    /// Sends `text` as the admin without an idempotency key and returns the 200 body.
    pub async fn send_text(&self, chat_id: &str, text: &str) -> Value {
        let body = serde_json::json!({ "text": text });
        expect_json(
            self.post_send(chat_id, &self.admin_key, None, &body).await,
            StatusCode::OK,
        )
        .await
    }

    /// One page of a listing, read with the admin credential.
    pub async fn page(&self, path: &str, query: &[(&str, &str)]) -> Page {
        let body = expect_json(
            self.get_with_query(path, &self.admin_key, query).await,
            StatusCode::OK,
        )
        .await;
        let items = body["items"].as_array().expect("items is an array").clone();
        let next_cursor = match &body["next_cursor"] {
            Value::Null => None,
            Value::String(cursor) => Some(cursor.clone()),
            other => panic!("next_cursor must be a string or null, got {other}"),
        };
        Page { items, next_cursor }
    }

    /// Follows `next_cursor` from the first page to the last, `limit` items at a time.
    pub async fn all_pages(&self, path: &str, query: &[(&str, &str)], limit: usize) -> Vec<Value> {
        let limit_text = limit.to_string();
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_query = query.to_vec();
            page_query.push(("limit", &limit_text));
            if let Some(cursor) = &cursor {
                page_query.push(("cursor", cursor));
            }
            let page = self.page(path, &page_query).await;
            assert!(
                page.items.len() <= limit,
                "a page of {path} held {} items with limit {limit}",
                page.items.len()
            );
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return items,
            }
        }
        panic!("paging {path} did not end within {MAX_PAGES} pages");
    }

    /// The whole history of a chat, oldest first.
    pub async fn history(&self, chat_id: &str) -> Vec<Value> {
        self.all_pages(&messages_path(chat_id), &[("order", "asc")], 200)
            .await
    }
}

/// Calls `probe` until it returns `Some`, for effects the server applies in the background.
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let polling = async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::time::timeout(POLL_TIMEOUT, polling)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {POLL_TIMEOUT:?}"))
}

/// The `id` of every item, in order.
pub fn ids(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|item| item["id"].as_str().expect("item id"))
        .collect()
}

pub fn messages_path(chat_id: &str) -> String {
    format!("/api/chats/{chat_id}/messages")
}

pub async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("failed to execute request")
}

/// Asserts the status and returns the JSON body, showing the body when the status is wrong.
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response
        .text()
        .await
        .expect("failed to read the response body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// Asserts a spec-shaped error: status, JSON content type, `error.code`, a message, and an
/// `error.request_id` equal to the `X-Request-Id` header.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) {
    let request_id = request_id(&response);
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let body = expect_json(response, status).await;
    assert!(
        content_type.starts_with("application/json"),
        "error content type was {content_type:?}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "error without a message: {body}"
    );
    assert_eq!(body["error"]["request_id"], request_id.as_str(), "{body}");
}

/// The `X-Request-Id` header, which every response must carry.
pub fn request_id(response: &Response) -> String {
    let value = response
        .headers()
        .get(REQUEST_ID)
        .unwrap_or_else(|| panic!("{} response without X-Request-Id", response.status()));
    let value = value.to_str().expect("X-Request-Id is ASCII");
    assert!(!value.is_empty(), "empty X-Request-Id");
    value.to_owned()
}

pub fn is_replay(response: &Response) -> bool {
    response
        .headers()
        .get(IDEMPOTENCY_REPLAYED)
        .is_some_and(|value| value == "true")
}

fn data_dir_in(root: &Path) -> PathBuf {
    root.join("data")
}

fn read_admin_key(root: &Path) -> String {
    let path = data_dir_in(root).join("admin.key");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The binary run in `cwd` with a clean environment: no stray `SOFIIA_*` variable from the test
/// process.
/// Limits high enough that tests about other guarantees never meet them; the rate-limit tests
/// set their own, which win because they are applied later.
const GENEROUS_LIMITS: [(&str, &str); 4] = [
    ("SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE", "60000"),
    ("SOFIIA_RATE_LIMIT__CHAT__BURST", "1000000"),
    ("SOFIIA_RATE_LIMIT__OPERATOR__PER_MINUTE", "60000"),
    ("SOFIIA_RATE_LIMIT__OPERATOR__BURST", "1000000"),
];

fn server_command(cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sofiia-console"));
    command.env_clear().current_dir(cwd).kill_on_drop(true);
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(GENEROUS_LIMITS);
    command.env("SOFIIA_RETENTION__SCHEDULE", half_a_day_from_now());
    command.envs(env.iter().copied());
    command
}

/// A daily retention time twelve hours away (UTC `HH:MM`), so no test meets the schedule unless
/// it sets one.
fn half_a_day_from_now() -> String {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs();
    let minute_of_day = (now_s / 60 + 12 * 60) % (24 * 60);
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

/// Runs `sofiia-console ARGS` as it stands, for commands that take no data dir.
pub async fn run_binary(args: &[&str]) -> Output {
    let mut command = server_command(&std::env::temp_dir(), &[]);
    command.args(args);
    tokio::time::timeout(EXIT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("sofiia-console {args:?} ran longer than {EXIT_TIMEOUT:?}"))
        .expect("failed to run sofiia-console")
}

/// Runs `sofiia-console ARGS --data-dir DATA_DIR --config /dev/null` for the data dir in `root`.
async fn run_cli(root: &Path, args: &[&str]) -> Output {
    run_cli_with(root, args, &[]).await
}

async fn run_cli_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = server_command(root, env);
    command
        .args(args)
        .arg("--data-dir")
        .arg(data_dir_in(root))
        .args(["--config", "/dev/null"]);
    tokio::time::timeout(EXIT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("sofiia-console {args:?} ran longer than {EXIT_TIMEOUT:?}"))
        .expect("failed to run sofiia-console")
}

/// Runs `ops/verify_audit_export.py` on `export` (written to `dir/name`); returns its exit code
/// and its JSON verdict.
pub async fn python_verdict(dir: &Path, name: &str, export: &str) -> (i32, Value) {
    python_verdict_with(dir, name, export, &[]).await
}

/// `python_verdict` with the verifier's options `args`.
pub async fn python_verdict_with(
    dir: &Path,
    name: &str,
    export: &str,
    args: &[&str],
) -> (i32, Value) {
    let path = dir.join(name);
    std::fs::write(&path, export).expect("write the export");
    let verifier = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/verify_audit_export.py");
    let output = Command::new("python3")
        .arg(verifier)
        .arg(&path)
        .args(args)
        .output()
        .await
        .expect("failed to run python3");
    let verdict = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the verifier printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exit code"), verdict)
}

/// Reads log lines until EOF so the pipe never fills; reports the `listening` address once.
async fn drain_stdout(
    stdout: ChildStdout,
    log: Arc<Mutex<String>>,
    addr_tx: oneshot::Sender<String>,
) {
    let mut addr_tx = Some(addr_tx);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = listening_addr(&line)
            && let Some(tx) = addr_tx.take()
        {
            // The receiver is gone only if start-up already timed out.
            let _ = tx.send(addr);
        }
        let mut log = log.lock().expect("log lock poisoned");
        log.push_str(&line);
        log.push('\n');
    }
}

fn listening_addr(line: &str) -> Option<String> {
    let entry: Value = serde_json::from_str(line).ok()?;
    if entry["msg"] != "listening" {
        return None;
    }
    entry["addr"].as_str().map(str::to_owned)
}

async fn read_all(mut pipe: impl AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    // A read error just ends the capture; what was read so far is still useful.
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Asserts the 200 body of a send to a server without agent nodes: the operator's message and
/// the `llm_unconfigured` degraded outcome.
pub fn assert_degraded_send(body: &Value, chat_id: &str, text: &str) {
    assert_eq!(body["chat_id"], chat_id, "{body}");
    let message = &body["message"];
    assert_eq!(message["role"], "operator", "{body}");
    assert_eq!(message["text"], text, "{body}");
    assert!(message["id"].is_string(), "{body}");
    assert!(message["seq"].is_u64(), "{body}");
    assert!(message["ts_ms"].is_u64(), "{body}");
    assert!(
        message["author"]
            .as_str()
            .is_some_and(|author| !author.is_empty()),
        "{body}"
    );
    assert!(body["reply"].is_null(), "{body}");
    let degraded = &body["degraded"];
    assert_eq!(degraded["reason_code"], "llm_unconfigured", "{body}");
    assert!(
        degraded["message"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{body}"
    );
    assert!(degraded["message_id"].is_string(), "{body}");
}

/// Asserts that the chat's whole history is the single exchange `body` answered: the operator's
/// message followed by the system message recording the degraded outcome.
pub async fn assert_history_is_one_exchange(app: &TestApp, chat_id: &str, body: &Value) {
    let history = app.history(chat_id).await;
    assert_eq!(history.len(), 2, "{history:#?}");
    let (operator, system) = (&history[0], &history[1]);
    assert_eq!(operator["id"], body["message"]["id"], "{history:#?}");
    assert_eq!(operator["role"], "operator", "{history:#?}");
    assert_eq!(operator["text"], body["message"]["text"], "{history:#?}");
    assert_eq!(system["id"], body["degraded"]["message_id"], "{history:#?}");
    assert_eq!(system["role"], "system", "{history:#?}");
    assert_eq!(system["reason_code"], "llm_unconfigured", "{history:#?}");
}

/// Opens a connection whose receive buffer is tiny, so a response it never reads stays with the
/// server instead of disappearing into the kernel's buffers.
pub async fn non_reading_client(app: &TestApp) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let addr = app.socket_addr().parse().expect("a socket address");
    socket.connect(addr).await.expect("connect")
}

/// Starts a server on a copy of the database `file` (a backup), in a data dir of its own.
pub async fn spawn_app_on_database(file: &Path, env: &[(&str, &str)]) -> TestApp {
    let root = tempfile::tempdir().expect("a temporary directory");
    let data = data_dir_in(root.path());
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .expect("a data dir");
    std::fs::copy(file, data.join("sofiia.redb")).expect("the database copied");
    TestApp::start(root, env).await
}
