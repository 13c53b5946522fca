use reqwest::StatusCode;
use serde_json::json;

use crate::common::{T0, TestApp, backend_tests, samples};

backend_tests!(an_impact_becomes_one_crash_of_its_owner);

async fn an_impact_becomes_one_crash_of_its_owner(app: TestApp) {
    let (ada, eve) = (app.signup().await, app.signup().await);
    let device = app.pair(&ada).await;
    let session = app
        .post(
            "/api/v1/sessions",
            &ada.access,
            json!({"device_id": device}),
        )
        .await
        .body["id"]
        .clone();
    let mut batch = samples(device, T0, 100);
    // A 12 g spike over three samples.
    for (i, g) in [(50, 5.0), (51, 12.0), (52, 7.0)] {
        batch[i]["az"] = json!(g * 9.80665);
    }
    assert_eq!(
        app.post("/api/v1/telemetry", &ada.access, batch.clone())
            .await
            .body["inserted"],
        100
    );

    let crashes = app.get("/api/v1/crashes", &ada.access).await;
    assert_eq!(crashes.status, StatusCode::OK);
    let list = crashes.body.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["device_id"], device);
    assert_eq!(list[0]["session_id"], session);
    assert_eq!(list[0]["severity"], "high");
    assert_eq!(list[0]["ts"], batch[51]["ts"]);
    assert!((list[0]["peak_accel"].as_f64().unwrap() - 117.68).abs() < 0.1);
    assert_eq!(list[0]["confirmed"], "auto");

    // A resend finds the same crash: still one.
    app.post("/api/v1/telemetry", &ada.access, batch).await;
    assert_eq!(
        app.get("/api/v1/crashes", &ada.access)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        app.get("/api/v1/crashes", &eve.access)
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
}
