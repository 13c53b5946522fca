//! The live WebSocket: samples published by a real MQTT client arrive as JSON frames;
//! the socket refuses strangers and closes on unpairing, token expiry and shutdown.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};
use tokio::{net::TcpStream, time::timeout};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest},
};
use velt_proto::{ACCEL_SCALE_16G, GYRO_SCALE_2000DPS, Sample, TelemetryBatch};

use crate::common::{T0, TestApp, User, backend_tests};

backend_tests!(
    samples_published_over_mqtt_arrive_on_the_socket,
    strangers_and_plain_requests_are_refused,
    the_socket_closes_when_the_token_expires,
    the_socket_closes_on_shutdown,
);

const WAIT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Pairs a device; returns its id and MQTT credentials.
async fn pair(app: &TestApp, user: &User) -> (i64, Value) {
    let hardware_id = &velt::auth::token::random_id()[..16];
    let resp = app
        .post(
            "/api/v1/devices",
            &user.access,
            json!({"hardware_id": hardware_id, "alias": "chest"}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
    (resp.body["id"].as_i64().unwrap(), resp.body["mqtt"].clone())
}

fn live_url(app: &TestApp, device: i64) -> String {
    format!("ws://{}/api/v1/devices/{device}/live", app.addr)
}

async fn connect(url: String) -> Result<Socket, tungstenite::Error> {
    let (socket, response) = timeout(WAIT, connect_async(url)).await.expect("in time")?;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    Ok(socket)
}

/// The next JSON frame, or the close frame's (code, reason).
async fn next(socket: &mut Socket) -> Result<Value, (u16, String)> {
    loop {
        let message = timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("no socket error");
        match message {
            Message::Text(text) => return Ok(serde_json::from_str(&text).unwrap()),
            Message::Close(frame) => {
                let frame = frame.expect("a close frame with a reason");
                return Err((frame.code.into(), frame.reason.to_string()));
            }
            _ => {}
        }
    }
}

/// A sensor on the broker with the pairing credentials; the event loop runs in a task.
async fn mqtt_device(app: &TestApp, mqtt: &Value) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut options = MqttOptions::new(
        mqtt["client_id"].as_str().unwrap(),
        app.mqtt_addr.ip().to_string(),
        app.mqtt_addr.port(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials(
        mqtt["username"].as_str().unwrap(),
        mqtt["password"].as_str().unwrap(),
    );
    let (client, mut events) = AsyncClient::new(options, 16);
    let task = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    (client, task)
}

async fn samples_published_over_mqtt_arrive_on_the_socket(app: TestApp) {
    let user = app.signup().await;
    let (device, mqtt) = pair(&app, &user).await;
    let mut socket = connect(format!(
        "{}?access_token={}",
        live_url(&app, device),
        user.access
    ))
    .await
    .unwrap();
    // First the stored presence: never seen yet.
    assert_eq!(
        next(&mut socket).await.unwrap(),
        json!({"type": "presence", "device_id": device, "dropped": 0, "online": false, "at": null})
    );

    let (client, events) = mqtt_device(&app, &mqtt).await;
    let samples: Vec<Sample> = (0..25)
        .map(|i| Sample {
            ts_us: T0 + i * 10_000,
            accel: [0.1 * i as f32, -0.5, 9.81],
            gyro: [0.01, 0.0, -0.25],
        })
        .collect();
    let batch = TelemetryBatch::from_samples(
        1,
        None,
        Some(10_000),
        ACCEL_SCALE_16G,
        GYRO_SCALE_2000DPS,
        &samples,
    )
    .unwrap();
    client
        .publish(
            mqtt["topics"]["telemetry"].as_str().unwrap(),
            QoS::AtLeastOnce,
            false,
            velt_proto::encode_telemetry(&batch),
        )
        .await
        .unwrap();

    // Presence (online) and the batch, in whichever order the two paths deliver them.
    let mut online = false;
    let frame = loop {
        let frame = next(&mut socket).await.unwrap();
        match frame["type"].as_str() {
            Some("presence") => online |= frame["online"] == true,
            Some("samples") => break frame,
            other => panic!("unexpected frame {other:?}: {frame}"),
        }
    };
    assert_eq!(frame["device_id"], device);
    assert_eq!(frame["dropped"], 0);
    let got = frame["samples"].as_array().unwrap();
    assert_eq!(got.len(), 25, "one frame per MQTT batch");
    for (sample, sent) in got.iter().zip(&samples) {
        assert_eq!(sample["ts"], json!(velt::timestamp::to_rfc3339(sent.ts_us)));
        assert_eq!(sample["device_id"], device);
        let az = sample["az"].as_f64().unwrap() as f32;
        let ax = sample["ax"].as_f64().unwrap() as f32;
        assert!(
            (az - 9.81).abs() < ACCEL_SCALE_16G && (ax - sent.accel[0]).abs() < ACCEL_SCALE_16G
        );
    }
    if !online {
        // The connection's presence frame may come after the batch.
        let frame = next(&mut socket).await.unwrap();
        assert_eq!(
            (frame["type"].as_str(), &frame["online"]),
            (Some("presence"), &json!(true))
        );
    }

    // Unpairing ends the stream.
    let resp = app
        .delete(&format!("/api/v1/devices/{device}"), &user.access)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    loop {
        match next(&mut socket).await {
            // The device's disconnect may still be announced first.
            Ok(frame) => assert_eq!(frame["type"], "presence", "{frame}"),
            Err(close) => {
                assert_eq!(close, (1000, "device unpaired".to_owned()));
                break;
            }
        }
    }
    events.abort();
}

async fn strangers_and_plain_requests_are_refused(app: TestApp) {
    let owner = app.signup().await;
    let stranger = app.signup().await;
    let (device, _) = pair(&app, &owner).await;

    // Bearer works as well as the query parameter.
    let mut request = live_url(&app, device).into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", owner.access).parse().unwrap(),
    );
    let (mut socket, _) = connect_async(request).await.unwrap();
    assert_eq!(next(&mut socket).await.unwrap()["type"], "presence");

    let refused = |result: Result<Socket, tungstenite::Error>| match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("upgraded"),
    };
    let url = live_url(&app, device);
    assert_eq!(
        refused(connect(format!("{url}?access_token={}", stranger.access)).await),
        404
    );
    assert_eq!(
        refused(
            connect(format!(
                "{}?access_token={}",
                live_url(&app, 999_999),
                owner.access
            ))
            .await
        ),
        404
    );
    assert_eq!(refused(connect(url.clone()).await), 401);
    assert_eq!(
        refused(connect(format!("{url}?access_token=garbage")).await),
        401
    );
    assert_eq!(
        refused(connect(format!("{url}?access_token={}&x=1", owner.access)).await),
        422
    );

    // A plain GET gets a JSON error, not an upgrade.
    let plain = app
        .get(&format!("/api/v1/devices/{device}/live"), &owner.access)
        .await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST, "{plain:?}");
    assert!(plain.error().starts_with("expected a WebSocket upgrade"));
    let foreign = app
        .get(&format!("/api/v1/devices/{device}/live"), &stranger.access)
        .await;
    assert_eq!(
        (foreign.status, foreign.error()),
        (StatusCode::NOT_FOUND, "device not found")
    );
}

async fn the_socket_closes_when_the_token_expires(app: TestApp) {
    // Restart the same database with 2-second access tokens.
    let mut app = app;
    app.stop().await.unwrap();
    let mut config = crate::common::test_config(&app.db);
    config.access_token_ttl = Duration::from_secs(2);
    let app = TestApp::start(app.backend, app.db.clone(), config).await;

    let user = app.signup().await;
    let (device, _) = pair(&app, &user).await;
    let mut socket = connect(format!(
        "{}?access_token={}",
        live_url(&app, device),
        user.access
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut socket).await.unwrap()["type"], "presence");
    assert_eq!(
        next(&mut socket).await.unwrap_err(),
        (1008, "token expired".to_owned())
    );
}

async fn the_socket_closes_on_shutdown(app: TestApp) {
    let mut app = app;
    let user = app.signup().await;
    let (device, _) = pair(&app, &user).await;
    let mut socket = connect(format!(
        "{}?access_token={}",
        live_url(&app, device),
        user.access
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut socket).await.unwrap()["type"], "presence");
    // Shutdown completes although a socket is open, and the socket is told why.
    timeout(WAIT, app.stop())
        .await
        .expect("shutdown does not wait for the socket")
        .unwrap();
    assert_eq!(
        next(&mut socket).await.unwrap_err(),
        (1001, "server shutting down".to_owned())
    );
}
