//! The embedded admin page (SPEC §12): the files under `assets/admin/`, compiled into the binary
//! and served under `/admin/`.
//!
//! Caching without a build step: when the page is first asked for, the server hashes every asset
//! together into one bundle hash and serves the assets under `/admin/assets/<bundle-hash>/<name>`,
//! where their content can never change, so they are `immutable` for a year. The HTML shell names them
//! through the `%ASSETS%` placeholder, filled in with that prefix, and is served `no-cache`: it is
//! the one URL that stays put, and an `ETag` makes its revalidation cheap. One hash for the whole
//! bundle keeps the modules' relative imports (`./api.js`) working, at the price of the browser
//! fetching every asset again after any change — a few dozen KiB on an appliance's LAN.
//!
//! Each file is gzipped once, at the same time, kept only when smaller, and served to clients
//! that accept it (`Vary: Accept-Encoding`); each representation has its own strong `ETag`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "assets/admin/"]
struct Sources;

/// The page's entry point; every other file is an asset.
const SHELL: &str = "index.html";
/// Where the shell names the assets' URL prefix.
const ASSETS_PLACEHOLDER: &str = "%ASSETS%";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";
/// Hex digits of the bundle hash in asset URLs: 64 bits tell builds apart.
const HASH_CHARS: usize = 16;

/// The `/admin` routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(shell))
        .route("/admin/assets/{bundle}/{*name}", get(asset))
}

/// The page, prepared when it is first asked for: hashing and compressing the files costs
/// milliseconds of CPU that start-up (SPEC §14) and a service nobody opens the page on need not
/// pay. The work runs off the async workers.
async fn page() -> &'static AdminPage {
    static PAGE: OnceLock<AdminPage> = OnceLock::new();
    if let Some(page) = PAGE.get() {
        return page;
    }
    // Should the blocking pool be unavailable, the request prepares the page itself.
    let _ = tokio::task::spawn_blocking(|| PAGE.get_or_init(AdminPage::load).bundle.len()).await;
    PAGE.get_or_init(AdminPage::load)
}

/// One file as served: its body, and its gzipped body when that is smaller.
struct Served {
    content_type: &'static str,
    cache_control: &'static str,
    identity: Representation,
    gzip: Option<Representation>,
}

struct Representation {
    body: Vec<u8>,
    etag: HeaderValue,
}

struct AdminPage {
    bundle: String,
    shell: Served,
    assets: HashMap<String, Served>,
}

impl AdminPage {
    fn load() -> Self {
        let mut names: Vec<String> = Sources::iter().map(|n| n.into_owned()).collect();
        names.sort();
        let files: Vec<(String, Vec<u8>)> = names
            .into_iter()
            .filter_map(|name| Sources::get(&name).map(|f| (name, f.data.into_owned())))
            .collect();
        let mut bundle = Sha256::new();
        for (name, data) in files.iter().filter(|(name, _)| name != SHELL) {
            bundle.update((name.len() as u64).to_le_bytes());
            bundle.update(name.as_bytes());
            bundle.update((data.len() as u64).to_le_bytes());
            bundle.update(data);
        }
        let bundle = hex::encode(bundle.finalize())[..HASH_CHARS].to_owned();
        let prefix = format!("/admin/assets/{bundle}");
        let mut shell = None;
        let mut assets = HashMap::new();
        for (name, data) in files {
            if name == SHELL {
                let html = String::from_utf8_lossy(&data).replace(ASSETS_PLACEHOLDER, &prefix);
                shell = Some(Served::new(&name, html.into_bytes(), REVALIDATE));
            } else {
                let served = Served::new(&name, data, IMMUTABLE);
                assets.insert(name, served);
            }
        }
        let shell = shell.unwrap_or_else(|| Served::new(SHELL, Vec::new(), REVALIDATE));
        AdminPage {
            bundle,
            shell,
            assets,
        }
    }
}

impl Served {
    fn new(name: &str, body: Vec<u8>, cache_control: &'static str) -> Self {
        let hash = hex::encode(Sha256::digest(&body))[..HASH_CHARS].to_owned();
        let gzip = gzipped(&body)
            .filter(|gz| gz.len() < body.len())
            .map(|gz| Representation {
                body: gz,
                etag: etag(&format!("{hash}-gz")),
            });
        Served {
            content_type: content_type(name),
            cache_control,
            identity: Representation {
                body,
                etag: etag(&hash),
            },
            gzip,
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let (chosen, encoded) = match &self.gzip {
            Some(gzip) if accepts_gzip(request) => (gzip, true),
            _ => (&self.identity, false),
        };
        let mut response = if matches_etag(request, &chosen.etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut response = chosen.body.clone().into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            if encoded {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, chosen.etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        response
    }
}

async fn shell(headers: HeaderMap) -> Response {
    page().await.shell.respond(&headers)
}

/// An asset of this build; a name under another build's hash is not found, never answered with
/// this build's content, which would then be cached as immutable under the old URL.
async fn asset(
    Path((bundle, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page = page().await;
    match page.assets.get(&name) {
        Some(served) if bundle == page.bundle => Ok(served.respond(&headers)),
        _ => Err(ApiError::not_found("no such asset")),
    }
}

fn gzipped(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

fn etag(tag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{tag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The types of the files the page is made of; anything else is opaque bytes.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// `If-None-Match` against the representation's tag, by the weak comparison RFC 9110 asks for.
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted_with_a_non_zero_quality() {
        let accepts = |v| accepts_gzip(&with(header::ACCEPT_ENCODING, v));
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_understands_lists_and_star() {
        let ours = HeaderValue::from_static("\"abc\"");
        let matches = |v| matches_etag(&with(header::IF_NONE_MATCH, v), &ours);
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abcd\""));
        assert!(!matches_etag(&HeaderMap::new(), &ours));
    }
}
