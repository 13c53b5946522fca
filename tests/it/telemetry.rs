use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{T0, TestApp, backend_tests, samples};

backend_tests!(
    ingest_counts_new_samples_and_resends_are_idempotent,
    the_original_path_works_too,
    samples_go_to_the_open_session_of_their_device,
    foreign_devices_and_sessions_are_refused_whole,
    invalid_samples_are_refused_naming_the_field,
    batches_are_bounded,
    a_large_batch_is_committed_in_one_request,
);

async fn ingest_counts_new_samples_and_resends_are_idempotent(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let first = app
        .post("/api/v1/telemetry", &user.access, samples(device, T0, 100))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body, json!({"inserted": 100}));
    // The same 100 again plus 50 new ones (and one duplicate inside the request).
    let mut overlap = samples(device, T0 + 500_000, 100);
    let duplicate = overlap[99].clone();
    overlap.as_array_mut().unwrap().push(duplicate);
    let second = app.post("/api/v1/telemetry", &user.access, overlap).await;
    assert_eq!(second.body, json!({"inserted": 50}));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 150);
    // Microseconds survive the round trip.
    let micro = json!([{"device_id": device, "ts": "2025-07-28T17:05:03.123456Z", "ax": 1, "ay": 2, "az": 3, "gx": 4, "gy": 5, "gz": 6}]);
    assert_eq!(
        app.post("/api/v1/telemetry", &user.access, micro)
            .await
            .body["inserted"],
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM telemetry WHERE ts = 1753722303123456 AND gz = 6")
            .await,
        1
    );
    let empty = app.post("/api/v1/telemetry", &user.access, json!([])).await;
    assert_eq!(
        (empty.status, empty.body["inserted"].as_i64()),
        (StatusCode::CREATED, Some(0))
    );
}

async fn the_original_path_works_too(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let resp = app
        .post("/api/v1/telemetries", &user.access, samples(device, T0, 3))
        .await;
    assert_eq!(
        (resp.status, resp.body["inserted"].as_i64()),
        (StatusCode::CREATED, Some(3))
    );
}

async fn samples_go_to_the_open_session_of_their_device(app: TestApp) {
    let user = app.signup().await;
    let (bound_device, other_device) = (app.pair(&user).await, app.pair(&user).await);
    let unbound = app
        .post("/api/v1/sessions", &user.access, json!({}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let bound = app
        .post(
            "/api/v1/sessions",
            &user.access,
            json!({"device_id": bound_device}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let explicit = app
        .post("/api/v1/sessions", &user.access, json!({}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();

    let mut batch = samples(bound_device, T0, 10);
    let more = samples(other_device, T0, 10);
    batch
        .as_array_mut()
        .unwrap()
        .extend(more.as_array().unwrap().iter().cloned());
    let mut tagged = samples(other_device, T0 + 1_000_000, 5);
    for sample in tagged.as_array_mut().unwrap() {
        sample["session_id"] = json!(explicit);
    }
    batch
        .as_array_mut()
        .unwrap()
        .extend(tagged.as_array().unwrap().iter().cloned());
    assert_eq!(
        app.post("/api/v1/telemetry", &user.access, batch)
            .await
            .body["inserted"],
        25
    );

    let count = async |session: i64| {
        app.scalar(&format!(
            "SELECT COUNT(*) FROM telemetry WHERE session_id = {session}"
        ))
        .await
    };
    assert_eq!(count(bound).await, 10, "bound session of the device wins");
    // The newest open unbound session at ingest time is `explicit`.
    assert_eq!(count(explicit).await, 15);
    assert_eq!(count(unbound).await, 0);

    // Stopped sessions collect nothing.
    app.call(
        Method::PATCH,
        &format!("/api/v1/sessions/{bound}"),
        Some(&user.access),
        None,
    )
    .await;
    app.call(
        Method::PATCH,
        &format!("/api/v1/sessions/{explicit}"),
        Some(&user.access),
        None,
    )
    .await;
    app.call(
        Method::PATCH,
        &format!("/api/v1/sessions/{unbound}"),
        Some(&user.access),
        None,
    )
    .await;
    app.post(
        "/api/v1/telemetry",
        &user.access,
        samples(bound_device, T0 + 9_000_000, 4),
    )
    .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM telemetry WHERE session_id IS NULL")
            .await,
        4
    );

    // Deleting a session keeps its samples, unattributed.
    app.delete(&format!("/api/v1/sessions/{bound}"), &user.access)
        .await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM telemetry WHERE session_id IS NULL")
            .await,
        14
    );
    // Unpairing a device deletes its samples.
    app.delete(&format!("/api/v1/devices/{bound_device}"), &user.access)
        .await;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM telemetry WHERE device_id = {bound_device}"
        ))
        .await,
        0
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 15);
}

async fn foreign_devices_and_sessions_are_refused_whole(app: TestApp) {
    let (ada, eve) = (app.signup().await, app.signup().await);
    let (ada_device, eve_device) = (app.pair(&ada).await, app.pair(&eve).await);
    let mut mixed = samples(eve_device, T0, 5);
    mixed.as_array_mut().unwrap().extend(
        samples(ada_device, T0, 5)
            .as_array()
            .unwrap()
            .iter()
            .cloned(),
    );
    let resp = app.post("/api/v1/telemetry", &eve.access, mixed).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.error(), "device not found");

    let unknown = app
        .post("/api/v1/telemetry", &eve.access, samples(987_654, T0, 1))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let ada_session = app
        .post("/api/v1/sessions", &ada.access, json!({}))
        .await
        .body["id"]
        .clone();
    let mut sneaky = samples(eve_device, T0, 2);
    sneaky[0]["session_id"] = ada_session;
    let resp = app.post("/api/v1/telemetry", &eve.access, sneaky).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(resp.error(), "session not found");

    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM telemetry").await,
        0,
        "nothing of a refused batch is stored"
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/api/v1/telemetry",
            None,
            Some(samples(ada_device, T0, 1))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn invalid_samples_are_refused_naming_the_field(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let cases = [
        (
            json!([{"device_id": device, "ts": "yesterday", "ax": 0, "ay": 0, "az": 0, "gx": 0, "gy": 0, "gz": 0}]),
            "[0].ts",
        ),
        (
            json!([{"device_id": device, "ts": "2025-07-28T17:05:03Z", "ax": 1e300, "ay": 0, "az": 0, "gx": 0, "gy": 0, "gz": 0}]),
            "[0].ax",
        ),
        (
            json!([{"device_id": device, "ts": "2025-07-28T17:05:03Z", "ax": 0, "ay": "0", "az": 0, "gx": 0, "gy": 0, "gz": 0}]),
            "[0].ay",
        ),
        (
            json!([{"device_id": device, "ts": "2025-07-28T17:05:03Z", "ax": 0, "ay": 0, "az": 0, "gx": 0, "gy": 0}]),
            "[0]: missing field `gz`",
        ),
        (json!({"device_id": device}), "invalid type: map"),
    ];
    for (body, expected) in cases {
        let resp = app.post("/api/v1/telemetry", &user.access, body).await;
        assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY, "{resp:?}");
        assert!(
            resp.error().starts_with(expected),
            "{} should start with {expected}",
            resp.error()
        );
    }
    let nan = format!(
        r#"[{{"device_id": {device}, "ts": "2025-07-28T17:05:03Z", "ax": NaN, "ay": 0, "az": 0, "gx": 0, "gy": 0, "gz": 0}}]"#
    );
    let resp = app
        .raw(Method::POST, "/api/v1/telemetry", Some(&user.access), nan)
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 0);
}

async fn batches_are_bounded(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    let too_many = app
        .post(
            "/api/v1/telemetry",
            &user.access,
            samples(device, T0, 10_001),
        )
        .await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_many.error().starts_with("at most 10000 samples"));
    // Raw HTTP: announce 6 MiB, send a bit more than the 4 MiB limit, then read. (A client
    // that keeps writing after the 413 races the server closing the connection.)
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/telemetry HTTP/1.1\r\nhost: velt\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n[",
        user.access,
        6 * 1024 * 1024
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let _ = socket
        .write_all(&b"0,".repeat(2 * 1024 * 1024 + 1024))
        .await;
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.ends_with(r#"{"error":"request body too large"}"#),
        "{response}"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 0);
}

async fn a_large_batch_is_committed_in_one_request(app: TestApp) {
    let user = app.signup().await;
    let device = app.pair(&user).await;
    // More rows than one INSERT statement may carry on either backend.
    let resp = app
        .post(
            "/api/v1/telemetry",
            &user.access,
            samples(device, T0, 10_000),
        )
        .await;
    assert_eq!(resp.body["inserted"], 10_000);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 10_000);
}
