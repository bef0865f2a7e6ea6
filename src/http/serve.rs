//! The accept loop: one HTTP/1.1 connection per task, with the limits axum's own `serve` does
//! not expose — a header size cap, a header-read timeout that also closes idle keep-alive
//! connections (so a slow-loris client holds a connection for at most that long), a write
//! deadline (`connection`), and a small per-connection buffer, so a client that does not read
//! leaves little behind in the connection itself. Request heads hyper would refuse with a bare
//! status are refused by the connection's byte stream instead, with our JSON error
//! (`connection`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::connection::{ClientIo, Heads};

/// Largest request head (request line and headers) accepted (SPEC §5).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most bytes a connection buffers in each direction. Response bytes the connection has taken
/// are no longer counted against the response budget (`limits`), so this bounds what escapes it.
pub const MAX_BUFFER_BYTES: usize = 64 * 1024;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time a client has to send a request's headers, and the longest a keep-alive connection
    /// may sit idle.
    pub idle_timeout: Duration,
    /// Longest a response write may stall before the connection is dropped.
    pub write_timeout: Duration,
    /// How long shutdown waits for open connections to finish their requests.
    pub drain_limit: Duration,
}

/// Serves `router` on `listener` until `stop` resolves, then stops accepting and waits (at most
/// `drain_limit`) for open connections to finish the requests they are serving. Returns what
/// `stop` resolved with.
pub async fn serve<T>(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = T>,
) -> T {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUFFER_BYTES)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    let stopped = loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(event = "accept_failed", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            stopped = &mut stop => break stopped,
        };
        let heads = Arc::new(Heads::default());
        let io = ClientIo::new(stream, limits.write_timeout, heads.clone());
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    let extensions = request.extensions_mut();
                    extensions.insert(ConnectInfo::<SocketAddr>(peer));
                    if let Some(refusal) = heads.next_request() {
                        extensions.insert(refusal);
                    }
                    request
                });
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that vanishes or times out ends its own connection; nothing to report.
            let _ = connection.await;
        });
    };
    drop(listener);
    if tokio::time::timeout(limits.drain_limit, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            event = "drain_timeout",
            "connections still open after the drain limit"
        );
    }
    stopped
}
