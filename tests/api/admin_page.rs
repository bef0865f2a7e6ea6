//! The embedded admin page (SPEC §12) as a browser gets it: the shell and its module graph, all
//! same-origin; content types; gzip negotiated with `Vary`; `ETag` revalidation; `immutable`
//! assets under the bundle hash and a `no-cache` shell; the CSP on the page; 404 for anything
//! else under `/admin/`.

use std::io::Read;

use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    HeaderName, IF_NONE_MATCH, LOCATION, VARY, X_FRAME_OPTIONS,
};
use reqwest::{Method, Response, StatusCode};

use crate::helpers::{TestApp, assert_error, send, spawn_app};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn header(response: &Response, name: HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{name} on {}", response.url()))
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = app.request(Method::GET, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request).await
}

async fn shell(app: &TestApp) -> String {
    let response = app.get_anonymous("admin/").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("the shell")
}

/// Every `src="…"` and `href="…"` of an HTML text.
fn references(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| {
            html.match_indices(attribute).filter_map(|(at, found)| {
                let rest = &html[at + found.len()..];
                rest.find('"').map(|end| rest[..end].to_owned())
            })
        })
        .collect()
}

/// The module specifiers of a JavaScript module's static imports (`… from './x.js'`).
fn imports(module: &str) -> Vec<String> {
    module
        .match_indices(" from '")
        .filter_map(|(at, found)| {
            let rest = &module[at + found.len()..];
            rest.find('\'').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// The shell's script, style sheet and icon, then every module reachable from the script: all
/// of them, as absolute paths.
async fn asset_paths(app: &TestApp) -> Vec<String> {
    let html = shell(app).await;
    let mut paths: Vec<String> = references(&html)
        .into_iter()
        .filter(|r| !r.starts_with('#'))
        .collect();
    let mut next = 0;
    while next < paths.len() {
        let path = paths[next].clone();
        next += 1;
        if !path.ends_with(".js") {
            continue;
        }
        let module = app
            .get_anonymous(path.trim_start_matches('/'))
            .await
            .text()
            .await
            .expect("a module");
        let base = app.address.join(&path).expect("a module URL");
        for specifier in imports(&module) {
            assert!(
                specifier.starts_with("./") || specifier.starts_with("../"),
                "{path} imports {specifier}: only relative imports stay on the bundle's path"
            );
            let resolved = base.join(&specifier).expect("a resolvable import");
            let resolved = resolved.path().to_owned();
            if !paths.contains(&resolved) {
                paths.push(resolved);
            }
        }
    }
    paths
}

#[tokio::test]
async fn the_shell_and_every_module_it_loads_are_same_origin_assets_of_one_bundle() {
    let app = spawn_app().await;
    let html = shell(&app).await;

    let references = references(&html);
    assert!(!references.is_empty(), "{html}");
    for reference in &references {
        let same_origin = reference.starts_with("/admin/assets/") || reference.starts_with('#');
        assert!(same_origin, "the shell names {reference:?}");
    }
    assert!(!html.contains("%ASSETS%"), "placeholder left in the shell");
    assert!(!html.contains("style="), "inline style in the shell");
    assert!(!html.contains("<style"), "inline style in the shell");
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script type=\"module\" src=\"/admin/assets/")
            .count(),
        "every script is an external module: {html}"
    );
    assert!(
        html.contains("rel=\"icon\""),
        "a favicon, so the browser asks for no other"
    );

    let paths = asset_paths(&app).await;
    let bundle: Vec<&str> = paths
        .iter()
        .map(|p| p.split('/').nth(3).expect("/admin/assets/<bundle>/…"))
        .collect();
    assert!(bundle.iter().all(|b| *b == bundle[0]), "{paths:?}");
    for page in [
        "overview",
        "chats",
        "chat",
        "audit",
        "retention",
        "keys",
        "rate-limits",
        "login",
    ] {
        let module = format!("/admin/assets/{}/pages/{page}.js", bundle[0]);
        assert!(paths.contains(&module), "{module} not loaded: {paths:?}");
    }
    for path in &paths {
        let response = app.get_anonymous(path.trim_start_matches('/')).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let expected = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}: {path}"),
        };
        assert_eq!(header(&response, CONTENT_TYPE), expected, "{path}");
        assert_eq!(header(&response, CACHE_CONTROL), IMMUTABLE, "{path}");
        let body = response.text().await.expect("an asset");
        // An XML namespace is a name, never fetched.
        let body = body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for foreign in ["http://", "https://", "//fonts", "@import"] {
            assert!(!body.contains(foreign), "{path} names {foreign}");
        }
    }
}

#[tokio::test]
async fn the_shell_is_html_revalidated_every_time_under_the_page_csp() {
    let app = spawn_app().await;
    let response = app.get_anonymous("admin/").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&response, CACHE_CONTROL), "no-cache");
    let csp = header(&response, CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP {csp:?} lacks {directive:?}");
    }
    assert!(!csp.contains("unsafe-inline"), "CSP: {csp:?}");
    assert!(!csp.contains("unsafe-eval"), "CSP: {csp:?}");
    assert_eq!(header(&response, X_FRAME_OPTIONS), "DENY");
}

#[tokio::test]
async fn admin_without_its_slash_is_sent_to_the_page() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let url = app.address.join("admin").expect("a URL");
    let response = send(client.get(url)).await;

    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&response, LOCATION), "/admin/");
}

#[tokio::test]
async fn gzip_is_served_to_clients_that_accept_it_and_only_to_them() {
    let app = spawn_app().await;
    let paths = asset_paths(&app).await;
    let script = paths
        .iter()
        .find(|p| p.ends_with("/app.js"))
        .expect("app.js")
        .trim_start_matches('/')
        .to_owned();

    for path in ["admin/", script.as_str()] {
        let plain = get_with(&app, path, &[]).await;
        assert!(plain.headers().get(CONTENT_ENCODING).is_none(), "{path}");
        assert_eq!(header(&plain, VARY), "Accept-Encoding", "{path}");
        let plain_etag = header(&plain, ETAG).to_owned();
        let plain_body = plain.bytes().await.expect("a body");

        let gzipped = get_with(&app, path, &[("accept-encoding", "br, gzip;q=0.8")]).await;
        assert_eq!(gzipped.status(), StatusCode::OK);
        assert_eq!(header(&gzipped, CONTENT_ENCODING), "gzip", "{path}");
        assert_eq!(header(&gzipped, VARY), "Accept-Encoding", "{path}");
        assert_ne!(
            header(&gzipped, ETAG),
            plain_etag,
            "one tag per representation"
        );
        let compressed = gzipped.bytes().await.expect("a body");
        assert!(compressed.len() < plain_body.len(), "{path}");
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut unpacked)
            .expect("a gzip body");
        assert_eq!(unpacked, plain_body, "{path}: the same content");

        let refused = get_with(&app, path, &[(ACCEPT_ENCODING.as_str(), "gzip;q=0")]).await;
        assert!(refused.headers().get(CONTENT_ENCODING).is_none(), "{path}");
    }
}

#[tokio::test]
async fn a_matching_etag_is_answered_with_304_and_no_body() {
    let app = spawn_app().await;
    let paths = asset_paths(&app).await;
    let style = paths
        .iter()
        .find(|p| p.ends_with(".css"))
        .expect("a style sheet")
        .trim_start_matches('/')
        .to_owned();

    for path in ["admin/", style.as_str()] {
        for encoding in ["identity", "gzip"] {
            let first = get_with(&app, path, &[("accept-encoding", encoding)]).await;
            let etag = header(&first, ETAG).to_owned();
            let cache_control = header(&first, CACHE_CONTROL).to_owned();

            let again = get_with(
                &app,
                path,
                &[
                    ("accept-encoding", encoding),
                    (IF_NONE_MATCH.as_str(), &format!("\"other\", {etag}")),
                ],
            )
            .await;
            assert_eq!(
                again.status(),
                StatusCode::NOT_MODIFIED,
                "{path} {encoding}"
            );
            assert_eq!(header(&again, ETAG), etag);
            assert_eq!(header(&again, CACHE_CONTROL), cache_control);
            assert_eq!(header(&again, VARY), "Accept-Encoding");
            assert!(again.bytes().await.expect("a body").is_empty());

            let changed = get_with(
                &app,
                path,
                &[
                    ("accept-encoding", encoding),
                    (IF_NONE_MATCH.as_str(), "\"stale\""),
                ],
            )
            .await;
            assert_eq!(changed.status(), StatusCode::OK, "{path} {encoding}");
        }
    }
}

#[tokio::test]
async fn anything_else_under_admin_is_not_found() {
    let app = spawn_app().await;
    let paths = asset_paths(&app).await;
    let script = paths
        .iter()
        .find(|p| p.ends_with("/app.js"))
        .expect("app.js");
    let bundle = script.split('/').nth(3).expect("a bundle hash");

    let missing = [
        format!("admin/assets/{bundle}/no-such.js"),
        format!("admin/assets/{bundle}/index.html"),
        "admin/assets/0000000000000000/app.js".to_owned(),
        "admin/app.js".to_owned(),
        "admin/nothing-here".to_owned(),
    ];
    for path in missing {
        let response = app.get_anonymous(&path).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}
