//! A real OpenAI-compatible HTTP server started by a test, standing in for an agent node: it
//! answers, fails, stalls or talks nonsense on demand, and counts and keeps what it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode as NodeStatus;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What a fake node does with a completion request.
#[derive(Clone)]
pub enum Behaviour {
    Reply(&'static str),
    Status(u16),
    Slow(Duration),
    Malformed,
    /// A well-formed completion of this many bytes of text.
    Huge(usize),
}

/// A real OpenAI-compatible HTTP server on a free port, counting and keeping its requests.
pub struct FakeNode {
    pub url: String,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<Value>>>,
    calls: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct NodeState {
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<Mutex<Vec<Value>>>,
    calls: Arc<AtomicUsize>,
}

impl FakeNode {
    pub async fn start(behaviour: Behaviour) -> FakeNode {
        let state = NodeState {
            behaviour: Arc::new(Mutex::new(behaviour)),
            requests: Arc::default(),
            calls: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a node");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeNode {
            url,
            behaviour: state.behaviour,
            requests: state.requests,
            calls: state.calls,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("lock") = behaviour;
    }

    pub fn last_request(&self) -> Value {
        self.requests
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }
}

async fn complete(State(node): State<NodeState>, Json(request): Json<Value>) -> Response {
    node.calls.fetch_add(1, Ordering::SeqCst);
    node.requests.lock().expect("lock").push(request);
    let behaviour = node.behaviour.lock().expect("lock").clone();
    match behaviour {
        Behaviour::Reply(text) => Json(json!({
            "model": "fake-model-1",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text } }]
        }))
        .into_response(),
        Behaviour::Status(status) => NodeStatus::from_u16(status)
            .expect("a status")
            .into_response(),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Json(json!({ "choices": [{ "message": { "content": "too late" } }] })).into_response()
        }
        Behaviour::Malformed => (NodeStatus::OK, "{\"choices\": [oops").into_response(),
        Behaviour::Huge(size) => Json(json!({
            "choices": [{ "message": { "content": "x".repeat(size) } }]
        }))
        .into_response(),
    }
}

/// An address nothing listens on: connecting is refused.
pub async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/v1")
}

/// A `[[agents.nodes]]` table for `name` at `url`, with `extra` lines.
pub fn node(name: &str, url: &str, extra: &str) -> String {
    format!("[[agents.nodes]]\nname = \"{name}\"\nurl = \"{url}\"\nmodel = \"m-{name}\"\n{extra}\n")
}
