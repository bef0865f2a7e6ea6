//! Every route with the roles it admits, walked with no credential, each role, a revoked key and
//! an expired key: the exact status each must get. A new route belongs in `ROUTES`. The roles
//! the OpenAPI document gives each route (`x-roles`) must be these.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_json, send, spawn_app, spawn_app_with};

const T0: u64 = 1_800_000_000_000;
const DAY: u64 = 86_400_000;

/// Who a route admits.
#[derive(Clone, Copy)]
enum Admits {
    Anyone,
    /// Any valid credential, whatever its role.
    Authenticated,
    Roles(&'static [&'static str]),
}

struct Route {
    method: Method,
    path: &'static str,
    admits: Admits,
    /// The status of an admitted, well-formed request.
    success: StatusCode,
}

const READ_CHATS: Admits = Admits::Roles(&["admin", "operator", "viewer"]);
const WRITE_CHATS: Admits = Admits::Roles(&["admin", "operator"]);
const ADMIN: Admits = Admits::Roles(&["admin"]);
const AUDIT: Admits = Admits::Roles(&["admin", "auditor"]);
const SYSTEM_HEALTH: Admits = Admits::Roles(&["admin", "viewer"]);

fn routes() -> Vec<Route> {
    use Admits::*;
    let route = |method, path, admits, success| Route {
        method,
        path,
        admits,
        success,
    };
    vec![
        route(Method::GET, "/livez", Anyone, StatusCode::OK),
        route(Method::GET, "/api/health", Anyone, StatusCode::OK),
        route(Method::GET, "/metrics", Anyone, StatusCode::OK),
        route(Method::POST, "/api/auth/login", Anyone, StatusCode::OK),
        route(
            Method::POST,
            "/api/auth/logout",
            Authenticated,
            StatusCode::NO_CONTENT,
        ),
        route(Method::GET, "/api/auth/me", Authenticated, StatusCode::OK),
        route(Method::GET, "/api/chats", READ_CHATS, StatusCode::OK),
        route(Method::POST, "/api/chats", WRITE_CHATS, StatusCode::CREATED),
        route(Method::GET, "/api/chats/{chat}", READ_CHATS, StatusCode::OK),
        route(
            Method::PATCH,
            "/api/chats/{chat}",
            WRITE_CHATS,
            StatusCode::OK,
        ),
        route(
            Method::GET,
            "/api/chats/{chat}/messages",
            READ_CHATS,
            StatusCode::OK,
        ),
        route(
            Method::POST,
            "/api/chats/{chat}/send",
            WRITE_CHATS,
            StatusCode::OK,
        ),
        route(
            Method::GET,
            "/api/admin/system/health",
            SYSTEM_HEALTH,
            StatusCode::OK,
        ),
        route(Method::GET, "/api/admin/backups", ADMIN, StatusCode::OK),
        route(Method::GET, "/api/admin/keys", ADMIN, StatusCode::OK),
        route(Method::POST, "/api/admin/keys", ADMIN, StatusCode::CREATED),
        route(
            Method::DELETE,
            "/api/admin/keys/{key}",
            ADMIN,
            StatusCode::OK,
        ),
        route(
            Method::POST,
            "/api/admin/retention/run",
            ADMIN,
            StatusCode::OK,
        ),
        route(
            Method::GET,
            "/api/admin/retention/runs",
            ADMIN,
            StatusCode::OK,
        ),
        route(
            Method::GET,
            "/api/admin/retention/runs/{run}",
            ADMIN,
            StatusCode::OK,
        ),
        route(Method::GET, "/api/audit", AUDIT, StatusCode::OK),
        route(Method::GET, "/api/audit/verify", AUDIT, StatusCode::OK),
        route(Method::GET, "/api/audit/export", AUDIT, StatusCode::OK),
    ]
}

/// A credential to present, or none.
enum Presented<'a> {
    Nothing,
    Key(&'a str),
}

/// Builds a well-formed request for `route` with `presented`; `login` carries the credential in
/// its body instead of a header.
async fn request(app: &TestApp, route: &Route, presented: &Presented<'_>) -> reqwest::Response {
    let key = match presented {
        Presented::Nothing => None,
        Presented::Key(key) => Some(*key),
    };
    let path = match route.path {
        p if p.contains("{key}") => {
            // A fresh key to revoke, so every admitted call really revokes something.
            let target = app.create_api_key("viewer").await;
            p.replace("{key}", &target.id)
        }
        // The dry run above it in the table wrote the first job log entry.
        p => p.replace("{chat}", "walked").replace("{run}", "1"),
    };
    let body: Option<Value> = match (&route.method, route.path) {
        (&Method::POST, "/api/auth/login") => Some(json!({ "key": key.unwrap_or(&app.admin_key) })),
        (&Method::POST, "/api/chats") => Some(json!({ "title": "walk" })),
        (&Method::PATCH, _) => Some(json!({ "title": "walked" })),
        (&Method::POST, p) if p.ends_with("/send") => Some(json!({ "text": "walking" })),
        (&Method::POST, "/api/admin/keys") => Some(json!({ "name": "walk", "role": "viewer" })),
        // A dry run answers when done; a real run would answer 202 and go on in the background.
        (&Method::POST, "/api/admin/retention/run") => Some(json!({ "dry_run": true })),
        _ => None,
    };
    let mut request = app.request(route.method.clone(), &path);
    if let (Some(key), false) = (key, route.path == "/api/auth/login") {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

fn expected(route: &Route, role: Option<&str>) -> StatusCode {
    match (route.admits, role) {
        (Admits::Anyone, _) => route.success,
        (_, None) => StatusCode::UNAUTHORIZED,
        (Admits::Authenticated, Some(_)) => route.success,
        (Admits::Roles(roles), Some(role)) if roles.contains(&role) => route.success,
        (Admits::Roles(_), Some(_)) => StatusCode::FORBIDDEN,
    }
}

async fn walk(app: &TestApp, presented: Presented<'_>, role: Option<&str>, label: &str) {
    for route in routes() {
        let response = request(app, &route, &presented).await;
        let status = response.status();
        let want = match (&route.admits, role, &presented) {
            // Login judges the credential in its body.
            (Admits::Anyone, None, Presented::Key(_)) if route.path == "/api/auth/login" => {
                StatusCode::UNAUTHORIZED
            }
            _ => expected(&route, role),
        };
        assert_eq!(
            status,
            want,
            "{label}: {} {} — {}",
            route.method,
            route.path,
            response.text().await.unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn every_route_admits_exactly_its_roles() {
    let env = [
        ("SOFIIA_FROZEN_CLOCK_MS", T0.to_string()),
        // Revoked and expired keys fail authentication on every route; not a lockout test.
        ("SOFIIA_AUTH__LOCKOUT_FAILURES", "1000".to_owned()),
    ];
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&env_refs).await;
    let created = app
        .post_json("/api/chats", &app.admin_key, &json!({ "id": "walked" }))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let mut keys = Vec::new();
    for role in ["admin", "operator", "viewer", "auditor"] {
        keys.push((role, app.create_api_key(role).await));
    }
    let revoked = app.create_api_key("admin").await;
    let revoke = app
        .delete(&format!("/api/admin/keys/{}", revoked.id), &app.admin_key)
        .await;
    assert_eq!(revoke.status(), StatusCode::OK);
    let expiring = expect_json(
        app.post_json(
            "/api/admin/keys",
            &app.admin_key,
            &json!({ "name": "short", "role": "admin", "expires_in_days": 1 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let expiring = expiring["key"].as_str().expect("secret").to_owned();

    walk(&app, Presented::Nothing, None, "no credential").await;
    for (role, key) in &keys {
        walk(&app, Presented::Key(&key.secret), Some(role), role).await;
    }
    walk(&app, Presented::Key(&revoked.secret), None, "revoked key").await;
    walk(
        &app,
        Presented::Key(&expiring),
        Some("admin"),
        "key before expiry",
    )
    .await;

    let later = (T0 + 2 * DAY).to_string();
    let env_later: Vec<(&str, &str)> = vec![
        ("SOFIIA_FROZEN_CLOCK_MS", later.as_str()),
        ("SOFIIA_AUTH__LOCKOUT_FAILURES", "1000"),
    ];
    let app = app.restart(&env_later).await;
    walk(&app, Presented::Key(&expiring), None, "expired key").await;
}

/// The document's `x-roles` of each route are the roles the walk above proves it admits.
#[tokio::test]
async fn document_names_the_roles_each_route_admits() {
    let app = spawn_app().await;
    let document = expect_json(app.get_anonymous("/api/openapi.json").await, StatusCode::OK).await;
    for route in routes() {
        // The walk names its path parameters by what they stand for; the router says `{id}`.
        let template = ["{chat}", "{key}", "{run}"]
            .iter()
            .fold(route.path.to_owned(), |path, name| {
                path.replace(name, "{id}")
            });
        let operation = &document["paths"][template][route.method.as_str().to_lowercase()];
        let documented: Vec<&str> = operation["x-roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{} {}: no x-roles", route.method, route.path))
            .iter()
            .map(|role| role.as_str().expect("a role"))
            .collect();
        let admitted: &[&str] = match route.admits {
            Admits::Anyone => &[],
            Admits::Authenticated => &["admin", "operator", "viewer", "auditor"],
            Admits::Roles(roles) => roles,
        };
        assert_eq!(documented, admitted, "{} {}", route.method, route.path);
    }
}
