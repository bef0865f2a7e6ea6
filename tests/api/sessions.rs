//! Admin-page sessions and the authentication lockout (SPEC §4).

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_error, eventually, expect_json, send, spawn_app, spawn_app_with,
};

const T0: u64 = 1_800_000_000_000;
const MINUTE: u64 = 60_000;

fn at(ms: u64) -> String {
    ms.to_string()
}

async fn login(app: &TestApp, key: &str) -> Response {
    send(
        app.request(Method::POST, "api/auth/login")
            .json(&json!({ "key": key })),
    )
    .await
}

/// Logs in and returns the `name=value` pair to send back as `Cookie`.
async fn session_cookie(app: &TestApp, key: &str) -> String {
    let response = login(app, key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[SET_COOKIE]
        .to_str()
        .expect("ASCII")
        .to_owned();
    set_cookie
        .split(';')
        .next()
        .expect("a name=value pair")
        .to_owned()
}

/// `POST /api/auth/logout` with the session cookie and the CSRF header.
async fn logout(app: &TestApp, cookie: &str) -> Response {
    send(
        with_cookie(app, Method::POST, "api/auth/logout", cookie)
            .header("x-requested-with", "sofiia-console"),
    )
    .await
}

fn with_cookie(app: &TestApp, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
    app.request(method, path).header(COOKIE, cookie)
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_that_authenticates() {
    let app = spawn_app().await;
    let response = login(&app, &app.admin_key).await;
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "no TLS, no cookie_secure: {set_cookie}"
    );
    let body = expect_json(response, StatusCode::OK).await;
    assert_eq!(body["role"], "admin");
    assert!(
        !body.to_string().contains(&app.admin_key),
        "the key is not echoed"
    );

    let cookie = set_cookie.split(';').next().unwrap();
    let me = send(with_cookie(&app, Method::GET, "api/auth/me", cookie)).await;
    let me = expect_json(me, StatusCode::OK).await;
    assert_eq!(me["kind"], "session");
    assert!(me["session_ends_ms"].as_u64().is_some(), "{me}");
    let chats = send(with_cookie(&app, Method::GET, "api/chats", cookie)).await;
    assert_eq!(chats.status(), StatusCode::OK);

    let secure = spawn_app_with(&[("SOFIIA_AUTH__COOKIE_SECURE", "true")]).await;
    let response = login(&secure, &secure.admin_key).await;
    assert!(
        response.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

#[tokio::test]
async fn cookie_mutations_need_the_csrf_header() {
    let app = spawn_app().await;
    let cookie = session_cookie(&app, &app.admin_key).await;
    let body = json!({ "id": "from-page" });
    let forged = send(with_cookie(&app, Method::POST, "api/chats", &cookie).json(&body)).await;
    assert_error(forged, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(
        app.get("api/chats/from-page", &app.admin_key)
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "the forged request changed nothing"
    );
    let guarded = send(
        with_cookie(&app, Method::POST, "api/chats", &cookie)
            .header("x-requested-with", "sofiia-console")
            .json(&body),
    )
    .await;
    assert_eq!(guarded.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn logout_ends_the_session_and_a_revoked_key_ends_its_sessions() {
    let app = spawn_app().await;
    let cookie = session_cookie(&app, &app.admin_key).await;
    let logout = logout(&app, &cookie).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(
        logout.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = send(with_cookie(&app, Method::GET, "api/auth/me", &cookie)).await;
    assert_error(after, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let viewer = app.create_api_key("viewer").await;
    let cookie = session_cookie(&app, &viewer.secret).await;
    let before = send(with_cookie(&app, Method::GET, "api/chats", &cookie)).await;
    assert_eq!(before.status(), StatusCode::OK);
    let revoked = app
        .delete(&format!("api/admin/keys/{}", viewer.id), &app.admin_key)
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    let after = send(with_cookie(&app, Method::GET, "api/chats", &cookie)).await;
    assert_error(after, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn sessions_expire_when_idle_and_at_their_absolute_end() {
    let app = spawn_app_with(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0))]).await;
    let cookie = session_cookie(&app, &app.admin_key).await;

    // 29 idle minutes: still live (and this request counts as activity).
    let app = app
        .restart(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0 + 29 * MINUTE))])
        .await;
    let active = send(with_cookie(&app, Method::GET, "api/auth/me", &cookie)).await;
    assert_eq!(active.status(), StatusCode::OK);

    // 29 more minutes since that activity: still live; 58 minutes since login.
    let app = app
        .restart(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0 + 58 * MINUTE))])
        .await;
    let active = send(with_cookie(&app, Method::GET, "api/auth/me", &cookie)).await;
    assert_eq!(
        active.status(),
        StatusCode::OK,
        "activity extends the idle limit"
    );

    // 31 idle minutes: over the 30-minute idle limit.
    let app = app
        .restart(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0 + 89 * MINUTE))])
        .await;
    let idle = send(with_cookie(&app, Method::GET, "api/auth/me", &cookie)).await;
    assert_error(idle, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Absolute end: 12 hours, however active.
    let cookie = session_cookie(&app, &app.admin_key).await;
    let mut now = T0 + 89 * MINUTE;
    let mut app = app;
    for _ in 0..25 {
        now += 29 * MINUTE;
        app = app.restart(&[("SOFIIA_FROZEN_CLOCK_MS", &at(now))]).await;
        let status = send(with_cookie(&app, Method::GET, "api/auth/me", &cookie))
            .await
            .status();
        if now - (T0 + 89 * MINUTE) >= 12 * 60 * MINUTE {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "past the absolute end");
            return;
        }
        assert_eq!(
            status,
            StatusCode::OK,
            "{} min in",
            (now - T0 - 89 * MINUTE) / MINUTE
        );
    }
    panic!("the absolute end was never reached");
}

#[tokio::test]
async fn lockout_engages_on_the_sixth_attempt_survives_a_restart_and_expires() {
    let app = spawn_app_with(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0))]).await;
    let wrong = format!("{}x", &app.admin_key[..app.admin_key.len() - 1]);
    for attempt in 1..=5 {
        let response = app.get("api/chats", &wrong).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let sixth = app.get("api/chats", &app.admin_key).await;
    let retry_after: u64 = sixth.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 15 * 60);
    assert_error(sixth, StatusCode::TOO_MANY_REQUESTS, "auth_locked").await;
    let login_locked = login(&app, &app.admin_key).await;
    assert_eq!(login_locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.get_anonymous("livez").await.status(), StatusCode::OK);

    let app = app
        .restart(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0 + 10 * MINUTE))])
        .await;
    let still = app.get("api/chats", &app.admin_key).await;
    assert_error(still, StatusCode::TOO_MANY_REQUESTS, "auth_locked").await;

    let app = app
        .restart(&[("SOFIIA_FROZEN_CLOCK_MS", &at(T0 + 15 * MINUTE))])
        .await;
    let free = app.get("api/chats", &app.admin_key).await;
    assert_eq!(free.status(), StatusCode::OK, "the lockout expired");

    let page = app
        .get_with_query("api/audit", &app.admin_key, &[("action", "auth.lockout")])
        .await;
    let page: Value = expect_json(page, StatusCode::OK).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one record per lockout: {page}");
    assert_eq!(items[0]["target"]["id"], "127.0.0.1");
}

#[tokio::test]
async fn failed_logins_are_audited_and_count_toward_the_lockout() {
    let app = spawn_app_with(&[("SOFIIA_AUTH__LOCKOUT_FAILURES", "10")]).await;
    for _ in 0..3 {
        let response = login(&app, "sk_wrong").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // The record is written beside the refusal, not before it.
    let page: Value = eventually("the failed login is recorded", async || {
        let page = app
            .get_with_query(
                "api/audit",
                &app.admin_key,
                &[("action", "auth.login_failed")],
            )
            .await;
        let page: Value = expect_json(page, StatusCode::OK).await;
        (!page["items"].as_array()?.is_empty()).then_some(page)
    })
    .await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "the rest are aggregated: {page}");
    assert_eq!(items[0]["details"]["count"], 1);
    assert_eq!(items[0]["outcome"], "denied");

    for _ in 3..10 {
        login(&app, "sk_wrong").await;
    }
    let locked = login(&app, &app.admin_key).await;
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "auth_locked").await;
}

#[tokio::test]
async fn rotating_the_admin_token_ends_its_sessions() {
    let first = "first-admin-token-0123456789abcdef";
    let app = spawn_app_with(&[("SOFIIA_ADMIN_TOKEN", first)]).await;
    let cookie = session_cookie(&app, first).await;
    let before = send(with_cookie(&app, Method::GET, "api/auth/me", &cookie)).await;
    assert_eq!(before.status(), StatusCode::OK);

    let same = app.restart(&[("SOFIIA_ADMIN_TOKEN", first)]).await;
    let kept = send(with_cookie(&same, Method::GET, "api/auth/me", &cookie)).await;
    assert_eq!(
        kept.status(),
        StatusCode::OK,
        "a restart alone keeps the session"
    );

    let rotated = same
        .restart(&[("SOFIIA_ADMIN_TOKEN", "second-admin-token-fedcba9876543210")])
        .await;
    let after = send(with_cookie(&rotated, Method::GET, "api/auth/me", &cookie)).await;
    assert_error(after, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_dead_session_cookie_does_not_count_toward_the_lockout() {
    let app = spawn_app().await;
    let cookie = session_cookie(&app, &app.admin_key).await;
    let logout = logout(&app, &cookie).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    for _ in 0..8 {
        let stale = send(with_cookie(&app, Method::GET, "api/chats", &cookie)).await;
        assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    }
    let key = app.get("api/chats", &app.admin_key).await;
    assert_eq!(
        key.status(),
        StatusCode::OK,
        "the address is not locked out"
    );
}

#[tokio::test]
async fn an_empty_credential_is_no_credential() {
    let app = spawn_app().await;
    let empty = send(
        app.request(Method::GET, "api/chats")
            .header("x-api-key", ""),
    )
    .await;
    assert_error(empty, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let login = login(&app, "   ").await;
    assert_error(login, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
