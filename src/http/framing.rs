//! Where each request on a connection begins, and whether hyper would accept its head.
//!
//! hyper answers a request head it cannot accept — too large, malformed, with ambiguous body
//! framing — on its own, with a bare status line and no body, before any of our code runs, and
//! it offers no hook to change that. So the connection's byte stream (`connection`) checks every
//! head first, with the parser hyper uses (`httparse`, same settings) and the rules hyper applies
//! after it, and a head refused here never reaches hyper. To know where the next head starts on
//! a keep-alive connection, it follows each request's body exactly as hyper frames it: a
//! Content-Length, or chunked encoding read up to its last chunk and trailers.
//!
//! Checking here is meant to be the same as hyper's, not stricter: a head hyper accepts must pass
//! (the tests hold the two side by side). Bodies are followed, not judged: where hyper refuses a
//! body — a malformed chunk, trailers that are not header fields — it fails that request and
//! closes the connection, so nothing after it is read anyway; where a body cannot be framed at
//! all, this code stops checking the connection.

use std::mem::MaybeUninit;

use axum::http::{Method, StatusCode, Uri};

use super::serve::MAX_HEADER_BYTES;

/// Header fields hyper reads in one head before it refuses it (its default).
const MAX_HEADERS: usize = 100;

/// Why a request head was refused before hyper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    HeadTooLarge,
    TooManyHeaders,
    RequestLine,
    Version,
    HeaderLine,
    ContentLength,
    TransferEncoding,
    TransferEncodingInHttp10,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(self) -> &'static str {
        match self.status() {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "request_header_fields_too_large",
            _ => "invalid_request",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::HeadTooLarge => {
                "the request head (method, target and headers) is larger than 16 KiB"
            }
            Refusal::TooManyHeaders => "the request has more than 100 header fields",
            Refusal::RequestLine => "the request does not start with METHOD /target HTTP/1.1",
            Refusal::Version => "only HTTP/1.0 and HTTP/1.1 are served",
            Refusal::HeaderLine => {
                "a header field is malformed: each must be name: value ending in CRLF, without \
                 control characters, a bare CR or folding"
            }
            Refusal::ContentLength => {
                "Content-Length must be one decimal number of bytes, given once"
            }
            Refusal::TransferEncoding => "Transfer-Encoding must end with chunked",
            Refusal::TransferEncodingInHttp10 => "Transfer-Encoding is not allowed in HTTP/1.0",
        }
    }
}

/// What a run of bytes from the client holds, as far as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every byte may go on to hyper.
    Clean,
    /// The bytes before `at` may go on; from `at` a head has begun that is not complete yet.
    Partial { at: usize },
    /// The bytes before `at` may go on; the head at `at` is refused, and nothing from it on may.
    Refused { at: usize, refusal: Refusal },
}

/// Follows one connection's requests: their heads, and the bodies between them.
#[derive(Debug, Default)]
pub struct RequestFraming {
    state: State,
    heads: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a head (or of blank lines before one, which hyper skips).
    #[default]
    Head,
    /// Inside a body of known length: the bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Framing is lost or a head was refused: nothing more is checked.
    Unframed,
}

impl RequestFraming {
    /// Heads accepted so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Follows `bytes`, the next ones from the client. After `Partial` the same head must be
    /// offered again, from its start, with more bytes after it.
    pub fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match &mut self.state {
                State::Unframed => break,
                State::Head => match inspect_head(rest) {
                    Ok(Some((len, body))) => {
                        self.heads += 1;
                        self.state = body;
                        at += len;
                    }
                    Ok(None) => return Scan::Partial { at },
                    Err(refusal) => {
                        self.state = State::Unframed;
                        return Scan::Refused { at, refusal };
                    }
                },
                State::Length(remaining) => {
                    let taken = (*remaining).min(rest.len() as u64);
                    *remaining -= taken;
                    at += taken as usize;
                    if *remaining == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(chunk) => match chunk.follow(rest) {
                    Some((used, true)) => {
                        self.state = State::Head;
                        at += used;
                    }
                    Some((used, false)) => at += used,
                    None => self.state = State::Unframed,
                },
            }
        }
        Scan::Clean
    }
}

/// A complete head's length and the framing of the body after it; `None` while incomplete.
fn inspect_head(bytes: &[u8]) -> Result<Option<(usize, State)>, Refusal> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEADER_BYTES => {
            return Err(Refusal::HeadTooLarge);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEADER_BYTES => {
            return Err(Refusal::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(Refusal::Version),
        Err(_) if request.version.is_none() => return Err(Refusal::RequestLine),
        Err(_) => return Err(Refusal::HeaderLine),
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(Refusal::RequestLine);
    };
    if Method::from_bytes(method.as_bytes()).is_err() || !is_target(target) {
        return Err(Refusal::RequestLine);
    }
    let http11 = request.version == Some(1);
    Ok(Some((len, body_framing(request.headers, http11)?)))
}

/// Whether hyper can make a URI of the request target. Ordinary origin-form targets are
/// recognised without building one, which would copy them.
fn is_target(target: &str) -> bool {
    let target = target.as_bytes();
    let plain = target.first() == Some(&b'/')
        && target
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@%?".contains(b));
    plain || Uri::try_from(target).is_ok()
}

/// The body's framing by hyper's rules (RFC 9112 §6.3 for requests): chunked when
/// Transfer-Encoding ends in chunked, which then overrides any Content-Length; else the
/// Content-Length, which may repeat only with the same value; else none.
fn body_framing(fields: &[httparse::Header<'_>], http11: bool) -> Result<State, Refusal> {
    let mut transfer_encoding = None;
    let mut length: Option<u64> = None;
    for field in fields {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Refusal::TransferEncodingInHttp10);
            }
            transfer_encoding = Some(ends_in_chunked(field.value));
            length = None;
        } else if field.name.eq_ignore_ascii_case("content-length") && transfer_encoding.is_none() {
            let value = decimal(field.value).ok_or(Refusal::ContentLength)?;
            match length {
                Some(first) if first != value => return Err(Refusal::ContentLength),
                _ => length = Some(value),
            }
        }
    }
    match (transfer_encoding, length) {
        (Some(true), _) => Ok(State::Chunked(Chunk::SizeStart)),
        (Some(false), _) => Err(Refusal::TransferEncoding),
        // hyper cannot represent the two largest values (it reserves them).
        (None, Some(n)) if n > u64::MAX - 2 => Err(Refusal::ContentLength),
        (None, Some(n)) if n > 0 => Ok(State::Length(n)),
        (None, _) => Ok(State::Head),
    }
}

/// Whether the last coding listed is `chunked`; a value that is not visible ASCII never is.
fn ends_in_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    visible
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Digits only — no sign, no blanks, no list — and no overflow.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A position inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At the first hex digit of a chunk's size.
    SizeStart,
    Size(u64),
    /// Blanks after the size: only an extension or the line's end may follow.
    SizeBlank(u64),
    /// A chunk extension, ignored up to the line's CR.
    Extension(u64),
    SizeLf(u64),
    /// Inside a chunk's data: the bytes still to come.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk, at the start of a trailer line or of the final CRLF.
    LineStart,
    Trailer,
    TrailerLf,
    EndLf,
}

impl Chunk {
    /// Follows `bytes`: how many belong to this body and whether it ended there; `None` when the
    /// bytes are not a chunked body (hyper refuses it as well).
    fn follow(&mut self, bytes: &[u8]) -> Option<(usize, bool)> {
        let mut at = 0;
        while at < bytes.len() {
            if let Chunk::Data(remaining) = self {
                let taken = (*remaining).min((bytes.len() - at) as u64);
                *remaining -= taken;
                at += taken as usize;
                if *remaining == 0 {
                    *self = Chunk::DataCr;
                }
                continue;
            }
            let byte = bytes[at];
            at += 1;
            *self = match (*self, byte) {
                (Chunk::SizeStart, b) => Chunk::Size(hex(b)?),
                (Chunk::Size(n), b' ' | b'\t') => Chunk::SizeBlank(n),
                (Chunk::Size(n) | Chunk::SizeBlank(n), b';') => Chunk::Extension(n),
                (Chunk::Size(n) | Chunk::SizeBlank(n) | Chunk::Extension(n), b'\r') => {
                    Chunk::SizeLf(n)
                }
                (Chunk::Size(n), b) => Chunk::Size(n.checked_mul(16)?.checked_add(hex(b)?)?),
                (Chunk::SizeBlank(n), b' ' | b'\t') => Chunk::SizeBlank(n),
                (Chunk::Extension(_), b'\n') => return None,
                (Chunk::Extension(n), _) => Chunk::Extension(n),
                (Chunk::SizeLf(0), b'\n') => Chunk::LineStart,
                (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::SizeStart,
                (Chunk::LineStart, b'\r') => Chunk::EndLf,
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::LineStart | Chunk::Trailer, _) => Chunk::Trailer,
                (Chunk::TrailerLf, b'\n') => Chunk::LineStart,
                (Chunk::EndLf, b'\n') => return Some((at, true)),
                _ => return None,
            };
        }
        Some((at, false))
    }
}

fn hex(byte: u8) -> Option<u64> {
    (byte as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8]) -> (Scan, u64) {
        let mut framing = RequestFraming::default();
        let scan = framing.scan(bytes);
        (scan, framing.heads())
    }

    fn refusal(bytes: &[u8]) -> Option<Refusal> {
        match scan_all(bytes).0 {
            Scan::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }

    const VALID: [&[u8]; 10] = [
        b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/chats?limit=5&cursor=a%2Bb HTTP/1.1\r\n\r\n",
        b"GET /a/{b}#frag HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET http://example.com/x HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\nX-Obs: caf\xc3\xa9\r\nX-Tab: a\tb\r\n\r\n",
        b"\r\nGET / HTTP/1.1\nHost: x\n\n",
        b"PURGE /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n",
    ];

    const MALFORMED: [(&[u8], Refusal); 14] = [
        (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", Refusal::HeaderLine),
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", Refusal::HeaderLine),
        (
            b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            Refusal::HeaderLine,
        ),
        (
            b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            Refusal::HeaderLine,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            Refusal::ContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            Refusal::ContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            Refusal::ContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
            Refusal::ContentLength,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            Refusal::TransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            Refusal::TransferEncoding,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::TransferEncodingInHttp10,
        ),
        (b"GET / HTTP/2.0\r\n\r\n", Refusal::Version),
        (b"G@T / HTTP/1.1\r\n\r\n", Refusal::RequestLine),
        (b"GET /a\x7fb HTTP/1.1\r\n\r\n", Refusal::RequestLine),
    ];

    #[test]
    fn valid_heads_pass_and_are_counted() {
        for head in VALID {
            assert_eq!(
                scan_all(head),
                (Scan::Clean, 1),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn bodies_are_skipped_by_their_framing() {
        let pipelined = b"POST /a HTTP/1.1\r\nContent-Length: 6\r\n\r\nGET /bPOST /c HTTP/1.1\r\n\
            Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nGET\r\nA \r\n0123456789\r\n0\r\n\
            Trailer: 1\r\n\r\nGET /d HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n\r\n\
            GET /e HTTP/1.1\r\n\r\n";
        assert_eq!(scan_all(pipelined), (Scan::Clean, 4));

        // Byte by byte, each head offered again from its start until it is whole.
        let mut framing = RequestFraming::default();
        let mut start = 0;
        for end in 1..=pipelined.len() {
            match framing.scan(&pipelined[start..end]) {
                Scan::Clean => start = end,
                Scan::Partial { at } => start += at,
                refused => panic!("{refused:?} at {end}"),
            }
        }
        assert_eq!(framing.heads(), 4);
        assert_eq!(start, pipelined.len());
    }

    #[test]
    fn transfer_encoding_overrides_content_length_as_hyper_does() {
        let te_first =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n\
            0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan_all(te_first), (Scan::Clean, 2));
        let length_first =
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(scan_all(length_first), (Scan::Clean, 2));
    }

    #[test]
    fn a_refused_head_is_placed_after_the_requests_before_it() {
        let bytes = b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
            GET /3 HTTP/1.1\r\nX: \x01\r\n\r\nGET /4 HTTP/1.1\r\n\r\n";
        let at = bytes.len() - b"GET /3 HTTP/1.1\r\nX: \x01\r\n\r\nGET /4 HTTP/1.1\r\n\r\n".len();
        assert_eq!(
            scan_all(bytes),
            (
                Scan::Refused {
                    at,
                    refusal: Refusal::HeaderLine
                },
                2
            )
        );
    }

    #[test]
    fn malformed_heads_are_refused_for_what_is_wrong() {
        for (head, expected) in MALFORMED {
            assert_eq!(
                refusal(head),
                Some(expected),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// What hyper itself answers `head` with, served as this service configures it.
    async fn hyper_status(head: &[u8]) -> u16 {
        use http_body_util::Empty;
        use hyper_util::rt::TokioIo;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(crate::http::serve::MAX_BUFFER_BYTES);
        let service = hyper::service::service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                Empty::<axum::body::Bytes>::new(),
            ))
        });
        let served = tokio::spawn(http.serve_connection(TokioIo::new(server), service));
        client.write_all(head).await.unwrap();
        let mut answer = [0u8; 12];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_exact(&mut answer),
        )
        .await
        .expect("hyper answered")
        .unwrap();
        served.abort();
        std::str::from_utf8(&answer[9..12])
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The checks are worth only as much as their agreement with hyper: a head refused here that
    /// hyper takes would be a valid request refused.
    #[tokio::test]
    async fn hyper_agrees_on_every_case() {
        let mut too_large = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
        too_large.resize(MAX_HEADER_BYTES + 10, b'a');
        too_large.extend_from_slice(b"\r\n\r\n");
        let mut largest = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
        largest.resize(MAX_HEADER_BYTES - 4, b'a');
        largest.extend_from_slice(b"\r\n\r\n");
        let cases = VALID
            .iter()
            .map(|head| head.to_vec())
            .chain(MALFORMED.iter().map(|(head, _)| head.to_vec()))
            .chain([too_large, largest]);
        for head in cases {
            let ours = refusal(&head);
            let hyper = hyper_status(&head).await;
            assert_eq!(
                ours.is_some(),
                hyper != 200,
                "hyper says {hyper}, we say {ours:?}: {}",
                String::from_utf8_lossy(&head[..head.len().min(120)])
            );
        }
    }

    #[test]
    fn heads_over_the_limit_are_refused_before_they_end() {
        let mut head = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
        head.resize(MAX_HEADER_BYTES - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(scan_all(&head), (Scan::Clean, 1), "exactly 16 KiB passes");

        let mut partial = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
        partial.resize(MAX_HEADER_BYTES - 1, b'a');
        assert_eq!(scan_all(&partial).0, Scan::Partial { at: 0 });
        partial.push(b'a');
        assert_eq!(refusal(&partial), Some(Refusal::HeadTooLarge));

        let many: Vec<u8> = [&b"GET / HTTP/1.1\r\n"[..]]
            .into_iter()
            .chain(std::iter::repeat_n(&b"X: y\r\n"[..], MAX_HEADERS + 1))
            .chain([&b"\r\n"[..]])
            .flatten()
            .copied()
            .collect();
        assert_eq!(refusal(&many), Some(Refusal::TooManyHeaders));
    }

    #[test]
    fn a_chunked_body_that_does_not_frame_stops_the_checks() {
        let bytes = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\nX: \x01\r\n\r\n";
        let mut framing = RequestFraming::default();
        assert_eq!(framing.scan(bytes), Scan::Clean);
        assert_eq!(
            framing.scan(b"GET / HTTP/1.1\r\nX: \x01\r\n\r\n"),
            Scan::Clean
        );
    }

    #[test]
    fn plain_targets_are_the_ones_hyper_accepts() {
        let plain = "/-._~!$&'()*+,;=:@%?";
        for c in plain
            .chars()
            .chain('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
        {
            let target = format!("/a{c}b?x{c}y");
            assert!(Uri::try_from(target.as_str()).is_ok(), "{target}");
        }
        assert!(is_target("/caf\u{e9}"));
        assert!(!is_target("/a b"));
    }

    /// The listed cases, each with a few bytes changed, inserted or removed at random (a fixed
    /// seed): hyper and the checks must agree on whether the first head is refused.
    #[tokio::test]
    async fn hyper_agrees_on_mutated_heads() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut random = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let bytes: &[u8] = b" \t\r\n:;,/?#%{}\x00\x01\x7f\x80\xffaZ09-_.chunkedCONTENT-LENGTH";
        let cases: Vec<&[u8]> = VALID
            .iter()
            .copied()
            .chain(MALFORMED.iter().map(|(head, _)| *head))
            .collect();
        for _ in 0..2_000 {
            let mut head = cases[random(cases.len())].to_vec();
            for _ in 0..=random(3) {
                let at = random(head.len());
                let byte = bytes[random(bytes.len())];
                match random(3) {
                    0 => head[at] = byte,
                    1 => head.insert(at, byte),
                    _ => drop(head.remove(at)),
                }
            }
            let ours = match RequestFraming::default().scan(&head) {
                // hyper would wait for the rest.
                Scan::Partial { at: 0 } => continue,
                Scan::Refused { at: 0, refusal } => Some(refusal),
                _ => None,
            };
            let hyper = hyper_status(&head).await;
            assert_eq!(
                ours.is_some(),
                hyper != 200,
                "hyper says {hyper}, we say {ours:?}: {:?}",
                String::from_utf8_lossy(&head)
            );
        }
    }
}
