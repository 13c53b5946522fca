use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{TestApp, backend_tests};

backend_tests!(
    sessions_start_list_stop_and_delete,
    sessions_bind_only_to_own_devices,
    another_users_session_does_not_exist,
);

async fn sessions_start_list_stop_and_delete(app: TestApp) {
    let user = app.signup().await;
    // The original app posts no body at all.
    let first = app
        .call(Method::POST, "/api/v1/sessions", Some(&user.access), None)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert!(first.body["device_id"].is_null() && first.body["end_time"].is_null());
    assert!(first.body["start_time"].as_str().unwrap().ends_with('Z'));
    let second = app.post("/api/v1/sessions", &user.access, json!({})).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let (first_id, second_id) = (
        first.body["id"].as_i64().unwrap(),
        second.body["id"].as_i64().unwrap(),
    );

    let list = app.get("/api/v1/sessions", &user.access).await;
    let ids: Vec<i64> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second_id, first_id], "newest first");

    let path = format!("/api/v1/sessions/{first_id}");
    let stopped = app
        .call(Method::PATCH, &path, Some(&user.access), None)
        .await;
    assert_eq!(stopped.status, StatusCode::OK);
    assert!(
        stopped.body["end_time"].as_str().unwrap() >= stopped.body["start_time"].as_str().unwrap()
    );
    let again = app
        .call(Method::PATCH, &path, Some(&user.access), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error(), "session already stopped");
    assert_eq!(
        app.get(&path, &user.access).await.body["end_time"],
        stopped.body["end_time"]
    );

    assert_eq!(
        app.delete(&path, &user.access).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = app.get(&path, &user.access).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error(), "session not found");
}

async fn sessions_bind_only_to_own_devices(app: TestApp) {
    let (ada, eve) = (app.signup().await, app.signup().await);
    let device = app.pair(&ada).await;
    let bound = app
        .post(
            "/api/v1/sessions",
            &ada.access,
            json!({"device_id": device}),
        )
        .await;
    assert_eq!(bound.status, StatusCode::CREATED);
    assert_eq!(bound.body["device_id"], device);
    let foreign = app
        .post(
            "/api/v1/sessions",
            &eve.access,
            json!({"device_id": device}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.error(), "device not found");
    let wrong = app
        .post("/api/v1/sessions", &ada.access, json!({"device_id": "one"}))
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.error().starts_with("device_id"));
    let malformed = app
        .raw(
            Method::POST,
            "/api/v1/sessions",
            Some(&ada.access),
            "{device",
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    // Unpairing the device keeps the session, unbound.
    app.delete(&format!("/api/v1/devices/{device}"), &ada.access)
        .await;
    let kept = app
        .get(
            &format!("/api/v1/sessions/{}", bound.body["id"]),
            &ada.access,
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK);
    assert!(kept.body["device_id"].is_null());
}

async fn another_users_session_does_not_exist(app: TestApp) {
    let (ada, eve) = (app.signup().await, app.signup().await);
    let session = app.post("/api/v1/sessions", &ada.access, json!({})).await;
    let path = format!("/api/v1/sessions/{}", session.body["id"]);
    for resp in [
        app.get(&path, &eve.access).await,
        app.call(Method::PATCH, &path, Some(&eve.access), None)
            .await,
        app.delete(&path, &eve.access).await,
    ] {
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(resp.error(), "session not found");
    }
    assert!(
        app.get("/api/v1/sessions", &eve.access)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        app.get(&path, &ada.access).await.body["end_time"].is_null(),
        "eve could not stop it"
    );
}
