//! A real OpenAI-compatible HTTP server started by a test, standing in for an agent node: it
//! answers, fails, stalls or talks nonsense on demand, and counts and keeps what it was sent.
//! It speaks plain HTTP, or HTTPS with a certificate from a private CA made up for the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode as NodeStatus;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

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
        Self::serve(behaviour, None).await
    }

    /// Serves HTTPS for `127.0.0.1` and `localhost` with a certificate signed by a private CA
    /// made up for this node alone; returns the node and that CA's certificate (PEM).
    pub async fn start_https(behaviour: Behaviour) -> (FakeNode, String) {
        let (ca_pem, tls) = private_ca();
        (Self::serve(behaviour, Some(tls)).await, ca_pem)
    }

    async fn serve(behaviour: Behaviour, tls: Option<ServerConfig>) -> FakeNode {
        let state = NodeState {
            behaviour: Arc::new(Mutex::new(behaviour)),
            requests: Arc::default(),
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a node");
        let addr = listener.local_addr().expect("addr");
        let url = match tls {
            None => {
                tokio::spawn(async move { axum::serve(listener, app).await });
                format!("http://{addr}/v1")
            }
            Some(tls) => {
                tokio::spawn(serve_tls(listener, app, TlsAcceptor::from(Arc::new(tls))));
                format!("https://{addr}/v1")
            }
        };
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

/// Serves `app` over TLS, one task per connection, so a client that gives up on the handshake
/// (it does not trust the certificate) ends only its own connection.
async fn serve_tls(listener: TcpListener, app: Router, acceptor: TlsAcceptor) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            // A client hanging up mid-exchange is its business, not the node's.
            let _ = connection.await;
        });
    }
}

/// A new CA (its certificate as PEM) and a server configuration presenting a certificate it
/// signed for `127.0.0.1` and `localhost`.
fn private_ca() -> (String, ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake agent node CA");
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA certificate");

    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server parameters");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().expect("a server key");
    let server = server_params
        .signed_by(&server_key, &ca)
        .expect("a server certificate");

    // Named, not the process-wide default: nothing in a test process installs one.
    let tls = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![server.der().clone()], PrivateKeyDer::from(server_key))
        .expect("a server TLS configuration");
    (ca.pem(), tls)
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
