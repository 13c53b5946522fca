use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Backend, TestApp, backend_tests};

backend_tests!(
    register_returns_tokens_and_normalized_user,
    register_validates_like_the_original,
    login_accepts_the_password_and_refuses_everything_else,
    refresh_rotates_and_a_replayed_token_revokes_the_family,
    refresh_accepts_the_token_in_the_body,
    refresh_refuses_access_tokens_and_garbage,
    logout_revokes_refresh_tokens,
    me_requires_a_valid_access_token,
);

async fn register(app: &TestApp, body: serde_json::Value) -> crate::common::Resp {
    app.call(Method::POST, "/api/v1/auth/register", None, Some(body))
        .await
}

async fn register_returns_tokens_and_normalized_user(app: TestApp) {
    let resp = register(
        &app,
        json!({"email": "  Ada@Example.COM ", "password": "s3cret-pass", "username": "ada"}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::CREATED);
    assert!(resp.body["access_token"].as_str().unwrap().len() > 20);
    assert!(resp.body["refresh_token"].as_str().unwrap().len() > 20);
    assert_eq!(resp.body["token_type"], "Bearer");
    assert_eq!(resp.body["expires_in"], 900);
    assert_eq!(resp.body["user"]["email"], "ada@example.com");
    assert_eq!(resp.body["user"]["username"], "ada");
    assert!(resp.body["user"].get("password_hash").is_none());
    let stored: i64 = app
        .scalar("SELECT COUNT(*) FROM users WHERE password_hash LIKE '$argon2id$%'")
        .await;
    assert_eq!(stored, 1);

    let again = register(
        &app,
        json!({"email": "ADA@example.com", "password": "s3cret-pass", "username": "x"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error(), "email already registered");
}

async fn register_validates_like_the_original(app: TestApp) {
    let missing = register(
        &app,
        json!({"email": "a@example.com", "password": "s3cret-pass"}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.error(), "email, password and username are required");

    let empty = register(
        &app,
        json!({"email": "", "password": "s3cret-pass", "username": "a"}),
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let weak = register(
        &app,
        json!({"email": "a@example.com", "password": "password1", "username": "a"}),
    )
    .await;
    assert_eq!(weak.status, StatusCode::CONFLICT);
    assert_eq!(weak.error(), "password too weak");

    let bad_email = register(
        &app,
        json!({"email": "not-an-email", "password": "s3cret-pass", "username": "a"}),
    )
    .await;
    assert_eq!(bad_email.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_email.error().starts_with("email"),
        "{}",
        bad_email.error()
    );

    let wrong_type = register(
        &app,
        json!({"email": 5, "password": "s3cret-pass", "username": "a"}),
    )
    .await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong_type.error().starts_with("email: invalid type"),
        "{}",
        wrong_type.error()
    );

    let malformed = app
        .raw(Method::POST, "/api/v1/auth/register", None, "{\"email\": ")
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(malformed.error().starts_with("malformed JSON"));

    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, 0);
}

async fn login_accepts_the_password_and_refuses_everything_else(app: TestApp) {
    let user = app.signup().await;
    let login = |email: String, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await
        }
    };
    let ok = login(user.email.to_uppercase(), "s3cret-pass").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["user"]["id"], user.id);
    assert!(ok.body["user"]["last_login_at"].is_string());
    assert!(ok.body["refresh_token"].is_string());

    let wrong = login(user.email.clone(), "wrong-pass1!").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error(), "invalid credentials");

    let unknown = login("nobody@example.com".into(), "s3cret-pass").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.error(), "invalid credentials");

    let missing = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": user.email})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
}

async fn refresh(app: &TestApp, token: &str) -> crate::common::Resp {
    app.call(Method::POST, "/api/v1/auth/refresh", Some(token), None)
        .await
}

async fn refresh_rotates_and_a_replayed_token_revokes_the_family(app: TestApp) {
    let user = app.signup().await;
    let first = refresh(&app, &user.refresh).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let access = first.body["access_token"].as_str().unwrap();
    let rotated = first.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, user.refresh);
    assert_eq!(
        app.get("/api/v1/auth/me", access).await.status,
        StatusCode::OK
    );

    // The old token again: theft is assumed, the whole family dies.
    let replay = refresh(&app, &user.refresh).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(replay.headers.contains_key("www-authenticate"));
    let successor = refresh(&app, &rotated).await;
    assert_eq!(
        successor.status,
        StatusCode::UNAUTHORIZED,
        "the rotated token is revoked too"
    );

    // Another login of the same user is unaffected.
    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": user.email, "password": "s3cret-pass"})),
        )
        .await;
    let other = login.body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, other).await.status, StatusCode::OK);
}

async fn refresh_accepts_the_token_in_the_body(app: TestApp) {
    let user = app.signup().await;
    let resp = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": user.refresh})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body["access_token"].is_string());
    let none = app
        .call(Method::POST, "/api/v1/auth/refresh", None, None)
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

async fn refresh_refuses_access_tokens_and_garbage(app: TestApp) {
    let user = app.signup().await;
    let with_access = refresh(&app, &user.access).await;
    assert_eq!(with_access.status, StatusCode::UNAUTHORIZED);
    assert_eq!(with_access.error(), "invalid token");
    assert_eq!(
        refresh(&app, "garbage").await.status,
        StatusCode::UNAUTHORIZED
    );
    // And a refresh token is no access token.
    assert_eq!(
        app.get("/api/v1/auth/me", &user.refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn logout_revokes_refresh_tokens(app: TestApp) {
    let user = app.signup().await;
    let out = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&user.refresh),
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(&app, &user.refresh).await.status,
        StatusCode::UNAUTHORIZED
    );

    // With an access token: every login of the user ends.
    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": user.email, "password": "s3cret-pass"})),
        )
        .await;
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    let access = login.body["access_token"].as_str().unwrap();
    let out = app
        .call(Method::POST, "/api/v1/auth/logout", Some(access), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(&app, &refresh_token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn me_requires_a_valid_access_token(app: TestApp) {
    let user = app.signup().await;
    let me = app.get("/api/v1/auth/me", &user.access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], user.id);

    let missing = app.call(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(missing.error(), "missing bearer token");
    let bad = app
        .get("/api/v1/auth/me", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl")
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.error(), "invalid token");
}

#[tokio::test]
async fn expired_access_tokens_are_refused_and_refresh_still_works() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.access_token_ttl = std::time::Duration::from_secs(1)
    })
    .await;
    let user = app.signup().await;
    // JWT expiry has one-second resolution: wait it out for real.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = app.get("/api/v1/auth/me", &user.access).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.error(), "token expired");
    let renewed = refresh(&app, &user.refresh).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(
        app.get(
            "/api/v1/auth/me",
            renewed.body["access_token"].as_str().unwrap()
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn login_and_register_are_rate_limited_per_ip() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.auth_rate_limit_per_minute = 3).await;
    let body = json!({"email": "x@example.com", "password": "nope-nope1!"});
    for _ in 0..3 {
        let resp = app
            .call(Method::POST, "/api/v1/auth/login", None, Some(body.clone()))
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app
        .call(Method::POST, "/api/v1/auth/login", None, Some(body))
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(limited.error().starts_with("too many requests"));
    let register = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "y@example.com", "password": "s3cret-pass", "username": "y"})),
        )
        .await;
    assert_eq!(register.status, StatusCode::TOO_MANY_REQUESTS);
}
