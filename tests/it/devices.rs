use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestApp, backend_tests};

backend_tests!(
    pair_list_get_rename_and_unpair,
    hardware_ids_are_validated_and_unique_system_wide,
    status_accepts_the_original_names,
    another_users_device_does_not_exist,
    path_ids_must_be_numeric,
);

async fn pair_list_get_rename_and_unpair(app: TestApp) {
    let user = app.signup().await;
    let created = app
        .post(
            "/api/v1/devices",
            &user.access,
            json!({"hardware_id": "A1B2C3D4E5F60718", "alias": "Left wrist"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let device = &created.body;
    let id = device["id"].as_i64().unwrap();
    assert_eq!(device["hardware_id"], "a1b2c3d4e5f60718");
    assert_eq!(device["alias"], "Left wrist");
    assert_eq!(device["status"], "onboarding");
    assert!(
        device["battery_level"].is_null()
            && device["version"].is_null()
            && device["last_seen_at"].is_null()
    );
    assert!(device["created_at"].as_str().unwrap().ends_with('Z'));

    let list = app.get("/api/v1/devices", &user.access).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["id"], id);

    let one = app
        .get(&format!("/api/v1/devices/{id}"), &user.access)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["alias"], "Left wrist");

    let renamed = app
        .patch(
            &format!("/api/v1/devices/{id}"),
            &user.access,
            json!({"alias": "Right ankle"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["alias"], "Right ankle");
    assert_eq!(
        renamed.body["status"], "onboarding",
        "untouched fields stay"
    );

    let deleted = app
        .delete(&format!("/api/v1/devices/{id}"), &user.access)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app
        .get(&format!("/api/v1/devices/{id}"), &user.access)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error(), "device not found");
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{id}"), &user.access)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Unpaired hardware can be paired again.
    let again = app
        .post(
            "/api/v1/devices",
            &user.access,
            json!({"hardware_id": "a1b2c3d4e5f60718", "alias": "again"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
}

async fn hardware_ids_are_validated_and_unique_system_wide(app: TestApp) {
    let (ada, bob) = (app.signup().await, app.signup().await);
    for bad in [
        "a1b2c3",
        "a1b2c3d4e5f6071",
        "a1b2c3d4e5f607189",
        "g1b2c3d4e5f60718",
    ] {
        let resp = app
            .post(
                "/api/v1/devices",
                &ada.access,
                json!({"hardware_id": bad, "alias": "x"}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(resp.error().starts_with("hardware_id"));
    }
    let missing = app
        .post(
            "/api/v1/devices",
            &ada.access,
            json!({"hardware_id": "a1b2c3d4e5f60718"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.error().contains("alias"), "{}", missing.error());
    let empty_alias = app
        .post(
            "/api/v1/devices",
            &ada.access,
            json!({"hardware_id": "a1b2c3d4e5f60718", "alias": " "}),
        )
        .await;
    assert_eq!(empty_alias.status, StatusCode::UNPROCESSABLE_ENTITY);

    let first = app
        .post(
            "/api/v1/devices",
            &ada.access,
            json!({"hardware_id": "a1b2c3d4e5f60718", "alias": "x"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let taken = app
        .post(
            "/api/v1/devices",
            &bob.access,
            json!({"hardware_id": "A1B2C3D4E5F60718", "alias": "mine"}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.error(), "device already paired");
    assert_eq!(
        app.get("/api/v1/devices", &bob.access)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

async fn status_accepts_the_original_names(app: TestApp) {
    let user = app.signup().await;
    let id = app.pair(&user).await;
    let path = format!("/api/v1/devices/{id}");
    let active = app
        .patch(&path, &user.access, json!({"status": "active"}))
        .await;
    assert_eq!(active.body["status"], "online");
    let offline = app
        .patch(
            &path,
            &user.access,
            json!({"status": "offline", "alias": "new"}),
        )
        .await;
    assert_eq!(
        (
            offline.body["status"].as_str(),
            offline.body["alias"].as_str()
        ),
        (Some("offline"), Some("new"))
    );
    let bad = app
        .patch(&path, &user.access, json!({"status": "exploded"}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.error().starts_with("status"));
    let wrong_type = app.patch(&path, &user.access, json!({"alias": 3})).await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong_type.error().starts_with("alias"));
}

async fn another_users_device_does_not_exist(app: TestApp) {
    let (ada, eve) = (app.signup().await, app.signup().await);
    let id = app.pair(&ada).await;
    let path = format!("/api/v1/devices/{id}");
    for resp in [
        app.get(&path, &eve.access).await,
        app.patch(&path, &eve.access, json!({"alias": "stolen"}))
            .await,
        app.delete(&path, &eve.access).await,
    ] {
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(resp.error(), "device not found");
    }
    assert!(
        app.get("/api/v1/devices", &eve.access)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    let still = app.get(&path, &ada.access).await;
    assert_eq!(
        (still.status, still.body["alias"].as_str()),
        (StatusCode::OK, Some("wrist"))
    );
}

async fn path_ids_must_be_numeric(app: TestApp) {
    let user = app.signup().await;
    let resp = app.get("/api/v1/devices/abc", &user.access).await;
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.error().contains("id"));
    let huge = app
        .get("/api/v1/devices/99999999999999999999999", &user.access)
        .await;
    assert_eq!(huge.status, StatusCode::UNPROCESSABLE_ENTITY);
}
