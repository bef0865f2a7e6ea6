//! The byte stream of one client connection: request heads checked before hyper reads them, and
//! a write deadline.
//!
//! Reading: every request head is checked (`framing`) before hyper sees it, because hyper answers
//! a head it cannot accept with a bare status of its own. A refused head never reaches hyper.
//! In its place hyper is handed a stand-in request, `GET /` with `Connection: close`, which the
//! request middleware recognises by its position on the connection (`Heads`) — never by anything
//! in the bytes, which a client could send too — and answers with the refusal: a JSON error with
//! a request id and the security headers, like every other error. Requests before the refused
//! one are answered first and in order, because hyper reads the stand-in only after them; the
//! stand-in's `Connection: close` then ends the connection, and nothing the client sent after the
//! refused head is read. Bytes are checked where hyper's own buffer holds them; only a head that
//! arrives in pieces is kept here until it is whole.
//!
//! Writing: a client that stops reading leaves the response stuck in the socket and in memory
//! for as long as the connection lives, and a TCP connection to a silent peer can live for hours.
//! Every write that cannot make progress for `write_timeout` therefore fails; the connection is
//! dropped, and with it whatever response it still held. A slow reader that keeps taking bytes
//! keeps its connection: only a stall counts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::framing::{Refusal, RequestFraming, Scan};

/// Handed to hyper in place of a refused head. `Connection: close` makes it the last request.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n";
/// How much more of a head arriving in pieces is read at a time.
const PIECE_BYTES: usize = 4096;

/// What a connection's byte stream tells the requests hyper reads from it: which one, if any,
/// stands in for a refused head. Shared by the stream and the service of one connection.
#[derive(Debug, Default)]
pub struct Heads {
    /// The stand-in's position among the connection's requests (1 for the first), and why.
    refused: OnceLock<(u64, Refusal)>,
    served: AtomicU64,
}

impl Heads {
    /// Called for each request of the connection, in order: the refusal to answer it with when
    /// it is the stand-in.
    pub fn next_request(&self) -> Option<Refusal> {
        let position = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        self.refused
            .get()
            .filter(|(at, _)| *at == position)
            .map(|(_, refusal)| *refusal)
    }
}

pub struct ClientIo {
    stream: TcpStream,
    write_timeout: Duration,
    /// Armed when a write first finds the socket full; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    framing: RequestFraming,
    /// Bytes read but not yet handed to hyper: `held[..checked]` passed the checks, the rest is
    /// a head still arriving. Empty, and unallocated, unless a head came in pieces.
    held: Vec<u8>,
    checked: usize,
    /// After a refusal, what is left of the stand-in to hand over.
    stand_in: Option<&'static [u8]>,
    heads: Arc<Heads>,
}

impl ClientIo {
    pub fn new(stream: TcpStream, write_timeout: Duration, heads: Arc<Heads>) -> Self {
        Self {
            stream,
            write_timeout,
            stalled: None,
            framing: RequestFraming::default(),
            held: Vec::new(),
            checked: 0,
            stand_in: None,
            heads,
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        // The stand-in comes right after the heads accepted so far.
        let _ = self.heads.refused.set((self.framing.heads() + 1, refusal));
        self.stand_in = Some(STAND_IN);
    }

    /// Reads more of a head that is arriving in pieces and checks what is held; `false` at the
    /// end of the stream, where an unfinished head is dropped, as hyper would drop it.
    fn poll_read_piece(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let len = self.held.len();
        self.held.resize(len + PIECE_BYTES, 0);
        let mut piece = ReadBuf::new(&mut self.held[len..]);
        let polled = Pin::new(&mut self.stream).poll_read(cx, &mut piece);
        let read = piece.filled().len();
        self.held.truncate(len + read);
        ready!(polled)?;
        if read == 0 {
            self.held = Vec::new();
            return Poll::Ready(Ok(false));
        }
        match self.framing.scan(&self.held) {
            Scan::Clean => self.checked = self.held.len(),
            Scan::Partial { at } => self.checked = at,
            Scan::Refused { at, refusal } => {
                self.held.truncate(at);
                self.checked = at;
                self.refuse(refusal);
            }
        }
        Poll::Ready(Ok(true))
    }

    /// Passes a write's outcome through, failing it once the socket has been full for longer
    /// than the write deadline.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        attempt: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if attempt.is_ready() {
            self.stalled = None;
            return attempt;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.checked > 0 {
                let n = this.checked.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.drain(..n);
                this.checked -= n;
                if this.held.is_empty() {
                    this.held = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(stand_in) = &mut this.stand_in {
                if stand_in.is_empty() {
                    // hyper ends the connection after answering the stand-in and never needs
                    // another byte; the end of the stream would instead make it drop the answer.
                    return Poll::Pending;
                }
                let n = stand_in.len().min(buf.remaining());
                buf.put_slice(&stand_in[..n]);
                *stand_in = &stand_in[n..];
                return Poll::Ready(Ok(()));
            }
            if !this.held.is_empty() {
                if !ready!(this.poll_read_piece(cx))? {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // The common case: read straight into hyper's buffer and check the bytes there.
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
            let (keep, refused) = match this.framing.scan(&buf.filled()[start..]) {
                Scan::Clean => return Poll::Ready(Ok(())),
                Scan::Partial { at } => {
                    this.held.extend_from_slice(&buf.filled()[start + at..]);
                    (at, None)
                }
                Scan::Refused { at, refusal } => (at, Some(refusal)),
            };
            buf.set_filled(start + keep);
            if let Some(refusal) = refused {
                this.refuse(refusal);
            }
            if keep > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.deadline(cx, attempt)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.deadline(cx, attempt)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.stream).poll_flush(cx);
        this.deadline(cx, attempt)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
